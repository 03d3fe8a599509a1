"""Adapter for rule score_run: BSS Eval v4 of every test track of one run, museval-format JSON
per track, resumable per track (demixbench.score.stage)."""

from pathlib import Path

from demixbench import TARGETS
from demixbench.logs import setup_logging
from demixbench.score.stage import SCORE_SUFFIX, RunScoring, score_run
from demixbench.score.track import ScoringConfig

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

outputs = [Path(path) for path in snakemake.output]  # <scores>/<method>/<run>/<track>.json.gz
score_run(
    RunScoring(
        tracks=tuple(path.name.removesuffix(SCORE_SUFFIX) for path in outputs),
        # <decoded>/<track>/<target>.npy and <separated>/<method>/<run>/<track>/<target>.wav
        references_dir=Path(snakemake.input.references[0]).parents[1],
        estimates_dir=Path(snakemake.input.estimates[0]).parents[1],
        out_dir=outputs[0].parent,
        work_dir=Path(snakemake.params.work_dir),
        targets=TARGETS,
        config=ScoringConfig(**snakemake.params.scoring, sample_rate=snakemake.params.sample_rate),
        code=tuple(Path(path) for path in snakemake.input.code),
        jobs=snakemake.threads,
    )
)
