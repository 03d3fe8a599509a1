"""Building a table: read every method's runs, check that they cover the same tracks, and aggregate
the per-track values under each aggregation into a :class:`~demixbench.table.model.Leaderboard`
(see :mod:`demixbench.table` for the aggregations and statistics).

:func:`build_table` is what the workflow's ``make_table`` rule and ``demixbench table`` call.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from demixbench import TARGETS
from demixbench.score.scorefile import METRICS
from demixbench.table.model import (
    ALL,
    MARKS,
    OVER_TRACKS,
    Comparison,
    Leaderboard,
    MethodRuns,
    combined_comparable,
)
from demixbench.table.render import DIFFERENCE_KIND
from demixbench.table.runs import Run, read_run, seed_labels
from demixbench.table.significance import Difference, SeedDesign, compare, holm, seed_design
from demixbench.table.stats import check_bootstrap_settings, mean_se, over_tracks, paired_wilcoxon, with_all

log = logging.getLogger(__name__)

__all__ = ["build_table"]

#: The columns of every tidy table frame, in order, and their dtypes.
_DTYPES: dict[str, str] = {
    "aggregation": "object",
    "row": "object",
    "kind": "object",
    "trained_on": "object",
    "comparable": "boolean",
    "target": "object",
    "mean": "float64",
    "se": "float64",
    "n_seeds": "Int64",
    "n_tracks": "Int64",
    "design": "object",
    "se_total": "float64",
    "df": "float64",
    "ci_low": "float64",
    "ci_high": "float64",
    "p_value": "float64",
    "p_holm": "float64",
    "significant": "boolean",
    "mdd": "float64",
    "p_wilcoxon_tracks": "float64",
}


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


def _validate_inputs(
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


def _not_tested(methods: tuple[MethodRuns, ...], comparisons: tuple[Comparison, ...]) -> dict[str, str]:
    """Difference row label -> why it is not tested, for comparisons with a side that is not
    comparable (trained or selected with test tracks); logged, as the table marks them."""
    by_name = {method.name: method for method in methods}
    reasons: dict[str, str] = {}
    for comparison in comparisons:
        sides = [by_name[name] for name in (comparison.variant, comparison.baseline)]
        seen = [method.name for method in sides if method.comparable is False]
        if seen:
            reasons[comparison.label] = (
                f"not tested: {' and '.join(seen)} {MARKS['test-seen'][0]} saw MUSDB18 test tracks in training "
                "or selection"
            )
            log.warning("comparison %r: %s", comparison.label, reasons[comparison.label])
    flagged = {method.name: method.trained_on for method in methods if method.comparable is not True}
    if flagged:
        log.info("rows marked for their training data: %s", flagged)
    return reasons


def _per_track_values(
    methods: tuple[MethodRuns, ...],
    runs: Mapping[str, Mapping[str, Run]],
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
                    log.warning(
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
                log.warning(
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


def _tracks_per_column(*arrays: np.ndarray | None) -> list[int | None]:
    """Per column (targets, then All), the tracks a cell rests on: those with a value (not NaN, e.g.
    not a silent reference) in every seed of every array given; All, the fewest of its targets.
    None where an array is missing. ``arrays`` are (seeds, tracks, targets)."""
    if any(array is None for array in arrays):
        return [None] * (arrays[0].shape[2] + 1 if arrays[0] is not None else 1)
    defined = np.logical_and.reduce([~np.isnan(array).any(axis=0) for array in arrays])  # (tracks, targets)
    counts = [int(count) for count in defined.sum(axis=0)]
    return [*counts, min(counts)]


def _aggregate_table(
    aggregation: str,
    methods: tuple[MethodRuns, ...],
    comparisons: tuple[Comparison, ...],
    values: Mapping[str, np.ndarray | None],
    labels_of: Mapping[str, list[str]],
    designs: Mapping[str, SeedDesign],
    targets: tuple[str, ...],
    *,
    not_tested: Mapping[str, str],
    n_resamples: int,
    bootstrap_seed: int,
    confidence: float,
    power: float,
) -> tuple[pd.DataFrame, dict[str, dict[str, dict[str, float]]]]:
    """One aggregation's tidy frame and per-seed values. Comparisons in ``not_tested`` get the
    difference of the means only (no test, outside Holm's family)."""
    statistic = OVER_TRACKS[aggregation]
    columns = (*targets, ALL)
    seed_values: dict[str, dict[str, dict[str, float]]] = {}
    summary: dict[str, dict[str, tuple[float, float]]] = {}
    records: list[dict[str, Any]] = []
    for method in methods:
        labels = labels_of[method.name]
        array = values[method.name]
        if array is None:
            per_seed = np.full((len(labels), len(columns)), np.nan)
        else:
            per_seed = with_all(over_tracks(array, statistic, axis=1))  # (seeds, targets + 1)
        seed_values[method.name] = {
            label: {column: float(value) for column, value in zip(columns, row, strict=True)}
            for label, row in zip(labels, per_seed, strict=True)
        }
        summary[method.name] = {}
        n_tracks = _tracks_per_column(array) if array is not None else [None] * len(columns)
        for index, column in enumerate(columns):
            mean, se = mean_se(per_seed[:, index])
            summary[method.name][column] = (mean, se)
            records.append(
                {
                    "aggregation": aggregation,
                    "row": method.name,
                    "kind": method.kind,
                    "trained_on": method.trained_on,
                    "comparable": pd.NA if method.comparable is None else method.comparable,
                    "target": column,
                    "mean": mean,
                    "se": se,
                    "n_seeds": len(labels),
                    "n_tracks": pd.NA if n_tracks[index] is None else n_tracks[index],
                    "design": None,
                    "se_total": math.nan,
                    "df": math.nan,
                    "ci_low": math.nan,
                    "ci_high": math.nan,
                    "p_value": math.nan,
                    "p_holm": math.nan,
                    "significant": pd.NA,
                    "mdd": math.nan,
                    "p_wilcoxon_tracks": math.nan,
                }
            )

    differences: list[tuple[Comparison, Difference | None, np.ndarray]] = []
    for comparison in comparisons:
        variant, baseline = values[comparison.variant], values[comparison.baseline]
        if variant is None or baseline is None or comparison.label in not_tested:
            differences.append((comparison, None, np.full(len(columns), np.nan)))
            continue
        difference = compare(
            variant,
            baseline,
            labels_of[comparison.variant],
            labels_of[comparison.baseline],
            over_tracks=statistic,
            n_resamples=n_resamples,
            seed=bootstrap_seed,
            confidence=confidence,
            power=power,
        )
        differences.append((comparison, difference, paired_wilcoxon(variant, baseline)))

    # Holm across every tested cell of this table: the family a reader scans for marks.
    untested = np.full(len(columns), np.nan)
    p_values = [untested if difference is None else difference.p_value for _, difference, _ in differences]
    adjusted = holm(np.concatenate(p_values)).reshape(-1, len(columns)) if differences else []
    alpha = 1.0 - confidence
    by_name = {method.name: method for method in methods}
    for (comparison, difference, wilcoxon), p_holm in zip(differences, adjusted, strict=True):
        design = designs[comparison.label]
        comparable = combined_comparable(
            by_name[comparison.variant].comparable, by_name[comparison.baseline].comparable
        )
        variant, baseline = values[comparison.variant], values[comparison.baseline]
        n_tracks = (
            _tracks_per_column(variant, baseline)
            if variant is not None and baseline is not None
            else [None] * len(columns)
        )
        for index, column in enumerate(columns):
            mean_v, _ = summary[comparison.variant][column]
            mean_b, _ = summary[comparison.baseline][column]
            record = {
                "aggregation": aggregation,
                "row": comparison.label,
                "kind": DIFFERENCE_KIND,
                "trained_on": None,
                "comparable": pd.NA if comparable is None else comparable,
                "target": column,
                "mean": mean_v - mean_b,
                "se": math.nan,
                "n_seeds": pd.NA,
                "n_tracks": pd.NA if n_tracks[index] is None else n_tracks[index],
                "design": design.kind,
                "se_total": math.nan,
                "df": math.nan,
                "ci_low": math.nan,
                "ci_high": math.nan,
                "p_value": math.nan,
                "p_holm": float(p_holm[index]),
                "significant": pd.NA if math.isnan(p_holm[index]) else bool(p_holm[index] < alpha),
                "mdd": math.nan,
                "p_wilcoxon_tracks": float(wilcoxon[index]),
            }
            if difference is not None:
                record.update(
                    se=float(difference.se_seeds[index]),
                    se_total=float(difference.se[index]),
                    df=float(difference.df[index]),
                    ci_low=float(difference.ci_low[index]),
                    ci_high=float(difference.ci_high[index]),
                    p_value=float(difference.p_value[index]),
                    mdd=float(difference.mdd[index]),
                )
            records.append(record)

    frame = pd.DataFrame.from_records(records, columns=list(_DTYPES)).astype(_DTYPES)
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
    power: float = 0.8,
) -> Leaderboard:
    """Aggregate score directories into a :class:`~demixbench.table.model.Leaderboard` (see
    :mod:`demixbench.table`).

    Per method and seed: per-track median over frames of ``metric`` (one of
    :data:`~demixbench.score.scorefile.METRICS`), then per target the median over tracks ("median"
    table) and the mean over tracks ("mean" table);
    for SDR, when any method's files carry ``"nsdr"``, also the mean over tracks of the per-track
    nSDR ("nsdr" table; NA for methods without). "All" is the mean of the targets' values. Across
    seeds: mean, standard error (ddof=1 std / sqrt(n), NaN for one seed) and the number of seeds.
    One difference row per comparison, per target and All (:func:`~demixbench.table.significance.compare`):
    mean(variant) - mean(baseline); its seed design (paired by seed when both methods have the same
    seed labels, else unpaired, pooled for a single run, untested for one run per side) and seed
    standard error; a ``confidence`` t interval and two-sided t test whose standard error counts
    the seeds and the tracks (``n_resamples`` track resamples from random seed ``bootstrap_seed``);
    the p-value Holm-adjusted across all tested cells of the table, ``significant`` where it is
    below 1 - ``confidence``; the minimum detectable difference at ``power``; and, as a secondary
    statistic never used for significance, a per-track Wilcoxon signed-rank p-value.

    Raises ValueError for an unknown metric, duplicate method names, a comparison naming an unknown
    method, unreadable or ill-formed score files (naming the file), or when the seeds of a method or
    the methods do not all cover the same set of tracks.
    """
    methods = tuple(methods)
    comparisons = tuple(comparisons)
    targets = tuple(targets)
    _validate_inputs(methods, comparisons, targets, metric)
    check_bootstrap_settings(n_resamples, confidence)
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power!r}")

    runs: dict[str, dict[str, Run]] = {}
    for method in methods:
        labels = seed_labels(method.seed_dirs)
        runs[method.name] = {
            label: read_run(seed_dir, targets, metric) for label, seed_dir in zip(labels, method.seed_dirs, strict=True)
        }
    tracks = sorted(
        _check_track_sets(
            {(name, seed): frozenset(run.medians.index) for name, seeds in runs.items() for seed, run in seeds.items()}
        )
    )
    durations = frozenset().union(*(run.frame_durations for seeds in runs.values() for run in seeds.values()))
    labels_of = {name: list(seeds) for name, seeds in runs.items()}
    designs = {
        comparison.label: seed_design(labels_of[comparison.variant], labels_of[comparison.baseline])
        for comparison in comparisons
    }
    not_tested = _not_tested(methods, comparisons)
    hops = frozenset().union(*(run.frame_hops for seeds in runs.values() for run in seeds.values()))

    medians, nsdr = _per_track_values(methods, runs, tracks, targets, metric)
    sources: dict[str, Mapping[str, np.ndarray | None]] = {"median": medians, "mean": medians}
    if metric == "SDR" and any(array is not None for array in nsdr.values()):
        sources["nsdr"] = nsdr
        lacking = [name for name, array in nsdr.items() if array is None]
        if lacking:
            log.info("no nSDR for %s: NA in the nSDR table", lacking)

    results: dict[str, pd.DataFrame] = {}
    seeds: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for aggregation, values in sources.items():
        results[aggregation], seeds[aggregation] = _aggregate_table(
            aggregation,
            methods,
            comparisons,
            values,
            labels_of,
            designs,
            targets,
            not_tested=not_tested,
            n_resamples=int(n_resamples),
            bootstrap_seed=bootstrap_seed,
            confidence=confidence,
            power=power,
        )

    table = Leaderboard(
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
        power=power,
        designs=designs,
        frame_hop=next(iter(hops)) if len(hops) == 1 else None,
        trained_on={method.name: str(method.trained_on) for method in methods},
        not_tested=not_tested,
    )
    log.info(
        "built %s table: %d methods, %d comparisons, %d tracks, aggregations %s",
        metric,
        len(methods),
        len(comparisons),
        len(tracks),
        list(results),
    )
    return table


def make_table(
    methods: Sequence[MethodRuns],
    comparisons: Sequence[Comparison],
    out_dir: Path,
    metric: str = "SDR",
    *,
    n_resamples: int = 2000,
    bootstrap_seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Path]:
    """What rule ``make_table`` runs: :func:`build_table` for ``metric``, written into ``out_dir``
    as ``<metric>.md``, ``.csv``, ``.json``, ``.tex``, ``.html`` and ``.metrics.json`` (metric in
    lower case). Returns the written paths keyed by format (see
    :meth:`~demixbench.table.model.Leaderboard.write`)."""
    table = build_table(
        methods,
        comparisons,
        metric=metric,
        n_resamples=n_resamples,
        bootstrap_seed=bootstrap_seed,
        confidence=confidence,
    )
    return table.write(Path(out_dir))
