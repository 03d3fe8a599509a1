"""Reading runs: one directory of score files (one seed of a method) -> per-track medians over
frames of one metric, the per-track nSDR where the files carry it, and the frame durations and hops
seen.

NaN frames (silent reference frames) are skipped by the median over frames, the museval / SiSEC
2018 convention; the score file format is :mod:`demixbench.score.scorefile`.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from demixbench import TARGETS
from demixbench.score.scorefile import find_score_files, parse_score_file

log = logging.getLogger(__name__)

__all__ = ["Run", "read_run", "seed_labels", "track_frame_medians"]


def _nanmedian(values: np.ndarray) -> float:
    """Median skipping NaN; NaN (without numpy's all-NaN warning) when nothing is finite."""
    finite = values[~np.isnan(values)]
    return float(np.median(finite)) if finite.size else math.nan


@dataclass(frozen=True)
class Run:
    """One score directory read: per-track medians over frames, per-track nSDR (None when the
    files do not all carry it), the frame durations seen, and the hops between consecutive frames'
    start times (of the directory's first file: the hop is a setting of the run's scoring; empty
    when that file records no two timed frames)."""

    medians: pd.DataFrame
    nsdr: pd.DataFrame | None
    frame_durations: frozenset[float]
    frame_hops: frozenset[float] = frozenset()


def _frame_hops(path: Path) -> frozenset[float]:
    """The hops (s, rounded to the microsecond) between consecutive frames' ``"time"`` in one score
    file already validated by :func:`~demixbench.score.scorefile.parse_score_file`, every target."""
    if path.name.endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            document = json.load(handle)
    else:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    hops: set[float] = set()
    for entry in document["targets"]:
        times = [frame.get("time") for frame in entry["frames"]]
        if all(isinstance(time, (int, float)) and not isinstance(time, bool) for time in times):
            hops.update(round(float(later - earlier), 6) for earlier, later in zip(times, times[1:]))
    return frozenset(hops)


def read_run(scores_dir: Path, targets: tuple[str, ...], metric: str) -> Run:
    """Read every score file of one directory (each file once)."""
    files = find_score_files(scores_dir)
    rows: dict[str, list[float]] = {}
    nsdr_rows: dict[str, list[float]] = {}
    lacking_nsdr: list[str] = []
    durations: set[float] = set()
    for track, path in files.items():
        parsed, nsdr = parse_score_file(path, metric)
        missing = [target for target in targets if target not in parsed]
        if missing:
            raise ValueError(f"{path}: missing target(s) {missing} (has: {sorted(parsed)})")
        row = []
        for target in targets:
            values, frame_durations = parsed[target]
            median = _nanmedian(values)
            if math.isnan(median):
                log.warning("%s: target %r has no finite %s frame; its track value is NaN", path, target, metric)
            row.append(median)
            durations.update(float(d) for d in np.unique(frame_durations[~np.isnan(frame_durations)]))
        rows[track] = row
        if nsdr is not None and all(target in nsdr for target in targets):
            nsdr_rows[track] = [nsdr[target] for target in targets]
        else:
            lacking_nsdr.append(path.name)

    medians = pd.DataFrame.from_dict(rows, orient="index", columns=list(targets))
    medians.index.name = "track"
    nsdr_table: pd.DataFrame | None = None
    if not lacking_nsdr:
        nsdr_table = pd.DataFrame.from_dict(nsdr_rows, orient="index", columns=list(targets))
        nsdr_table.index.name = "track"
    elif nsdr_rows:  # some files have it, some do not: a partial mean would mislead
        log.warning(
            "%s: %d of %d score files lack 'nsdr' for targets %s (e.g. %s); this run has no nSDR",
            scores_dir,
            len(lacking_nsdr),
            len(files),
            list(targets),
            lacking_nsdr[:3],
        )
    log.debug("%s: %d tracks, targets %s, nsdr %s", scores_dir, len(medians), targets, nsdr_table is not None)
    hops = _frame_hops(next(iter(files.values())))
    return Run(medians=medians, nsdr=nsdr_table, frame_durations=frozenset(durations), frame_hops=hops)


def seed_labels(seed_dirs: Sequence[Path]) -> list[str]:
    """Short unique labels for a method's seed directories, which difference rows pair seeds by:
    the directory name, or as many trailing path components as needed to tell them apart
    (``seed0/scores``)."""
    parts = [Path(os.path.abspath(d)).parts for d in seed_dirs]
    longest = max(len(p) for p in parts)
    for depth in range(1, longest + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    raise ValueError(f"the same seed directory is listed twice: {[str(d) for d in seed_dirs]}")


def track_frame_medians(scores_dir: Path, targets: Sequence[str] = TARGETS, metric: str = "SDR") -> pd.DataFrame:
    """Per-track median over frames of ``metric`` for every score file in ``scores_dir``.

    Returns a DataFrame indexed by track name (file name without ``.json``/``.json.gz``, sorted) with
    one column per target. NaN frames are skipped (museval / SiSEC convention); a target whose
    frames are all NaN gets NaN. ``df.attrs["frame_duration"]`` holds the common frame duration in
    seconds, or None when the files do not agree on one.

    Raises ValueError for a directory without score files, or a file lacking a requested target.
    """
    targets = tuple(targets)
    if not targets:
        raise ValueError("at least one target is required")
    run = read_run(Path(scores_dir), targets, metric)
    table = run.medians
    table.attrs["frame_duration"] = next(iter(run.frame_durations)) if len(run.frame_durations) == 1 else None
    return table
