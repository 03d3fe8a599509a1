"""Adapter for rule decode_track: decode one track into the per-stem float32 cache."""

from pathlib import Path

from demixbench.data.decode import DecodeOptions, decode_track
from demixbench.logs import setup_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

decode_track(
    source=snakemake.params.source,
    root=Path(snakemake.params.root),
    subset=snakemake.params.subset,
    track=snakemake.wildcards.track,
    out_dir=Path(snakemake.output.meta).parent,
    sample_rate=snakemake.params.sample_rate,
    options=DecodeOptions(mixture_check=snakemake.params.mixture_check),
)
