"""Random training examples from the decoded cache: ``ChunkSampler`` draws and reads them,
``BatchLoader`` reads batches ahead on worker threads.

Examples are random segments read from memory-mapped per-track arrays, with the usual MUSDB18
augmentations (sources remixed across tracks, channel swap, sign flip). In a multi-process run every
rank draws the random choices of the whole global batch from the same generator and reads its own
share (see ChunkSampler.batch).

For a model that expects its input normalised per track (``normalize="track"``, Demucs v1 as in
the paper), every source segment is normalised by the statistics of the track it is read from:
the mean and std of that track's whole mono mixture (:func:`demixbench.models.demucs.track_statistics`,
computed once per track when the sampler is built). This is what the authors' training did: their
``raw.py`` normalised each training track's streams (mixture and every source) once, by the
track's mono-mixture mean and std, before any segment was cut, and their training step cut
segments of those normalised sources, augmented them (remix across tracks, channel swap, sign
flip) and summed them into the mixture. So here too the sources are normalised first (by their own
track's statistics, which differ between the tracks of a remixed example), then swapped and
flipped, and the mixture is their sum; a segment's padding beyond a short track's end is zeros of
the normalised signal. As there, the mean is subtracted from each source, so the mixture of an
un-remixed example is the normalised mixture shifted by (targets - 1) * mean / std: negligible,
as a track's mean is its DC offset (about 0).
"""

from __future__ import annotations

import copy
import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from demixbench import TARGETS
from demixbench.data.cache import NpyReader, load_decoded
from demixbench.models.demucs import track_statistics
from demixbench.train import distributed

log = logging.getLogger(__name__)


