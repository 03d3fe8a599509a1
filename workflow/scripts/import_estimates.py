"""Adapter for rule import_estimates: estimates made outside the pipeline, checked and copied in."""

from pathlib import Path

from demixbench import TARGETS
from demixbench.logs import setup_logging
from demixbench.separate.estimates import import_estimates

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

import_estimates(
    source=Path(snakemake.params.source),
    mixture=Path(snakemake.input.mixture),
    out_dir=Path(snakemake.output[0]).parent,
    targets=TARGETS,
    sample_rate=snakemake.params.sample_rate,
)
