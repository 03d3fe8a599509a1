"""Adapter for rule separate_oracle: oracle estimates of one test track from its true stems."""

from pathlib import Path

import numpy as np

from demixbench import TARGETS
from demixbench.audio import STFTConfig
from demixbench.data import load_decoded
from demixbench.logs import setup_logging
from demixbench.oracles import oracle_estimates
from demixbench.separate import write_estimates

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

track = load_decoded(Path(snakemake.input.stems[0]).parent, mmap=False)
sources = [track[target] for target in TARGETS]
estimates = oracle_estimates(snakemake.wildcards.oracle, track["mixture"], np.stack(sources), STFTConfig(**snakemake.params.stft))
write_estimates(Path(snakemake.output[0]).parent, estimates, TARGETS, snakemake.params.sample_rate)
