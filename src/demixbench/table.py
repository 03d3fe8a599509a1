"""Leaderboard tables (SDR, ISR, SIR or SAR) from per-track museval / SiSEC score files.

Score files
-----------
A score file holds one track's framewise metrics in the museval JSON format, optionally gzipped
(``<track name>.json`` or ``<track name>.json.gz``)::

    {"targets": [{"name": "drums",
                  "frames": [{"time": 0.0, "duration": 1.0,
                              "metrics": {"SDR": 1.2, "SIR": ..., "SAR": ..., "ISR": ...}}, ...]},
                 ...],
     "nsdr": {"drums": 5.1, ...}}

``"nsdr"`` (the MDX challenge's "new SDR" over the whole track, see
:func:`demixbench.scoring.nsdr`) is written by this project's scoring; imported SiSEC 2018 files
lack it. One directory of score files is one run (one seed) of a method.

Aggregations
------------
Each table is computed under up to three aggregations, each a table of its own in the outputs
(``aggregation`` key in CSV/JSON):

``"median"`` -- median over frames, median over tracks (museval / SiSEC 2018, the primary table):
    per track, the median over frames of the metric (NaN frames, i.e. silent reference frames,
    skipped); per seed, the median over tracks.
``"mean"`` -- median over frames, mean over tracks: the same per-track values, averaged over tracks.
``"nsdr"`` -- nSDR (MDX), mean over tracks: only for the SDR metric and only when some method's
    files carry ``"nsdr"``; a method whose score files (any of them, any seed) lack it gets NA.

A track whose value is NaN (e.g. a target silent in every frame) is skipped by the aggregation
over tracks, with a warning. "All" is, per seed, the mean of the targets' values.

Statistics
----------
Seeds are first-class: per method, the per-seed values are reported as the **mean ± standard error
over seeds** (sample standard deviation, ddof=1, / sqrt(n seeds); none for a single run) with the
number of seeds.

A :class:`Comparison` adds a difference row "variant - baseline" to every table, with

* ``mean``: mean over seeds of the variant minus that of the baseline;
* ``se``: sqrt(se_variant² + se_baseline²), the seed-to-seed standard error of the difference (a
  single run's missing s.e. counts as 0; NaN when both are single runs);
* ``ci_low``, ``ci_high``: a **paired bootstrap percentile interval** (default 95 %, 2000
  resamples, random seed 0; :func:`paired_bootstrap_ci`). Each resample draws the test tracks with
  replacement -- the same tracks for both methods (paired) -- and, independently for each method,
  its seeds with replacement (a single run stays itself), then recomputes the difference with the
  table's own aggregation: per resampled seed the median (or mean) over the resampled tracks of the
  per-track values, the mean over seeds, variant minus baseline; All = mean over targets. The
  interval holds the bootstrap distribution's central ``confidence`` mass. Percentile intervals
  are not guaranteed to contain the estimate (they do in practice);
* ``significant``: False when the interval contains 0 (marked "n.s." in the text tables), True
  otherwise, NA when the interval is undefined;
* ``p_value``: two-sided **Wilcoxon signed-rank test** (:func:`scipy.stats.wilcoxon`, default
  options) over tracks of the per-track values averaged over seeds, variant vs baseline; for All,
  the per-track mean of the targets (:func:`paired_wilcoxon`). Tracks with a NaN on either side
  are dropped; NaN when no track differs. For the "median" and "mean" tables the per-track values,
  hence the p-values, are the same. The test is about the per-track paired differences while the
  interval is about the difference of the aggregates (e.g. of two medians over tracks), so the two
  can disagree; significance is decided by the interval.

Every method (and every seed of a method) must cover exactly the same tracks; otherwise
:func:`build_table` raises rather than compare numbers computed over different test sets.

Outputs
-------
:meth:`SDRTable.write` writes ``<stem>.md`` (Markdown, one section per aggregation),
``<stem>.csv`` (tidy, one line per aggregation, row and column), ``<stem>.json`` (DVC metrics:
``rows`` / ``differences -> row -> column -> {"mean", "se", ...}`` for the primary table, the same
under ``aggregations -> key`` for the others, plus metadata; see :meth:`SDRTable.to_dict`),
``<stem>.tex`` (LaTeX ``table`` environments using booktabs) and ``<stem>.html`` (a standalone
page); the stem defaults to the metric in lower case (``sdr``, ``sar``, ...). Every caption
states the aggregation and the statistics shown. Methods' provenance notes
(:attr:`MethodRuns.note`) are listed under the tables and in the JSON metadata.
:attr:`SDRTable.data` and :attr:`SDRTable.seed_values` hold the primary table, as before.
"""

from __future__ import annotations

import gzip
import html
import json
import logging
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from demixbench import TARGETS
from demixbench.fileio import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = [
    "AGGREGATIONS",
    "ALL",
    "KINDS",
    "METRICS",
    "PRIMARY_AGGREGATION",
    "Comparison",
    "MethodRuns",
    "SDRTable",
    "build_table",
    "find_score_files",
    "load_track_scores",
    "paired_bootstrap_ci",
    "paired_wilcoxon",
    "track_frame_medians",
]

#: Label of the column averaging the per-target values.
ALL: str = "All"

#: Allowed :attr:`MethodRuns.kind` values; difference rows get the kind ``"difference"``.
KINDS: tuple[str, ...] = ("model", "oracle", "imported")

#: The museval metrics a table can aggregate.
METRICS: tuple[str, ...] = ("SDR", "ISR", "SIR", "SAR")

#: Aggregation key -> what it computes (see the module docstring), in table order.
AGGREGATIONS: dict[str, str] = {
    "median": "median over frames, median over tracks",
    "mean": "median over frames, mean over tracks",
    "nsdr": "nSDR (MDX), mean over tracks",
}

#: The SiSEC 2018 aggregation: :attr:`SDRTable.data` and :attr:`SDRTable.seed_values` hold it.
PRIMARY_AGGREGATION: str = "median"

#: Score file suffixes, longest first so that ``.json.gz`` is not read as ``.json``.
_SUFFIXES: tuple[str, ...] = (".json.gz", ".json")

_DIFFERENCE_KIND = "difference"

#: Aggregation key -> statistic over tracks applied to the per-track values.
_OVER_TRACKS: dict[str, str] = {"median": "median", "mean": "mean", "nsdr": "mean"}

#: Columns of every tidy table frame, in order.
_COLUMNS: tuple[str, ...] = (
    "aggregation",
    "row",
    "kind",
    "target",
    "mean",
    "se",
    "n_seeds",
    "ci_low",
    "ci_high",
    "p_value",
    "significant",
)

#: Statistics of a difference cell, as named in CSV/JSON.
_DIFFERENCE_STATISTICS: tuple[str, ...] = ("mean", "se", "ci_low", "ci_high", "p_value", "significant")

#: Upper bound on the elements of one gathered bootstrap block (memory stays ~100 MB at most).
_BOOTSTRAP_BLOCK = 4_000_000


