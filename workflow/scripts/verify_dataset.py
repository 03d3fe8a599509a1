"""Adapter for rule verify_dataset: check a local copy at data.root in place and fingerprint it."""

from pathlib import Path

from demixbench.data.acquire.ingest import AcquireSpec, ingest
from demixbench.data.verify import VerifySpec
from demixbench.logs import setup_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

data = snakemake.params.data
root = Path(data["root"])
spec = AcquireSpec(
    source=data["source"], origin=str(root), lock_file=Path(data["lock_file"]) if data["lock_file"] else None
)
verify = VerifySpec(
    data["source"], counts=data["counts"], validation=snakemake.params.validation, content_hash=data["content_hash"]
)
ingest(spec, root, verify, report_path=Path(snakemake.output.report))
