"""Adapter for rule export_mixture: a test track's decoded mixture as a wav for external separators."""

from pathlib import Path

from demixbench.logs import setup_logging
from demixbench.separate.estimates import export_mixture

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

export_mixture(Path(snakemake.input.mixture), Path(snakemake.output[0]), snakemake.params.sample_rate)
