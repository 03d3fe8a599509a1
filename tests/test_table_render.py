"""Tests of demixbench.table.render: the Markdown, CSV, JSON, LaTeX, HTML and metrics outputs of a
leaderboard."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from demixbench import TARGETS
from demixbench.table.build import build_table
from demixbench.table.model import Comparison, Leaderboard, MethodRuns
from table_helpers import SEED0, SEED1, cell, seeded_runs, uniform_run, write_track, write_values


@pytest.fixture
def small_table(tmp_path: Path) -> Leaderboard:
    unet = (uniform_run(tmp_path / "unet" / "s0", SEED0), uniform_run(tmp_path / "unet" / "s1", SEED1))
    irm = (uniform_run(tmp_path / "irm", {t: [8.0, 9.0, 10.0] for t in TARGETS}),)
    # A target with only NaN frames on every track gives a NaN median: it must become null in JSON.
    nan_dir = tmp_path / "silent"
    for track in ("a", "b", "c"):
        write_track(nan_dir, track, {**{t: [1.0] for t in TARGETS}, "vocals": [math.nan, math.nan]})
    return build_table(
        [
            MethodRuns("unet", unet),
            MethodRuns("IRM2", irm, kind="oracle"),
            MethodRuns("silent", (nan_dir,), kind="imported"),
        ],
        [Comparison("unet", "IRM2")],
    )


def _difference_text(row: pd.Series) -> str:
    """How a tested difference cell must read: mean ± seed s.e. [interval] n.s. (p=Holm p)."""
    text = f"{row['mean']:+.2f} ± {row['se']:.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
    if not row["significant"]:
        text += " n.s."
    p_holm = row["p_holm"]
    return text + (" (p<0.001)" if p_holm < 0.001 else f" (p={p_holm:.3f})")


def test_markdown(small_table: Leaderboard) -> None:
    text = small_table.to_markdown()
    lines = text.splitlines()
    assert lines[0] == "## SDR: median over frames, median over tracks (SiSEC 2018)"
    caption = lines[2]
    assert "median over 1 s frames" in caption and "3 test tracks" in caption
    assert "95% t interval" in caption and "tracks resampled 2000 times, seed 0" in caption
    assert "Holm-adjusted across the 5 tested cells of this table" in caption
    assert "n.s.: adjusted p ≥ 0.05" in caption and "80% power" in caption
    assert "Seeds: unet - IRM2: B has 1 seed: its seed variance is borrowed from A (pooled)." in caption
    assert "Wilcoxon" not in caption  # the secondary test is in CSV/JSON only
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == [
        "## SDR: median over frames, median over tracks (SiSEC 2018)",
        "## SDR: median over frames, mean over tracks",
    ]  # no nSDR in these score files: no nSDR section
    table_lines = [line for line in lines if line.startswith("|")]
    assert table_lines[0] == "| method | seeds | drums | bass | other | vocals | All |"
    # Per section: header, alignment, 3 methods, 1 difference and its MDD row.
    assert len(table_lines) == 2 * (2 + 5)
    assert table_lines[2] == ("| unet | 2 | 3.00 ± 1.00 | 1.50 ± 0.50 | 2.50 ± 0.50 | 6.50 ± 0.50 | 3.38 ± 0.12 |")
    assert table_lines[3] == "| IRM2 | 1 | 9.00 | 9.00 | 9.00 | 9.00 | 9.00 |"
    # An imported row without declared training data carries "?", explained in the caption.
    assert table_lines[4].startswith("| silent? | 1 | 1.00 |") and "n/a" in table_lines[4]
    assert "? training data not declared: comparability unknown." in caption
    assert "†" not in text and "\\*" not in text  # no test-seen or extra-data row here
    # Pooled: IRM2 borrows unet's seed variance, drums 2 x (1/2 + 1) -> s.e. sqrt(3) = 1.73.
    difference = table_lines[5]
    assert difference.startswith("| unet - IRM2 | 2 vs 1, pooled | -6.00 ± 1.73 [")
    for aggregation, line_index in (("median", 5), ("mean", 12)):
        cells = [cell(small_table, "unet - IRM2", column, aggregation) for column in small_table.columns]
        assert (
            table_lines[line_index]
            == "| unet - IRM2 | 2 vs 1, pooled | " + " | ".join(_difference_text(row) for row in cells) + " |"
        )
        assert (
            table_lines[line_index + 1]
            == "| unet - IRM2: MDD | 80% power | " + " | ".join(f"{row['mdd']:.2f}" for row in cells) + " |"
        )
    # Mean over tracks: unet drums per seed 11/3 and 4 -> 3.83 ± 0.17.
    assert table_lines[9].startswith("| unet | 2 | 3.83 ± 0.17 | 1.33 ± 0.33 |")
    assert "Notes" not in text


def test_cells_mark_holm_adjusted_significance(small_table: Leaderboard, design_table: Leaderboard) -> None:
    """The p shown is Holm's, and n.s. follows it (not the unadjusted interval)."""
    rows = [cell(small_table, "unet - IRM2", column) for column in small_table.columns]
    line = next(line for line in small_table.to_markdown().splitlines() if line.startswith("| unet - IRM2 |"))
    for row, text in zip(rows, line.split(" | ")[2:], strict=True):
        assert row["p_holm"] > row["p_value"]  # five tested cells: the adjustment shows
        assert f"(p={row['p_holm']:.3f})" in text
        assert (" n.s." in text) == (not row["significant"])
    # Every tested cell of a table with several designs, significant or not.
    marks = {True: 0, False: 0}
    for aggregation in ("median", "mean"):
        section = design_table.to_markdown().split(f"## {design_table.title(aggregation)}\n")[1].split("\n## ")[0]
        for label in ("big - base", "same - base", "other - base", "one - base"):
            line = next(line for line in section.splitlines() if line.startswith(f"| {label} |"))
            for column, text in zip(design_table.columns, line.rstrip(" |").split(" | ")[2:], strict=True):
                row = cell(design_table, label, column, aggregation)
                assert text == _difference_text(row), (aggregation, label, column)
                marks[bool(row["significant"])] += 1
    assert marks[True] > 0 and marks[False] > 0


