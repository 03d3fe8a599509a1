"""Adapter for rule plot_learning_curves: every model's and seed's training history in one figure."""

from pathlib import Path

from demixbench.logs import setup_logging
from demixbench.report.curves import plot_learning_curves

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

histories = {model: [Path(path) for path in paths] for model, paths in snakemake.params.histories.items()}
plot_learning_curves(histories, Path(snakemake.output.png))
