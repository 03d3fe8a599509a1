"""Adapter for rule make_listening_page: audio excerpts of a few test tracks in one HTML page."""

from pathlib import Path

from demixbench.logs import setup_logging
from demixbench.report.excerpts import ExcerptSource
from demixbench.report.listening import write_listening_page

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

write_listening_page(
    tracks={track: Path(path) for track, path in snakemake.params.tracks.items()},
    methods=[ExcerptSource(name=m["name"], estimates_root=Path(m["estimates_root"])) for m in snakemake.params.methods],
    out=Path(snakemake.output[0]),
    seconds=snakemake.params.seconds,
    sample_rate=snakemake.params.sample_rate,
    title="demixbench: listening excerpts of the test set",
)
