"""Archive checksums: the published values, and hashing a file to check it against them.

Published values are in KNOWN_ARCHIVES with where they come from. Where none is published the
first ingest records the archive's size and SHA-256 (and MD5) in a lock file (``lock``) and
every later ingest verifies against it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from demixbench.data.layout import DatasetError, musdb_sample_url

#: One mebibyte: the unit of read and write blocks.
MIB = 1 << 20


# --------------------------------------------------------------------------------------
# Published checksums
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checksum:
    """Expected size and digests of an archive; None fields are not checked. `source` says where
    the values come from (printed when a check fails)."""

    size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    source: str = "given"

    def is_empty(self) -> bool:
        return self.size is None and self.md5 is None and self.sha256 is None


@dataclass(frozen=True)
class KnownArchive:
    """An official archive: its file name, default URL and published checksum (if any)."""

    filename: str
    url: str | None
    checksum: Checksum | None
    note: str = ""


#: The official archives. Sources of the checksums:
#: * musdb18.zip: Zenodo record 1117372, https://zenodo.org/records/1117372/export/json
#:   ("checksum": "md5:af06762477334799bfc5abf237648207", "size": 4684228845).
#: * musdb18hq.zip: Zenodo record 3338373. Its MD5/size were not found in a citable official
#:   source; the SHA-256 below is the one torchaudio pins for this file (torchaudio 2.11,
#:   torchaudio/datasets/musdb_hq.py, `_CHECKSUM`, checked by torch.hub.download_url_to_file as
#:   the SHA-256 of the download). The lock file adds the size on the first ingest.
#: * MUSDB18-7-STEMS.zip (musdb18-7s): no published checksum found; the lock file records one.
KNOWN_ARCHIVES: dict[str, KnownArchive] = {
    "musdb18": KnownArchive(
        filename="musdb18.zip",
        url="https://zenodo.org/records/1117372/files/musdb18.zip",
        checksum=Checksum(
            size=4_684_228_845,
            md5="af06762477334799bfc5abf237648207",
            source="Zenodo record 1117372 (https://zenodo.org/records/1117372)",
        ),
        note="access must be requested on Zenodo; pass the access link via an environment variable",
    ),
    "musdb18hq": KnownArchive(
        filename="musdb18hq.zip",
        url="https://zenodo.org/records/3338373/files/musdb18hq.zip",
        checksum=Checksum(
            sha256="baac80d0483c61d74b2e5f3be75fa557eec52898339e6aa45c1fa48833c5d21d",
            source=(
                "torchaudio 2.11 torchaudio/datasets/musdb_hq.py _CHECKSUM (SHA-256 of Zenodo record 3338373's file)"
            ),
        ),
        note="access must be requested on Zenodo; pass the access link via an environment variable",
    ),
    "musdb18-7s": KnownArchive(filename="MUSDB18-7-STEMS.zip", url=None, checksum=None, note="open; URL from musdb"),
}


def default_url(source: str) -> str:
    """The official download URL of `source` (the 7-s previews: musdb's own URL)."""
    if source == "musdb18-7s":
        return musdb_sample_url()
    known = KNOWN_ARCHIVES.get(source)
    if known is None or known.url is None:
        raise ValueError(f"source {source!r} has no download URL")
    return known.url


# --------------------------------------------------------------------------------------
# Hashing and checking
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveDigest:
    """Size and digests of a file."""

    size: int
    md5: str
    sha256: str

    def as_dict(self) -> dict:
        return {"size": self.size, "md5": self.md5, "sha256": self.sha256}


def hash_file(path: Path, progress: bool = True) -> ArchiveDigest:
    """Size, MD5 and SHA-256 of `path` in one read (MD5 because Zenodo publishes MD5)."""
    path = Path(path)
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    size = path.stat().st_size
    with (
        open(path, "rb") as f,
        tqdm(
            total=size, desc=f"checksum {path.name}", unit="B", unit_scale=True, unit_divisor=1024, disable=not progress
        ) as bar,
    ):
        for block in iter(lambda: f.read(4 * MIB), b""):
            md5.update(block)
            sha256.update(block)
            bar.update(len(block))
    return ArchiveDigest(size=size, md5=md5.hexdigest(), sha256=sha256.hexdigest())


def check_digest(path: Path, digest: ArchiveDigest, expected: Sequence[Checksum]) -> None:
    """Raise DatasetError naming `path` when `digest` contradicts any of `expected`."""
    for checksum in expected:
        for name, want, got in (
            ("size", checksum.size, digest.size),
            ("MD5", checksum.md5, digest.md5),
            ("SHA-256", checksum.sha256, digest.sha256),
        ):
            if want is not None and str(want).lower() != str(got).lower():
                raise DatasetError(
                    f"{path}: {name} {got} does not match the expected {want} (from {checksum.source}); the file is "
                    f"corrupt, incomplete or a different archive. Download it again; if the upstream archive really "
                    f"changed, update the expected checksum (or remove the source's entry from the lock file)"
                )
