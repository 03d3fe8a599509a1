"""Adapter for rule separate_track: separate one test track with one trained run."""

from pathlib import Path

import numpy as np
import torch

from demixbench.checkpoint import load_checkpoint
from demixbench.logs import setup_logging
from demixbench.separate import separate, write_estimates

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)

settings = snakemake.params.separation
device = settings["device"]
if device == "auto":
    device = "cuda" if torch.cuda.is_available() else "cpu"
model, _ = load_checkpoint(Path(snakemake.input.weights), expected_arch=snakemake.params.arch, map_location=device)
mixture = np.load(snakemake.input.mixture)
estimates = separate(
    model.to(device),
    mixture,
    segment=int(settings["segment_seconds"] * snakemake.params.sample_rate),
    overlap=settings["overlap"],
    device=device,
    progress=True,
)
write_estimates(Path(snakemake.output[0]).parent, estimates, model.targets, snakemake.params.sample_rate)
