"""Adapter for rule make_sdr_table: aggregate every run's scores into the comparison table."""

from pathlib import Path

from demixbench.logs import setup_logging
from demixbench.table import Comparison, MethodRuns, build_table

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

methods = [
    MethodRuns(name=row["name"], seed_dirs=tuple(Path(d) for d in row["seed_dirs"]), kind=row["kind"])
    for row in snakemake.params.rows
]
comparisons = [Comparison(**pair) for pair in snakemake.params.comparisons]
table = build_table(methods, comparisons, metric=snakemake.params.metric)
table.write(Path(snakemake.output.markdown).parent, stem=Path(snakemake.output.markdown).stem)
