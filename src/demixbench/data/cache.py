"""The decoded cache: one float32 ``.npy`` per track and stem, shaped (channels, samples), which
training memory-maps and separation and scoring read without decoding again."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from demixbench.data.layout import STEMS

#: One least significant bit of 16-bit PCM, the resolution of MUSDB18(-HQ) files.
LSB16: float = 1.0 / 32768.0


def pcm_scale(audio: np.ndarray) -> float:
    """The factor from `audio`'s values to float amplitudes: 1/32768 for int16 PCM (as musdb and
    stempeg divide; exact, a power of two), 1 for float arrays."""
    return LSB16 if audio.dtype == np.int16 else 1.0


def to_float32(audio: np.ndarray) -> np.ndarray:
    """(samples, channels) int16 PCM or float audio -> float32, PCM divided by 32768."""
    return np.multiply(audio, np.float32(pcm_scale(audio)), dtype=np.float32)


def save_channel_major(path: Path, audio: np.ndarray, block: int = 1 << 18) -> None:
    """Write (samples, channels) audio, int16 PCM or float, to `path` as the float32 (channels,
    samples) .npy that ``np.save(path, to_float32(audio).T.copy())`` writes, byte for byte.

    The conversion runs block by block through one small buffer: the float32 array of the
    whole track (for a 10-minute stem, 200 MB) is never held in memory.
    """
    samples, channels = audio.shape
    scale = np.float32(pcm_scale(audio))
    buffer = np.empty(block, dtype=np.float32)
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
        "fortran_order": False,
        "shape": (channels, samples),
    }
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for channel in range(channels):
            for start in range(0, samples, block):
                part = buffer[: min(block, samples - start)]
                np.multiply(audio[start : start + len(part), channel], scale, out=part, dtype=np.float32)
                part.tofile(f)


def load_decoded(track_dir: Path, stems: Sequence[str] = STEMS, mmap: bool = True) -> dict[str, np.ndarray]:
    """Read a decoded track: stem -> float32 (channels, samples), memory-mapped by default."""
    return {stem: np.load(Path(track_dir) / f"{stem}.npy", mmap_mode="r" if mmap else None) for stem in stems}


class NpyReader:
    """Read windows of a (channels, samples) .npy file with plain file reads, without mapping it:
    memory stays proportional to the window, also in the process's resident set (a memory map's
    pages count there once read). Supports ``reader[:, start:stop]`` and ``reader.shape``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(f)
            self._offset = f.tell()
        if fortran_order or len(shape) != 2:
            raise ValueError(f"{self.path}: expected a C-ordered (channels, samples) array, got shape {shape}")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        channels, window = key
        if channels != slice(None) or window.step not in (None, 1):
            raise IndexError("NpyReader supports reader[:, start:stop] only")
        start, stop, _ = window.indices(self.shape[1])
        out = np.empty((self.shape[0], max(stop - start, 0)), dtype=self.dtype)
        with open(self.path, "rb") as f:
            for channel in range(self.shape[0]):
                f.seek(self._offset + (channel * self.shape[1] + start) * self.dtype.itemsize)
                out[channel] = np.fromfile(f, dtype=self.dtype, count=out.shape[1])
        return out
