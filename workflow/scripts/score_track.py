"""Adapter for rule score_track: BSS Eval v4 of one separated track, museval-format JSON."""

from pathlib import Path

import numpy as np

from demixbench import TARGETS
from demixbench.logs import setup_logging
from demixbench.scoring import score_track, write_scores
from demixbench.separate import read_estimates

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

settings = snakemake.params.scoring
references = np.stack([np.load(path) for path in snakemake.input.references])
estimates = read_estimates(Path(snakemake.input.estimates[0]).parent, TARGETS)
scores = score_track(
    references,
    estimates,
    targets=TARGETS,
    sample_rate=snakemake.params.sample_rate,
    win_seconds=settings["win_seconds"],
    hop_seconds=settings["hop_seconds"],
    backend=settings["backend"],
)
write_scores(Path(snakemake.output[0]), scores)
