"""Adapter for rule record_provenance: what produced this run's results, and how long each stage took."""

from pathlib import Path

from demixbench.logs import setup_logging
from demixbench.report.run import write_run_provenance

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

write_run_provenance(
    out_json=Path(snakemake.output.json),
    out_html=Path(snakemake.output.html),
    config=snakemake.params.config,
    dataset_report=Path(snakemake.input.dataset),
    benchmarks_dir=Path(snakemake.params.benchmarks),
)
