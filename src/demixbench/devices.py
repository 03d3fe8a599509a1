"""Choosing where computation runs: the torch device from a config value, and the CPUs this
process may use.

torch is imported only by resolve_device: the scorer takes DEVICES and available_cpus from here, and
scoring jobs are many and short, so their imports stay light.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the annotation only; see the module docstring
    import torch

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> torch.device:
    """ "auto" -> CUDA when available, else CPU; "cpu" and "cuda" as given."""
    import torch

    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, e.g. a Slurm job's
    allocation), at least 1."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
