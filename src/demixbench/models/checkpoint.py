"""Self-describing checkpoints.

A checkpoint is two files side by side:
    model.safetensors  the weights (safetensors: a JSON header and raw tensor bytes, nothing
                       executable, and the same bytes for the same weights)
    model.json         {"arch", "args" (constructor arguments), "config" (the resolved training
                       config), "provenance" (git commit, package versions, ...), plus whatever
                       the trainer adds}
so a model can be rebuilt without the code that trained it guessing anything.

Checkpoints of earlier versions (``model.pt``, torch's pickle-based zip format) still load, with
torch's weights-only unpickler and a deprecation warning; a file that unpickler refuses (it would
have to run code to load) is refused with the file named. :func:`convert_checkpoint` rewrites such
a ``model.pt`` as ``model.safetensors``.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from demixbench.fileio import atomic_path, atomic_write_text
from demixbench.models import build_model
from demixbench.provenance import config_hash, provenance

log = logging.getLogger(__name__)

__all__ = [
    "WEIGHTS_SUFFIX",
    "CheckpointError",
    "add_metadata",
    "convert_checkpoint",
    "load_checkpoint",
    "load_weights",
    "metadata_path",
    "save_checkpoint",
    "save_state_checkpoint",
]

#: The weights file's suffix: ``model.safetensors``.
WEIGHTS_SUFFIX = ".safetensors"

#: The suffix of earlier versions' weights (torch's pickle-based format), still loaded.
_LEGACY_SUFFIX = ".pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and what to do."""


def metadata_path(weights: Path) -> Path:
    """model.safetensors (or a legacy model.pt) -> model.json"""
    return Path(weights).with_suffix(".json")


def _write_weights(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Write ``state`` to ``path`` (safetensors) atomically, as contiguous CPU tensors that share no
    memory (safetensors refuses shared or strided storage)."""
    plain = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in state.items()}
    with atomic_path(path) as temporary:
        save_file(plain, str(temporary))


def save_checkpoint(
    model: nn.Module,
    path: Path,
    arch: str,
    args: dict[str, Any],
    config: dict[str, Any],
    extra: dict[str, Any] | None = None,
    provenance_extra: dict[str, Any] | None = None,
) -> None:
    """Write ``path`` (the weights, safetensors) and its JSON metadata, each atomically, JSON last.
    The metadata's provenance is :func:`demixbench.provenance.provenance` plus the hash of
    ``config`` and ``provenance_extra`` (e.g. the dataset fingerprint).

    The weights file holds the tensors only: identical weights give identical bytes, so DVC keeps
    one copy and a hash tells "same weights". Raises ValueError unless ``path`` ends in
    ``.safetensors``.
    """
    save_state_checkpoint(model.state_dict(), path, arch, args, config, extra, provenance_extra)


def save_state_checkpoint(
    state: dict[str, torch.Tensor],
    path: Path,
    arch: str,
    args: dict[str, Any],
    config: dict[str, Any],
    extra: dict[str, Any] | None = None,
    provenance_extra: dict[str, Any] | None = None,
) -> None:
    """:func:`save_checkpoint` for weights held as a state_dict rather than a model (e.g. released
    weights being converted, see demixbench.models.release): the same two files."""
    path = Path(path)
    if path.suffix != WEIGHTS_SUFFIX:
        raise ValueError(f"{path}: checkpoint weights are written as {WEIGHTS_SUFFIX} (e.g. model{WEIGHTS_SUFFIX})")
    _write_weights(path, state)
    record = {**provenance(), "config_hash": config_hash(config), **(provenance_extra or {})}
    meta = {"arch": arch, "args": args, "config": config, "provenance": record, **(extra or {})}
    atomic_write_text(metadata_path(path), json.dumps(meta, indent=2, default=str))


def add_metadata(path: Path, fields: dict[str, Any]) -> None:
    """Add `fields` to the metadata (model.json) of the checkpoint whose weights are ``path``,
    rewriting it atomically (e.g. the training's ``"costs"``, known once the checkpoint is written).

    Raises CheckpointError naming the file when the metadata is missing or not a JSON object.
    """
    meta_file = metadata_path(Path(path))
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{meta_file}: checkpoint metadata unreadable ({error}); retrain") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_file}: checkpoint metadata is not a JSON object; retrain")
    atomic_write_text(meta_file, json.dumps({**meta, **fields}, indent=2, default=str))


def load_weights(path: Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The state_dict stored in ``path``: safetensors, or a legacy torch file loaded weights-only.

    Raises CheckpointError naming the file when it is empty or damaged, or when it is a torch file
    that is not plain weights (unpickling it would run code: it is refused, nothing of it runs).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (an interrupted copy?); fetch it again (dvc pull) or retrain")
    if path.suffix != _LEGACY_SUFFIX:
        try:
            return load_file(str(path), device=str(map_location))
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(
                f"{path}: not a readable safetensors file ({error}); fetch it again (dvc pull) or retrain"
            ) from None
    log.warning(
        "%s: torch's pickle-based checkpoint format is deprecated; loading its weights only. Convert it "
        "once with demixbench.models.checkpoint.convert_checkpoint (writes %s)",
        path,
        path.with_suffix(WEIGHTS_SUFFIX).name,
    )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError) as error:
        # torch's weights-only unpickler stops at the first global it does not allow: whatever
        # the file would have run did not run. Its message advises weights_only=False, which
        # would run it, so it is not passed on.
        refused = "Weights only load failed" in str(error) or isinstance(error, pickle.UnpicklingError)
        if refused:
            raise CheckpointError(
                f"{path}: refused: this file is not plain weights, and loading it could run code. Nothing "
                "in it was executed. Use checkpoints from a source you trust (dvc pull from the lab's "
                "remote) or retrain; never load such a file with a loader that allows code."
            ) from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({error}); fetch it again or retrain") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state_dict of tensors")
    return state


def load_checkpoint(
    path: Path, expected_arch: str | None = None, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the model described by ``path``'s JSON and load its weights (:func:`load_weights`).

    Raises ValueError (CheckpointError) naming the file when the metadata is missing, describes
    another architecture than ``expected_arch``, or does not match the weights, and as
    :func:`load_weights` does.
    """
    path = Path(path)
    meta_file = metadata_path(path)
    if not meta_file.is_file():
        raise CheckpointError(
            f"{meta_file}: checkpoint metadata missing; a checkpoint is model{WEIGHTS_SUFFIX} plus model.json"
        )
    meta = json.loads(meta_file.read_text())
    if expected_arch is not None and meta.get("arch") != expected_arch:
        raise CheckpointError(
            f"{path}: checkpoint is a {meta.get('arch')!r} model, but {expected_arch!r} was requested"
        )
    model = build_model(meta["arch"], meta["args"])
    state = load_weights(path, map_location=map_location)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match the model described in {meta_file.name}: {err}") from err
    model.eval()
    return model, meta


def convert_checkpoint(path: Path) -> Path:
    """Rewrite a legacy ``model.pt`` (loaded weights-only) as ``model.safetensors`` beside it;
    ``model.json`` serves both. Returns the new path; the old file is left in place."""
    path = Path(path)
    state = load_weights(path)
    target = path.with_suffix(WEIGHTS_SUFFIX)
    _write_weights(target, state)
    log.info("converted %s -> %s", path, target)
    return target
