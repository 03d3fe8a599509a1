"""Score a whole directory of estimates: the library behind ``demixbench score``.

References are found in one of three layouts, detected from the files:

* ``musdb18hq``: a MUSDB18-HQ root, ``ROOT/<subset>/<track>/{mixture,drums,bass,other,vocals}.wav``;
* ``musdb18``: a MUSDB18 root, ``ROOT/<subset>/<track>.stem.mp4``;
* ``decoded``: the pipeline's decoded cache, ``ROOT/<track>/<stem>.npy`` (float32, (channels,
  samples)), its tracks of ``subset`` (from each track's ``meta.json``).

Estimates are ``DIR/<track>/<target>.wav`` (the pipeline's layout) or ``DIR/<subset>/<track>/<target>.wav``
(museval's). Each track's scores go to ``OUT/<track>.json.gz`` (:mod:`demixbench.score.scorefile`),
written atomically, so a present file is complete: a rerun skips the tracks already scored.

The files are byte-identical to the pipeline's (rule ``score_run``): decoded references are scored
by :func:`~demixbench.score.track.score_track` itself, as the pipeline scores each track; wav and
stem.mp4 references are read by the project's decoder (:func:`~demixbench.data.decode.read_track`)
and converted exactly as :func:`~demixbench.data.decode.decode_track` writes the cache (16-bit
PCM / 32768 as float32, mono duplicated, resampled to the scoring rate where it differs), then
scored by the same
:func:`~demixbench.score.track.score_arrays` and :func:`~demixbench.score.scorefile.write_scores`.

``metrics="sdr-only"`` uses the fast scorer's SDR-only path (no distortion filters, a single pass;
SDR to ~1e-13 dB of the full computation): each frame's ``"metrics"`` then holds ``"SDR"`` only, the
file keeps the ``"nsdr"``, and the table code reads SDR (and nSDR) from it (``--metric SDR``; ISR,
SIR and SAR are absent).

Every problem with the inputs that can be seen without decoding (a track without estimates, a
missing target file, a wrong sample rate, channel count or length) is collected first and raised
together as :class:`ScoreInputError`, before any track is scored.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from demixbench import SAMPLE_RATE, TARGETS
from demixbench.data.cache import to_float32
from demixbench.data.decode import checked_stereo, read_track, resample
from demixbench.data.layout import STEMS, DatasetError, track_location
from demixbench.data.probe import ProbeError, probe_streams, probe_wav
from demixbench.devices import available_cpus
from demixbench.fileio import remove_stale_temporaries
from demixbench.score.pool import ScoreSummary, score_in_pool
from demixbench.score.scorefile import write_scores
from demixbench.score.track import ScoringConfig, score_arrays, score_track
from demixbench.separate.estimates import check_estimate_files, extra_estimates, read_estimates, samples_message
from demixbench.separate.external import estimates_root

log = logging.getLogger(__name__)

__all__ = [
    "METRIC_SETS",
    "REFERENCE_LAYOUTS",
    "References",
    "ScoreInputError",
    "ScoreSummary",
    "check_inputs",
    "detect_references",
    "load_references",
    "score_directory",
    "score_one",
]

#: Reference layouts: MUSDB18-HQ (wav), MUSDB18 (.stem.mp4), the pipeline's decoded cache.
REFERENCE_LAYOUTS: tuple[str, ...] = ("musdb18hq", "musdb18", "decoded")
#: What is scored: the four BSS Eval metrics, or SDR alone (the fast backend's SDR-only path).
METRIC_SETS: tuple[str, ...] = ("all", "sdr-only")
#: The scoring settings of a call that gives none (ScoringConfig's defaults; frozen, so shareable).
DEFAULT_CONFIG = ScoringConfig()
#: Suffix of the score files written.
SCORE_SUFFIX = ".json.gz"

_DESCRIPTION = {
    "musdb18hq": "MUSDB18-HQ (wav)",
    "musdb18": "MUSDB18 (.stem.mp4)",
    "decoded": "the pipeline's decoded cache (.npy)",
}


class ScoreInputError(ValueError):
    """Inputs that cannot be scored; ``problems`` lists every one found, each naming its file."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class References:
    """Where the reference stems are: `layout` (one of REFERENCE_LAYOUTS) under `root`, the tracks
    of `subset`, scored at `sample_rate` Hz."""

    layout: str
    root: Path
    subset: str
    tracks: tuple[str, ...]
    sample_rate: int

    def location(self, track: str) -> Path:
        """The track's directory (musdb18hq, decoded) or .stem.mp4 file (musdb18)."""
        if self.layout == "decoded":
            return self.root / track
        return track_location("wav" if self.layout == "musdb18hq" else "stem.mp4", self.root, self.subset, track)

    def describe(self) -> str:
        where = self.root if self.layout == "decoded" else self.root / self.subset
        return f"{_DESCRIPTION[self.layout]} at {where}, {len(self.tracks)} {self.subset} tracks"


