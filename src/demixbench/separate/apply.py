"""Separating full tracks of any length with a trained model.

Tracks are processed in overlapping segments whose outputs are cross-faded (overlap-add with a
triangular window). Finished samples are handed on as soon as no later segment can change them,
and :func:`demixbench.separate.track.separate_track` streams them straight into the output files, so
memory depends on the segment length, not on the track length.

Options:
    shifts: test-time augmentation of Demucs: each segment is separated `shifts` times with the
        input shifted by a random offset of up to `max_shift` samples, and the aligned outputs are
        averaged.
    wiener_iterations: for spectrogram models, re-estimate the sources of each segment with a
        multichannel Wiener filter (see demixbench.separate.wiener) from the model's magnitude estimates.

A model whose ``normalize`` attribute is ``"track"`` (Demucs v1 as in the paper) expects its input
normalised by the whole track's statistics: the mean and std of the track's mono mixture are
computed first (one streaming pass over the track, see
:func:`demixbench.models.demucs.track_statistics`), every segment is normalised by them before the
model sees it (the padding beyond the track's ends is zeros of the normalised signal, as the
authors padded their normalised track), and the finished blocks are de-normalised
(``estimate * std + mean``), as the authors' evaluation did for the whole track.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from demixbench.models.demucs import track_statistics
from demixbench.separate.wiener import multichannel_wiener

log = logging.getLogger(__name__)


class _Normalized:
    """A (channels, samples) mixture read as (mixture - mean) / std: supports ``[:, a:b]`` and
    ``.shape`` like the mixture itself, so windows are still read one at a time."""

    def __init__(self, mixture, mean: float, std: float) -> None:
        self.mixture, self.shape = mixture, mixture.shape
        self.mean, self.std = np.float32(mean), np.float32(std)

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        return (np.asarray(self.mixture[key], dtype=np.float32) - self.mean) / self.std


def _window(mixture: np.ndarray, start: int, stop: int) -> np.ndarray:
    """mixture[:, start:stop] with zeros where the range leaves the track: (channels, stop - start)."""
    length = mixture.shape[-1]
    out = np.zeros((mixture.shape[0], stop - start), dtype=np.float32)
    a, b = max(start, 0), min(stop, length)
    if b > a:
        out[:, a - start : b - start] = mixture[:, a:b]
    return out


class _SegmentSeparator:
    """model applied to one segment, with optional test-time shifts and Wiener filtering:
    (channels, segment) -> (targets, channels, segment)."""

    def __init__(
        self,
        model: nn.Module,
        device: torch.device | str,
        shifts: int,
        max_shift: int,
        wiener_iterations: int,
        seed: int,
    ) -> None:
        if wiener_iterations and getattr(model, "domain", None) != "spectrogram":
            raise ValueError("wiener_iterations needs a spectrogram model (one with `stft` and `masks`)")
        self.model, self.device = model, device
        self.shifts, self.max_shift = shifts, max_shift
        self.wiener_iterations = wiener_iterations
        self.rng = np.random.default_rng(seed)

    def _apply(self, chunk: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(chunk)).to(self.device)[None]
        if not self.wiener_iterations:
            return self.model(x)[0].float().cpu()
        spec = self.model.stft.forward(x)[0]  # (channels, bins, frames)
        magnitudes = self.model.masks(spec.abs()[None])[0] * spec.abs()[None]
        filtered = multichannel_wiener(magnitudes, spec, self.wiener_iterations)
        return self.model.stft.inverse(filtered, x.shape[-1]).float().cpu()

    def __call__(self, mixture: np.ndarray, start: int, segment: int) -> torch.Tensor:
        if not self.shifts:
            return self._apply(_window(mixture, start, start + segment))
        total = None
        for _ in range(self.shifts):
            # Shift the input right by `offset` within a window padded by max_shift, then realign.
            offset = int(self.rng.integers(0, self.max_shift + 1))
            window = _window(mixture, start - offset, start + segment + self.max_shift - offset)
            estimate = self._apply(window)[..., offset : offset + segment]
            total = estimate if total is None else total + estimate
        return total / self.shifts


@torch.no_grad()
def iter_separate(
    model: nn.Module,
    mixture: np.ndarray,
    segment: int,
    overlap: float = 0.25,
    device: str | torch.device = "cpu",
    shifts: int = 0,
    max_shift: int = 22050,
    wiener_iterations: int = 0,
    seed: int = 0,
    progress: bool = False,
) -> Iterator[np.ndarray]:
    """Separate one track, yielding consecutive finished blocks (targets, channels, n) in order.

    Args:
        model: forward (batch, channels, time) -> (batch, targets, channels, time).
        mixture: (channels, samples) float32: an array, or anything that supports mixture[:, a:b]
            and .shape (e.g. demixbench.data.cache.NpyReader), read one segment at a time.
        segment: segment length in samples.
        overlap: fraction of a segment shared with the next one, in [0, 1).
        shifts, max_shift: test-time shifts (0: none) and the largest shift in samples.
        wiener_iterations: multichannel Wiener EM iterations for spectrogram models (0: off).
        seed: seeds the random shifts, so separation is deterministic.

    A model with ``normalize == "track"`` sees the track normalised by its mono mixture's mean and
    std (one extra streaming pass over `mixture` first), and the blocks are de-normalised.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    model.eval()
    per_track = getattr(model, "normalize", None) == "track"
    if per_track:
        mean, std = track_statistics(mixture)
        log.debug("track normalisation: mono mixture mean %.6g, std %.6g", mean, std)
        mixture = _Normalized(mixture, mean, std)
    apply = _SegmentSeparator(model, device, shifts, max_shift, wiener_iterations, seed)
    length = mixture.shape[-1]
    segment = min(segment, length)
    step = max(1, int(segment * (1 - overlap)))
    starts = list(range(0, max(length - segment, 0) + 1, step))
    if starts[-1] + segment < length:
        starts.append(length - segment)  # the last segment ends exactly at the track's end
    # Triangular weights, strictly positive so every sample has a defined weighted average.
    ramp = np.minimum(np.arange(1, segment + 1), np.arange(segment, 0, -1)).astype(np.float32)
    weight = torch.from_numpy(ramp / ramp.max())
    pending = pending_weight = None  # overlap-add buffers covering [done, done + 2 * segment)
    done = 0
    for index, start in enumerate(tqdm(starts, desc="separate", unit="segment", disable=not progress)):
        estimate = apply(mixture, start, segment)
        if pending is None:
            pending = torch.zeros(estimate.shape[0], estimate.shape[1], 2 * segment)
            pending_weight = torch.zeros(2 * segment)
        offset = start - done
        pending[..., offset : offset + segment] += estimate * weight
        pending_weight[offset : offset + segment] += weight
        # Samples before the next segment's start can no longer change.
        final = (starts[index + 1] if index + 1 < len(starts) else length) - done
        if final > 0:
            block = pending[..., :final] / pending_weight[:final]
            yield (block * std + mean if per_track else block).numpy()
            pending = torch.cat([pending[..., final:], torch.zeros_like(pending[..., :final])], dim=-1)
            pending_weight = torch.cat([pending_weight[final:], torch.zeros(final)])
            done += final


def separate(
    model: nn.Module,
    mixture: np.ndarray,
    segment: int,
    overlap: float = 0.25,
    device: str | torch.device = "cpu",
    progress: bool = False,
    **options,
) -> np.ndarray:
    """Separate one track in memory: (channels, samples) -> (targets, channels, samples) float32.
    `options` are those of iter_separate (shifts, max_shift, wiener_iterations, seed)."""
    return np.concatenate(
        list(iter_separate(model, mixture, segment, overlap, device, progress=progress, **options)), axis=-1
    )