class ChunkSampler:
    """Random training examples from decoded tracks.

    batch() -> mixture (batch, channels, segment), sources (batch, targets, channels, segment).
    The mixture is the sum of the (augmented) sources, so remixed examples stay consistent.

    normalize: the model's ``normalize`` ("segment" for models that normalise their own input,
    which get the audio as it is; "track": each source segment is normalised by its track's
    mono-mixture mean and std, see the module docstring). ``stats`` holds each track's (mean, std)
    in that case, None otherwise.
    """

    def __init__(
        self,
        track_dirs: Sequence[Path],
        segment: int,
        remix: bool,
        channel_swap: bool,
        sign_flip: bool,
        targets: Sequence[str] = TARGETS,
        normalize: str = "segment",
    ) -> None:
        if not track_dirs:
            raise ValueError("no training tracks")
        if normalize not in ("segment", "track"):
            raise ValueError(f"normalize must be 'segment' or 'track', got {normalize!r}")
        self.tracks = [load_decoded(d, stems=targets) for d in track_dirs]
        self.stats: list[tuple[float, float]] | None = None
        if normalize == "track":
            self.stats = [_mixture_statistics(Path(d)) for d in track_dirs]
        self.targets = tuple(targets)
        self.segment = segment
        for directory, track in zip(track_dirs, self.tracks, strict=True):
            length = next(iter(track.values())).shape[-1]
            if length < segment:  # accepted, but never silently: most of each example is padding
                log.warning(
                    "%s: %d samples, shorter than the training segment (%d samples); its examples are "
                    "zero padded. Shorten train.segment or leave the track out",
                    Path(directory).name,
                    length,
                    segment,
                )
        self.remix, self.channel_swap, self.sign_flip = remix, channel_swap, sign_flip

    def _read(self, index: int, target: str, offset_fraction: float) -> np.ndarray:
        audio = self.tracks[index][target]
        length = audio.shape[-1]
        start = int(offset_fraction * max(length - self.segment, 0))
        chunk = np.array(audio[:, start : start + self.segment], dtype=np.float32)
        if self.stats is not None:
            mean, std = self.stats[index]
            chunk = (chunk - np.float32(mean)) / np.float32(std)
        if chunk.shape[-1] < self.segment:  # tracks shorter than a segment are zero padded
            chunk = np.pad(chunk, ((0, 0), (0, self.segment - chunk.shape[-1])))
        return chunk

    def _draw(self, rng: np.random.Generator) -> list[tuple[int, float, bool, bool]]:
        """One example's random choices, per target: (track, offset fraction, swap channels, flip sign)."""
        same_track = int(rng.integers(len(self.tracks)))
        same_offset = float(rng.random())
        choices = []
        for _ in self.targets:
            if self.remix:
                track, offset = int(rng.integers(len(self.tracks))), float(rng.random())
            else:
                track, offset = same_track, same_offset
            swap = bool(self.channel_swap and rng.random() < 0.5)
            flip = bool(self.sign_flip and rng.random() < 0.5)
            choices.append((track, offset, swap, flip))
        return choices

    def batch(
        self, rng: np.random.Generator, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of a global batch of `batch_size` examples.

        The random choices of all `batch_size` examples are drawn from `rng`, in the same order
        whatever `world_size` is, so every rank's generator stays in step and the ranks' shares,
        rank 0 first, make up the batch a 1-process run draws. Only the share of this rank, the
        contiguous examples [rank * batch_size / world_size, (rank + 1) * batch_size / world_size),
        is read and returned.
        """
        return self.read(self.choices(rng, batch_size, rank, world_size))

    def choices(
        self, rng: np.random.Generator, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> list[list[tuple[int, float, bool, bool]]]:
        """The random choices of this rank's share of a global batch (see batch); cheap, no I/O."""
        local = distributed.local_batch_size(batch_size, world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        return [self._draw(rng) for _ in range(batch_size)][rank * local : (rank + 1) * local]

    def read(self, choices: list[list[tuple[int, float, bool, bool]]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Read and augment the examples described by `choices` -> (mixture, sources)."""
        sources = np.empty((len(choices), len(self.targets), 2, self.segment), dtype=np.float32)
        for b, example in enumerate(choices):
            for s, (target, (track, offset, swap, flip)) in enumerate(zip(self.targets, example, strict=True)):
                chunk = self._read(track, target, offset)
                if swap:
                    chunk = chunk[::-1]
                if flip:
                    chunk = -chunk
                sources[b, s] = chunk
        sources_t = torch.from_numpy(sources)
        return sources_t.sum(dim=1), sources_t


def _mixture_statistics(track_dir: Path) -> tuple[float, float]:
    """(mean, std) of a decoded track's whole mono mixture (its mixture.npy, read a block at a time)."""
    path = track_dir / "mixture.npy"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing; per-track normalisation needs each training track's mixture. Decode the "
            "track again (rule decode_track)"
        )
    mean, std = track_statistics(NpyReader(path))
    log.debug("%s: mono mixture mean %.6g, std %.6g", track_dir.name, mean, std)
    return mean, std


class BatchLoader:
    """Batches of a ChunkSampler read ahead by `workers` threads, up to `prefetch` batches deep.

    The random choices are drawn in order on the calling thread and only the reading is done by
    the workers, so the batches are exactly those of calling `sampler.batch` one after another.
    rng_state() is the generator's state right after the last batch handed out: what a resumed
    run must restore (the generator itself has already drawn the prefetched batches).
    """

    def __init__(
        self,
        sampler: ChunkSampler,
        rng: np.random.Generator,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 0,
        prefetch: int = 0,
    ) -> None:
        if workers < 0 or prefetch < 0:
            raise ValueError(f"loader workers and prefetch must be >= 0, got {workers} and {prefetch}")
        self.sampler, self.rng = sampler, rng
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.depth = max(prefetch, 1) if workers else 0  # without workers nothing reads ahead
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="loader") if workers else None
        self.queue: deque[tuple[dict, Any]] = deque()

    def _enqueue(self) -> None:
        state = copy.deepcopy(self.rng.bit_generator.state)
        choices = self.sampler.choices(self.rng, self.batch_size, self.rank, self.world_size)
        pending = self.pool.submit(self.sampler.read, choices) if self.pool else choices
        self.queue.append((state, pending))

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch: (mixture, sources) as ChunkSampler.batch returns them."""
        if not self.queue:
            self._enqueue()
        _, pending = self.queue.popleft()
        while len(self.queue) < self.depth:
            self._enqueue()
        return pending.result() if self.pool else self.sampler.read(pending)

    def rng_state(self) -> dict:
        """The generator state after the last batch returned by next()."""
        return copy.deepcopy(self.queue[0][0] if self.queue else self.rng.bit_generator.state)

    def close(self) -> None:
        if self.pool:
            self.pool.shutdown(wait=True, cancel_futures=True)
