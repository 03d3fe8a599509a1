"""Where a MUSDB18 dataset's files are: sources, layouts, stems, subsets, and the train/validation/test split.

Layouts:
    musdb18hq, synthetic (format wav):          ROOT/{train,test}/<track>/{mixture,drums,bass,other,vocals}.wav
    musdb18, musdb18-7s, synthetic (stem.mp4):  ROOT/{train,test}/<track>.stem.mp4

Listing reads directory entries only (no audio), and this module imports nothing heavier than
numpy and yaml: the workflow imports it when it builds its DAG.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from demixbench import TARGETS

SOURCES: tuple[str, ...] = ("synthetic", "musdb18hq", "musdb18", "musdb18-7s")
#: File layouts: one wav per stem (MUSDB18-HQ) or one 5-stream .stem.mp4 per track (MUSDB18).
LAYOUTS: tuple[str, ...] = ("wav", "stem.mp4")
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
    """True for sources in the MUSDB18-HQ layout (one wav per stem), False for .stem.mp4 sources.

    `synthetic` may be written in either format; dataset_layout() looks at the files to tell.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown data source {source!r}; allowed: {', '.join(SOURCES)}")
    return source not in ("musdb18", "musdb18-7s")


def dataset_layout(source: str, root: Path | None = None) -> str:
    """The file layout ("wav" or "stem.mp4") of `source`; for `synthetic`, of the files under `root`."""
    wav = is_wav_layout(source)
    if source == "synthetic" and root is not None:
        for subset in SUBSETS:
            folder = Path(root) / subset
            if folder.is_dir() and any(p.name.endswith(".stem.mp4") for p in folder.iterdir()):
                return "stem.mp4"
    return "wav" if wav else "stem.mp4"


def _musdb_config() -> dict:
    """The configuration file the `musdb` package ships (validation list, preview URL). musdb is
    imported here, not at the top: it needs ffmpeg on PATH, and listing tracks does not."""
    import musdb

    with open(Path(musdb.__file__).parent / "configs" / "mus.yaml") as f:
        return yaml.safe_load(f)


def musdb_validation_tracks() -> tuple[str, ...]:
    """The official 14-track validation list shipped with the `musdb` package."""
    return tuple(_musdb_config()["validation_tracks"])


def musdb_sample_url() -> str:
    """The URL of the 7-second previews that ``musdb.DB(download=True)`` downloads."""
    return _musdb_config()["sample-url"]


def scan_subset(root: Path, subset: str, layout: str) -> list[str]:
    """Names of the tracks in ROOT/`subset` in `layout` ("wav" or "stem.mp4"), sorted; directory
    entries only. DatasetError when the subset's directory is missing."""
    folder = Path(root) / subset
    if not folder.is_dir():
        raise DatasetError(
            f"{folder}: missing '{subset}/' directory; data.root must point at a dataset in the official "
            f"{'MUSDB18-HQ' if layout == 'wav' else 'MUSDB18'} layout (ROOT/train, ROOT/test)"
        )
    if layout == "wav":
        return sorted(p.name for p in folder.iterdir() if p.is_dir())
    return sorted(p.name[: -len(".stem.mp4")] for p in folder.iterdir() if p.is_file() and p.name.endswith(".stem.mp4"))


def _check_stem_files(root: Path, subset: str, names: Sequence[str]) -> None:
    """DatasetError naming the first missing or empty stem file of a wav-layout subset (a stat per
    file: cheap enough for the DAG, so an interrupted copy stops the run before any job)."""
    for name in names:
        for path in track_files("wav", root, subset, name):
            if not path.is_file():
                raise DatasetError(
                    f"{path}: missing stem file; every track needs {', '.join(s + '.wav' for s in STEMS)}. "
                    f"Restore the file or remove the track directory."
                )
            if path.stat().st_size == 0:
                raise DatasetError(
                    f"{path}: empty file (0 bytes), e.g. an interrupted copy or download; restore it from the "
                    "original archive"
                )


def check_dataset_root(root: Path, name: str = "MUSDB18") -> None:
    """DatasetError unless ``root`` is a directory, saying what it is instead and what to set: a
    file (an archive is acquired through ``data.origin``, not read in place) or nothing at all."""
    root = Path(root)
    if root.is_dir():
        return
    if root.is_file():
        with root.open("rb") as handle:
            zipped = handle.read(4) == b"PK\x03\x04"
        what = "a zip archive" if zipped else "a file"
        raise DatasetError(
            f"{root}: is {what}, not a dataset directory. To use an archive, set data.origin: {root} (the "
            "pipeline extracts it) and data.root to a directory to extract it into; otherwise set data.root "
            f"to the extracted {name} directory (ROOT/train, ROOT/test)"
        )
    raise DatasetError(
        f"{root}: dataset directory does not exist; set data.root to a local {name} copy (ROOT/train, "
        "ROOT/test), data.origin to an archive or directory to acquire it from, or data.source: synthetic"
    )


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
    root = Path(root)
    wav = dataset_layout(source, root) == "wav"
    check_dataset_root(root, "MUSDB18-HQ" if wav else "MUSDB18")
    layout = "wav" if wav else "stem.mp4"
    train = scan_subset(root, "train", layout)
    test = scan_subset(root, "test", layout)
    if wav:
        _check_stem_files(root, "train", train)
        _check_stem_files(root, "test", test)
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


def track_location(layout: str, root: Path, subset: str, track: str) -> Path:
    """The track's directory (wav layout) or .stem.mp4 file."""
    folder = Path(root) / subset
    return folder / track if layout == "wav" else folder / f"{track}.stem.mp4"


def track_files(layout: str, root: Path, subset: str, track: str) -> list[Path]:
    """The files of one track: one wav per stem (mixture first) or the one .stem.mp4."""
    location = track_location(layout, root, subset, track)
    return [location / f"{stem}.wav" for stem in STEMS] if layout == "wav" else [location]
