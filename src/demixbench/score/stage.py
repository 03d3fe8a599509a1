"""The pipeline's scoring stage (rule ``score_run``): every test track of one run scored in one job.

One job per run instead of one per track: a job's start (a Python process, Snakemake's script
preamble, numpy and the scorer's imports: one to a few seconds) used to cost more than scoring a
short track, and at paper scale (22 runs x 50 tracks) the per-job tax alone came close to an hour.
The job scores its tracks in a pool of ``jobs`` processes (:func:`~demixbench.score.pool.score_in_pool`),
each track exactly as before (:func:`~demixbench.score.track.score_track`), so the per-track files
are byte-identical to those of the per-track jobs.

**Resumable per track.** Snakemake deletes the declared outputs of a failed job, so each finished
track is first written to the job's work directory (``results/<experiment>/work/score_run/<method>/<run>/``),
which is not an output, under a name that carries a fingerprint of everything its scores depend
on: the size and modification time of its estimate and reference files, the scoring settings,
the targets and the contents of the scoring code (the rule's ``code`` inputs). A rerun reuses a
staged track whose fingerprint matches and scores the others. Only when every track is scored are
the files copied into the declared outputs, each atomically, so an interrupted or failed job
leaves no half-written output.

The staged files are kept after success: they are the run's score cache (a few kB to tens of kB
per track). When Snakemake reruns the job because one track's estimates changed, it deletes every
output of the run first; the cache then gives back the unchanged tracks and only the changed one
is scored again. Sizes and modification times, not content hashes: hashing a 4-minute track's
estimates and references (about 700 MB of audio) would take a good part of the time its scoring
takes, and a file rewritten by the pipeline always gets a new modification time (Snakemake decides
on modification times too). Stale entries (other fingerprints, temporaries of killed runs) are
deleted by the next run of the job; the directory holds nothing else.

Light imports: numpy and the scorer (no torch on the default CPU path, no museval unless
``scoring.backend: museval``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from demixbench import TARGETS
from demixbench.devices import available_cpus
from demixbench.fileio import atomic_write_bytes
from demixbench.score.pool import ScoreSummary, score_in_pool
from demixbench.score.track import ScoringConfig, score_track, torch_device

log = logging.getLogger(__name__)

__all__ = ["RunScoring", "ScoreRunError", "fingerprint", "score_run", "staged_name"]

#: Suffix of the score files (the declared outputs and the staged copies).
SCORE_SUFFIX = ".json.gz"
#: Hex digits of the fingerprint in a staged file's name (80 bits: no accidental collision).
FINGERPRINT_DIGITS = 20
#: Bumped when the fingerprint's contents change, so that entries of the old kind are not reused.
_FINGERPRINT_VERSION = 1


class ScoreRunError(RuntimeError):
    """A run that could not be scored completely; ``problems`` lists every track's problem."""

    def __init__(self, message: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join([message, *self.problems]))


@dataclass(frozen=True)
class RunScoring:
    """One run's scoring job: its `tracks`, scored from ``estimates_dir/<track>/<target>.wav``
    against the decoded cache ``references_dir/<track>/<target>.npy`` into
    ``out_dir/<track>.json.gz``, staged in `work_dir`. `code`: the files of the scoring code, part
    of each track's fingerprint. `jobs`: worker processes (None: the available CPUs)."""

    tracks: tuple[str, ...]
    references_dir: Path
    estimates_dir: Path
    out_dir: Path
    work_dir: Path
    targets: tuple[str, ...] = TARGETS
    config: ScoringConfig = ScoringConfig()
    code: tuple[Path, ...] = ()
    jobs: int | None = None

    def inputs(self, track: str) -> list[Path]:
        """The files one track's scores are computed from: its references, then its estimates."""
        return [self.references_dir / track / f"{target}.npy" for target in self.targets] + [
            self.estimates_dir / track / f"{target}.wav" for target in self.targets
        ]

    def output(self, track: str) -> Path:
        return self.out_dir / f"{track}{SCORE_SUFFIX}"


