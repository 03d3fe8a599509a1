"""Provenance recorded next to every checkpoint and table: code version, packages, machine."""

from __future__ import annotations

import importlib.metadata
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

PACKAGES = ("demixbench", "torch", "torchaudio", "numpy", "scipy", "pandas", "musdb", "museval", "soundfile")


def git_state(cwd: Path | None = None) -> dict:
    """{"commit": sha or None, "dirty": bool or None} of the repository containing `cwd`
    (default: this package's source, i.e. the demixbench checkout the code runs from)."""
    cwd = cwd if cwd is not None else Path(__file__).resolve().parent
    def run(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance() -> dict:
    """Everything needed to tell two runs apart: git, packages, Python, CUDA/GPU, host, time."""
    import torch

    info = {
        "git": git_state(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info
