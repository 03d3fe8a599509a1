"""Separating full tracks of any length with a trained model, and writing the estimates.

Tracks are processed in overlapping segments whose outputs are cross-faded (overlap-add with a
triangular window). Finished samples are handed on as soon as no later segment can change them,
and :func:`separate_track_file` streams them straight into the output files, so memory depends on
the segment length, not on the track length.

Options:
    shifts: test-time augmentation of Demucs: each segment is separated `shifts` times with the
        input shifted by a random offset of up to `max_shift` samples, and the aligned outputs are
        averaged.
    wiener_iterations: for spectrogram models, re-estimate the sources of each segment with a
        multichannel Wiener filter (see demixbench.wiener) from the model's magnitude estimates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn
from tqdm import tqdm

from demixbench.fileio import atomic_path
from demixbench.wiener import multichannel_wiener

log = logging.getLogger(__name__)


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

    def __init__(self, model: nn.Module, device: torch.device | str, shifts: int, max_shift: int, wiener_iterations: int, seed: int) -> None:
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
            and .shape (e.g. demixbench.data.NpyReader), read one segment at a time.
        segment: segment length in samples.
        overlap: fraction of a segment shared with the next one, in [0, 1).
        shifts, max_shift: test-time shifts (0: none) and the largest shift in samples.
        wiener_iterations: multichannel Wiener EM iterations for spectrogram models (0: off).
        seed: seeds the random shifts, so separation is deterministic.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    model.eval()
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
            yield (pending[..., :final] / pending_weight[:final]).numpy()
            pending = torch.cat([pending[..., final:], torch.zeros_like(pending[..., :final])], dim=-1)
            pending_weight = torch.cat([pending_weight[final:], torch.zeros(final)])
            done += final


def separate(model: nn.Module, mixture: np.ndarray, segment: int, overlap: float = 0.25, device: str | torch.device = "cpu", progress: bool = False, **options) -> np.ndarray:
    """Separate one track in memory: (channels, samples) -> (targets, channels, samples) float32.
    `options` are those of iter_separate (shifts, max_shift, wiener_iterations, seed)."""
    return np.concatenate(list(iter_separate(model, mixture, segment, overlap, device, progress=progress, **options)), axis=-1)


def write_estimates(out_dir: Path, estimates: np.ndarray, targets: Sequence[str], sample_rate: int) -> list[Path]:
    """Write (targets, channels, samples) as out_dir/<target>.wav, 32-bit float so scoring sees
    exactly what the model produced (16-bit PCM would add quantisation noise to the scores)."""
    return stream_estimates(out_dir, iter([estimates]), targets, sample_rate)


def stream_estimates(out_dir: Path, blocks: Iterator[np.ndarray], targets: Sequence[str], sample_rate: int) -> list[Path]:
    """Write consecutive blocks (targets, channels, n) as out_dir/<target>.wav (32-bit float), each
    file appearing only once complete."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"{target}.wav" for target in targets]
    with ExitStack() as stack:
        temporaries = [stack.enter_context(atomic_path(path, suffix=".wav")) for path in paths]
        writers = None
        for block in blocks:
            if writers is None:
                channels = block.shape[1]
                writers = [stack.enter_context(sf.SoundFile(t, "w", sample_rate, channels, subtype="FLOAT")) for t in temporaries]
            for writer, audio in zip(writers, block, strict=True):
                writer.write(audio.T)
        if writers is None:
            raise ValueError("no audio to write")
        # Leaving the stack closes the writers first (entered last), then renames the files.
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
    shifts: int = 0,
    max_shift_seconds: float = 0.5,
    wiener_iterations: int = 0,
) -> list[Path]:
    """Separate a decoded mixture (.npy, (channels, samples), read a window at a time) with a checkpoint and
    stream out_dir/<target>.wav for every target of the model. Wiener filtering applies to
    spectrogram models only; for waveform models it is skipped (logged)."""
    from demixbench.checkpoint import load_checkpoint
    from demixbench.data import NpyReader
    from demixbench.devices import resolve_device

    target_device = resolve_device(device)
    model, _ = load_checkpoint(Path(weights), expected_arch=expected_arch, map_location=target_device)
    audio = NpyReader(mixture)
    if wiener_iterations and model.domain != "spectrogram":
        log.info("wiener_iterations=%d ignored: %s is a %s model", wiener_iterations, expected_arch or "the model", model.domain)
        wiener_iterations = 0
    log.info("separating %s (%.1f s) on %s", mixture, audio.shape[-1] / sample_rate, target_device)
    blocks = iter_separate(
        model.to(target_device), audio, segment=int(segment_seconds * sample_rate), overlap=overlap, device=target_device,
        shifts=shifts, max_shift=int(max_shift_seconds * sample_rate), wiener_iterations=wiener_iterations, progress=True,
    )
    return stream_estimates(out_dir, blocks, model.targets, sample_rate)