# --------------------------------------------------------------------------------------------------
# Reading score files
# --------------------------------------------------------------------------------------------------


def _track_name(path: Path) -> str | None:
    """Track name of a score file (file name without ``.json``/``.json.gz``), None for other files."""
    name = path.name
    if name.startswith("."):  # hidden and temporary files
        return None
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def find_score_files(scores_dir: Path) -> dict[str, Path]:
    """Map track name -> score file for every ``*.json``/``*.json.gz`` file in ``scores_dir``.

    Raises ValueError when ``scores_dir`` is not a directory, holds no score files, or holds two
    files for one track (``x.json`` and ``x.json.gz``).
    """
    scores_dir = Path(scores_dir)
    if not scores_dir.is_dir():
        raise ValueError(f"score directory {scores_dir} does not exist or is not a directory")
    files: dict[str, Path] = {}
    for path in sorted(scores_dir.iterdir()):
        track = _track_name(path)
        if track is None or not path.is_file():
            continue
        if track in files:
            raise ValueError(
                f"{scores_dir}: track {track!r} has two score files: {files[track].name}, {path.name}"
            )
        files[track] = path
    if not files:
        raise ValueError(f"{scores_dir}: no score files (*.json or *.json.gz) found")
    return files


def _read_json(path: Path) -> Any:
    """Parse a .json or .json.gz file; any decoding problem becomes a ValueError naming the file."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                return json.load(handle)
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    except (gzip.BadGzipFile, EOFError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot be decoded ({type(error).__name__}: {error})") from error
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error})") from error


def _as_float(value: Any, where: str) -> float:
    """A metric value as float; JSON null (some writers' NaN) -> NaN."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: value {value!r} is not a number")
    return float(value)


def _parse_score_file(
    path: Path, metric: str
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, float] | None]:
    """(target -> (metric values, frame durations), nsdr target -> value or None when absent) of one
    score file, validating its structure."""
    document = _read_json(path)
    if not isinstance(document, dict):
        raise ValueError(
            f"{path}: expected a JSON object with a 'targets' list, got {type(document).__name__}"
        )
    if "targets" not in document:
        raise ValueError(f"{path}: no 'targets' key (keys: {sorted(document)})")
    entries = document["targets"]
    if not isinstance(entries, list):
        raise ValueError(f"{path}: 'targets' must be a list, got {type(entries).__name__}")

    parsed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError(f"{path}: targets[{index}] has no 'name' string")
        name = entry["name"]
        if name in parsed:
            raise ValueError(f"{path}: target {name!r} appears twice")
        frames = entry.get("frames")
        if not isinstance(frames, list):
            raise ValueError(f"{path}: target {name!r} has no 'frames' list")
        values = np.empty(len(frames), dtype=np.float64)
        durations = np.full(len(frames), np.nan, dtype=np.float64)
        for position, frame in enumerate(frames):
            where = f"{path}: target {name!r} frame {position}"
            metrics = frame.get("metrics") if isinstance(frame, dict) else None
            if not isinstance(metrics, dict):
                raise ValueError(f"{where} has no 'metrics' object")
            if metric not in metrics:
                raise ValueError(f"{where} has no metric {metric!r} (has: {sorted(metrics)})")
            values[position] = _as_float(metrics[metric], f"{where} metric {metric!r}")
            if isinstance(frame.get("duration"), (int, float)) and not isinstance(frame["duration"], bool):
                durations[position] = float(frame["duration"])
        parsed[name] = (values, durations)

    nsdr: dict[str, float] | None = None
    if "nsdr" in document:
        raw = document["nsdr"]
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: 'nsdr' must be an object target -> number, got {type(raw).__name__}")
        nsdr = {str(name): _as_float(value, f"{path}: nsdr of {name!r}") for name, value in raw.items()}
    return parsed, nsdr


def load_track_scores(path: Path, metric: str = "SDR") -> dict[str, np.ndarray]:
    """Per-frame values of ``metric`` for every target in one score file (NaN frames kept).

    Reads ``.json`` and ``.json.gz``. A malformed file (not JSON, no ``"targets"``, a frame without
    the metric, ...) raises ValueError naming the file and the problem.
    """
    parsed, _ = _parse_score_file(Path(path), metric)
    return {name: values for name, (values, _) in parsed.items()}


def _nanmedian(values: np.ndarray) -> float:
    """Median skipping NaN; NaN (without numpy's all-NaN warning) when nothing is finite."""
    finite = values[~np.isnan(values)]
    return float(np.median(finite)) if finite.size else math.nan


@dataclass(frozen=True)
class _Run:
    """One score directory read: per-track medians over frames, per-track nSDR (None when the
    files do not all carry it) and the frame durations seen."""

    medians: pd.DataFrame
    nsdr: pd.DataFrame | None
    frame_durations: frozenset[float]


def _read_run(scores_dir: Path, targets: tuple[str, ...], metric: str) -> _Run:
    """Read every score file of one directory (each file once)."""
    files = find_score_files(scores_dir)
    rows: dict[str, list[float]] = {}
    nsdr_rows: dict[str, list[float]] = {}
    lacking_nsdr: list[str] = []
    durations: set[float] = set()
    for track, path in files.items():
        parsed, nsdr = _parse_score_file(path, metric)
        missing = [target for target in targets if target not in parsed]
        if missing:
            raise ValueError(f"{path}: missing target(s) {missing} (has: {sorted(parsed)})")
        row = []
        for target in targets:
            values, frame_durations = parsed[target]
            median = _nanmedian(values)
            if math.isnan(median):
                logger.warning(
                    "%s: target %r has no finite %s frame; its track value is NaN", path, target, metric
                )
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
        logger.warning(
            "%s: %d of %d score files lack 'nsdr' for targets %s (e.g. %s); this run has no nSDR",
            scores_dir,
            len(lacking_nsdr),
            len(files),
            list(targets),
            lacking_nsdr[:3],
        )
    logger.debug("%s: %d tracks, targets %s, nsdr %s", scores_dir, len(medians), targets, nsdr_table is not None)
    return _Run(medians=medians, nsdr=nsdr_table, frame_durations=frozenset(durations))


def track_frame_medians(
    scores_dir: Path, targets: Sequence[str] = TARGETS, metric: str = "SDR"
) -> pd.DataFrame:
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
    run = _read_run(Path(scores_dir), targets, metric)
    table = run.medians
    table.attrs["frame_duration"] = next(iter(run.frame_durations)) if len(run.frame_durations) == 1 else None
    return table


# --------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------


def _over_tracks(values: np.ndarray, statistic: str, axis: int) -> np.ndarray:
    """Median or mean over ``axis`` skipping NaN (an all-NaN slice gives NaN, silently)."""
    if statistic not in ("median", "mean"):
        raise ValueError(f"statistic over tracks must be 'median' or 'mean', got {statistic!r}")
    if not np.isnan(values).any():
        return np.median(values, axis=axis) if statistic == "median" else np.mean(values, axis=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=axis) if statistic == "median" else np.nanmean(values, axis=axis)


