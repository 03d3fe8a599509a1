"""Adapter for rule prepare_dataset: generate the synthetic MUSDB18 at the rule's output."""

from pathlib import Path

from demixbench.logs import setup_logging
from demixbench.synthetic import SyntheticSpec, write_dataset

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

spec = SyntheticSpec(**snakemake.params.synthetic, sample_rate=snakemake.params.sample_rate)
write_dataset(spec, Path(snakemake.output[0]))
