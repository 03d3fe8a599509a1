"""Atomic file and directory writes: a reader (or a rerun after a crash) sees the old file or
the new one, never half of one; a directory appears complete or not at all."""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


@contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write to; rename it onto `path` when the block ends
    without error, delete it otherwise.

    `suffix` is appended to the temporary name for writers that pick the format from the
    extension (e.g. ".wav" for soundfile, ".npz" for numpy).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{suffix}")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o644)  # mkstemp creates 0600 files
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporaries that atomic writes of `path` left behind when their process was
    killed (SIGKILL runs no cleanup); returns them. Call it before writing `path` again, where
    no other process writes `path` at the same time."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"))
    for temporary in stale:
        temporary.unlink(missing_ok=True)
    return stale


def atomic_write_text(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns `path`."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns `path`."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


@contextmanager
def atomic_directory(dest: Path) -> Iterator[Path]:
    """Yield an empty hidden sibling of `dest`, ``.<dest name>.partial-<pid>``, to build a
    directory in; rename it to `dest` when the block ends without error, remove it otherwise.

    Leftovers of killed runs (``.<dest name>.partial-*``: SIGKILL runs no cleanup) are removed
    first, so no other process may build `dest` at the same time. An interrupted or failed block
    leaves nothing at `dest`, a successful one the complete directory.

    Raises:
        FileExistsError: `dest` exists when the block ends (it appeared meanwhile); it is never
            overwritten, and the temporary directory is removed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{glob.escape(dest.name)}.partial-*"):
        log.info("removing %s left by an interrupted run", stale)
        shutil.rmtree(stale, ignore_errors=True)
    temporary = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    temporary.mkdir()
    try:
        yield temporary
        if dest.exists():  # appeared while we were building; do not clobber it
            raise FileExistsError(f"refusing to overwrite {dest}: it appeared while it was being built")
        os.rename(temporary, dest)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