def _per_track_array(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3 or 0 in array.shape:
        raise ValueError(
            f"{name}: expected per-track values shaped (seeds, tracks, targets) or (tracks, targets), "
            f"got shape {np.shape(values)}"
        )
    return array


def _with_all(values: np.ndarray) -> np.ndarray:
    """Append the mean over the last axis (targets) as one more column: "All"."""
    return np.concatenate([values, values.mean(axis=-1, keepdims=True)], axis=-1)


def _seed_aggregate(values: np.ndarray, seeds: np.ndarray, tracks: np.ndarray, statistic: str) -> np.ndarray:
    """(resamples, targets): per resample, the mean over the drawn seeds of the aggregate over the
    drawn tracks. values (S, N, K); seeds (R, S') and tracks (R, N') indices."""
    gathered = values[seeds[:, :, np.newaxis], tracks[:, np.newaxis, :]]  # (R, S', N', K)
    return _over_tracks(gathered, statistic, axis=2).mean(axis=1)


def paired_bootstrap_ci(
    variant: np.ndarray,
    baseline: np.ndarray,
    *,
    over_tracks: str = "median",
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paired bootstrap interval of the difference ``variant - baseline`` of table aggregates.

    ``variant`` and ``baseline`` are per-track values shaped (seeds, tracks, targets) (or (tracks,
    targets) for one seed), with the tracks in the same order on both sides. The statistic is the
    table's: per seed, the ``over_tracks`` ("median" or "mean", NaN skipped) over tracks; then the
    mean over seeds; variant minus baseline; "All" is the mean over targets. Each of the
    ``n_resamples`` resamples draws the tracks with replacement (shared by both sides: paired) and,
    independently per side, the seeds with replacement, from ``numpy.random.default_rng(seed)``.

    Returns (estimate, low, high), each shaped (targets + 1,), the last entry being "All":
    ``estimate`` is the statistic on the data, ``low``/``high`` the percentiles
    (1 - confidence)/2 and (1 + confidence)/2 of the bootstrap distribution (NaN where the
    estimate is NaN).
    """
    v = _per_track_array(variant, "variant")
    b = _per_track_array(baseline, "baseline")
    if v.shape[1:] != b.shape[1:]:
        raise ValueError(
            f"variant and baseline must have the same (tracks, targets), got {v.shape[1:]} and {b.shape[1:]}"
        )
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    n_tracks = v.shape[1]
    identity = np.arange(n_tracks)[np.newaxis]
    estimate = _with_all(
        _seed_aggregate(v, np.arange(v.shape[0])[np.newaxis], identity, over_tracks)
        - _seed_aggregate(b, np.arange(b.shape[0])[np.newaxis], identity, over_tracks)
    )[0]
    nan = np.full_like(estimate, np.nan)
    if np.isnan(estimate).all():
        return estimate, nan, nan.copy()

    rng = np.random.default_rng(seed)
    tracks = rng.integers(0, n_tracks, size=(n_resamples, n_tracks))
    seeds_v = rng.integers(0, v.shape[0], size=(n_resamples, v.shape[0]))
    seeds_b = rng.integers(0, b.shape[0], size=(n_resamples, b.shape[0]))
    block = max(1, _BOOTSTRAP_BLOCK // (max(v.shape[0], b.shape[0]) * v.shape[1] * v.shape[2]))
    differences = np.empty((n_resamples, v.shape[2] + 1), dtype=np.float64)
    for start in range(0, n_resamples, block):
        part = slice(start, start + block)
        differences[part] = _with_all(
            _seed_aggregate(v, seeds_v[part], tracks[part], over_tracks)
            - _seed_aggregate(b, seeds_b[part], tracks[part], over_tracks)
        )
    alpha = (1.0 - confidence) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN
        low, high = np.nanquantile(differences, [alpha, 1.0 - alpha], axis=0)
    undefined = np.isnan(estimate)
    low[undefined] = np.nan
    high[undefined] = np.nan
    return estimate, low, high


def paired_wilcoxon(variant: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Two-sided Wilcoxon signed-rank p-values, variant vs baseline, per target and for "All".

    ``variant`` and ``baseline`` are per-track values shaped (seeds, tracks, targets) (or (tracks,
    targets)), tracks in the same order. Each side is averaged over its seeds per track; "All" uses
    the per-track mean of the targets. Per column, tracks with a NaN on either side are dropped and
    :func:`scipy.stats.wilcoxon` (default options) is applied to the pairs; the p-value is NaN when
    no pair is left or no pair differs. Returns an array shaped (targets + 1,).
    """
    v = _per_track_array(variant, "variant")
    b = _per_track_array(baseline, "baseline")
    if v.shape[1:] != b.shape[1:]:
        raise ValueError(
            f"variant and baseline must have the same (tracks, targets), got {v.shape[1:]} and {b.shape[1:]}"
        )
    v_tracks = _with_all(v.mean(axis=0))  # (N, K + 1)
    b_tracks = _with_all(b.mean(axis=0))
    p_values = np.full(v_tracks.shape[1], np.nan)
    for column in range(v_tracks.shape[1]):
        x, y = v_tracks[:, column], b_tracks[:, column]
        keep = ~(np.isnan(x) | np.isnan(y))
        if not np.any(x[keep] != y[keep]):
            continue
        p_values[column] = float(stats.wilcoxon(x[keep], y[keep]).pvalue)
    return p_values


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (ddof=1 std / sqrt(n)) over seeds; SE is NaN for a single seed."""
    array = np.asarray(values, dtype=np.float64)
    mean = float(np.mean(array))
    se = float(np.std(array, ddof=1) / math.sqrt(array.size)) if array.size > 1 else math.nan
    return mean, se


def _combined_se(se_variant: float, se_baseline: float) -> float:
    """SE of a difference; a NaN SE (single run) counts as 0 unless both are NaN."""
    if math.isnan(se_variant) and math.isnan(se_baseline):
        return math.nan
    return math.hypot(
        0.0 if math.isnan(se_variant) else se_variant,
        0.0 if math.isnan(se_baseline) else se_baseline,
    )


# --------------------------------------------------------------------------------------------------
# Table specification
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodRuns:
    """One table row: a method and its runs.

    name: row label, e.g. ``"unet_gan"`` or ``"IRM2"``.
    seed_dirs: one directory of per-track score files per seed (a single one for oracles and
        imported single runs).
    kind: ``"model"``, ``"oracle"`` or ``"imported"``.
    note: optional provenance, e.g. ``"SiSEC 2018 submission, sigsep-mus-2018"``; listed under the
        tables and in the JSON metadata.
    """

    name: str
    seed_dirs: tuple[Path, ...]
    kind: str = "model"
    note: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "seed_dirs", tuple(Path(d) for d in self.seed_dirs))
        object.__setattr__(self, "note", " ".join(str(self.note or "").split()))
        if not self.name:
            raise ValueError("method name must not be empty")
        if not self.seed_dirs:
            raise ValueError(f"method {self.name!r}: at least one seed directory is required")
        if self.kind not in KINDS:
            raise ValueError(f"method {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class Comparison:
    """A difference row: ``variant`` minus ``baseline`` (both method names)."""

    variant: str
    baseline: str

    @property
    def label(self) -> str:
        """Row label, ``"<variant> - <baseline>"``."""
        return f"{self.variant} - {self.baseline}"


# --------------------------------------------------------------------------------------------------
# Cell formatting
# --------------------------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf and pandas NA -> None, numpy scalars -> Python scalars."""
    if isinstance(value, Mapping):
        return {str(key): _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _float(value: Any) -> float:
    """A cell value as float, pandas NA -> NaN."""
    return math.nan if value is None or value is pd.NA else float(value)


@dataclass(frozen=True)
class _Cell:
    """One value cell of a rendered table."""

    mean: float
    se: float
    difference: bool = False
    ci_low: float = math.nan
    ci_high: float = math.nan
    p_value: float = math.nan
    significant: bool | None = None

    @property
    def not_significant(self) -> bool:
        return self.difference and self.significant is False


def _format_p(p_value: float) -> str:
    """``p<0.001`` or ``p=0.042``."""
    return "p<0.001" if p_value < 0.001 else f"p={p_value:.3f}"


def _cell_text(cell: _Cell) -> str:
    """Plain text (Markdown, HTML): ``4.21 ± 0.13``; ``4.21`` for one seed; ``n/a`` for NaN;
    differences ``+0.12 ± 0.05 [+0.02, +0.22] (p=0.013)``, ``n.s.`` when the interval holds 0."""
    if math.isnan(cell.mean):
        return "n/a"
    text = f"{cell.mean:+.2f}" if cell.difference else f"{cell.mean:.2f}"
    if not math.isnan(cell.se):
        text += f" ± {cell.se:.2f}"
    if cell.difference:
        if not (math.isnan(cell.ci_low) or math.isnan(cell.ci_high)):
            text += f" [{cell.ci_low:+.2f}, {cell.ci_high:+.2f}]"
        if cell.not_significant:
            text += " n.s."
        if not math.isnan(cell.p_value):
            text += f" ({_format_p(cell.p_value)})"
    return text


def _cell_latex(cell: _Cell) -> str:
    """The LaTeX form of :func:`_cell_text`: numbers in math mode, ``$\\pm$``."""
    if math.isnan(cell.mean):
        return "n/a"
    number = f"{cell.mean:+.2f}" if cell.difference else f"{cell.mean:.2f}"
    text = f"${number}$" if math.isnan(cell.se) else f"${number} \\pm {cell.se:.2f}$"
    if cell.difference:
        if not (math.isnan(cell.ci_low) or math.isnan(cell.ci_high)):
            text += f" [${cell.ci_low:+.2f}$, ${cell.ci_high:+.2f}$]"
        if cell.not_significant:
            text += " n.s."
        if not math.isnan(cell.p_value):
            text += f" (${_format_p(cell.p_value)}$)"
    return text


def _escape_markdown(text: str) -> str:
    """Escape the characters that would break a Markdown table cell or start markup."""
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    return re.sub(r"([*`<>\[\]])", r"\\\1", text)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "±": r"$\pm$",
    "²": r"\textsuperscript{2}",
    "−": r"$-$",
    "–": "--",
    "\n": " ",
}


def _escape_latex(text: str) -> str:
    """Escape LaTeX special characters (and map ±, ², − to LaTeX) in running text."""
    return "".join(_LATEX_SPECIAL.get(character, character) for character in text)


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SDRTable:
    """A built leaderboard (any metric; the name is historical), under one or more aggregations.

    results: aggregation key (see :data:`AGGREGATIONS`) -> tidy DataFrame, one row per (row,
        target) with columns ``aggregation``, ``row``, ``kind`` (model, oracle, imported or
        difference), ``target`` (each target, then ``"All"``), ``mean``, ``se``, ``n_seeds``
        (nullable integer; NA for difference rows), and for difference rows ``ci_low``,
        ``ci_high``, ``p_value`` and ``significant`` (nullable boolean; NA for method rows).
    seeds: aggregation key -> row -> seed label -> target or ``"All"`` -> per-seed value.
    metric: the metric aggregated, e.g. ``"SDR"``.
    n_tracks: number of test tracks every method covers.
    targets: the target columns, in order (``"All"`` excluded).
    comparisons: the comparisons behind the difference rows.
    frame_duration: the score files' common frame duration in seconds, None when they disagree.
    notes: row -> provenance note (rows without a note absent).
    n_resamples, bootstrap_seed, confidence: the paired bootstrap's settings.
    """

    results: Mapping[str, pd.DataFrame]
    seeds: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]]
    metric: str
    n_tracks: int
    targets: tuple[str, ...]
    comparisons: tuple[Comparison, ...] = field(default=())
    frame_duration: float | None = None
    notes: Mapping[str, str] = field(default_factory=dict)
    n_resamples: int = 2000
    bootstrap_seed: int = 0
    confidence: float = 0.95

    # -- access -------------------------------------------------------------------------------------

    @property
    def aggregations(self) -> tuple[str, ...]:
        """The aggregation keys present, in table order."""
        return tuple(self.results)

    @property
    def data(self) -> pd.DataFrame:
        """The primary ("median over frames, median over tracks") tidy table."""
        return self.results[PRIMARY_AGGREGATION]

    @property
    def seed_values(self) -> Mapping[str, Mapping[str, Mapping[str, float]]]:
        """Per-seed values of the primary aggregation: row -> seed -> column -> value."""
        return self.seeds[PRIMARY_AGGREGATION]

    @property
    def aggregation(self) -> str:
        """Description of the primary aggregation (:meth:`describe`)."""
        return self.describe(PRIMARY_AGGREGATION)

    @property
    def columns(self) -> tuple[str, ...]:
        """The value columns: targets, then ``"All"``."""
        return (*self.targets, ALL)

    def tidy(self) -> pd.DataFrame:
        """All aggregations in one tidy DataFrame (what :meth:`to_csv` writes)."""
        return pd.concat(list(self.results.values()), ignore_index=True)

    # -- descriptions --------------------------------------------------------------------------------

    def _check_key(self, aggregation: str) -> None:
        if aggregation not in self.results:
            raise KeyError(f"no aggregation {aggregation!r} in this table (has: {list(self.results)})")

    def title(self, aggregation: str = PRIMARY_AGGREGATION) -> str:
        """Short heading of one aggregation's table, e.g. ``SDR: median over frames, median over tracks``."""
        self._check_key(aggregation)
        if aggregation == "nsdr":
            return AGGREGATIONS["nsdr"]
        suffix = " (SiSEC 2018)" if aggregation == PRIMARY_AGGREGATION else ""
        return f"{self.metric}: {AGGREGATIONS[aggregation]}{suffix}"

    def describe(self, aggregation: str = PRIMARY_AGGREGATION) -> str:
        """One phrase stating the aggregation, e.g.
        ``SDR (dB): median over 1 s frames, median over tracks; mean ± s.e. over seeds``."""
        self._check_key(aggregation)
        if aggregation == "nsdr":
            return "nSDR (MDX, dB): per-track nSDR, mean over tracks; mean ± s.e. over seeds"
        frames = f"{self.frame_duration:g} s frames" if self.frame_duration else "frames"
        over_tracks = _OVER_TRACKS[aggregation]
        return f"{self.metric} (dB): median over {frames}, {over_tracks} over tracks; mean ± s.e. over seeds"

    def caption(self, aggregation: str = PRIMARY_AGGREGATION) -> str:
        """One line stating the aggregation and the number of test tracks."""
        return f"{self.describe(aggregation)}; {self.n_tracks} test tracks."

    def statistics(self) -> dict[str, str]:
        """What every reported statistic is, keyed by its CSV/JSON name (also in the captions)."""
        level = f"{self.confidence:.0%}"
        return {
            "mean": "per seed, the aggregate over tracks of the per-track values; then the mean over seeds. "
            "All: per seed, the mean of the targets.",
            "se": "standard error over seeds: sample standard deviation (ddof=1) / sqrt(number of seeds); "
            "none for a single run. Difference rows: sqrt(s.e.A² + s.e.B²), a single run counting 0.",
            "ci": f"ci_low, ci_high: {level} paired bootstrap percentile interval of the difference A - B "
            f"({self.n_resamples} resamples, random seed {self.bootstrap_seed}): tracks resampled "
            "with replacement, the same for A and B; each method's seeds resampled with replacement "
            "independently; the table's aggregation recomputed on every resample.",
            "significant": "false (n.s.) when the interval contains 0.",
            "p_value": "two-sided Wilcoxon signed-rank test over tracks of A's vs B's per-track values "
            "averaged over seeds (All: per-track mean of the targets). It tests the per-track paired "
            "differences, the interval the difference of the aggregates, so the two can disagree.",
        }

    def long_caption(self, aggregation: str = PRIMARY_AGGREGATION) -> str:
        """The full caption of one aggregation's table: :meth:`caption`, then every statistic shown."""
        parts = [self.caption(aggregation)]
        if aggregation == "nsdr":
            parts.append(
                "nSDR: the MDX challenge's SDR over the whole track, all channels together "
                "(10 log10 of reference energy over error energy); n/a: no nSDR in the score files "
                "(e.g. imported SiSEC 2018 results)."
            )
        else:
            parts.append("NaN frames (silent reference) are skipped.")
        parts.append(
            "All: per seed, the mean of the targets. s.e.: sample standard deviation over seeds / "
            "sqrt(number of seeds); none for a single run."
        )
        if self.comparisons:
            level = f"{self.confidence:.0%}"
            parts.append(
                "Difference rows A - B: A minus B ± sqrt(s.e.A² + s.e.B²); "
                f"[low, high]: {level} paired bootstrap percentile interval ({self.n_resamples} resamples, "
                f"seed {self.bootstrap_seed}; tracks resampled with replacement, the same for A and B, and "
                "each method's seeds independently; "
                "the aggregation recomputed); n.s.: the interval contains 0 (not significant); p: two-sided "
                "Wilcoxon signed-rank test over tracks of per-track values averaged over seeds (All: "
                "per-track mean of the targets), which tests the per-track differences rather than the "
                "difference of the aggregates and so can disagree with the interval."
            )
        return " ".join(parts)

    # -- rows ----------------------------------------------------------------------------------------

    def _rendered(self, aggregation: str) -> list[tuple[str, str, str, list[_Cell]]]:
        """(label, kind, seeds text, cells) for one aggregation, in table order."""
        frame = self.results[aggregation]
        comparisons = {comparison.label: comparison for comparison in self.comparisons}
        n_seeds = {label: len(per_seed) for label, per_seed in self.seeds[aggregation].items()}
        rows = []
        for label in dict.fromkeys(frame["row"]):
            part = frame[frame["row"] == label].set_index("target")
            kind = str(part["kind"].iloc[0])
            difference = kind == _DIFFERENCE_KIND
            if difference:
                comparison = comparisons[label]
                seeds = f"{n_seeds[comparison.variant]} vs {n_seeds[comparison.baseline]}"
            else:
                seeds = str(n_seeds[label])
            cells = []
            for column in self.columns:
                significant = part.at[column, "significant"]
                cells.append(
                    _Cell(
                        mean=_float(part.at[column, "mean"]),
                        se=_float(part.at[column, "se"]),
                        difference=difference,
                        ci_low=_float(part.at[column, "ci_low"]),
                        ci_high=_float(part.at[column, "ci_high"]),
                        p_value=_float(part.at[column, "p_value"]),
                        significant=None if significant is pd.NA else bool(significant),
                    )
                )
            rows.append((label, kind, seeds, cells))
        return rows

    def _kinds(self) -> dict[str, str]:
        frame = self.data
        return {str(row): str(kind) for row, kind in zip(frame["row"], frame["kind"], strict=True)}

    # -- formats -------------------------------------------------------------------------------------

    def to_markdown(self) -> str:
        """GitHub Markdown: one section per aggregation (heading, caption, table; difference rows
        last), then the methods' notes."""
        header = ["method", "seeds", *self.columns]
        lines: list[str] = []
        for aggregation in self.aggregations:
            lines += [
                f"## {self.title(aggregation)}",
                "",
                self.long_caption(aggregation),
                "",
                "| " + " | ".join(header) + " |",
                "|" + "|".join([":---", "---:"] + ["---:"] * len(self.columns)) + "|",
            ]
            for label, _, seeds, cells in self._rendered(aggregation):
                lines.append("| " + " | ".join([_escape_markdown(label), seeds, *map(_cell_text, cells)]) + " |")
            lines.append("")
        if self.notes:
            kinds = self._kinds()
            lines += ["## Notes", ""]
            lines += [
                f"- {_escape_markdown(row)} ({kinds[row]}): {_escape_markdown(note)}"
                for row, note in self.notes.items()
            ]
            lines.append("")
        return "\n".join(lines)

    def to_latex(self) -> str:
        """LaTeX: one booktabs ``table`` per aggregation (\\toprule, \\midrule, \\bottomrule; needs
        ``\\usepackage{booktabs}``), names escaped, then the notes as an itemize list."""
        stem = re.sub(r"[^a-z0-9]+", "-", self.metric.lower())
        lines = [
            f"% {self.metric} leaderboard written by demixbench.table; needs \\usepackage{{booktabs}}.",
        ]
        for aggregation in self.aggregations:
            rendered = self._rendered(aggregation)
            lines += [
                "\\begin{table}[htbp]",
                "\\centering",
                "\\caption{"
                + f"{_escape_latex(self.title(aggregation))}. {_escape_latex(self.long_caption(aggregation))}"
                + "}",
                f"\\label{{tab:{stem}-{aggregation}}}",
                "\\begin{tabular}{l" + "r" * (1 + len(self.columns)) + "}",
                "\\toprule",
                " & ".join(["method", "seeds", *map(_escape_latex, self.columns)]) + " \\\\",
                "\\midrule",
            ]
            previous_difference = False
            for index, (label, kind, seeds, cells) in enumerate(rendered):
                difference = kind == _DIFFERENCE_KIND
                if difference and not previous_difference and index > 0:
                    lines.append("\\midrule")
                previous_difference = difference
                lines.append(" & ".join([_escape_latex(label), seeds, *map(_cell_latex, cells)]) + " \\\\")
            lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
        if self.notes:
            kinds = self._kinds()
            lines += ["\\paragraph{Notes.}", "\\begin{itemize}"]
            lines += [
                f"\\item \\textbf{{{_escape_latex(row)}}} ({kinds[row]}): {_escape_latex(note)}"
                for row, note in self.notes.items()
            ]
            lines += ["\\end{itemize}", ""]
        return "\n".join(lines)

    def to_html(self) -> str:
        """A standalone HTML page (inline style only): one ``<table>`` with ``<caption>`` per
        aggregation, then the notes; every name and text escaped."""
        escape = html.escape
        title = f"{self.metric} leaderboard"
        lines = [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{escape(title)}</title>",
            "<style>",
            "body { font-family: sans-serif; margin: 2em; }",
            "table { border-collapse: collapse; margin: 0 0 2em 0; }",
            "caption { caption-side: top; text-align: left; max-width: 60em; padding-bottom: 0.5em; }",
            "th, td { padding: 0.2em 0.7em; }",
            "thead th { border-top: 2px solid; border-bottom: 1px solid; }",
            "tbody tr:last-child > * { border-bottom: 2px solid; }",
            "tr.first-difference > * { border-top: 1px solid; }",
            "td { text-align: right; white-space: nowrap; }",
            "th[scope=row] { text-align: left; font-weight: normal; }",
            "td.ns { color: #777; }",
            "</style>",
            "</head>",
            "<body>",
            f"<h1>{escape(title)}</h1>",
        ]
        for aggregation in self.aggregations:
            lines += [
                f"<h2>{escape(self.title(aggregation))}</h2>",
                "<table>",
                f"<caption>{escape(self.long_caption(aggregation))}</caption>",
                "<thead><tr>"
                + "".join(f'<th scope="col">{escape(name)}</th>' for name in ("method", "seeds", *self.columns))
                + "</tr></thead>",
                "<tbody>",
            ]
            first_difference = True
            for label, kind, seeds, cells in self._rendered(aggregation):
                classes = kind
                if kind == _DIFFERENCE_KIND and first_difference:
                    classes, first_difference = f"{kind} first-difference", False
                tds = "".join(
                    ('<td class="ns">' if c.not_significant else "<td>") + f"{escape(_cell_text(c))}</td>"
                    for c in cells
                )
                lines.append(
                    f'<tr class="{escape(classes)}"><th scope="row">{escape(label)}</th>'
                    f"<td>{escape(seeds)}</td>{tds}</tr>"
                )
            lines += ["</tbody>", "</table>"]
        if self.notes:
            kinds = self._kinds()
            lines += ["<h2>Notes</h2>", "<ul>"]
            lines += [
                f"<li><strong>{escape(row)}</strong> ({escape(kinds[row])}): {escape(note)}</li>"
                for row, note in self.notes.items()
            ]
            lines.append("</ul>")
        lines += ["</body>", "</html>", ""]
        return "\n".join(lines)

    def to_csv(self, path: Path) -> Path:
        """Write :meth:`tidy` (one line per aggregation, row and column) as CSV; returns the path."""
        text = self.tidy().to_csv(index=False, lineterminator="\n")
        return atomic_write_text(Path(path), text)

    def _aggregation_dict(self, aggregation: str) -> dict[str, Any]:
        """``{"title", "description", "rows", "differences"}`` of one aggregation (see :meth:`to_dict`)."""
        frame = self.results[aggregation]
        comparisons = {comparison.label: comparison for comparison in self.comparisons}
        rows: dict[str, Any] = {}
        differences: dict[str, Any] = {}
        for label in dict.fromkeys(frame["row"]):
            part = frame[frame["row"] == label].set_index("target")
            kind = str(part["kind"].iloc[0])
            if kind == _DIFFERENCE_KIND:
                comparison = comparisons[label]
                differences[label] = {
                    "variant": comparison.variant,
                    "baseline": comparison.baseline,
                    **{
                        column: {name: part.at[column, name] for name in _DIFFERENCE_STATISTICS}
                        for column in self.columns
                    },
                }
            else:
                per_seed = self.seeds[aggregation][label]
                rows[label] = {
                    "kind": kind,
                    "n_seeds": len(per_seed),
                    **{
                        column: {"mean": part.at[column, "mean"], "se": part.at[column, "se"]}
                        for column in self.columns
                    },
                    "seeds": {seed: dict(values) for seed, values in per_seed.items()},
                }
        return {
            "title": self.title(aggregation),
            "description": self.describe(aggregation),
            "rows": rows,
            "differences": differences,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict (NaN as None); the structure :meth:`to_json` writes.

        The primary (SiSEC 2018) table sits at the top level, the further aggregations under
        ``"aggregations"`` with the same structure::

            {"metric", "unit", "n_tracks", "frame_duration", "targets",
             "primary": "median", "title", "description", "aggregation" (= description),
             "statistics": {name: description, ..., "confidence", "n_resamples", "bootstrap_seed"},
             "notes": {row: note},
             "rows": {row: {"kind", "n_seeds", column: {"mean", "se"}, "seeds": {seed: {column: v}}}},
             "differences": {label: {"variant", "baseline",
                 column: {"mean", "se", "ci_low", "ci_high", "p_value", "significant"}}},
             "aggregations": {"mean": {"title", "description", "rows", "differences"}, "nsdr": {...}}}
        """
        primary = self._aggregation_dict(PRIMARY_AGGREGATION)
        document = {
            "metric": self.metric,
            "unit": "dB",
            "n_tracks": self.n_tracks,
            "frame_duration": self.frame_duration,
            "targets": list(self.targets),
            "primary": PRIMARY_AGGREGATION,
            "title": primary["title"],
            "description": primary["description"],
            "aggregation": self.aggregation,
            "statistics": {
                **self.statistics(),
                "confidence": self.confidence,
                "n_resamples": self.n_resamples,
                "bootstrap_seed": self.bootstrap_seed,
            },
            "notes": dict(self.notes),
            "rows": primary["rows"],
            "differences": primary["differences"],
            "aggregations": {
                aggregation: self._aggregation_dict(aggregation)
                for aggregation in self.aggregations
                if aggregation != PRIMARY_AGGREGATION
            },
        }
        return _clean(document)

    def to_json(self, path: Path) -> Path:
        """Write the table as strict JSON (NaN as null); returns the path."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False, ensure_ascii=False) + "\n"
        return atomic_write_text(Path(path), text)

    def headline(self) -> dict[str, Any]:
        """The primary table's numbers only: the seed mean of every row and difference row per
        column, the values a reader compares between two versions (``dvc metrics show`` and
        ``dvc metrics diff`` print every number of a metrics file, so the full :meth:`to_dict`
        with its per-seed values, intervals and texts would bury them)::

            {"metric", "n_tracks", "rows": {row: {column: mean}},
             "differences": {label: {column: mean}}}
        """
        primary = self._aggregation_dict(PRIMARY_AGGREGATION)
        return _clean(
            {
                "metric": self.metric,
                "n_tracks": self.n_tracks,
                **{
                    part: {label: {column: row[column]["mean"] for column in self.columns} for label, row in primary[part].items()}
                    for part in ("rows", "differences")
                },
            }
        )

    def to_metrics(self, path: Path) -> Path:
        """Write :meth:`headline` as strict JSON, the file DVC publishes as metrics; returns the path."""
        text = json.dumps(self.headline(), indent=2, allow_nan=False, ensure_ascii=False) + "\n"
        return atomic_write_text(Path(path), text)

    def write(self, out_dir: Path, stem: str | None = None) -> dict[str, Path]:
        """Write ``{stem}.md``, ``.csv``, ``.json``, ``.tex``, ``.html`` and ``.metrics.json`` (the
        headline numbers, see :meth:`headline`) atomically into ``out_dir``.

        ``stem`` defaults to the metric in lower case (``sdr``, ``sar``, ...). Returns the written
        paths keyed by ``"md"``, ``"csv"``, ``"json"``, ``"tex"``, ``"html"`` and ``"metrics"``.
        """
        out_dir = Path(out_dir)
        stem = stem or self.metric.lower()
        paths = {
            "md": atomic_write_text(out_dir / f"{stem}.md", self.to_markdown()),
            "csv": self.to_csv(out_dir / f"{stem}.csv"),
            "json": self.to_json(out_dir / f"{stem}.json"),
            "tex": atomic_write_text(out_dir / f"{stem}.tex", self.to_latex()),
            "html": atomic_write_text(out_dir / f"{stem}.html", self.to_html()),
            "metrics": self.to_metrics(out_dir / f"{stem}.metrics.json"),
        }
        logger.info("wrote %s", ", ".join(str(p) for p in paths.values()))
        return paths


# --------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------


def _seed_labels(seed_dirs: Sequence[Path]) -> list[str]:
    """Short unique labels for a method's seed directories: the directory name, or as many trailing
    path components as needed to tell them apart (``seed0/scores``)."""
    parts = [Path(os.path.abspath(d)).parts for d in seed_dirs]
    longest = max(len(p) for p in parts)
    for depth in range(1, longest + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    raise ValueError(f"the same seed directory is listed twice: {[str(d) for d in seed_dirs]}")


def _check_track_sets(track_sets: Mapping[tuple[str, str], frozenset[str]]) -> frozenset[str]:
    """The common track set; ValueError listing each (method, seed)'s missing tracks otherwise."""
    union = frozenset().union(*track_sets.values())
    problems = [
        f"method {method!r} seed {seed!r} is missing {len(union - tracks)} track(s): {sorted(union - tracks)}"
        for (method, seed), tracks in track_sets.items()
        if tracks != union
    ]
    if problems:
        raise ValueError(
            "all methods and seeds must be scored on the same tracks (a table over different tracks "
            "would mislead):\n  " + "\n  ".join(problems)
        )
    return union


def _validate(
    methods: tuple[MethodRuns, ...], comparisons: tuple[Comparison, ...], targets: tuple[str, ...], metric: str
) -> None:
    if not methods:
        raise ValueError("at least one method is required")
    if not targets:
        raise ValueError("at least one target is required")
    if ALL in targets:
        raise ValueError(f"{ALL!r} is reserved for the mean over targets and cannot be a target")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    names = [method.name for method in methods]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"duplicate method name(s): {duplicates}")
    for comparison in comparisons:
        unknown = [name for name in (comparison.variant, comparison.baseline) if name not in names]
        if unknown:
            raise ValueError(f"comparison {comparison.label!r}: unknown method(s) {unknown}; known: {names}")
    labels = [comparison.label for comparison in comparisons]
    clashes = sorted({label for label in labels if labels.count(label) > 1 or label in names})
    if clashes:
        raise ValueError(f"comparison row label(s) {clashes} are duplicated or clash with a method name")


def _per_track_values(
    methods: tuple[MethodRuns, ...],
    runs: Mapping[str, Mapping[str, _Run]],
    tracks: list[str],
    targets: tuple[str, ...],
    metric: str,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | None]]:
    """Per method, (seeds, tracks, targets) arrays of per-track medians over frames and of nSDR
    (None when some seed lacks nSDR), tracks in the order given."""
    medians: dict[str, np.ndarray] = {}
    nsdr: dict[str, np.ndarray | None] = {}
    for method in methods:
        seeds = runs[method.name]
        medians[method.name] = np.stack(
            [run.medians.reindex(tracks)[list(targets)].to_numpy(dtype=np.float64) for run in seeds.values()]
        )
        for seed, run in seeds.items():
            for target in targets:
                n_nan = int(run.medians[target].isna().sum())
                if n_nan:
                    logger.warning(
                        "%s/%s: %d track(s) with NaN %s %s skipped in the aggregation over tracks",
                        method.name,
                        seed,
                        n_nan,
                        target,
                        metric,
                    )
        lacking = [seed for seed, run in seeds.items() if run.nsdr is None]
        if lacking:
            nsdr[method.name] = None
            if len(lacking) < len(seeds):
                logger.warning(
                    "method %r: seed(s) %s have no nSDR in their score files; the method's nSDR is NA",
                    method.name,
                    lacking,
                )
        else:
            tables = [run.nsdr for run in seeds.values() if run.nsdr is not None]
            nsdr[method.name] = np.stack(
                [table.reindex(tracks)[list(targets)].to_numpy(dtype=np.float64) for table in tables]
            )
    return medians, nsdr


def _aggregate_table(
    aggregation: str,
    methods: tuple[MethodRuns, ...],
    comparisons: tuple[Comparison, ...],
    values: Mapping[str, np.ndarray | None],
    seed_labels: Mapping[str, list[str]],
    targets: tuple[str, ...],
    *,
    n_resamples: int,
    bootstrap_seed: int,
    confidence: float,
) -> tuple[pd.DataFrame, dict[str, dict[str, dict[str, float]]]]:
    """One aggregation's tidy frame and per-seed values."""
    statistic = _OVER_TRACKS[aggregation]
    columns = (*targets, ALL)
    seed_values: dict[str, dict[str, dict[str, float]]] = {}
    summary: dict[str, dict[str, tuple[float, float]]] = {}
    records: list[dict[str, Any]] = []
    for method in methods:
        labels = seed_labels[method.name]
        array = values[method.name]
        if array is None:
            per_seed = np.full((len(labels), len(columns)), np.nan)
        else:
            per_seed = _with_all(_over_tracks(array, statistic, axis=1))  # (seeds, targets + 1)
        seed_values[method.name] = {
            label: {column: float(value) for column, value in zip(columns, row, strict=True)}
            for label, row in zip(labels, per_seed, strict=True)
        }
        summary[method.name] = {}
        for index, column in enumerate(columns):
            mean, se = _mean_se(per_seed[:, index])
            summary[method.name][column] = (mean, se)
            records.append(
                {
                    "aggregation": aggregation,
                    "row": method.name,
                    "kind": method.kind,
                    "target": column,
                    "mean": mean,
                    "se": se,
                    "n_seeds": len(labels),
                    "ci_low": math.nan,
                    "ci_high": math.nan,
                    "p_value": math.nan,
                    "significant": pd.NA,
                }
            )

    for comparison in comparisons:
        variant, baseline = values[comparison.variant], values[comparison.baseline]
        nan = np.full(len(columns), np.nan)
        low, high, p_values = nan, nan, nan
        if variant is not None and baseline is not None:
            _, low, high = paired_bootstrap_ci(
                variant,
                baseline,
                over_tracks=statistic,
                n_resamples=n_resamples,
                seed=bootstrap_seed,
                confidence=confidence,
            )
            p_values = paired_wilcoxon(variant, baseline)
        for index, column in enumerate(columns):
            mean_v, se_v = summary[comparison.variant][column]
            mean_b, se_b = summary[comparison.baseline][column]
            ci_low, ci_high = float(low[index]), float(high[index])
            defined = not (math.isnan(ci_low) or math.isnan(ci_high))
            records.append(
                {
                    "aggregation": aggregation,
                    "row": comparison.label,
                    "kind": _DIFFERENCE_KIND,
                    "target": column,
                    "mean": mean_v - mean_b,
                    "se": _combined_se(se_v, se_b),
                    "n_seeds": pd.NA,
                    "ci_low": ci_low,
                    "ci_high": ci_high,
                    "p_value": float(p_values[index]),
                    "significant": (not ci_low <= 0.0 <= ci_high) if defined else pd.NA,
                }
            )

    frame = pd.DataFrame.from_records(records, columns=list(_COLUMNS))
    frame = frame.astype(
        {
            "aggregation": "object",
            "row": "object",
            "kind": "object",
            "target": "object",
            "mean": "float64",
            "se": "float64",
            "n_seeds": "Int64",
            "ci_low": "float64",
            "ci_high": "float64",
            "p_value": "float64",
            "significant": "boolean",
        }
    )
    return frame, seed_values


