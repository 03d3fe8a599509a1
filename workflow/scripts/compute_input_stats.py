"""Adapter for rule compute_input_stats: per-bin magnitude statistics of the training mixtures."""

from pathlib import Path

from demixbench.audio import STFTConfig
from demixbench.data.stats import compute_input_stats, save_input_stats
from demixbench.logs import setup_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

stft = STFTConfig(**snakemake.params.stft)
mean, std = compute_input_stats(
    [Path(p) for p in snakemake.input.mixtures], stft, sample_rate=snakemake.params.sample_rate
)
save_input_stats(Path(snakemake.output[0]), mean, std, stft)
