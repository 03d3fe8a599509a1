"""Adapter for rule convert_checkpoint: released weights as a checkpoint of this project."""

from pathlib import Path

from demixbench.logs import setup_logging
from demixbench.models.release import convert_checkpoint_file

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

convert_checkpoint_file(
    Path(snakemake.input.file),
    Path(snakemake.output.weights),
    arch=snakemake.params.arch,
    file_format=snakemake.params.format,
    extra_metadata={"trained_on": snakemake.params.trained_on},
)
