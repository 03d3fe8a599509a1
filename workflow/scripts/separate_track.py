"""Adapter for rule separate_track: separate one test track with one trained run."""

from pathlib import Path

import torch

from demixbench.logs import setup_logging
from demixbench.separate import separate_track_file

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)

settings = snakemake.params.separation
separate_track_file(
    weights=Path(snakemake.input.weights),
    mixture=Path(snakemake.input.mixture),
    out_dir=Path(snakemake.output[0]).parent,
    segment_seconds=settings["segment_seconds"],
    overlap=settings["overlap"],
    device=settings["device"],
    expected_arch=snakemake.params.arch,
    sample_rate=snakemake.params.sample_rate,
    shifts=settings["shifts"],
    max_shift_seconds=settings["max_shift_seconds"],
    wiener_iterations=settings["wiener_iterations"],
)
