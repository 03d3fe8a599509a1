"""Adapter for checkpoint prepare_dataset: generate, download or extract the dataset into data.root,
verified (and fingerprinted) before it is moved into place."""

from pathlib import Path

from demixbench.data.acquire.checksums import Checksum
from demixbench.data.acquire.http import DownloadOptions
from demixbench.data.acquire.ingest import AcquireSpec, ingest
from demixbench.data.synthetic.spec import SyntheticSpec
from demixbench.data.verify import VerifySpec
from demixbench.logs import setup_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

data = snakemake.params.data
synthetic = (
    SyntheticSpec(**snakemake.params.synthetic, sample_rate=snakemake.params.sample_rate)
    if data["source"] == "synthetic"
    else None
)
spec = AcquireSpec(
    source=data["source"],
    origin=data["origin"],
    url_env=data["url_env"],
    token_env=data["token_env"],
    checksum=Checksum(**data["checksum"], source="config data.checksum") if data["checksum"] else None,
    lock_file=Path(data["lock_file"]) if data["lock_file"] else None,
    archive_dir=Path(data["archive_dir"]) if data["archive_dir"] else None,
    keep_archive=data["keep_archive"],
    synthetic=synthetic,
    download=DownloadOptions(**data["download"]),
)
if synthetic is not None:
    verify = VerifySpec.for_synthetic(
        synthetic, validation=snakemake.params.validation, content_hash=data["content_hash"]
    )
else:
    verify = VerifySpec(
        data["source"], counts=data["counts"], validation=snakemake.params.validation, content_hash=data["content_hash"]
    )
ingest(spec, Path(snakemake.output.root), verify, report_path=Path(snakemake.output.report))
