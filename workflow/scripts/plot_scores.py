"""Adapter for rule plot_scores: boxplots of per-track scores and the per-seed scatter of one metric."""

from pathlib import Path

from demixbench.logs import setup_logging
from demixbench.report.plots import plot_seed_scatter, plot_track_boxplots
from demixbench.table.model import Comparison, MethodRuns

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

methods = [
    MethodRuns(
        name=row["name"],
        seed_dirs=tuple(Path(d) for d in row["seed_dirs"]),
        kind=row["kind"],
        trained_on=row["trained_on"],
    )
    for row in snakemake.params.rows
]
comparisons = [Comparison(**pair) for pair in snakemake.params.comparisons]
metric = snakemake.params.metric
plot_track_boxplots(methods, Path(snakemake.output.boxplots), metric=metric)
plot_seed_scatter(methods, Path(snakemake.output.seeds), comparisons=comparisons, metric=metric)