# --------------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------------


def _decoded_tracks(root: Path, subset: str, targets: Sequence[str]) -> tuple[list[str], set[int]]:
    """(tracks of `subset` in a decoded cache, their sample rates from meta.json). A track
    directory counts when it holds every target's .npy; without meta.json its subset is unknown
    and it is kept."""
    tracks, rates = [], set()
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not all((folder / f"{target}.npy").is_file() for target in targets):
            continue
        meta_path = folder / "meta.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("subset", subset) != subset:
                continue
            rates.add(int(meta.get("sample_rate", SAMPLE_RATE)))
        tracks.append(folder.name)
    return tracks, rates


def detect_references(
    root: Path, subset: str = "test", targets: Sequence[str] = TARGETS, sample_rate: int | None = None
) -> References:
    """Detect the layout of a references root (see REFERENCE_LAYOUTS) and list its tracks of `subset`.

    sample_rate: the scoring rate; None takes the decoded cache's rate (meta.json) or, for
    MUSDB18(-HQ) files, SAMPLE_RATE. Raises ScoreInputError when `root` is none of the layouts.
    """
    root = Path(root)
    if not root.is_dir():
        raise ScoreInputError(
            [
                f"references {root}: not a directory (expected a MUSDB18-HQ or MUSDB18 root, "
                "or the pipeline's decoded cache)"
            ]
        )
    folder = root / subset
    if folder.is_dir():
        wav = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        mp4 = sorted(p.name[: -len(".stem.mp4")] for p in folder.glob("*.stem.mp4") if p.is_file())
        if wav and not mp4:
            return References("musdb18hq", root, subset, tuple(wav), sample_rate or SAMPLE_RATE)
        if mp4 and not wav:
            return References("musdb18", root, subset, tuple(mp4), sample_rate or SAMPLE_RATE)
        if wav and mp4:
            raise ScoreInputError(
                [
                    f"references {folder}: holds both track folders (MUSDB18-HQ) and .stem.mp4 "
                    "files (MUSDB18); keep one layout"
                ]
            )
    tracks, rates = _decoded_tracks(root, subset, targets)
    if tracks:
        if len(rates) > 1:
            raise ScoreInputError([f"references {root}: decoded tracks at different sample rates {sorted(rates)}"])
        cache_rate = rates.pop() if rates else SAMPLE_RATE
        if sample_rate is not None and sample_rate != cache_rate:
            raise ScoreInputError(
                [f"references {root}: the decoded cache is at {cache_rate} Hz, not the requested {sample_rate} Hz"]
            )
        return References("decoded", root, subset, tuple(tracks), cache_rate)
    raise ScoreInputError(
        [
            f"references {root}: none of the known layouts: no MUSDB18-HQ track folders "
            f"({subset}/<track>/{{{','.join(STEMS)}}}.wav), no MUSDB18 files ({subset}/<track>.stem.mp4), "
            f"no decoded cache tracks of the {subset} subset (<track>/<target>.npy); if {root} is the "
            f"'{subset}' folder itself, pass its parent"
        ]
    )


