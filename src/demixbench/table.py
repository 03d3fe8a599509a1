"""SDR leaderboard tables from per-track museval / SiSEC score files.

A score file holds one track's framewise metrics in the museval JSON format, optionally gzipped
(``<track name>.json`` or ``<track name>.json.gz``)::

    {"targets": [{"name": "drums",
                  "frames": [{"time": 0.0, "duration": 1.0,
                              "metrics": {"SDR": 1.2, "SIR": ..., "SAR": ..., "ISR": ...}}, ...]},
                 ...]}

Aggregation follows museval / SiSEC 2018: per track, the median over frames (NaN frames, i.e.
silent reference frames, skipped); per method, the median over tracks. Seeds are first-class: a
method is a set of runs (one score directory per seed), reported as the mean ± standard error over
seeds. "All" is the mean of the per-target values. A :class:`Comparison` adds a difference row
(variant - baseline) whose standard error combines both methods' standard errors.

Every method (and every seed of a method) must cover exactly the same tracks; otherwise
:func:`build_table` raises rather than compare numbers computed over different test sets.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from demixbench import TARGETS
from demixbench.fileio import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = [
    "ALL",
    "KINDS",
    "Comparison",
    "MethodRuns",
    "SDRTable",
    "build_table",
    "find_score_files",
    "load_track_scores",
    "track_frame_medians",
]

#: Label of the column averaging the per-target values.
ALL: str = "All"

#: Allowed :attr:`MethodRuns.kind` values; difference rows get the kind ``"difference"``.
KINDS: tuple[str, ...] = ("model", "oracle", "imported")

#: Score file suffixes, longest first so that ``.json.gz`` is not read as ``.json``.
_SUFFIXES: tuple[str, ...] = (".json.gz", ".json")

_DIFFERENCE_KIND = "difference"


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


def _parse_targets(path: Path, metric: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """target -> (metric values, frame durations) of one score file, validating its structure."""
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
    return parsed


def load_track_scores(path: Path, metric: str = "SDR") -> dict[str, np.ndarray]:
    """Per-frame values of ``metric`` for every target in one score file (NaN frames kept).

    Reads ``.json`` and ``.json.gz``. A malformed file (not JSON, no ``"targets"``, a frame without
    the metric, ...) raises ValueError naming the file and the problem.
    """
    return {name: values for name, (values, _) in _parse_targets(Path(path), metric).items()}


def _nanmedian(values: np.ndarray) -> float:
    """Median skipping NaN; NaN (without numpy's all-NaN warning) when nothing is finite."""
    finite = values[~np.isnan(values)]
    return float(np.median(finite)) if finite.size else math.nan


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
    scores_dir = Path(scores_dir)
    files = find_score_files(scores_dir)
    rows: dict[str, list[float]] = {}
    durations: set[float] = set()
    for track, path in files.items():
        parsed = _parse_targets(path, metric)
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
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(targets))
    table.index.name = "track"
    table.attrs["frame_duration"] = durations.pop() if len(durations) == 1 else None
    logger.debug("%s: %d tracks, targets %s", scores_dir, len(table), targets)
    return table


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
    """

    name: str
    seed_dirs: tuple[Path, ...]
    kind: str = "model"

    def __post_init__(self) -> None:
        object.__setattr__(self, "seed_dirs", tuple(Path(d) for d in self.seed_dirs))
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
# The table
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


def _format_cell(mean: float, se: float, signed: bool) -> str:
    """``4.21 ± 0.13``; ``4.21`` when the SE is NaN; ``+0.12 ± 0.05`` for differences; ``n/a`` for NaN."""
    if math.isnan(mean):
        return "n/a"
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return text if math.isnan(se) else f"{text} ± {se:.2f}"


def _escape_markdown(text: str) -> str:
    """Escape the characters that would break a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


