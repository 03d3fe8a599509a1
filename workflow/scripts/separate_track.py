"""Adapter for rule separate_track: separate one test track with one trained run."""

from pathlib import Path

import torch

from demixbench.logs import setup_logging
from demixbench.separate.track import SeparationConfig, separate_track

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)

separate_track(
    weights=Path(snakemake.input.weights),
    mixture=Path(snakemake.input.mixture),
    out_dir=Path(snakemake.output[0]).parent,
    config=SeparationConfig(**snakemake.params.separation),
    expected_arch=snakemake.params.arch,
    sample_rate=snakemake.params.sample_rate,
)
