"""The lock file: archive checksums and dataset fingerprints, recorded once and verified after.

A JSON file committed with the repository (a path argument). Where no checksum is published the
first ingest records the archive's size and SHA-256 (and MD5) there and every later ingest
verifies against it; the lock also records the extracted dataset's fingerprint.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from demixbench.data.acquire.checksums import Checksum
from demixbench.data.layout import DatasetError
from demixbench.data.verify import DatasetReport
from demixbench.fileio import atomic_write_text

log = logging.getLogger(__name__)

_LOCK_VERSION = 1


def read_lock(path: Path | None) -> dict:
    """The lock file's content ({"version", "sources": {source: {"archive", "dataset"}}})."""
    if path is None or not Path(path).exists():
        return {"version": _LOCK_VERSION, "sources": {}}
    try:
        lock = json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as err:
        raise DatasetError(f"{path}: not valid JSON ({err}); restore the lock file from version control") from None
    lock.setdefault("version", _LOCK_VERSION)
    lock.setdefault("sources", {})
    return lock


def _write_lock(path: Path, lock: dict) -> None:
    atomic_write_text(Path(path), json.dumps(lock, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def lock_checksum(path: Path | None, source: str) -> Checksum | None:
    """The archive checksum recorded for `source` in the lock file, if any."""
    entry = read_lock(path)["sources"].get(source, {}).get("archive")
    if not entry:
        return None
    return Checksum(
        size=entry.get("size"),
        md5=entry.get("md5"),
        sha256=entry.get("sha256"),
        source=f"lock file {path}, recorded {entry.get('recorded', '?')}",
    )


def record_lock(path: Path, source: str, kind: str, values: dict) -> bool:
    """Record `values` under sources[source][kind] unless already there; returns True if written."""
    lock = read_lock(path)
    entry = lock["sources"].setdefault(source, {})
    if entry.get(kind):
        return False
    entry[kind] = {**values, "recorded": datetime.now(UTC).isoformat(timespec="seconds")}
    _write_lock(path, lock)
    log.info("recorded the %s of %s in %s: %s", kind, source, path, {k: v for k, v in values.items() if k != "origin"})
    return True


def check_dataset_lock(path: Path | None, source: str, report: DatasetReport, where: Path) -> None:
    """Check the dataset fingerprint of `report` against the lock file, recording it on the first ingest."""
    if path is None or source == "synthetic":
        return
    entry = read_lock(path)["sources"].get(source, {}).get("dataset")
    if not entry:
        record_lock(path, source, "dataset", {"fingerprint": report.fingerprint, "content_hash": report.content_hash})
        return
    if entry.get("content_hash") != report.content_hash:
        log.warning(
            "%s: the lock file's dataset fingerprint uses content_hash=%s, this run %s: not compared",
            path,
            entry.get("content_hash"),
            report.content_hash,
        )
        return
    if entry.get("fingerprint") != report.fingerprint:
        raise DatasetError(
            f"{where}: dataset fingerprint {report.fingerprint} differs from {entry.get('fingerprint')} recorded in "
            f"{path} on {entry.get('recorded', '?')}; the files changed since. Restore them, or remove the "
            f"'{source}' entry from the lock file to accept this copy"
        )