def test_csv(small_table: Leaderboard, tmp_path: Path) -> None:
    path = small_table.to_csv(tmp_path / "out.csv")
    frame = pd.read_csv(path)
    assert list(frame.columns) == [
        "aggregation", "row", "kind", "trained_on", "comparable", "target", "mean", "se", "n_seeds", "n_tracks",
        "design", "se_total", "df", "ci_low", "ci_high", "p_value", "p_holm", "significant", "mdd",
        "p_wilcoxon_tracks",
    ]  # fmt: skip
    assert len(frame) == 2 * 4 * 5  # aggregations x rows x columns
    assert list(dict.fromkeys(frame["aggregation"])) == ["median", "mean"]
    median = frame[frame["aggregation"] == "median"]
    unet = median[(median["row"] == "unet") & (median["target"] == "drums")].iloc[0]
    assert (unet["kind"], unet["mean"], unet["se"], unet["n_seeds"]) == ("model", 3.0, 1.0, 2)
    assert unet["n_tracks"] == 3
    # Provenance per row: the defaults of each kind; a difference row's comparability from its sides.
    provenance = median.drop_duplicates("row").set_index("row")
    assert provenance.loc["unet", ["trained_on", "comparable"]].tolist() == ["musdb18-train", True]
    assert provenance.loc["IRM2", ["trained_on", "comparable"]].tolist() == ["oracle", True]
    assert provenance.loc["silent", "trained_on"] == "undeclared" and pd.isna(provenance.loc["silent", "comparable"])
    assert pd.isna(provenance.loc["unet - IRM2", "trained_on"]) and provenance.loc["unet - IRM2", "comparable"]
    silent = median[(median["row"] == "silent") & (median["target"].isin(["vocals", "All"]))]
    assert list(silent["n_tracks"]) == [0, 0]
    assert unet[["design", "se_total", "df", "ci_low", "p_value", "p_holm", "significant", "mdd"]].isna().all()
    assert pd.isna(unet["p_wilcoxon_tracks"])
    difference = median[(median["row"] == "unet - IRM2") & (median["target"] == "drums")].iloc[0]
    assert difference["design"] == "pooled"
    assert difference["mean"] == pytest.approx(-6.0)
    assert difference["se"] == pytest.approx(math.sqrt(3.0))
    assert difference["se_total"] >= difference["se"]
    assert difference["df"] == pytest.approx(1.0)  # the seed part's: unet's 2 seeds
    assert difference["ci_low"] <= -6.0 <= difference["ci_high"]
    assert difference["p_value"] <= difference["p_holm"] <= 1.0
    assert difference["mdd"] > 0
    assert str(difference["significant"]) == str(difference["p_holm"] < 0.05)
    # Three tracks, all lower: the smallest exact two-sided p of the secondary test.
    assert difference["p_wilcoxon_tracks"] == pytest.approx(0.25)
    # The CSV holds the frame's numbers.
    expected = cell(small_table, "unet - IRM2", "drums")
    for name in ("se_total", "df", "ci_low", "ci_high", "p_value", "p_holm", "mdd"):
        assert difference[name] == pytest.approx(expected[name], rel=1e-12), name


