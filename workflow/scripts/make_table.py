"""Adapter for rule make_table: aggregate every run's scores into the comparison table of one metric."""

from pathlib import Path

from demixbench.logs import setup_logging
from demixbench.table.build import make_table
from demixbench.table.model import Comparison, MethodRuns

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

methods = [
    MethodRuns(
        name=row["name"],
        seed_dirs=tuple(Path(d) for d in row["seed_dirs"]),
        kind=row["kind"],
        note=row["note"],
        trained_on=row["trained_on"],
    )
    for row in snakemake.params.rows
]
comparisons = [Comparison(**pair) for pair in snakemake.params.comparisons]
bootstrap = snakemake.params.bootstrap
make_table(
    methods,
    comparisons,
    Path(snakemake.output.markdown).parent,
    metric=snakemake.params.metric,
    n_resamples=bootstrap["bootstrap_resamples"],
    bootstrap_seed=bootstrap["bootstrap_seed"],
    confidence=bootstrap["confidence"],
)
