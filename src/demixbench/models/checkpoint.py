"""Self-describing checkpoints.

A checkpoint is two files side by side:
    model.pt    the weights as a plain state_dict (loadable with ``torch.load(weights_only=True)``)
    model.json  {"arch", "args" (constructor arguments), "config" (the resolved training config),
                 "provenance" (git commit, package versions, ...), plus whatever the trainer adds}
so a model can be rebuilt without the code that trained it guessing anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from demixbench.fileio import atomic_path, atomic_write_text
from demixbench.models import build_model
from demixbench.provenance import config_hash, provenance


def metadata_path(weights: Path) -> Path:
    """model.pt -> model.json"""
    return Path(weights).with_suffix(".json")


def save_checkpoint(
    model: nn.Module,
    path: Path,
    arch: str,
    args: dict[str, Any],
    config: dict[str, Any],
    extra: dict[str, Any] | None = None,
    provenance_extra: dict[str, Any] | None = None,
) -> None:
    """Write `path` (state_dict) and its JSON metadata, each atomically, JSON last. The metadata's
    provenance is :func:`demixbench.provenance.provenance` plus the hash of `config` and
    `provenance_extra` (e.g. the dataset fingerprint)."""
    with atomic_path(path) as temporary:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, temporary)
    record = {**provenance(), "config_hash": config_hash(config), **(provenance_extra or {})}
    meta = {"arch": arch, "args": args, "config": config, "provenance": record, **(extra or {})}
    atomic_write_text(metadata_path(path), json.dumps(meta, indent=2, default=str))


def load_checkpoint(
    path: Path, expected_arch: str | None = None, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the model described by path's JSON and load its weights (weights_only=True).

    Raises ValueError naming the file when the metadata is missing, describes another architecture
    than `expected_arch`, or does not match the weights.
    """
    path = Path(path)
    meta_file = metadata_path(path)
    if not meta_file.is_file():
        raise ValueError(f"{meta_file}: checkpoint metadata missing; a checkpoint is model.pt plus model.json")
    meta = json.loads(meta_file.read_text())
    if expected_arch is not None and meta.get("arch") != expected_arch:
        raise ValueError(f"{path}: checkpoint is a {meta.get('arch')!r} model, but {expected_arch!r} was requested")
    model = build_model(meta["arch"], meta["args"])
    state = torch.load(path, map_location=map_location, weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not match the model described in {meta_file.name}: {err}") from err
    model.eval()
    return model, meta
