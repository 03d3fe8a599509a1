"""The provenance of a whole run (rule ``record_provenance``): the run metadata of
:func:`demixbench.provenance.provenance` plus the config hash, the dataset fingerprint, the wall
time of every stage and what the results cost (:mod:`demixbench.costs`: per stage, per table row,
in total), written as JSON and as an HTML page for the report."""

from __future__ import annotations

import csv
import html
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from demixbench.costs import Cost, CostSummary
from demixbench.data.verify import dataset_summary
from demixbench.fileio import atomic_write_text
from demixbench.htmlpage import page
from demixbench.provenance import config_hash, provenance

log = logging.getLogger(__name__)

_CSS = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}pre{background:#f6f6f6;padding:1em}"
)


def stage_wall_times(benchmarks_dir: Path) -> dict[str, dict[str, float]]:
    """Per rule: number of jobs, summed and largest wall time (s) and largest peak RSS (MB), from
    the Snakemake ``benchmark:`` files under benchmarks_dir/<rule>/**.tsv."""
    stages: dict[str, dict[str, float]] = {}
    for path in sorted(Path(benchmarks_dir).glob("*/**/*.tsv")):
        rule = path.relative_to(benchmarks_dir).parts[0]
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            log.warning("%s is empty; left out of the wall times", path)
            continue
        seconds = float(rows[-1]["s"])  # the last repeat, if a benchmark was repeated
        rss = float(rows[-1]["max_rss"]) if rows[-1].get("max_rss", "NA") not in ("NA", "-", "") else float("nan")
        stage = stages.setdefault(rule, {"jobs": 0, "wall_s": 0.0, "max_job_wall_s": 0.0, "max_rss_mb": float("nan")})
        stage["jobs"] += 1
        stage["wall_s"] += seconds
        stage["max_job_wall_s"] = max(stage["max_job_wall_s"], seconds)
        if not math.isnan(rss):
            stage["max_rss_mb"] = rss if math.isnan(stage["max_rss_mb"]) else max(stage["max_rss_mb"], rss)
    return stages


def write_run_provenance(
    out_json: Path,
    out_html: Path,
    config: Mapping[str, Any],
    dataset_report: Path | None = None,
    benchmarks_dir: Path | None = None,
    costs: CostSummary | None = None,
) -> dict:
    """Record a whole run: :func:`~demixbench.provenance.provenance` plus the config hash, the dataset's
    fingerprint (from the report of demixbench.data.verify), the wall time of every stage and, when
    given, the costs (:func:`demixbench.costs.collect_costs`, under ``"costs"``: ``stages``, ``rows``
    (per row and stage, and ``total``), ``total``, ``left_out``; hours and kWh, energy ``null``
    with the reasons where not measured); written as JSON and as an HTML page for the report."""
    record = {
        **provenance(),
        "config_hash": config_hash(config),
        "dataset_fingerprint": dataset_summary(dataset_report) if dataset_report else None,
        "stages": stage_wall_times(benchmarks_dir) if benchmarks_dir is not None else {},
        "costs": costs.to_dict() if costs is not None else None,
        "config": config,
    }
    atomic_write_text(out_json, json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")
    atomic_write_text(out_html, _provenance_html(record))
    log.info("provenance of the run written to %s (config %s)", out_json, record["config_hash"][:12])
    return record


def _provenance_html(record: Mapping[str, Any]) -> str:
    def row(key: str, value: Any) -> str:
        return f"<tr><th>{html.escape(key)}</th><td>{html.escape(str(value))}</td></tr>"

    git = record["git"]
    summary = [
        row("git commit", f"{git['commit']}{' (uncommitted changes)' if git['dirty'] else ''}"),
        row("config hash", record["config_hash"]),
        row("dataset fingerprint", (record["dataset_fingerprint"] or {}).get("fingerprint", "not recorded")),
        row("python", record["python"]),
        row("platform", record["platform"]),
        row("host", record["host"]),
        row("CUDA / GPU", f"{record['cuda'] or 'none'} / {record['gpu'] or 'none'}"),
        row("created", record["created"]),
        *(row(name, version or "not installed") for name, version in record["packages"].items()),
    ]
    stages = "".join(
        f"<tr><td>{html.escape(rule)}</td><td>{int(s['jobs'])}</td><td>{s['wall_s']:.1f}</td>"
        f"<td>{s['max_job_wall_s']:.1f}</td><td>{s['max_rss_mb']:.0f}</td></tr>"
        for rule, s in record["stages"].items()
    )
    config = html.escape(json.dumps(record["config"], indent=1, sort_keys=True, default=str))
    body = (
        "<h1>Provenance of this run</h1>"
        f"<table>{''.join(summary)}</table>"
        "<h2>Wall time per stage</h2><table><tr><th>rule</th><th>jobs</th><th>total wall (s)</th>"
        f"<th>longest job (s)</th><th>peak RSS (MB)</th></tr>{stages}</table>"
        f"{cost_tables_html(record['costs']) if record.get('costs') else ''}"
        f"<h2>Resolved configuration</h2><pre>{config}</pre>"
    )
    return page("demixbench provenance", _CSS, body)


def _hours(value: float) -> str:
    return f"{value:.3g}"


def cost_row_html(label: str, cost: Mapping[str, Any]) -> str:
    """One ``<tr>``: label, jobs, wall hours, CPU-hours, GPU-hours, energy (a cost record of
    :meth:`demixbench.costs.Cost.to_dict`)."""
    cells = [str(cost["jobs"]), _hours(cost["wall_hours"]), _hours(cost["cpu_hours"]), _hours(cost["gpu_hours"])]
    return (
        f"<tr><th>{html.escape(label)}</th>"
        + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells)
        + f"<td>{html.escape(cost['energy_text'])}</td></tr>"
    )


COST_HEADER = "<tr><th></th><th>jobs</th><th>wall (h)</th><th>CPU (h)</th><th>GPU (h)</th><th>energy</th></tr>"


def cost_tables_html(costs: Mapping[str, Any]) -> str:
    """The costs section of a provenance record as HTML: per table row (its stages and total) and
    per stage, then the total."""
    rows = "".join(
        cost_row_html(f"{row} ({stage})" if stage != "total" else f"{row}", cost)
        for row, by_stage in costs["rows"].items()
        for stage, cost in by_stage.items()
    )
    stages = "".join(cost_row_html(stage, cost) for stage, cost in costs["stages"].items())
    left_out = (
        f"<p>{len(costs['left_out'])} benchmark files of methods or seeds not in this run were left out.</p>"
        if costs.get("left_out")
        else ""
    )
    return (
        "<h2>What the results cost</h2>"
        "<p>Per table row: its training, separation and scoring jobs, all seeds (demixbench.costs). "
        "GPU-hours: wall time x GPUs used. Energy: NVML (GPUs) and RAPL (CPU packages) where readable.</p>"
        f"<table>{COST_HEADER}{rows}</table>"
        f"<h3>Per stage</h3><table>{COST_HEADER}{stages}{cost_row_html('total', costs['total'])}</table>{left_out}"
    )


def total_cost(costs: Mapping[str, Any] | None) -> Cost | None:
    """The total of a provenance record's costs section, None when it has none."""
    return Cost.from_dict(costs["total"], "provenance costs") if costs else None