def build_table(
    methods: Sequence[MethodRuns],
    comparisons: Sequence[Comparison] = (),
    targets: Sequence[str] = TARGETS,
    metric: str = "SDR",
    *,
    n_resamples: int = 2000,
    bootstrap_seed: int = 0,
    confidence: float = 0.95,
) -> SDRTable:
    """Aggregate score directories into an :class:`SDRTable` (see the module docstring).

    Per method and seed: per-track median over frames of ``metric`` (one of :data:`METRICS`), then
    per target the median over tracks ("median" table) and the mean over tracks ("mean" table);
    for SDR, when any method's files carry ``"nsdr"``, also the mean over tracks of the per-track
    nSDR ("nsdr" table; NA for methods without). "All" is the mean of the targets' values. Across
    seeds: mean, standard error (ddof=1 std / sqrt(n), NaN for one seed) and the number of seeds.
    One difference row per comparison, per target and All: mean(variant) - mean(baseline) with SE
    sqrt(se_v² + se_b²) (a single run's NaN SE counts as 0 when the other SE is defined; NaN when
    both are single runs), a ``confidence`` paired bootstrap interval (:func:`paired_bootstrap_ci`,
    ``n_resamples`` resamples from random seed ``bootstrap_seed``), ``significant`` (the interval
    excludes 0) and a Wilcoxon signed-rank p-value (:func:`paired_wilcoxon`).

    Raises ValueError for an unknown metric, duplicate method names, a comparison naming an unknown
    method, unreadable or ill-formed score files (naming the file), or when the seeds of a method or
    the methods do not all cover the same set of tracks.
    """
    methods = tuple(methods)
    comparisons = tuple(comparisons)
    targets = tuple(targets)
    _validate(methods, comparisons, targets, metric)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")

    runs: dict[str, dict[str, _Run]] = {}
    for method in methods:
        labels = _seed_labels(method.seed_dirs)
        runs[method.name] = {
            label: _read_run(seed_dir, targets, metric)
            for label, seed_dir in zip(labels, method.seed_dirs, strict=True)
        }
    tracks = sorted(
        _check_track_sets(
            {
                (name, seed): frozenset(run.medians.index)
                for name, seeds in runs.items()
                for seed, run in seeds.items()
            }
        )
    )
    durations = frozenset().union(*(run.frame_durations for seeds in runs.values() for run in seeds.values()))
    seed_labels = {name: list(seeds) for name, seeds in runs.items()}

    medians, nsdr = _per_track_values(methods, runs, tracks, targets, metric)
    sources: dict[str, Mapping[str, np.ndarray | None]] = {"median": medians, "mean": medians}
    if metric == "SDR" and any(array is not None for array in nsdr.values()):
        sources["nsdr"] = nsdr
        lacking = [name for name, array in nsdr.items() if array is None]
        if lacking:
            logger.info("no nSDR for %s: NA in the nSDR table", lacking)

    results: dict[str, pd.DataFrame] = {}
    seeds: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for aggregation, values in sources.items():
        results[aggregation], seeds[aggregation] = _aggregate_table(
            aggregation,
            methods,
            comparisons,
            values,
            seed_labels,
            targets,
            n_resamples=int(n_resamples),
            bootstrap_seed=bootstrap_seed,
            confidence=confidence,
        )

    table = SDRTable(
        results=results,
        seeds=seeds,
        metric=metric,
        n_tracks=len(tracks),
        targets=targets,
        comparisons=comparisons,
        frame_duration=next(iter(durations)) if len(durations) == 1 else None,
        notes={method.name: method.note for method in methods if method.note},
        n_resamples=int(n_resamples),
        bootstrap_seed=bootstrap_seed,
        confidence=confidence,
    )
    logger.info(
        "built %s table: %d methods, %d comparisons, %d tracks, aggregations %s",
        metric,
        len(methods),
        len(comparisons),
        len(tracks),
        list(results),
    )
    return table
