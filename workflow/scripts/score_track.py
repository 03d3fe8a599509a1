"""Adapter for rule score_track: BSS Eval v4 of one separated track, museval-format JSON."""

from pathlib import Path

from demixbench import TARGETS
from demixbench.logs import setup_logging
from demixbench.score.track import ScoringConfig, score_track

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

score_track(
    track_dir=Path(snakemake.input.references[0]).parent,
    estimates_dir=Path(snakemake.input.estimates[0]).parent,
    out=Path(snakemake.output[0]),
    targets=TARGETS,
    config=ScoringConfig(**snakemake.params.scoring, sample_rate=snakemake.params.sample_rate),
)
