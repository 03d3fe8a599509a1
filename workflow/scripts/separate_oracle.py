"""Adapter for rule separate_oracle: oracle estimates of one test track from its true stems."""

from pathlib import Path

from demixbench.audio import STFTConfig
from demixbench.logs import setup_logging
from demixbench.separate.oracles import separate_oracle

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

separate_oracle(
    name=snakemake.wildcards.oracle,
    track_dir=Path(snakemake.input.stems[0]).parent,
    out_dir=Path(snakemake.output[0]).parent,
    stft=STFTConfig(**snakemake.params.stft),
    sample_rate=snakemake.params.sample_rate,
)
