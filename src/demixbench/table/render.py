"""Rendering a :class:`~demixbench.table.model.Leaderboard`: value cells, escapes, and the output
files (Markdown, CSV, JSON, LaTeX, HTML and the DVC metrics file).

Every function takes the built table; the table's ``to_*`` methods and ``write`` call them. Cells
read ``4.21 ± 0.13`` (mean ± s.e. over seeds), ``4.21`` for a single run, ``n/a`` for NaN, and
difference cells ``+0.12 ± 0.05 [+0.02, +0.22] (p=0.013)`` (p Holm-adjusted) with ``n.s.`` when
the adjusted p is not below the table's alpha. Each difference row is followed by its minimum
detectable differences (``MDD`` row); the seeds column of a difference row names its design.

A row whose training data make it not comparable, or flagged, carries its mark after the label in
every format (:data:`~demixbench.table.model.MARKS`: ``†`` test tracks seen, ``*`` extra data,
``?`` undeclared; a difference row those of both sides): plain after the label in Markdown,
superscript in LaTeX (``\\textsuperscript{\\dag}``) and HTML (``<sup>``); the caption explains each.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from demixbench.fileio import atomic_write_text
from demixbench.htmlpage import page

if TYPE_CHECKING:  # model.py imports this module: the class is needed for annotations only
    from demixbench.table.model import Leaderboard

log = logging.getLogger(__name__)

__all__ = [
    "DIFFERENCE_KIND",
    "MDD_KIND",
    "Cell",
    "html",
    "latex",
    "markdown",
    "write",
    "write_csv",
    "write_json",
    "write_metrics",
]

#: The kind of a difference row (methods' rows have one of :data:`~demixbench.table.model.KINDS`).
DIFFERENCE_KIND = "difference"

#: The kind of the rendered row under each difference row holding its minimum detectable
#: differences (only in the rendered tables; CSV and JSON hold them as ``mdd``).
MDD_KIND = "mdd"

#: Seed design -> how the seeds column of a difference row names it.
_DESIGN_WORDS: dict[str, str] = {"paired": "paired", "unpaired": "unpaired", "pooled": "pooled", "untested": "no test"}

#: Cell style -> (how a number is written, the plus-minus sign): plain text (Markdown, HTML) or
#: LaTeX (numbers in math mode).
_CELL_STYLES: dict[str, tuple[str, str]] = {"text": ("{}", " ± "), "latex": ("${}$", " \\pm ")}

#: The HTML page's style sheet (inline: the page opens from disk without anything else).
_CSS = "\n".join(
    [
        "body { font-family: sans-serif; margin: 2em; }",
        "table { border-collapse: collapse; margin: 0 0 2em 0; }",
        "caption { caption-side: top; text-align: left; max-width: 60em; padding-bottom: 0.5em; }",
        "th, td { padding: 0.2em 0.7em; }",
        "thead th { border-top: 2px solid; border-bottom: 1px solid; }",
        "tbody tr:last-child > * { border-bottom: 2px solid; }",
        "tr.first-difference > * { border-top: 1px solid; }",
        "td { text-align: right; white-space: nowrap; }",
        "th[scope=row] { text-align: left; font-weight: normal; }",
        "td.ns { color: #777; }",
    ]
)


# --------------------------------------------------------------------------------------------------
# Cells and escapes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One value cell of a rendered table."""

    mean: float
    se: float
    difference: bool = False
    ci_low: float = math.nan
    ci_high: float = math.nan
    p_value: float = math.nan
    significant: bool | None = None
    detectable: bool = False
    #: Tracks the cell rests on, shown when fewer than the table's (None: all of them).
    fewer_tracks: int | None = None

    @property
    def not_significant(self) -> bool:
        return self.difference and self.significant is False


def _float(value: Any) -> float:
    """A cell value as float, pandas NA -> NaN."""
    return math.nan if value is None or value is pd.NA else float(value)


def _format_p(p_value: float) -> str:
    """``p<0.001`` or ``p=0.042``."""
    return "p<0.001" if p_value < 0.001 else f"p={p_value:.3f}"