def code_digest(files: Sequence[Path]) -> str:
    """sha256 of the code files' names and contents (small files: hashing them costs nothing). By
    file name, not path, so that a moved checkout keeps its fingerprints."""
    digest = hashlib.sha256()
    for path in sorted(Path(file) for file in files):
        content = path.read_bytes()
        digest.update(f"{path.name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def fingerprint(job: RunScoring, track: str, code: str) -> str:
    """What one track's scores depend on, hashed: size and modification time (ns) of each input
    file, the scoring settings, the targets, and `code` (code_digest of the scoring code).

    Raises FileNotFoundError naming the input that is missing."""
    files = []
    for path in job.inputs(track):
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such file (an input of track {track!r})") from None
        files.append([path.name, stat.st_size, stat.st_mtime_ns])
    payload = {
        "version": _FINGERPRINT_VERSION,
        "track": track,
        "files": files,
        "targets": list(job.targets),
        "config": dataclasses.asdict(job.config),
        "code": code,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:FINGERPRINT_DIGITS]


def staged_name(track: str, digest: str) -> str:
    """The staged file of a track whose fingerprint is `digest`: ``<track>.<digest>.json.gz``."""
    return f"{track}.{digest}{SCORE_SUFFIX}"


def _score_staged(job: RunScoring, track: str, staged: Path) -> None:
    """One track, in a worker: score_track's file, written (atomically) to the staging directory."""
    score_track(job.references_dir / track, job.estimates_dir / track, staged, job.targets, job.config)


def _remove_stale(work_dir: Path, track: str, current: str) -> None:
    """Delete the track's other staged files (older fingerprints) and the temporaries of killed
    writes. Only this track's entries: in the per-track fallback of the rule (test tracks known
    only after the download), jobs of other tracks of the run stage into the same directory."""
    entry = re.compile(rf"\.?{re.escape(track)}\.[0-9a-f]{{{FINGERPRINT_DIGITS}}}{re.escape(SCORE_SUFFIX)}(\..*\.tmp)?")
    for path in work_dir.iterdir():
        if path.name != current and entry.fullmatch(path.name) and not path.is_dir():
            path.unlink(missing_ok=True)


def _workers(job: RunScoring, todo: int) -> int:
    """Worker processes: `jobs` (default: the CPUs), one when the scorer runs on a GPU (one process
    holds the device; the GPU does the work)."""
    if job.config.device != "cpu" and torch_device(job.config.device) is not None:
        return 1
    return max(1, min(job.jobs or available_cpus(), todo))


def score_run(job: RunScoring, progress: bool = True) -> ScoreSummary:
    """Score every track of `job` into its declared outputs; see the module docstring.

    Tracks staged with a matching fingerprint are reused (``skipped`` in the summary), the others
    scored in a pool. Raises ScoreRunError naming each track that failed (the others stay staged
    for the rerun, and no output is written), or naming each missing input before anything is
    scored. Returns the summary when every output is in place.
    """
    tracks = tuple(job.tracks)
    if not tracks:
        raise ValueError("score_run: no tracks to score")
    duplicated = sorted({track for track in tracks if tracks.count(track) > 1})
    if duplicated:
        raise ValueError(f"score_run: tracks listed twice: {', '.join(map(repr, duplicated))}")
    code = code_digest(job.code)
    staged, problems = {}, []
    for track in tracks:
        try:
            staged[track] = job.work_dir / staged_name(track, fingerprint(job, track, code))
        except FileNotFoundError as error:
            problems.append(str(error))
    if problems:
        raise ScoreRunError(
            f"{job.estimates_dir}: {len(problems)} input file(s) missing; run the jobs that write them "
            "(separation, decoding) first",
            problems,
        )
    job.work_dir.mkdir(parents=True, exist_ok=True)
    for track, path in staged.items():
        _remove_stale(job.work_dir, track, path.name)

    summary = ScoreSummary(skipped=[track for track in tracks if staged[track].is_file()])
    todo = [track for track in tracks if track not in set(summary.skipped)]
    if summary.skipped:
        log.info(
            "%d of %d tracks reused from %s (inputs, settings and code unchanged)",
            len(summary.skipped),
            len(tracks),
            job.work_dir,
        )
    workers = _workers(job, len(todo))
    if todo:
        log.info("scoring %d tracks with %d worker(s)", len(todo), workers)
    tasks = {track: (_score_staged, (job, track, staged[track])) for track in todo}
    score_in_pool(tasks, workers, summary, progress)
    if summary.failed:
        raise ScoreRunError(
            f"{len(summary.failed)} of {len(tracks)} tracks failed; the {len(tracks) - len(summary.failed)} others "
            f"are staged in {job.work_dir} and are not scored again when the job reruns",
            [summary.failed[track] for track in tracks if track in summary.failed],
        )
    # Every track is scored: only now the outputs, each written atomically (a copy: the staged
    # file stays as the cache of the next rerun).
    for track in tracks:
        atomic_write_bytes(job.output(track), staged[track].read_bytes())  # a new file: mtime now
    log.info("%s: %s", job.out_dir, summary.line())
    return summary
