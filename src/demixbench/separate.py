"""Separating full tracks of any length with a trained model, and writing the estimates.

Tracks are processed in overlapping segments whose outputs are cross-faded (overlap-add with a
triangular window), so memory depends on the segment length, not on the track length.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn
from tqdm import tqdm

from demixbench.fileio import atomic_path

log = logging.getLogger(__name__)


@torch.no_grad()
def separate(model: nn.Module, mixture: np.ndarray, segment: int, overlap: float = 0.25, device: str | torch.device = "cpu", progress: bool = False) -> np.ndarray:
    """Separate one track.

    Args:
        model: forward (batch, channels, time) -> (batch, targets, channels, time).
        mixture: (channels, samples) float32.
        segment: segment length in samples.
        overlap: fraction of a segment shared with the next one, in [0, 1).
    Returns:
        (targets, channels, samples) float32.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    model.eval()
    channels, length = mixture.shape
    segment = min(segment, length)
    step = max(1, int(segment * (1 - overlap)))
    starts = list(range(0, max(length - segment, 0) + 1, step))
    if starts[-1] + segment < length:
        starts.append(length - segment)  # the last segment ends exactly at the track's end
    # Triangular weights, strictly positive so every sample has a defined weighted average.
    ramp = np.minimum(np.arange(1, segment + 1), np.arange(segment, 0, -1)).astype(np.float32)
    weight = torch.from_numpy(ramp / ramp.max())
    output = None
    total_weight = torch.zeros(length)
    for start in tqdm(starts, desc="separate", unit="segment", disable=not progress):
        chunk = torch.from_numpy(np.ascontiguousarray(mixture[:, start : start + segment])).to(device)
        estimate = model(chunk[None])[0].float().cpu()  # (targets, channels, segment)
        if output is None:
            output = torch.zeros(estimate.shape[0], channels, length)
        output[..., start : start + segment] += estimate * weight
        total_weight[start : start + segment] += weight
    return (output / total_weight).numpy()


def write_estimates(out_dir: Path, estimates: np.ndarray, targets: Sequence[str], sample_rate: int) -> list[Path]:
    """Write (targets, channels, samples) as out_dir/<target>.wav, 32-bit float so scoring sees
    exactly what the model produced (16-bit PCM would add quantisation noise to the scores)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for target, audio in zip(targets, estimates, strict=True):
        path = out_dir / f"{target}.wav"
        with atomic_path(path, suffix=".wav") as temporary:
            sf.write(temporary, audio.T, sample_rate, subtype="FLOAT")
        paths.append(path)
    return paths


def read_estimates(out_dir: Path, targets: Sequence[str]) -> np.ndarray:
    """Read estimates written by write_estimates -> (targets, channels, samples) float32."""
    return np.stack([sf.read(Path(out_dir) / f"{t}.wav", dtype="float32", always_2d=True)[0].T for t in targets])


def separate_track_file(
    weights: Path,
    mixture: Path,
    out_dir: Path,
    segment_seconds: float,
    overlap: float = 0.25,
    device: str = "auto",
    expected_arch: str | None = None,
    sample_rate: int = 44100,
) -> list[Path]:
    """Separate a decoded mixture (.npy, (channels, samples)) with a checkpoint and write
    out_dir/<target>.wav for every target of the model."""
    from demixbench.checkpoint import load_checkpoint
    from demixbench.devices import resolve_device

    target_device = resolve_device(device)
    model, _ = load_checkpoint(Path(weights), expected_arch=expected_arch, map_location=target_device)
    audio = np.load(mixture)
    log.info("separating %s (%.1f s) on %s", mixture, audio.shape[-1] / sample_rate, target_device)
    estimates = separate(model.to(target_device), audio, segment=int(segment_seconds * sample_rate), overlap=overlap, device=target_device, progress=True)
    return write_estimates(out_dir, estimates, model.targets, sample_rate)