def _format_cell(cell: Cell, style: str = "text") -> str:
    """One cell as text: ``4.21 ± 0.13``; ``4.21`` for one seed; ``n/a`` for NaN; differences
    ``+0.12 ± 0.05 [+0.02, +0.22] (p=0.013)`` (p Holm-adjusted), ``n.s.`` when not significant;
    MDD cells ``0.42``. A cell resting on fewer tracks than the table's (silent references) ends
    with ``(49 tracks)``.

    ``style`` "text" (Markdown, HTML) writes that; "latex" the same with the numbers in math
    mode and ``$\\pm$``: ``$+0.12 \\pm 0.05$ [$+0.02$, $+0.22$] ($p=0.013$)``.
    """
    number, plus_minus = _CELL_STYLES[style]
    if math.isnan(cell.mean):
        return "n/a"
    if cell.detectable:
        return number.format(f"{cell.mean:.2f}")
    value = f"{cell.mean:+.2f}" if cell.difference else f"{cell.mean:.2f}"
    if not math.isnan(cell.se):
        value += f"{plus_minus}{cell.se:.2f}"
    text = number.format(value)
    if cell.difference:
        if not (math.isnan(cell.ci_low) or math.isnan(cell.ci_high)):
            text += f" [{number.format(f'{cell.ci_low:+.2f}')}, {number.format(f'{cell.ci_high:+.2f}')}]"
        if cell.not_significant:
            text += " n.s."
        if not math.isnan(cell.p_value):
            text += f" ({number.format(_format_p(cell.p_value))})"
    if cell.fewer_tracks is not None:
        text += f" ({cell.fewer_tracks} track{'' if cell.fewer_tracks == 1 else 's'})"
    return text


def _escape_markdown(text: str) -> str:
    """Escape the characters that would break a Markdown table cell or start markup."""
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    return re.sub(r"([*`<>\[\]])", r"\\\1", text)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "±": r"$\pm$",
    "²": r"\textsuperscript{2}",
    "−": r"$-$",
    "–": "--",
    "†": r"\dag{}",
    "\n": " ",
}


def _escape_latex(text: str) -> str:
    """Escape LaTeX special characters (and map ±, ², − to LaTeX) in running text."""
    return "".join(_LATEX_SPECIAL.get(character, character) for character in text)


# --------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------


def _latex_marks(marks: str) -> str:
    """Marks as LaTeX superscript after a row label: ``\\textsuperscript{\\dag}``; "" for none."""
    return "\\textsuperscript{" + _escape_latex(marks).replace("{}", "") + "}" if marks else ""


def _rendered(table: Leaderboard, aggregation: str) -> list[tuple[str, str, str, str, list[Cell]]]:
    """(label, marks, kind, seeds text, cells) for one aggregation, in table order; each difference
    row is followed by its MDD row (kind :data:`MDD_KIND`, no marks). ``marks`` are the row's
    (:meth:`~demixbench.table.model.Leaderboard.marks`), "" for none."""
    frame = table.results[aggregation]
    comparisons = {comparison.label: comparison for comparison in table.comparisons}
    n_seeds = {label: len(per_seed) for label, per_seed in table.seeds[aggregation].items()}
    rows = []
    for label in dict.fromkeys(frame["row"]):
        part = frame[frame["row"] == label].set_index("target")
        kind = str(part["kind"].iloc[0])
        difference = kind == DIFFERENCE_KIND
        if difference:
            comparison = comparisons[label]
            seeds = f"{n_seeds[comparison.variant]} vs {n_seeds[comparison.baseline]}"
            design = table.designs.get(label)
            if label in table.not_tested:
                seeds += ", no test"
            elif design is not None:
                seeds += f", {_DESIGN_WORDS[design.kind]}"
        else:
            seeds = str(n_seeds[label])
        cells = []
        for column in table.columns:
            significant = part.at[column, "significant"]
            cells.append(
                Cell(
                    mean=_float(part.at[column, "mean"]),
                    se=_float(part.at[column, "se"]),
                    difference=difference,
                    ci_low=_float(part.at[column, "ci_low"]),
                    ci_high=_float(part.at[column, "ci_high"]),
                    p_value=_float(part.at[column, "p_holm"]),
                    significant=None if significant is pd.NA else bool(significant),
                    fewer_tracks=_fewer(part.at[column, "n_tracks"], table.n_tracks),
                )
            )
        rows.append((label, table.marks(label), kind, seeds, cells))
        if difference:
            mdd = [Cell(mean=_float(part.at[column, "mdd"]), se=math.nan, detectable=True) for column in table.columns]
            rows.append((f"{label}: MDD", "", MDD_KIND, f"{table.power:.0%} power", mdd))
    return rows


