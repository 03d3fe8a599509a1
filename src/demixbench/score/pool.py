"""Scoring many tracks at once: the process pool, the progress bar and the per-track outcome that
``demixbench score`` (:mod:`demixbench.score.batch`) and the pipeline's scoring stage
(:mod:`demixbench.score.stage`) share.

A task is a module-level function and its arguments (picklable, so that a worker process can run
it); it scores one track and writes that track's file. A task that raises fails its track only:
the message, naming the track, goes into :attr:`ScoreSummary.failed` and the others go on. Which
tracks need scoring at all (resuming) is the caller's business.

Light on purpose (logging and concurrent.futures; tqdm on use): a scoring job imports it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["ScoreSummary", "Task", "score_in_pool"]

#: One track's work: a module-level function and its positional arguments.
Task = tuple[Callable[..., Any], tuple[Any, ...]]


@dataclass
class ScoreSummary:
    """The outcome of scoring a set of tracks: tracks scored, skipped (already scored, or reused
    from an earlier attempt) and failed (track -> message)."""

    scored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        return f"scored {len(self.scored)}, skipped {len(self.skipped)} (already scored), failed {len(self.failed)}"


def _run_task(track: str, function: Callable[..., Any], args: tuple[Any, ...]) -> str | None:
    """One task, in a worker or in this process: None, or the error message naming the track."""
    try:
        function(*args)
    except Exception as error:  # noqa: BLE001 -- reported per track; the other tracks go on
        return f"track {track!r}: {type(error).__name__}: {error}"
    return None


def _share_cpus(threads: int) -> None:
    """A worker's initializer: the fast scorer's default threads in this process."""
    from demixbench.score.bss_eval import set_default_workers

    set_default_workers(threads)


def _outcome(future: Future) -> str | None:
    """A worker's result; a worker that died (killed, out of memory) fails its track."""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 -- e.g. BrokenProcessPool: reported, not raised
        return f"{type(error).__name__}: {error}"


def score_in_pool(
    tasks: Mapping[str, Task],
    jobs: int,
    summary: ScoreSummary | None = None,
    progress: bool = True,
    desc: str = "scoring",
) -> ScoreSummary:
    """Run `tasks` (track -> task), `jobs` at a time, and record each track's outcome in `summary`
    (a new one by default), with a tqdm bar (`progress`; shown on a terminal only).

    jobs: worker processes, at most one per task; 1 runs the tasks one after the other in this
    process (no pool to start: what a one-core job or a single track should cost). Workers are
    forked where the platform does (Linux), so they start with this process's imports; each
    scores with its share of the CPUs as threads.
    ``summary.scored`` comes back sorted.
    """
    summary = summary if summary is not None else ScoreSummary()
    jobs = max(1, min(jobs, len(tasks)))
    bar_options = {"total": len(tasks), "unit": "track", "desc": desc, "disable": not progress or None}
    if jobs == 1:
        _collect(((track, _run_task(track, *task)) for track, task in tasks.items()), summary, bar_options)
    else:
        from demixbench.devices import available_cpus

        # each worker scores with its share of the CPUs as threads, not all of them (the scores do
        # not depend on the thread count)
        share = max(1, available_cpus() // jobs)
        with ProcessPoolExecutor(jobs, initializer=_share_cpus, initargs=(share,)) as pool:
            futures = {pool.submit(_run_task, track, *task): track for track, task in tasks.items()}
            _collect(((futures[f], _outcome(f)) for f in as_completed(futures)), summary, bar_options)
    summary.scored.sort()
    return summary


def _collect(outcomes: Iterable[tuple[str, str | None]], summary: ScoreSummary, bar_options: dict) -> None:
    """Record (track, error or None) outcomes in `summary`, advancing a tqdm bar."""
    from tqdm import tqdm  # on use: ~0.1 s of imports a job without tracks to score does without

    with tqdm(**bar_options) as bar:
        for track, error in outcomes:
            if error is None:
                summary.scored.append(track)
            else:
                summary.failed[track] = error
                log.error("%s", error)
            bar.update(1)
