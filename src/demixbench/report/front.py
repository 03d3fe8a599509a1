"""The report's front page (rule ``record_provenance``): what was run and what it cost, before any
number: the experiment, git commit, dataset fingerprint, seeds, models, hardware and total cost,
then the headline table and each row's cost. Written from the run's provenance record
(:func:`demixbench.report.run.write_run_provenance`) and the headline table's HTML page
(:func:`demixbench.table.render.html`), as one standalone HTML page that the Snakemake report
shows first."""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from demixbench.fileio import atomic_write_text
from demixbench.htmlpage import page
from demixbench.report.run import COST_HEADER, cost_row_html

log = logging.getLogger(__name__)

__all__ = ["ModelEntry", "headline_table", "write_front_page"]

_CSS = "\n".join(
    [
        "body { font-family: sans-serif; margin: 2em; max-width: 75em; }",
        "table { border-collapse: collapse; margin: 0 0 1.5em 0; }",
        "table.facts th { text-align: left; padding-right: 1.5em; vertical-align: top; }",
        "caption { caption-side: top; text-align: left; max-width: 60em; padding-bottom: 0.5em; font-size: 90%; }",
        "th, td { padding: 0.2em 0.7em; }",
        "thead th { border-top: 2px solid; border-bottom: 1px solid; }",
        "tbody tr:last-child > * { border-bottom: 2px solid; }",
        "tr.first-difference > * { border-top: 1px solid; }",
        "td { text-align: right; white-space: nowrap; }",
        "table.facts td { text-align: left; white-space: normal; }",
        "th[scope=row] { text-align: left; font-weight: normal; }",
        "td.ns { color: #777; }",
    ]
)

#: The first aggregation's heading and table in a table page of demixbench.table.render.html.
_FIRST_TABLE = re.compile(r"(<h2>.*?</h2>\s*<table>.*?</table>)", re.DOTALL)


#: What the front page says of a model: its architecture, and for a variant its discriminator
#: and baseline (None where it has none).
ModelEntry = Mapping[str, str | None]


def headline_table(table_page: Path) -> str:
    """The first (primary) section of a table page written by demixbench.table.render.html: its
    heading and ``<table>`` element, as HTML. Raises ValueError naming the file when it has none."""
    table_page = Path(table_page)
    try:
        text = table_page.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"{table_page}: headline table unreadable ({error}); rerun make_table") from None
    match = _FIRST_TABLE.search(text)
    if match is None:
        raise ValueError(f"{table_page}: no <h2> heading and <table> in it; not a table page, rerun make_table")
    return match.group(1)


def _facts(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column table of facts; values are already HTML."""
    return (
        '<table class="facts">'
        + "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
        + "</table>"
    )


def _model_text(name: str, entry: ModelEntry) -> str:
    text = f"<strong>{html.escape(name)}</strong>: {html.escape(str(entry.get('arch') or 'unknown architecture'))}"
    if entry.get("discriminator"):
        text += f" + {html.escape(str(entry['discriminator']))} discriminator"
    if entry.get("baseline"):
        text += f" (variant of {html.escape(str(entry['baseline']))})"
    return text


def _hardware(costs: Mapping[str, Any] | None) -> str:
    """Distinct hardware per stage, from the cost records of metered jobs."""
    if not costs:
        return "not recorded"
    lines = [
        f"{html.escape(stage)}: {html.escape('; '.join(cost['hardware']))}"
        for stage, cost in costs["stages"].items()
        if cost.get("hardware")
    ]
    return "<br>".join(lines) if lines else "not recorded (no job was metered)"


def _cost_text(cost: Mapping[str, Any]) -> str:
    return html.escape(
        f"{cost['wall_hours']:.3g} h wall, {cost['cpu_hours']:.3g} CPU-hours, {cost['gpu_hours']:.3g} GPU-hours, "
        f"energy {cost['energy_text']} ({cost['jobs']} jobs)"
    )


def front_page_html(
    record: Mapping[str, Any],
    headline: str,
    experiment: str,
    seeds: Sequence[int],
    models: Mapping[str, ModelEntry],
    others: Sequence[str] = (),
) -> str:
    """The front page as HTML (see the module docstring).

    Args:
        record: the run's provenance record (:func:`demixbench.report.run.write_run_provenance`).
        headline: the headline table's HTML (:func:`headline_table`).
        experiment: the experiment's name.
        seeds: the seeds every model was trained with.
        models: the trained models, name -> :data:`ModelEntry`.
        others: the other rows (oracles, methods not trained here), by name.
    """
    git = record.get("git") or {}
    commit = git.get("commit") or "unknown (not a git checkout)"
    if git.get("dirty"):
        commit += " (with uncommitted changes)"
    dataset = record.get("dataset_fingerprint") or {}
    counts = dataset.get("counts") or {}
    data_text = html.escape(str(dataset.get("fingerprint", "not recorded")))
    if dataset:
        split = ", ".join(f"{n} {subset}" for subset, n in counts.items())
        data_text += html.escape(f" ({dataset.get('source', 'unknown source')}; {split} tracks)")
    costs = record.get("costs")
    facts = [
        ("experiment", html.escape(experiment)),
        ("git commit", html.escape(commit)),
        ("config hash", html.escape(str(record.get("config_hash", "not recorded")))),
        ("dataset fingerprint", data_text),
        ("seeds", html.escape(", ".join(str(seed) for seed in seeds) or "none")),
        ("models", "<br>".join(_model_text(name, entry) for name, entry in models.items()) or "none"),
        ("other rows", html.escape(", ".join(others)) or "none"),
        ("hardware", _hardware(costs)),
        ("total cost", _cost_text(costs["total"]) if costs else "not recorded"),
        ("report made", html.escape(f"{record.get('created', '')} on {record.get('host', '')}")),
    ]
    body = [f"<h1>{html.escape(experiment)}: what was run</h1>", _facts(facts), headline]
    if costs:
        body += [
            "<h2>What each row cost</h2>",
            "<p>Training, separation and scoring of all its seeds. Wall: the jobs' wall times summed (jobs "
            "that ran side by side overlap); GPU-hours: wall time x GPUs used; energy from NVML (GPUs) and "
            "RAPL (CPU packages) where readable, else not measured. Per stage in the provenance page, per "
            "row and stage in <code>provenance.json</code>.</p>",
            f"<table>{COST_HEADER}"
            + "".join(cost_row_html(row, by_stage["total"]) for row, by_stage in costs["rows"].items())
            + cost_row_html("all jobs (shared stages included)", costs["total"])
            + "</table>",
        ]
    return page(f"{experiment}: front page", _CSS, "\n".join(body))


def write_front_page(
    out: Path,
    provenance_record: Mapping[str, Any],
    table_page: Path,
    experiment: str,
    seeds: Sequence[int],
    models: Mapping[str, ModelEntry],
    others: Sequence[str] = (),
) -> Path:
    """Write the front page (:func:`front_page_html`) to `out` atomically, with the headline table
    taken from `table_page` (:func:`headline_table`); returns `out`."""
    text = front_page_html(provenance_record, headline_table(table_page), experiment, seeds, models, others)
    atomic_write_text(Path(out), text)
    log.info("front page written to %s", out)
    return Path(out)