def _fewer(n_tracks: Any, total: int) -> int | None:
    """``n_tracks`` when the cell rests on fewer tracks than the table's, else None."""
    return None if n_tracks is None or n_tracks is pd.NA or int(n_tracks) >= total else int(n_tracks)


def _kinds(table: Leaderboard) -> dict[str, str]:
    frame = table.data
    return {str(row): str(kind) for row, kind in zip(frame["row"], frame["kind"], strict=True)}


# --------------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------------


def markdown(table: Leaderboard) -> str:
    """GitHub Markdown: one section per aggregation (heading, caption, table; difference rows
    last), then the methods' notes."""
    header = ["method", "seeds", *table.columns]
    lines: list[str] = []
    for aggregation in table.aggregations:
        lines += [
            f"## {table.title(aggregation)}",
            "",
            table.long_caption(aggregation),
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join([":---", "---:"] + ["---:"] * len(table.columns)) + "|",
        ]
        for label, marks, _, seeds, cells in _rendered(table, aggregation):
            lines.append("| " + " | ".join([_escape_markdown(label + marks), seeds, *map(_format_cell, cells)]) + " |")
        lines.append("")
    if table.notes:
        kinds = _kinds(table)
        lines += ["## Notes", ""]
        lines += [
            f"- {_escape_markdown(row)} ({kinds[row]}): {_escape_markdown(note)}" for row, note in table.notes.items()
        ]
        lines.append("")
    return "\n".join(lines)


