"""Run metadata recorded next to every checkpoint and in the run's provenance: code version,
packages, machine, and the hash of the resolved configuration. The record of a whole run (dataset
fingerprint, wall time of every stage, its HTML page) is :mod:`demixbench.report.run`."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

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
    info = {
        "git": git_state(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the resolved configuration (canonical JSON: sorted keys), to tell runs apart."""
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
