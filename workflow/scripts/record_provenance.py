"""Adapter for rule record_provenance: what produced this run's results, how long each stage took,
what each table row cost, and the report's front page."""

from pathlib import Path

from demixbench.costs import collect_costs
from demixbench.logs import setup_logging
from demixbench.report.front import write_front_page
from demixbench.report.run import write_run_provenance

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])
params = snakemake.params

costs = collect_costs(
    benchmarks_dir=Path(params.benchmarks),
    rows=dict(params.rows),
    stages=dict(params.stages),
    gpus=dict(params.gpus),
    training={model: {run: Path(path) for run, path in runs.items()} for model, runs in params.checkpoints.items()},
)
record = write_run_provenance(
    out_json=Path(snakemake.output.json),
    out_html=Path(snakemake.output.html),
    config=params.config,
    dataset_report=Path(snakemake.input.dataset),
    benchmarks_dir=Path(params.benchmarks),
    costs=costs,
)
write_front_page(
    out=Path(snakemake.output.front),
    provenance_record=record,
    table_page=Path(snakemake.input.headline),
    experiment=params.experiment,
    seeds=list(params.seeds),
    models=dict(params.models),
    others=list(params.others),
)
