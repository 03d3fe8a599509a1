"""Validation after every epoch: the reconstruction loss and the MDX nSDR per target of the
full-track separation, on the validation split (never the test split)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from demixbench.data.cache import load_decoded
from demixbench.models.demucs import track_statistics
from demixbench.score.track import nsdr
from demixbench.separate.apply import separate
from demixbench.train import distributed
from demixbench.train.config import TrainConfig


def validate(
    model: nn.Module, valid_dirs: Sequence[Path], config: TrainConfig, targets: Sequence[str], device: torch.device
) -> dict[str, float]:
    """Validation on whole tracks: the model's reconstruction loss (averaged over segments of
    valid_segment_seconds, so memory stays bounded) and the nSDR per target of the full-track
    separation, averaged over tracks ("valid_nsdr_<target>", "valid_nsdr") and per track
    ("valid_nsdr_tracks": track -> target -> nSDR).

    In a multi-process run every rank validates every world_size-th track and the per-track
    results are gathered in track order: every rank gets the same result, that of one process."""
    model.eval()
    rank, world = distributed.rank(), distributed.world_size()
    mine = {
        i: _validate_track(model, valid_dirs[i], config, targets, device) for i in range(rank, len(valid_dirs), world)
    }
    per_track: dict[int, tuple[list[float], dict[str, float]]] = {}
    for part in distributed.all_gather_object(mine):
        per_track.update(part)
    losses = [loss for i in range(len(valid_dirs)) for loss in per_track[i][0]]
    scores = {t: [per_track[i][1][t] for i in range(len(valid_dirs))] for t in targets}
    result = {"valid_loss": float(np.mean(losses))}
    result.update({f"valid_nsdr_{t}": float(np.mean(v)) for t, v in scores.items()})
    result["valid_nsdr"] = float(np.mean([result[f"valid_nsdr_{t}"] for t in targets]))
    result["valid_nsdr_tracks"] = {Path(valid_dirs[i]).name: per_track[i][1] for i in range(len(valid_dirs))}
    return result


def _validate_track(
    model: nn.Module, track_dir: Path, config: TrainConfig, targets: Sequence[str], device: torch.device
) -> tuple[list[float], dict[str, float]]:
    """One validation track: the loss of each segment and the nSDR per target.

    For a model normalised per track (``normalize == "track"``) the loss is computed, as in
    training, on the mixture and references normalised by the track's mono-mixture mean and std
    (the authors' validation loss was on their normalised tracks too); the separation for the nSDR
    normalises and de-normalises by itself (demixbench.separate.apply)."""
    segment = int(config.valid_segment_seconds * config.sample_rate)
    losses = []
    with torch.no_grad():
        track = load_decoded(track_dir, stems=("mixture", *targets))
        mixture = np.array(track["mixture"])
        references = np.stack([np.array(track[t]) for t in targets])
        inputs, outputs = mixture, references
        if getattr(model, "normalize", None) == "track":
            mean, std = (np.float32(value) for value in track_statistics(mixture))
            inputs, outputs = (mixture - mean) / std, (references - mean) / std
        for start in range(0, mixture.shape[-1], segment):
            loss, _, _ = model.separation_loss(
                torch.from_numpy(inputs[None, :, start : start + segment]).to(device),
                torch.from_numpy(outputs[None, ..., start : start + segment]).to(device),
            )
            losses.append(loss.item())
        estimates = separate(model, mixture, segment=segment, device=device)
    return losses, {target: nsdr(references[i], estimates[i]) for i, target in enumerate(targets)}