def test_json_is_strict_and_complete(small_table: Leaderboard, tmp_path: Path) -> None:
    path = small_table.to_json(tmp_path / "out.json")
    text = path.read_text(encoding="utf-8")
    # No NaN/Infinity literal as a value (the captions' words "NaN frames" are text).
    assert re.search(r"[:\[,]\s*-?(NaN|Infinity)", text) is None

    def reject(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    document = json.loads(text, parse_constant=reject)
    assert document["metric"] == "SDR" and document["unit"] == "dB"
    assert document["n_tracks"] == 3
    assert document["frame_duration"] == 1.0
    assert document["targets"] == list(TARGETS)
    assert document["primary"] == "median"
    assert "median over tracks" in document["aggregation"]
    statistics = document["statistics"]
    assert statistics["n_resamples"] == 2000
    assert statistics["bootstrap_seed"] == 0
    assert statistics["confidence"] == 0.95
    assert statistics["alpha"] == pytest.approx(0.05)
    assert statistics["power"] == 0.8
    assert statistics["n_tests"] == {"median": 5, "mean": 5}
    assert "t test" in statistics["p_value"] and "Holm" in statistics["p_holm"]
    assert "Wilcoxon" in statistics["p_wilcoxon_tracks"] and "never" in statistics["p_wilcoxon_tracks"]
    assert set(statistics) >= {"design", "se_total", "df", "mdd", "significant"}
    assert document["notes"] == {}
    assert document["marks"] == {"?": "training data not declared: comparability unknown"}
    assert document["frame_hop"] == 1.0
    assert document["caption"] == small_table.long_caption()
    assert document["aggregations"]["mean"]["caption"] == small_table.long_caption("mean")
    assert set(statistics) >= {"trained_on", "comparable", "frames", "nsdr"}
    # The primary table at the top level, the further aggregations under "aggregations".
    assert document["title"].startswith("SDR: median over frames, median over tracks")
    assert list(document["aggregations"]) == ["mean"]
    median = document
    unet = median["rows"]["unet"]
    assert unet["kind"] == "model" and unet["n_seeds"] == 2
    assert (unet["trained_on"], unet["comparable"], unet["marks"]) == ("musdb18-train", True, "")
    assert (median["rows"]["IRM2"]["trained_on"], median["rows"]["IRM2"]["comparable"]) == ("oracle", True)
    silent = median["rows"]["silent"]
    assert (silent["trained_on"], silent["comparable"], silent["marks"]) == ("undeclared", None, "?")
    assert unet["drums"] == {"mean": 3.0, "se": 1.0}
    assert unet["seeds"]["s0"]["drums"] == 2.0 and unet["seeds"]["s1"]["All"] == 3.5
    assert median["rows"]["IRM2"]["bass"] == {"mean": 9.0, "se": None}
    assert median["rows"]["silent"]["vocals"] == {"mean": None, "se": None}
    difference = median["differences"]["unet - IRM2"]
    assert (difference["variant"], difference["baseline"]) == ("unet", "IRM2")
    assert (difference["comparable"], difference["marks"], difference["not_tested"]) == (True, "", None)
    assert difference["design"] == "pooled"
    assert difference["seeds"] == "B has 1 seed: its seed variance is borrowed from A (pooled)"
    drums = difference["drums"]
    assert set(drums) == {
        "mean", "se", "se_total", "df", "ci_low", "ci_high", "p_value", "p_holm", "significant", "mdd",
        "p_wilcoxon_tracks",
    }  # fmt: skip
    assert drums["mean"] == pytest.approx(-6.0)
    assert drums["se"] == pytest.approx(math.sqrt(3.0))
    assert drums["ci_low"] <= drums["mean"] <= drums["ci_high"]
    assert isinstance(drums["significant"], bool)
    assert drums["significant"] == (drums["p_holm"] < 0.05)
    assert drums["p_wilcoxon_tracks"] == pytest.approx(0.25)
    for column in small_table.columns:
        expected = cell(small_table, "unet - IRM2", column)
        for name in ("se_total", "df", "ci_low", "ci_high", "p_value", "p_holm", "mdd"):
            assert difference[column][name] == pytest.approx(expected[name]), (column, name)
    mean = document["aggregations"]["mean"]
    assert mean["rows"]["unet"]["seeds"]["s0"]["drums"] == pytest.approx(11 / 3)
    assert mean["differences"]["unet - IRM2"]["design"] == "pooled"
    # Every value under rows/differences is a number, a bool or null (DVC metrics).
    for row in (*median["rows"].values(), *median["differences"].values()):
        for column in small_table.columns:
            assert all(v is None or isinstance(v, (int, float)) for v in row[column].values())


@pytest.fixture
def design_table(tmp_path: Path) -> Leaderboard:
    """One comparison of each seed design, on 10 synthetic tracks: big (paired), same (paired,
    identical), other (unpaired: 3 vs 3, other seed names), one - base (pooled, 1 vs 3) and one
    - two (untested, 1 vs 1)."""
    rng = np.random.default_rng(8)
    tracks = rng.normal(4.0, 2.0, size=(10, 4))
    base = tracks + rng.normal(0.0, 0.05, size=(3, 10, 4))
    big = base + 5.0 + rng.normal(0.0, 0.05, size=(3, 10, 4))
    other = tracks + rng.normal(0.0, 0.5, size=(3, 10, 4))
    methods = [
        MethodRuns("base", seeded_runs(tmp_path, "base", base)),
        MethodRuns("same", seeded_runs(tmp_path, "same", base)),
        MethodRuns("big", seeded_runs(tmp_path, "big", big)),
        MethodRuns("other", tuple(write_values(tmp_path / "other" / f"run{s}", other[s]) for s in range(3))),
        # Not a constant shift from "two": scipy's Wilcoxon test on tied differences over <= 13
        # tracks runs a slow permutation test.
        MethodRuns("one", (write_values(tmp_path / "one" / "seed0", tracks + rng.normal(1.0, 0.001, size=(10, 4))),)),
        MethodRuns("two", (write_values(tmp_path / "two" / "seed0", tracks),)),
    ]
    comparisons = [
        Comparison("big", "base"),
        Comparison("same", "base"),
        Comparison("other", "base"),
        Comparison("one", "base"),
        Comparison("one", "two"),
    ]
    return build_table(methods, comparisons, n_resamples=500)


def test_designs_in_every_format(design_table: Leaderboard) -> None:
    seeds = {
        "big - base": "3 vs 3, paired",
        "same - base": "3 vs 3, paired",
        "other - base": "3 vs 3, unpaired",
        "one - base": "1 vs 3, pooled",
        "one - two": "1 vs 1, no test",
    }
    assert {label: design.kind for label, design in design_table.designs.items()} == {
        "big - base": "paired",
        "same - base": "paired",
        "other - base": "unpaired",
        "one - base": "pooled",
        "one - two": "untested",
    }
    markdown = design_table.to_markdown()
    section = markdown.split("## SDR: median over frames, mean over tracks")[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    labels = [line.split(" | ")[0][2:] for line in lines]
    # Each difference row is followed by its MDD row.
    assert labels[-10:] == [part for label in seeds for part in (label, f"{label}: MDD")]
    for label, text in seeds.items():
        row_line = lines[labels.index(label)]
        assert row_line.startswith(f"| {label} | {text} | ")
        mdd_line = lines[labels.index(f"{label}: MDD")]
        expected = [cell(design_table, label, column)["mdd"] for column in design_table.columns]
        assert (
            mdd_line
            == f"| {label}: MDD | 80% power | "
            + " | ".join("n/a" if math.isnan(value) else f"{value:.2f}" for value in expected)
            + " |"
        )
    # big: significant everywhere, no n.s.; same: p = 1, n.s. everywhere; untested: no interval,
    # no p, no mark, no MDD.
    big = lines[labels.index("big - base")]
    assert " n.s." not in big and big.count("(p") == len(design_table.columns)
    same = lines[labels.index("same - base")]
    assert same.count("[+0.00, +0.00] n.s. (p=1.000)") == len(design_table.columns)
    untested = lines[labels.index("one - two")]
    assert untested == "| one - two | 1 vs 1, no test | " + " | ".join(["+1.00"] * 5) + " |"
    assert "| one - two: MDD | 80% power | n/a | n/a | n/a | n/a | n/a |" in section
    # The caption names each design's reason; Holm's family is the 4 tested comparisons.
    assert "Holm-adjusted across the 20 tested cells" in section
    assert "one - two: 1 seed per side: seed variance unknown, no test" in section
    assert "other - base: unpaired: seeds run0, run1, run2, seed0, seed1, seed2 are on one side only" in section
    assert "one - base: A has 1 seed: its seed variance is borrowed from B (pooled)" in section

    # LaTeX: the same seeds texts; the MDD rows sit with the difference rows below one \midrule.
    latex = design_table.to_latex()
    body = latex.split("\\label{tab:sdr-median}")[1].split("\\bottomrule")[0]
    for label, text in seeds.items():
        assert f"\n{label} & {text} & " in body
        assert f"\n{label}: MDD & 80" in body
    assert body.count("\\midrule") == 2  # under the header, above the first difference row
    assert body.index("\\midrule", body.index("\\midrule") + 1) < body.index("big - base &")
    assert "n.s. ($p=1.000$)" in body

    # HTML: MDD rows have their own class, the seeds cell names the design, n.s. cells are grey.
    page = design_table.to_html()
    collector = _CellCollector()
    collector.feed(page)
    collector.close()
    assert collector.stack == []
    assert page.count('<tr class="mdd">') == 2 * len(seeds)  # per aggregation
    assert page.count('<tr class="difference first-difference">') == 2
    texts = [text for tag, text in collector.cells if tag == "td"]
    for text in set(seeds.values()):
        assert texts.count(text) == 2 * list(seeds.values()).count(text)
    assert page.count('<td class="ns">') == sum(
        int((design_table.results[a]["significant"] == False).sum())  # noqa: E712
        for a in design_table.aggregations
    )


class _CellCollector(HTMLParser):
    """Collects the text of every <caption>, <th> and <td>, and checks tags are balanced."""

    VOID = {"meta", "br", "hr", "img", "link", "input"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.cells: list[tuple[str, str]] = []
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag in ("caption", "th", "td", "li", "h2"):
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (self.stack, tag)
        self.stack.pop()
        if tag in ("caption", "th", "td", "li", "h2") and self._text is not None:
            self.cells.append((tag, "".join(self._text)))
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def test_write_all_formats(tmp_path: Path) -> None:
    tricky = "a_b & <c> 100% #1"
    runs = uniform_run(tmp_path / "t", {t: [4.0, 5.0, 6.0] for t in TARGETS})
    base = uniform_run(tmp_path / "b", {t: [1.0, 2.0, 3.0] for t in TARGETS})
    table = build_table(
        [
            MethodRuns(tricky, (runs,), note="from <somewhere> & co"),
            MethodRuns("base", (base,), kind="imported", note="SiSEC 2018 submission, sigsep-mus-2018"),
        ],
        [Comparison(tricky, "base")],
    )
    out = tmp_path / "results" / "table"
    paths = table.write(out)
    assert set(paths) == {"md", "csv", "json", "tex", "html", "metrics"}
    assert sorted(p.name for p in out.iterdir()) == [
        "sdr.csv",
        "sdr.html",
        "sdr.json",
        "sdr.md",
        "sdr.metrics.json",
        "sdr.tex",
    ]
    assert paths["md"].read_text(encoding="utf-8") == table.to_markdown()

    # Markdown: notes listed under the tables.
    markdown = paths["md"].read_text(encoding="utf-8")
    assert "## Notes" in markdown
    assert "- base (imported): SiSEC 2018 submission, sigsep-mus-2018" in markdown

    # CSV and JSON parse, with numbers.
    assert len(pd.read_csv(paths["csv"])) == 2 * 3 * 5
    document = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert document["notes"] == {tricky: "from <somewhere> & co", "base": "SiSEC 2018 submission, sigsep-mus-2018"}
    assert document["rows"]["base"]["All"]["mean"] == 2.0
    assert isinstance(document["differences"][f"{tricky} - base"]["All"]["mean"], float)
    assert document["aggregations"]["mean"]["rows"]["base"]["All"]["mean"] == 2.0

    # Metrics (DVC): the primary table's seed means, and which of them compare.
    headline = json.loads(paths["metrics"].read_text(encoding="utf-8"))
    assert set(headline) == {"metric", "n_tracks", "rows", "differences", "trained_on", "comparable"}
    assert headline["n_tracks"] == document["n_tracks"]
    assert headline["trained_on"] == {tricky: "musdb18-train", "base": "undeclared"}
    assert headline["comparable"] == {tricky: True}  # unknown (undeclared) is left out: DVC drops nulls
    for part in ("rows", "differences"):
        assert set(headline[part]) == set(document[part])
        for label, columns in headline[part].items():
            assert columns == {column: document[part][label][column]["mean"] for column in (*TARGETS, "All")}

    # LaTeX: booktabs rules, escaped names, ± as $\pm$.
    latex = paths["tex"].read_text(encoding="utf-8")
    assert latex.count("\\toprule") == latex.count("\\bottomrule") == 2  # one table per aggregation
    assert "\\midrule" in latex and "\\begin{tabular}{lrrrrrr}" in latex
    assert "a\\_b \\& \\textless{}c\\textgreater{} 100\\% \\#1" in latex
    assert tricky not in latex
    assert "$\\pm$" in latex and "±" not in latex
    assert "\\caption{SDR: median over frames, median over tracks" in latex
    assert "\\label{tab:sdr-median}" in latex and "\\label{tab:sdr-mean}" in latex
    assert "\\item \\textbf{base} (imported): SiSEC 2018 submission, sigsep-mus-2018" in latex
    assert "\nbase\\textsuperscript{?} & 1 & " in latex
    assert latex.count("\\begin{table}") == latex.count("\\end{table}") == 2

    # HTML: standalone, escaped, captioned, well nested.
    page = paths["html"].read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<link" not in page and "<script" not in page
    assert "a_b &amp; &lt;c&gt; 100% #1" in page and "<c>" not in page
    collector = _CellCollector()
    collector.feed(page)
    collector.close()
    assert collector.stack == []
    captions = [text for tag, text in collector.cells if tag == "caption"]
    assert len(captions) == 2 and "median over 1 s frames, median over tracks" in captions[0]
    row_headers = [text for tag, text in collector.cells if tag == "th"]
    # The imported row declares no training data: "?" in <sup> after its label and its difference's.
    assert tricky in row_headers and f"{tricky} - base?" in row_headers and "base?" in row_headers
    assert '<th scope="row">base<sup>?</sup></th>' in page
    assert "from <somewhere> & co" in "".join(text for tag, text in collector.cells if tag == "li")

    table.write(out, stem="again")
    assert (out / "again.json").is_file() and (out / "again.tex").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_latex_mdd_row_is_escaped(design_table: Leaderboard) -> None:
    latex = design_table.to_latex()
    mdd_rows = [line for line in latex.splitlines() if ": MDD & " in line]
    assert len(mdd_rows) == 2 * 5
    for line in mdd_rows:
        assert " & 80\\% power & " in line
        assert line.endswith(" \\\\")
        assert "%" not in line.replace("\\%", "")  # no unescaped percent sign: no comment


def test_cells_on_fewer_tracks_say_so(tmp_path: Path) -> None:
    """A target silent on one test track (its score is NaN there) rests on one track fewer: the
    cell, the difference cell and All say how many, and the caption why."""
    rng = np.random.default_rng(8)
    base = rng.normal(5.0, 1.0, size=(3, 6, 4))
    other = base + rng.normal(0.3, 0.2, size=(3, 6, 4))
    other[:, 2, 3] = np.nan  # vocals undefined on track t02 in every seed
    a = seeded_runs(tmp_path, "a", base)
    b = seeded_runs(tmp_path, "b", other)
    table = build_table([MethodRuns("a", a), MethodRuns("b", b)], [Comparison("b", "a")], n_resamples=100)
    frame = table.data.set_index(["row", "target"])
    assert frame.at[("a", "vocals"), "n_tracks"] == 6 and frame.at[("b", "vocals"), "n_tracks"] == 5
    assert frame.at[("b", "All"), "n_tracks"] == 5 and frame.at[("b", "drums"), "n_tracks"] == 6
    assert frame.at[("b - a", "vocals"), "n_tracks"] == 5
    markdown = table.to_markdown()
    row_b = next(line for line in markdown.splitlines() if line.startswith("| b | "))
    cells = row_b.rstrip(" |").split(" | ")  # method, seeds, drums, bass, other, vocals, All
    assert not cells[2].endswith("tracks)") and cells[5].endswith("(5 tracks)") and cells[6].endswith("(5 tracks)")
    difference = next(line for line in markdown.splitlines() if line.startswith("| b - a | "))
    assert difference.rstrip(" |").split(" | ")[5].endswith("(5 tracks)")
    assert "(N tracks): the cell rests on N of the 6 tracks" in table.long_caption()
    assert "(N tracks)" not in build_table([MethodRuns("a", a)]).long_caption()
