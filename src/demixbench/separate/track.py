"""One track of the separation stage: a decoded mixture through a checkpoint into
``<out_dir>/<target>.wav``.

:func:`separate_track` is what rule ``separate_track`` runs, with the config's ``separation:``
section as a :class:`SeparationConfig`. The estimates are streamed into the files block by block
(see :func:`demixbench.separate.apply.iter_separate`), so memory depends on the segment length, not
on the track length. The estimate files are those of :mod:`demixbench.separate.estimates`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from demixbench.data.cache import NpyReader
from demixbench.devices import resolve_device
from demixbench.models.checkpoint import load_checkpoint
from demixbench.separate.apply import iter_separate
from demixbench.separate.estimates import stream_estimates

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeparationConfig:
    """How trained models separate the test tracks: the config's ``separation:`` section, one to one
    (defaults as in workflow/schemas/config.schema.yaml).

    Attributes:
        segment_seconds: tracks are separated in overlapping segments of this length, so memory does
            not grow with the track's length.
        overlap: fraction of a segment cross-faded with the next one, in [0, 1).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        shifts: test-time shifts (Demucs): average over this many randomly shifted copies; 0: off.
        max_shift_seconds: the largest test-time shift.
        wiener_iterations: multichannel Wiener EM iterations for spectrogram models; 0: off.
    """

    segment_seconds: float
    overlap: float = 0.25
    device: str = "auto"
    shifts: int = 0
    max_shift_seconds: float = 0.5
    wiener_iterations: int = 0


def separate_track(
    weights: Path,
    mixture: Path,
    out_dir: Path,
    config: SeparationConfig,
    expected_arch: str | None = None,
    sample_rate: int = 44100,
) -> list[Path]:
    """Separate a decoded mixture (.npy, (channels, samples), read a window at a time) with a checkpoint and
    stream out_dir/<target>.wav for every target of the model. Wiener filtering applies to
    spectrogram models only; for waveform models it is skipped (logged)."""
    target_device = resolve_device(config.device)
    model, _ = load_checkpoint(Path(weights), expected_arch=expected_arch, map_location=target_device)
    return separate_mixture(
        model, mixture, out_dir, config, target_device, sample_rate, name=expected_arch or "the model"
    )


def separate_mixture(
    model: nn.Module,
    mixture: Path,
    out_dir: Path,
    config: SeparationConfig,
    device: torch.device,
    sample_rate: int,
    name: str = "the model",
    progress: bool = True,
) -> list[Path]:
    """Separate the (channels, samples) float32 .npy `mixture` with a loaded `model` on `device` and
    stream out_dir/<target>.wav (targets, channels, samples at `sample_rate`), reading and writing a
    segment at a time: what :func:`separate_track` and ``demixbench separate``
    (:mod:`demixbench.separate.files`) share. Wiener filtering applies to spectrogram models only;
    for waveform models it is skipped (logged, naming the model as `name`)."""
    audio = NpyReader(mixture)
    wiener_iterations = config.wiener_iterations
    if wiener_iterations and model.domain != "spectrogram":
        log.info("wiener_iterations=%d ignored: %s is a %s model", wiener_iterations, name, model.domain)
        wiener_iterations = 0
    log.info("separating %s (%.1f s) on %s", mixture, audio.shape[-1] / sample_rate, device)
    blocks = iter_separate(
        model.to(device),
        audio,
        segment=int(config.segment_seconds * sample_rate),
        overlap=config.overlap,
        device=device,
        shifts=config.shifts,
        max_shift=int(config.max_shift_seconds * sample_rate),
        wiener_iterations=wiener_iterations,
        progress=progress,
    )
    return stream_estimates(out_dir, blocks, model.targets, sample_rate)
