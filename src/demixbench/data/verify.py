"""Verify an extracted dataset and fingerprint it.

verify_dataset() checks, reading headers only (no audio is decoded):

* the layout: ROOT/{train,test}, one folder of stems (wav) or one .stem.mp4 per track;
* the track count per subset (MUSDB18, MUSDB18-HQ and the 7-s previews: 100 train, 50 test;
  synthetic: what its spec says -- the counts are a parameter);
* the validation tracks (musdb's official 14 by default) are train tracks and not test tracks;
* every track has all stems (mixture, drums, bass, other, vocals), its files are complete
  (container sizes match the file sizes), and its stems have one sample rate and equal lengths.

It returns a DatasetReport with a fingerprint of the dataset, which the workflow stores as JSON
and copies into the provenance of every result, so a score can be traced to the exact bytes it
was computed from.

Fingerprint:
    listing_sha256 = sha256 over the sorted lines "<relative path>\\t<size>\\n"
    content_sha256 = sha256 over the sorted lines "<relative path>\\t<file digest>\\n"
    fingerprint    = sha256 over "demixbench-dataset-v1", the content-hash mode, and both hashes
Only the stem files are fingerprinted (other files are reported as extras and logged), relative
paths use "/" and Unicode NFC, so the fingerprint does not depend on where or on which OS the
dataset lives.

File digests (`content_hash`):
    "full"    sha256 of every byte. Cost: one sequential read of the dataset (22.7 GB for
              MUSDB18-HQ, 4.4 GB for MUSDB18, ~150 MB for the 7-s previews) -- minutes at disk
              speed, once per ingest. Detects any change. The default.
    "sampled" sha256 of (size, first MiB, last MiB). Cost: at most 2 MiB per file (~1.5 GB for
              MUSDB18-HQ's 750 files). Detects a different, truncated or re-encoded file, not a
              flipped byte in the middle of a large one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from demixbench.data.layout import (
    SOURCES,
    STEMS,
    SUBSETS,
    DatasetError,
    check_dataset_root,
    dataset_layout,
    musdb_validation_tracks,
    scan_subset,
    track_files,
)
from demixbench.data.probe import ProbeError, StreamInfo, probe_streams, probe_wav
from demixbench.fileio import atomic_write_text

log = logging.getLogger(__name__)

#: Tracks per subset of the official releases (sigsep.github.io/datasets/musdb.html: "train" 100
#: songs, "test" 50 songs); the 7-s previews cut one excerpt from every track.
OFFICIAL_COUNTS: dict[str, int] = {"train": 100, "test": 50}
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "musdb18": OFFICIAL_COUNTS,
    "musdb18hq": OFFICIAL_COUNTS,
    "musdb18-7s": OFFICIAL_COUNTS,
}
CONTENT_HASHES: tuple[str, ...] = ("full", "sampled")
FINGERPRINT_VERSION = "demixbench-dataset-v1"
_MIB = 1 << 20


@dataclass(frozen=True)
class VerifySpec:
    """What verify_dataset expects.

    Attributes:
        source: one of data.SOURCES (decides the layout; synthetic is detected from the files).
        counts: tracks per subset, e.g. {"train": 100, "test": 50}; None = EXPECTED_COUNTS of the
            source (no count check for synthetic unless given).
        validation: train tracks held out for validation; None = musdb's official 14-track list
            for the official sources and none for synthetic.
        content_hash: "full" or "sampled" file digests (see the module docstring).
        lossy_length_tolerance: largest length difference, in samples, between the streams of a
            .stem.mp4 (one AAC frame); wav stems must match exactly.
    """

    source: str
    counts: Mapping[str, int] | None = None
    validation: Sequence[str] | None = None
    content_hash: str = "full"
    lossy_length_tolerance: int = 1024

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown data source {self.source!r}; allowed: {', '.join(SOURCES)}")
        if self.content_hash not in CONTENT_HASHES:
            raise ValueError(f"content_hash must be one of {CONTENT_HASHES}, got {self.content_hash!r}")

    @classmethod
    def for_synthetic(cls, spec, validation: Sequence[str] = (), content_hash: str = "full") -> VerifySpec:
        """Expect what the synthetic.SyntheticSpec `spec` generates (its track counts)."""
        return cls(
            source="synthetic",
            counts={"train": spec.n_train, "test": spec.n_test},
            validation=tuple(validation),
            content_hash=content_hash,
        )

    def expected_counts(self) -> dict[str, int] | None:
        counts = self.counts if self.counts is not None else EXPECTED_COUNTS.get(self.source)
        return None if counts is None else {subset: int(n) for subset, n in counts.items()}

    def expected_validation(self) -> tuple[str, ...]:
        if self.validation is not None:
            return tuple(self.validation)
        return () if self.source == "synthetic" else musdb_validation_tracks()


@dataclass(frozen=True)
class DatasetReport:
    """Result of verify_dataset: what was found and the dataset's fingerprint.

    `files` maps each fingerprinted file's relative path to {"size", "digest"}; `tracks` maps
    each track ("subset/name") to {"sample_rate", "samples", "channels"} as declared by the
    headers; `archive` is filled in by acquire.ingest with the archive's size and checksums.
    """

    source: str
    layout: str
    root: str
    subsets: dict[str, list[str]]
    validation: list[str]
    sample_rates: list[int]
    n_files: int
    total_bytes: int
    content_hash: str
    listing_sha256: str
    content_sha256: str
    fingerprint: str
    tracks: dict[str, dict] = field(default_factory=dict)
    files: dict[str, dict] = field(default_factory=dict)
    extras: list[str] = field(default_factory=list)
    archive: dict | None = None

    def summary(self) -> dict:
        """The few fields to copy into the provenance of a result."""
        return {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "content_hash": self.content_hash,
            "n_files": self.n_files,
            "total_bytes": self.total_bytes,
            "counts": {subset: len(names) for subset, names in self.subsets.items()},
            "archive_sha256": (self.archive or {}).get("sha256"),
        }

    def to_dict(self) -> dict:
        return asdict(self)

    def write(self, path: Path) -> Path:
        """Write the report as JSON (atomically); returns `path`."""
        return atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    def with_root(self, root: Path) -> DatasetReport:
        return replace(self, root=str(root))

    def with_archive(self, archive: dict | None) -> DatasetReport:
        return replace(self, archive=archive)


def read_report(path: Path) -> dict:
    """A report written by DatasetReport.write, as a dict (e.g. to take its "fingerprint")."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def dataset_summary(dataset_report: Path) -> dict:
    """The dataset fingerprint and what it covers (source, counts, files, bytes), from a report
    written by DatasetReport.write; recorded in every checkpoint's and every run's provenance."""
    return DatasetReport(**read_report(dataset_report)).summary()


def verify_dataset(root: Path, spec: VerifySpec, progress: bool = True) -> DatasetReport:
    """Check the dataset at `root` against `spec` and fingerprint it.

    Raises:
        DatasetError naming the directory, track, stem or file at fault.
    """
    root = Path(root)
    check_dataset_root(root)
    layout = dataset_layout(spec.source, root)
    subsets = {subset: scan_subset(root, subset, layout) for subset in SUBSETS}

    counts = spec.expected_counts()
    if counts is not None:
        for subset, expected in counts.items():
            found = len(subsets.get(subset, []))
            if found != expected:
                raise DatasetError(
                    f"{root / subset}: {found} tracks, expected {expected} for source {spec.source!r}; the copy is "
                    f"incomplete or not {spec.source} "
                    "(re-extract it from the original archive, or pass the expected counts)"
                )
    both = set(subsets["train"]) & set(subsets["test"])
    if both:
        raise DatasetError(
            f"{root}: tracks in both train/ and test/: {sorted(both)}; test tracks must never reach training"
        )
    validation = spec.expected_validation()
    for name in validation:
        if name in subsets["test"]:
            raise DatasetError(
                f"{root / 'test' / name}: validation track {name!r} is a test track; test tracks never reach training"
            )
        if name not in subsets["train"]:
            raise DatasetError(f"{root / 'train'}: validation track {name!r} is missing (it must be a train track)")

    tracks: dict[str, dict] = {}
    files: list[Path] = []
    jobs = [(subset, name) for subset in SUBSETS for name in subsets[subset]]
    for subset, name in tqdm(jobs, desc="verify tracks", unit="track", disable=not progress):
        info, track_files = _check_track(root, subset, name, layout, spec.lossy_length_tolerance)
        tracks[f"{subset}/{name}"] = info
        files.extend(track_files)

    known = set(files)
    extras = sorted(_relative(p, root) for subset in SUBSETS for p in _all_files(root / subset) if p not in known)
    if extras:
        log.warning(
            "%s: %d files that are no stems are ignored (and not fingerprinted), e.g. %s", root, len(extras), extras[0]
        )

    digests = _digest_files(root, files, spec.content_hash, progress)
    listing = "".join(f"{rel}\t{size}\n" for rel, (size, _) in sorted(digests.items()))
    content = "".join(f"{rel}\t{digest}\n" for rel, (_, digest) in sorted(digests.items()))
    listing_sha256 = hashlib.sha256(listing.encode("utf-8")).hexdigest()
    content_sha256 = hashlib.sha256(content.encode("utf-8")).hexdigest()
    fingerprint = hashlib.sha256(
        "\n".join([FINGERPRINT_VERSION, spec.content_hash, listing_sha256, content_sha256]).encode("utf-8")
    ).hexdigest()
    report = DatasetReport(
        source=spec.source,
        layout=layout,
        root=str(root),
        subsets={subset: list(names) for subset, names in subsets.items()},
        validation=list(validation),
        sample_rates=sorted({info["sample_rate"] for info in tracks.values()}),
        n_files=len(digests),
        total_bytes=sum(size for size, _ in digests.values()),
        content_hash=spec.content_hash,
        listing_sha256=listing_sha256,
        content_sha256=content_sha256,
        fingerprint=fingerprint,
        tracks=tracks,
        files={rel: {"size": size, "digest": digest} for rel, (size, digest) in sorted(digests.items())},
        extras=extras,
    )
    log.info(
        "verified %s at %s: %s, %d files, %.1f MB, fingerprint %s",
        spec.source,
        root,
        ", ".join(f"{len(v)} {k}" for k, v in subsets.items()),
        report.n_files,
        report.total_bytes / 1e6,
        fingerprint,
    )
    return report


def _check_track(root: Path, subset: str, name: str, layout: str, lossy_tolerance: int) -> tuple[dict, list[Path]]:
    """Header checks of one track; returns its info and its files."""
    paths = track_files(layout, root, subset, name)
    if layout == "wav":
        infos: dict[str, StreamInfo] = {}
        for stem, path in zip(STEMS, paths):
            if not path.is_file():
                raise DatasetError(
                    f"{path}: missing stem file (track {name!r}, stem {stem!r}); every track needs "
                    f"{', '.join(s + '.wav' for s in STEMS)}"
                )
            try:
                infos[stem] = probe_wav(path)
            except ProbeError as err:
                raise DatasetError(f"{err} (track {name!r}, stem {stem!r})") from None
        where = {stem: str(path) for stem, path in zip(STEMS, paths)}
        tolerance = 0  # MUSDB18-HQ stems have exactly equal lengths
    else:
        (path,) = paths
        try:
            streams = probe_streams(path)
        except ProbeError as err:
            raise DatasetError(f"{err} (track {name!r})") from None
        if len(streams) < len(STEMS):
            raise DatasetError(
                f"{path}: {len(streams)} audio streams, expected {len(STEMS)} ({', '.join(STEMS)}); "
                f"missing stem {STEMS[len(streams)]!r} (track {name!r})"
            )
        infos = dict(zip(STEMS, streams))
        where = {stem: f"{path} (stream {k}, {stem})" for k, stem in enumerate(STEMS)}
        tolerance = lossy_tolerance
    mixture = infos["mixture"]
    for stem, info in infos.items():
        if info.sample_rate != mixture.sample_rate:
            raise DatasetError(
                f"{where[stem]}: sample rate {info.sample_rate} Hz, but the mixture has {mixture.sample_rate} Hz"
            )
        if abs(info.samples - mixture.samples) > tolerance:
            raise DatasetError(
                f"{where[stem]}: {info.samples} samples, but the mixture has {mixture.samples}; "
                "stems of a track must have "
                f"equal lengths{'' if tolerance == 0 else f' (within {tolerance} samples)'} "
                "-- the file is truncated or from another track"
            )
        if info.channels not in (1, 2):
            raise DatasetError(f"{where[stem]}: {info.channels} channels; MUSDB18 stems are stereo")
    info = {"sample_rate": mixture.sample_rate, "samples": mixture.samples, "channels": mixture.channels}
    return info, paths


def _all_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def _relative(path: Path, root: Path) -> str:
    return unicodedata.normalize("NFC", path.relative_to(root).as_posix())


def _digest_files(root: Path, files: list[Path], mode: str, progress: bool) -> dict[str, tuple[int, str]]:
    sizes = {path: path.stat().st_size for path in files}
    total = sum(sizes.values()) if mode == "full" else sum(min(size, 2 * _MIB) for size in sizes.values())
    digests = {}
    with tqdm(
        total=total, desc=f"fingerprint ({mode})", unit="B", unit_scale=True, unit_divisor=1024, disable=not progress
    ) as bar:
        for path in files:
            digest = hashlib.sha256()
            size = sizes[path]
            with open(path, "rb") as f:
                if mode == "full":
                    for block in iter(lambda: f.read(4 * _MIB), b""):
                        digest.update(block)
                        bar.update(len(block))
                else:
                    digest.update(f"{size}\n".encode())
                    head = f.read(_MIB)
                    digest.update(head)
                    if size > 2 * _MIB:
                        f.seek(size - _MIB)
                    tail = f.read(_MIB) if size > _MIB else b""
                    digest.update(tail)
                    bar.update(len(head) + len(tail))
            digests[_relative(path, root)] = (size, digest.hexdigest())
    return digests