def _reference_shape(references: References, track: str, targets: Sequence[str]) -> tuple[int, int | None]:
    """(channels, samples) the track's references will have after decoding, read from the headers;
    samples None where only decoding tells (stem.mp4 streams are trimmed to the shortest).
    Raises DatasetError naming the file for a reference that cannot be used."""
    location = references.location(track)
    if references.layout == "decoded":
        shapes = {target: np.load(location / f"{target}.npy", mmap_mode="r").shape for target in targets}
        if len(set(shapes.values())) != 1:
            raise DatasetError(f"{location}: decoded stems of different shapes {shapes}")
        channels, samples = next(iter(shapes.values()))
        return channels, samples
    if references.layout == "musdb18hq":
        paths = [location / f"{stem}.wav" for stem in STEMS]
        missing = [path.name for path in paths if not path.is_file()]
        if missing:
            raise DatasetError(f"{location}: missing reference file(s) {', '.join(missing)}")
        try:
            infos = [probe_wav(path) for path in paths]
        except ProbeError as error:
            raise DatasetError(str(error)) from None
    else:
        try:
            infos = probe_streams(location)[: len(STEMS)]
        except ProbeError as error:
            raise DatasetError(str(error)) from None
    channels = max(info.channels for info in infos)
    if channels > 2:
        raise DatasetError(f"{location}: {channels} channels; MUSDB18 stems are stereo (mono is duplicated)")
    if references.layout == "musdb18":
        return 2, None
    native, samples = infos[0].sample_rate, infos[0].samples
    if native != references.sample_rate:  # decode_track resamples with torchaudio: ceil(n * new / orig)
        samples = math.ceil(samples * references.sample_rate / native)
    return 2, samples


def load_references(references: References, track: str, targets: Sequence[str] = TARGETS) -> np.ndarray:
    """The track's reference stems as (targets, channels, samples) float32, C-contiguous: for a
    decoded cache its arrays, for MUSDB18(-HQ) files the arrays decode_track would write to the
    cache (the same values, bit for bit), at references.sample_rate."""
    if references.layout == "decoded":
        track_dir = references.location(track)
        return np.stack([np.load(track_dir / f"{target}.npy") for target in targets])
    layout = "wav" if references.layout == "musdb18hq" else "stem.mp4"
    arrays, native, origin = read_track(layout, references.root, references.subset, track)
    arrays = {target: arrays[target] for target in targets}  # (samples, channels), int16 PCM or float32
    checked_stereo(arrays, origin)  # as decode_track does it
    out = []
    for target in targets:
        audio = to_float32(arrays[target])
        if native != references.sample_rate:
            audio = resample(audio, native, references.sample_rate)
        out.append(np.ascontiguousarray(audio.T))
    return np.stack(out)


# --------------------------------------------------------------------------------------------------
# Estimates and the checks before scoring
# --------------------------------------------------------------------------------------------------


def check_inputs(
    references: References, estimates_dir: Path, tracks: Sequence[str], targets: Sequence[str] = TARGETS
) -> list[str]:
    """Every problem found, without decoding, with the estimates of `tracks` in estimates_dir
    (``<track>/<target>.wav``) and their references: a track without estimates, a missing or
    unreadable target file, a sample rate other than references.sample_rate, a channel count or
    length other than the reference's. Each message names the track and the file."""
    problems = []
    for track in tracks:
        folder = Path(estimates_dir) / track
        if not folder.is_dir():
            problems.append(f"track {track!r}: no estimates (expected a folder {folder} with one wav per target)")
            continue
        try:
            channels, samples = _reference_shape(references, track, targets)
        except (DatasetError, OSError, ValueError) as error:
            problems.append(f"track {track!r}: reference: {error}")
            continue
        problems += [
            f"track {track!r}: {problem}"
            for problem in check_estimate_files(folder, targets, references.sample_rate, channels, samples)
        ]
    return problems


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------


def score_one(
    references: References,
    track: str,
    estimates_dir: Path,
    out: Path,
    targets: Sequence[str] = TARGETS,
    config: ScoringConfig = DEFAULT_CONFIG,
    metrics: str = "all",
) -> None:
    """Score one track's estimates (estimates_dir/<target>.wav) and write `out`.

    Decoded references with all metrics go through score_track, exactly the pipeline's call.
    Raises DatasetError or ValueError naming the file when the track cannot be scored.
    """
    if metrics == "all" and references.layout == "decoded":
        score_track(references.location(track), estimates_dir, out, targets, config)
        return
    reference = load_references(references, track, targets)  # (targets, channels, samples)
    estimates = read_estimates(estimates_dir, targets)
    if estimates.shape != reference.shape:  # a stem.mp4 length is known only once decoded
        path = Path(estimates_dir) / f"{targets[0]}.wav"
        if estimates.shape[-1] != reference.shape[-1]:
            raise ValueError(samples_message(path, estimates.shape[-1], reference.shape[-1]))
        raise ValueError(f"{estimates_dir}: estimates {estimates.shape} and references {reference.shape} differ")
    if metrics == "all":
        scores = score_arrays(reference, estimates, targets, config)
    else:
        scores = score_arrays(reference, estimates, targets, config, sdr_only=True)
    write_scores(out, scores)


