"""Adapter for rule separate_track: separate one test track with one trained run; what it cost
goes beside the job's benchmark file (params.costs)."""

from pathlib import Path

import torch

from demixbench.costs import CostMeter, gpus_used, write_cost
from demixbench.devices import resolve_device
from demixbench.logs import setup_logging
from demixbench.separate.track import SeparationConfig, separate_track

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)

config = SeparationConfig(**snakemake.params.separation)
on_gpu = resolve_device(config.device).type == "cuda"
with CostMeter(gpus_used(int(getattr(snakemake.resources, "gpu", 0) or 0), on_gpu)) as meter:
    separate_track(
        weights=Path(snakemake.input.weights),
        mixture=Path(snakemake.input.mixture),
        out_dir=Path(snakemake.output[0]).parent,
        config=config,
        expected_arch=snakemake.params.arch,
        sample_rate=snakemake.params.sample_rate,
    )
write_cost(Path(snakemake.params.costs), meter.cost)