def latex(table: Leaderboard) -> str:
    """LaTeX: one booktabs ``table`` per aggregation (\\toprule, \\midrule, \\bottomrule; needs
    ``\\usepackage{booktabs}``), names escaped, then the notes as an itemize list."""
    stem = re.sub(r"[^a-z0-9]+", "-", table.metric.lower())
    lines = [
        f"% {table.metric} leaderboard written by demixbench.table; needs \\usepackage{{booktabs}}.",
    ]
    for aggregation in table.aggregations:
        rendered = _rendered(table, aggregation)
        lines += [
            "\\begin{table}[htbp]",
            "\\centering",
            "\\caption{"
            + f"{_escape_latex(table.title(aggregation))}. {_escape_latex(table.long_caption(aggregation))}"
            + "}",
            f"\\label{{tab:{stem}-{aggregation}}}",
            "\\begin{tabular}{l" + "r" * (1 + len(table.columns)) + "}",
            "\\toprule",
            " & ".join(["method", "seeds", *map(_escape_latex, table.columns)]) + " \\\\",
            "\\midrule",
        ]
        previous_difference = False
        for index, (label, marks, kind, seeds, cells) in enumerate(rendered):
            difference = kind in (DIFFERENCE_KIND, MDD_KIND)
            if difference and not previous_difference and index > 0:
                lines.append("\\midrule")
            previous_difference = difference
            values = [_format_cell(cell, "latex") for cell in cells]
            name = _escape_latex(label) + _latex_marks(marks)
            lines.append(" & ".join([name, _escape_latex(seeds), *values]) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    if table.notes:
        kinds = _kinds(table)
        lines += ["\\paragraph{Notes.}", "\\begin{itemize}"]
        lines += [
            f"\\item \\textbf{{{_escape_latex(row)}}} ({kinds[row]}): {_escape_latex(note)}"
            for row, note in table.notes.items()
        ]
        lines += ["\\end{itemize}", ""]
    return "\n".join(lines)


def html(table: Leaderboard) -> str:
    """A standalone HTML page (inline style only, :func:`demixbench.htmlpage.page`): one
    ``<table>`` with ``<caption>`` per aggregation, then the notes; every name and text escaped."""
    title = f"{table.metric} leaderboard"
    lines = [f"<h1>{escape(title)}</h1>"]
    for aggregation in table.aggregations:
        lines += [
            f"<h2>{escape(table.title(aggregation))}</h2>",
            "<table>",
            f"<caption>{escape(table.long_caption(aggregation))}</caption>",
            "<thead><tr>"
            + "".join(f'<th scope="col">{escape(name)}</th>' for name in ("method", "seeds", *table.columns))
            + "</tr></thead>",
            "<tbody>",
        ]
        first_difference = True
        for label, marks, kind, seeds, cells in _rendered(table, aggregation):
            classes = kind
            if kind == DIFFERENCE_KIND and first_difference:
                classes, first_difference = f"{kind} first-difference", False
            tds = "".join(
                ('<td class="ns">' if c.not_significant else "<td>") + f"{escape(_format_cell(c))}</td>" for c in cells
            )
            name = escape(label) + (f"<sup>{escape(marks)}</sup>" if marks else "")
            lines.append(f'<tr class="{escape(classes)}"><th scope="row">{name}</th><td>{escape(seeds)}</td>{tds}</tr>')
        lines += ["</tbody>", "</table>"]
    if table.notes:
        kinds = _kinds(table)
        lines += ["<h2>Notes</h2>", "<ul>"]
        lines += [
            f"<li><strong>{escape(row)}</strong> ({escape(kinds[row])}): {escape(note)}</li>"
            for row, note in table.notes.items()
        ]
        lines.append("</ul>")
    return page(title, _CSS, "\n".join(lines))


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def write_csv(table: Leaderboard, path: Path) -> Path:
    """Write :meth:`~demixbench.table.model.Leaderboard.tidy` (one line per aggregation, row and
    column) as CSV; returns the path."""
    text = table.tidy().to_csv(index=False, lineterminator="\n")
    return atomic_write_text(Path(path), text)


def write_json(table: Leaderboard, path: Path) -> Path:
    """Write the table (:meth:`~demixbench.table.model.Leaderboard.to_dict`) as strict JSON (NaN
    as null); returns the path."""
    text = json.dumps(table.to_dict(), indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    return atomic_write_text(Path(path), text)


def write_metrics(table: Leaderboard, path: Path) -> Path:
    """Write :meth:`~demixbench.table.model.Leaderboard.headline` as strict JSON, the file DVC
    publishes as metrics; returns the path."""
    text = json.dumps(table.headline(), indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    return atomic_write_text(Path(path), text)


def write(table: Leaderboard, out_dir: Path, stem: str | None = None) -> dict[str, Path]:
    """Write ``{stem}.md``, ``.csv``, ``.json``, ``.tex``, ``.html`` and ``.metrics.json`` (the
    headline numbers, see :meth:`~demixbench.table.model.Leaderboard.headline`) atomically into
    ``out_dir``.

    ``stem`` defaults to the metric in lower case (``sdr``, ``sar``, ...). Returns the written
    paths keyed by ``"md"``, ``"csv"``, ``"json"``, ``"tex"``, ``"html"`` and ``"metrics"``.
    """
    out_dir = Path(out_dir)
    stem = stem or table.metric.lower()
    paths = {
        "md": atomic_write_text(out_dir / f"{stem}.md", markdown(table)),
        "csv": write_csv(table, out_dir / f"{stem}.csv"),
        "json": write_json(table, out_dir / f"{stem}.json"),
        "tex": atomic_write_text(out_dir / f"{stem}.tex", latex(table)),
        "html": atomic_write_text(out_dir / f"{stem}.html", html(table)),
        "metrics": write_metrics(table, out_dir / f"{stem}.metrics.json"),
    }
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths
