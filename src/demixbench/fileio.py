"""Atomic file writes: a reader (or a rerun after a crash) sees the old file or the new one,
never half of one."""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