def score_directory(
    references_root: Path,
    estimates: Path,
    out_dir: Path,
    subset: str = "test",
    targets: Sequence[str] = TARGETS,
    config: ScoringConfig = DEFAULT_CONFIG,
    metrics: str = "all",
    jobs: int | None = None,
    tracks: Sequence[str] | None = None,
    sample_rate: int | None = None,
    progress: bool = True,
) -> ScoreSummary:
    """Score every track's estimates against the references; one ``out_dir/<track>.json.gz`` each.

    references_root: a MUSDB18-HQ or MUSDB18 root or the pipeline's decoded cache (detected, see
    detect_references). estimates: ``<track>/<target>.wav`` or ``<subset>/<track>/<target>.wav``
    under it. tracks: a selection (default: every track of `subset`). jobs: worker processes
    (default: the available CPUs; 1 scores in this process). Tracks whose output exists are skipped.
    `config.sample_rate` is replaced by the references' scoring rate (sample_rate, or see
    detect_references).

    Raises ScoreInputError listing every problem found before scoring (nothing is scored then).
    Tracks that fail while scoring are listed in the summary's ``failed``; the others are scored.
    """
    if metrics not in METRIC_SETS:
        raise ValueError(f"unknown metrics {metrics!r}; allowed: {', '.join(METRIC_SETS)}")
    if metrics == "sdr-only" and config.backend != "fast":
        raise ValueError("metrics 'sdr-only' is the fast backend's SDR-only path; use backend 'fast'")
    targets = tuple(targets)
    unknown = [target for target in targets if target not in TARGETS]
    if unknown:
        raise ValueError(
            f"targets {', '.join(map(repr, unknown))} are not scored: the targets are {', '.join(TARGETS)}, scored "
            "jointly (an 'accompaniment' source is the sum of the others and would change their problem)"
        )
    references = detect_references(references_root, subset, targets, sample_rate)
    log.info("references: %s", references.describe())
    config = dataclasses.replace(config, sample_rate=references.sample_rate)
    problems = []
    selected = list(references.tracks)
    if tracks is not None:
        unknown = [track for track in tracks if track not in references.tracks]
        problems += [f"track {track!r}: not among the references' {subset} tracks" for track in unknown]
        selected = [track for track in references.tracks if track in set(tracks)]
    if references.layout == "musdb18" and shutil.which("ffmpeg") is None:
        problems.append(f"references {references.root}: ffmpeg not found on PATH; it decodes .stem.mp4 files")
    if not Path(estimates).is_dir():
        problems.append(f"estimates {estimates}: not a directory (expected <track>/<target>.wav under it)")
        raise ScoreInputError(problems)
    est_root = estimates_root(estimates, subset, selected)
    if est_root != Path(estimates):
        log.info("estimates: museval's layout, %s", est_root)
    out_dir = Path(out_dir)
    summary = ScoreSummary()
    todo = []
    for track in selected:
        if (out_dir / f"{track}{SCORE_SUFFIX}").is_file():
            summary.skipped.append(track)
        else:
            todo.append(track)
    problems += check_inputs(references, est_root, todo, targets)
    if problems:
        raise ScoreInputError(problems)
    extra = sorted({name for track in todo for name in extra_estimates(est_root / track, TARGETS)})
    if extra:
        log.warning(
            "%s: %s in the track folders not scored: only %s are scored, jointly",
            est_root,
            ", ".join(extra),
            ", ".join(targets),
        )
    if summary.skipped:
        log.info("%d of %d tracks already scored in %s: skipped", len(summary.skipped), len(selected), out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for track in todo:  # left by a killed run (atomic writes); nothing else writes them now
        remove_stale_temporaries(out_dir / f"{track}{SCORE_SUFFIX}")

    settings = (targets, config, metrics)
    tasks = {
        track: (score_one, (references, track, est_root / track, out_dir / f"{track}{SCORE_SUFFIX}", *settings))
        for track in todo
    }
    score_in_pool(tasks, jobs or available_cpus(), summary, progress)
    log.debug("%s", summary.line())  # the caller reports it (demixbench score prints it)
    return summary
