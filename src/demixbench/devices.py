"""Choosing the torch device from a config value."""

from __future__ import annotations

import torch

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> torch.device:
    """ "auto" -> CUDA when available, else CPU; "cpu" and "cuda" as given."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)
