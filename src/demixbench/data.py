"""Dataset access: official MUSDB18 layouts, the train/validation/test split, and the decoded cache.

Every source is read through the real ``musdb`` parser, so the synthetic dataset (MUSDB18-HQ
layout) exercises exactly the code path of a lab's local MUSDB18-HQ or MUSDB18 copy.

Layouts:
    musdb18hq, synthetic: ROOT/{train,test}/<track>/{mixture,drums,bass,other,vocals}.wav
    musdb18:              ROOT/{train,test}/<track>.stem.mp4

The decoded cache holds one float32 ``.npy`` per track and stem, shaped (channels, samples), which
training memory-maps and separation/scoring read without decoding again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from demixbench import SAMPLE_RATE, TARGETS
from demixbench.fileio import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("synthetic", "musdb18hq", "musdb18")
#: Files of one track in the cache, mixture first.
STEMS: tuple[str, ...] = ("mixture", *TARGETS)
SUBSETS: tuple[str, ...] = ("train", "test")


class DatasetError(ValueError):
    """A dataset directory or file that cannot be used; the message names the path and the fix."""


@dataclass(frozen=True)
class Splits:
    """Track names per split. `valid` is carved out of MUSDB18's train subset; `test` never reaches training."""

    train: tuple[str, ...]
    valid: tuple[str, ...]
    test: tuple[str, ...]

    def subset_of(self, track: str) -> str:
        """The directory ("train" or "test") that holds `track`."""
        if track in self.test:
            return "test"
        if track in self.train or track in self.valid:
            return "train"
        raise KeyError(f"track {track!r} is in no split")

    def as_dict(self) -> dict[str, list[str]]:
        return {"train": list(self.train), "valid": list(self.valid), "test": list(self.test)}


def is_wav_layout(source: str) -> bool:
    """True for the MUSDB18-HQ layout (one wav per stem), False for MUSDB18's .stem.mp4 files."""
    if source not in SOURCES:
        raise ValueError(f"unknown data source {source!r}; allowed: {', '.join(SOURCES)}")
    return source != "musdb18"


def musdb_validation_tracks() -> tuple[str, ...]:
    """The official 14-track validation list shipped with the `musdb` package."""
    import musdb

    with open(Path(musdb.__file__).parent / "configs" / "mus.yaml") as f:
        return tuple(yaml.safe_load(f)["validation_tracks"])


def _scan_subset(root: Path, subset: str, wav: bool) -> list[str]:
    folder = root / subset
    if not folder.is_dir():
        raise DatasetError(
            f"{folder}: missing '{subset}/' directory; data.root must point at a dataset in the official "
            f"{'MUSDB18-HQ' if wav else 'MUSDB18'} layout (ROOT/train, ROOT/test)"
        )
    if not wav:
        return sorted(p.name[: -len(".stem.mp4")] for p in folder.iterdir() if p.name.endswith(".stem.mp4"))
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    for name in names:
        for stem in STEMS:
            path = folder / name / f"{stem}.wav"
            if not path.is_file():
                raise DatasetError(
                    f"{path}: missing stem file; every track needs {', '.join(s + '.wav' for s in STEMS)}. "
                    f"Restore the file or remove the track directory."
                )
    return names


def list_tracks(source: str, root: Path, validation: Sequence[str] | None = None) -> Splits:
    """Scan `root` and split its tracks.

    Reads only directory listings (no audio), so the workflow can call it when it builds its DAG.

    Args:
        source: one of SOURCES.
        root: dataset root in the official layout.
        validation: names of train tracks held out for validation; None means musdb's official list.
    Raises:
        DatasetError naming the directory or file when the layout is broken.
    """
    wav = is_wav_layout(source)
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"{root}: dataset directory does not exist; set data.root to a local "
            f"{'MUSDB18-HQ' if wav else 'MUSDB18'} copy (ROOT/train, ROOT/test) or use data.source: synthetic"
        )
    train = _scan_subset(root, "train", wav)
    test = _scan_subset(root, "test", wav)
    if not train or not test:
        empty = root / ("train" if not train else "test")
        raise DatasetError(f"{empty}: no tracks found ({'wav folders' if wav else '*.stem.mp4 files'} expected)")
    valid = musdb_validation_tracks() if validation is None else tuple(validation)
    if validation is None:
        valid = tuple(name for name in valid if name in train)  # e.g. a partial copy of MUSDB18
    for name in valid:
        if name in test:
            raise DatasetError(f"validation track {name!r} is a test track in {root}; test tracks never reach training")
        if name not in train:
            raise DatasetError(f"validation track {name!r} is not in {root / 'train'}")
    return Splits(
        train=tuple(name for name in train if name not in valid),
        valid=tuple(sorted(valid)),
        test=tuple(test),
    )


def decode_track(source: str, root: Path, subset: str, track: str, out_dir: Path, sample_rate: int = SAMPLE_RATE) -> dict:
    """Decode one track through `musdb` into the cache: out_dir/{mixture,drums,bass,other,vocals}.npy.

    Each array is float32 (channels, samples). Returns the track's metadata, also written to
    out_dir/meta.json. Refuses non-finite samples, stems of different lengths and wrong sample rates,
    naming the file.
    """
    import musdb

    root = Path(root)
    db = musdb.DB(root=str(root), is_wav=is_wav_layout(source), subsets=subset)
    matches = [t for t in db.tracks if t.name == track]
    if not matches:
        raise DatasetError(f"track {track!r} not found in {root / subset}")
    mus_track = matches[0]
    location = Path(mus_track.path) if not is_wav_layout(source) else Path(mus_track.path).parent
    if mus_track.rate != sample_rate:
        raise DatasetError(f"{location}: sample rate {mus_track.rate} Hz, expected {sample_rate} Hz")
    arrays = {"mixture": mus_track.audio}
    for stem in TARGETS:
        if stem not in mus_track.sources:
            raise DatasetError(f"{location}: missing stem {stem!r}")
        arrays[stem] = mus_track.sources[stem].audio
    lengths = {stem: a.shape[0] for stem, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise DatasetError(f"{location}: stems have different lengths {lengths}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stem, audio in arrays.items():
        audio = np.ascontiguousarray(np.asarray(audio, dtype=np.float32).T)  # (channels, samples)
        if audio.shape[0] != 2:
            raise DatasetError(f"{location}: stem {stem!r} has {audio.shape[0]} channels, expected 2 (stereo)")
        if not np.isfinite(audio).all():
            raise DatasetError(f"{location}: stem {stem!r} contains NaN or Inf samples")
        with atomic_path(out_dir / f"{stem}.npy") as temporary, open(temporary, "wb") as f:
            np.save(f, audio)
    meta = {"track": track, "subset": subset, "source": source, "sample_rate": sample_rate, "samples": lengths["mixture"]}
    atomic_write_text(out_dir / "meta.json", json.dumps(meta, indent=2))
    log.info("decoded %s (%s, %.1f s)", track, subset, lengths["mixture"] / sample_rate)
    return meta


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