@dataclass(frozen=True, eq=False)
class SDRTable:
    """A built leaderboard.

    data: tidy DataFrame, one row per (row, target) with columns ``row``, ``kind`` (model, oracle,
        imported or difference), ``target`` (each target, then ``"All"``), ``mean``, ``se`` and
        ``n_seeds`` (nullable integer; NA for difference rows).
    metric: the metric aggregated, e.g. ``"SDR"``.
    aggregation: human-readable description of the aggregation.
    n_tracks: number of test tracks every method covers.
    targets: the target columns, in order (``"All"`` excluded).
    seed_values: row -> seed label -> target or ``"All"`` -> per-seed value.
    comparisons: the comparisons behind the difference rows.
    """

    data: pd.DataFrame
    metric: str
    aggregation: str
    n_tracks: int
    targets: tuple[str, ...]
    seed_values: Mapping[str, Mapping[str, Mapping[str, float]]]
    comparisons: tuple[Comparison, ...] = field(default=())

    @property
    def columns(self) -> tuple[str, ...]:
        """The value columns: targets, then ``"All"``."""
        return (*self.targets, ALL)

    def _rows(self) -> list[tuple[str, str, pd.DataFrame]]:
        """(row label, kind, that row's part of :attr:`data` indexed by target), in table order."""
        rows = []
        for label in dict.fromkeys(self.data["row"]):
            part = self.data[self.data["row"] == label].set_index("target")
            rows.append((label, str(part["kind"].iloc[0]), part))
        return rows

    def _n_seeds(self, label: str) -> int:
        return len(self.seed_values[label])

    def caption(self) -> str:
        """One line stating the aggregation and the number of test tracks."""
        return f"{self.aggregation}; {self.n_tracks} test tracks."

    def to_markdown(self) -> str:
        """GitHub Markdown table with a caption line above; difference rows come last."""
        header = ["method", "seeds", *self.columns]
        lines = [
            self.caption(),
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join([":---", "---:"] + ["---:"] * len(self.columns)) + "|",
        ]
        comparisons = {comparison.label: comparison for comparison in self.comparisons}
        for label, kind, part in self._rows():
            difference = kind == _DIFFERENCE_KIND
            if difference:
                comparison = comparisons[label]
                seeds = f"{self._n_seeds(comparison.variant)} vs {self._n_seeds(comparison.baseline)}"
            else:
                seeds = str(self._n_seeds(label))
            cells = [
                _format_cell(float(part.at[column, "mean"]), float(part.at[column, "se"]), signed=difference)
                for column in self.columns
            ]
            lines.append("| " + " | ".join([_escape_markdown(label), seeds, *cells]) + " |")
        return "\n".join(lines) + "\n"

    def to_csv(self, path: Path) -> Path:
        """Write :attr:`data` (one row per method/difference and target) as CSV; returns the path."""
        text = self.data.to_csv(index=False, lineterminator="\n")
        return atomic_write_text(Path(path), text)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict (NaN as None); the structure :meth:`to_json` writes."""
        rows: dict[str, Any] = {}
        differences: dict[str, Any] = {}
        comparisons = {comparison.label: comparison for comparison in self.comparisons}
        for label, kind, part in self._rows():
            values = {
                column: {"mean": float(part.at[column, "mean"]), "se": float(part.at[column, "se"])}
                for column in self.columns
            }
            if kind == _DIFFERENCE_KIND:
                comparison = comparisons[label]
                differences[label] = {
                    "variant": comparison.variant,
                    "baseline": comparison.baseline,
                    **values,
                }
            else:
                rows[label] = {
                    "kind": kind,
                    "n_seeds": self._n_seeds(label),
                    **values,
                    "seeds": {seed: dict(per_seed) for seed, per_seed in self.seed_values[label].items()},
                }
        document = {
            "metric": self.metric,
            "aggregation": self.aggregation,
            "n_tracks": self.n_tracks,
            "rows": rows,
            "differences": differences,
        }
        return _clean(document)

    def to_json(self, path: Path) -> Path:
        """Write the table as strict JSON (NaN as null), usable as DVC metrics; returns the path."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False, ensure_ascii=False) + "\n"
        return atomic_write_text(Path(path), text)

    def write(self, out_dir: Path, stem: str = "sdr") -> dict[str, Path]:
        """Write ``{stem}.md``, ``{stem}.csv`` and ``{stem}.json`` atomically into ``out_dir``.

        Returns the written paths keyed by ``"md"``, ``"csv"`` and ``"json"``.
        """
        out_dir = Path(out_dir)
        paths = {
            "md": atomic_write_text(out_dir / f"{stem}.md", self.to_markdown()),
            "csv": self.to_csv(out_dir / f"{stem}.csv"),
            "json": self.to_json(out_dir / f"{stem}.json"),
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


def _aggregation_label(metric: str, frame_duration: float | None) -> str:
    frames = f"{frame_duration:g} s frames" if frame_duration else "frames"
    return f"{metric} (dB): median over {frames}, median over tracks; mean ± s.e. over seeds"


def _over_tracks(medians: pd.DataFrame, targets: Sequence[str], where: str) -> dict[str, float]:
    """Median over tracks per target (NaN tracks skipped, as museval's pandas aggregation does) and All."""
    values: dict[str, float] = {}
    for target in targets:
        column = medians[target].to_numpy(dtype=np.float64)
        n_nan = int(np.isnan(column).sum())
        if n_nan:
            logger.warning(
                "%s: %d track(s) with NaN %s skipped in the median over tracks", where, n_nan, target
            )
        values[target] = _nanmedian(column)
    values[ALL] = float(np.mean([values[target] for target in targets]))
    return values


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


def build_table(
    methods: Sequence[MethodRuns],
    comparisons: Sequence[Comparison] = (),
    targets: Sequence[str] = TARGETS,
    metric: str = "SDR",
) -> SDRTable:
    """Aggregate score directories into an :class:`SDRTable`.

    Per method and seed: per-track median over frames, then median over tracks, per target; "All"
    is the mean of the targets' values. Across seeds: mean, standard error (ddof=1 std / sqrt(n),
    NaN for one seed) and the number of seeds. One difference row per comparison, per target and
    All: mean(variant) - mean(baseline) with SE sqrt(se_v² + se_b²) (a single run's NaN SE counts as
    0 when the other SE is defined; NaN when both are single runs).

    Raises ValueError for duplicate method names, a comparison naming an unknown method, or when
    the seeds of a method or the methods do not all cover the same set of tracks.
    """
    methods = tuple(methods)
    comparisons = tuple(comparisons)
    targets = tuple(targets)
    if not methods:
        raise ValueError("at least one method is required")
    if not targets:
        raise ValueError("at least one target is required")
    if ALL in targets:
        raise ValueError(f"{ALL!r} is reserved for the mean over targets and cannot be a target")
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

    # Per seed: per-track medians over frames.
    medians: dict[str, dict[str, pd.DataFrame]] = {}
    frame_durations: set[float | None] = set()
    for method in methods:
        medians[method.name] = {}
        for label, seed_dir in zip(_seed_labels(method.seed_dirs), method.seed_dirs, strict=True):
            table = track_frame_medians(seed_dir, targets, metric)
            medians[method.name][label] = table
            frame_durations.add(table.attrs.get("frame_duration"))
    tracks = _check_track_sets(
        {
            (name, seed): frozenset(table.index)
            for name, seeds in medians.items()
            for seed, table in seeds.items()
        }
    )

    # Per seed: median over tracks; across seeds: mean and SE.
    seed_values: dict[str, dict[str, dict[str, float]]] = {}
    records: list[dict[str, Any]] = []
    summary: dict[str, dict[str, tuple[float, float]]] = {}
    columns = (*targets, ALL)
    for method in methods:
        seed_values[method.name] = {
            seed: _over_tracks(table, targets, f"{method.name}/{seed}")
            for seed, table in medians[method.name].items()
        }
        summary[method.name] = {}
        n_seeds = len(seed_values[method.name])
        for column in columns:
            mean, se = _mean_se([values[column] for values in seed_values[method.name].values()])
            summary[method.name][column] = (mean, se)
            records.append(
                {
                    "row": method.name,
                    "kind": method.kind,
                    "target": column,
                    "mean": mean,
                    "se": se,
                    "n_seeds": n_seeds,
                }
            )

    for comparison in comparisons:
        for column in columns:
            mean_v, se_v = summary[comparison.variant][column]
            mean_b, se_b = summary[comparison.baseline][column]
            records.append(
                {
                    "row": comparison.label,
                    "kind": _DIFFERENCE_KIND,
                    "target": column,
                    "mean": mean_v - mean_b,
                    "se": _combined_se(se_v, se_b),
                    "n_seeds": pd.NA,
                }
            )

    data = pd.DataFrame.from_records(records, columns=["row", "kind", "target", "mean", "se", "n_seeds"])
    data = data.astype({"mean": "float64", "se": "float64", "n_seeds": "Int64"})
    frame_duration = frame_durations.pop() if len(frame_durations) == 1 else None
    table = SDRTable(
        data=data,
        metric=metric,
        aggregation=_aggregation_label(metric, frame_duration),
        n_tracks=len(tracks),
        targets=targets,
        seed_values=seed_values,
        comparisons=comparisons,
    )
    logger.info(
        "built %s table: %d methods, %d comparisons, %d tracks",
        metric,
        len(methods),
        len(comparisons),
        len(tracks),
    )
    return table
