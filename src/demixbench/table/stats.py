"""Statistics of a table's rows: aggregation over tracks, mean and standard error over seeds, the
gather behind every bootstrap over tracks, and the per-track Wilcoxon signed-rank p-value that
difference rows keep as a secondary statistic (the seed-aware comparison is
:mod:`demixbench.table.significance`; :mod:`demixbench.table` says what each statistic is).

Per-track values are arrays shaped (seeds, tracks, targets); "All", the mean over targets, is
appended as one more column (:func:`with_all`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = [
    "check_bootstrap_settings",
    "mean_se",
    "over_tracks",
    "paired_wilcoxon",
    "per_track_array",
    "seed_aggregate",
    "with_all",
]


def over_tracks(values: np.ndarray, statistic: str, axis: int) -> np.ndarray:
    """Median or mean over ``axis`` skipping NaN (an all-NaN slice gives NaN, silently)."""
    if statistic not in ("median", "mean"):
        raise ValueError(f"statistic over tracks must be 'median' or 'mean', got {statistic!r}")
    if not np.isnan(values).any():
        return np.median(values, axis=axis) if statistic == "median" else np.mean(values, axis=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=axis) if statistic == "median" else np.nanmean(values, axis=axis)


def per_track_array(values: np.ndarray, name: str) -> np.ndarray:
    """``values`` as float64 shaped (seeds, tracks, targets) (a (tracks, targets) array is one
    seed); ValueError naming ``name`` for any other shape or an empty axis."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3 or 0 in array.shape:
        raise ValueError(
            f"{name}: expected per-track values shaped (seeds, tracks, targets) or (tracks, targets), "
            f"got shape {np.shape(values)}"
        )
    return array


def with_all(values: np.ndarray) -> np.ndarray:
    """Append the mean over the last axis (targets) as one more column: "All"."""
    return np.concatenate([values, values.mean(axis=-1, keepdims=True)], axis=-1)


def seed_aggregate(values: np.ndarray, seeds: np.ndarray, tracks: np.ndarray, statistic: str) -> np.ndarray:
    """(resamples, targets): per resample, the mean over the drawn seeds of the aggregate over the
    drawn tracks. values (S, N, K); seeds (R, S') and tracks (R, N') indices."""
    gathered = values[seeds[:, :, np.newaxis], tracks[:, np.newaxis, :]]  # (R, S', N', K)
    return over_tracks(gathered, statistic, axis=2).mean(axis=1)


def check_bootstrap_settings(n_resamples: int, confidence: float) -> None:
    """ValueError unless ``n_resamples`` is a positive integer (a bool is not) and ``confidence``
    lies in (0, 1): the settings of the difference rows, checked before a table reads any score
    file."""
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def paired_wilcoxon(variant: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Two-sided Wilcoxon signed-rank p-values, variant vs baseline, per target and for "All".

    ``variant`` and ``baseline`` are per-track values shaped (seeds, tracks, targets) (or (tracks,
    targets)), tracks in the same order. Each side is averaged over its seeds per track; "All" uses
    the per-track mean of the targets. It treats the tracks as the only source of variance (seed
    variance is averaged away), so tables show it only as a secondary statistic, never as
    significance (docs/statistics.md). Per column, tracks with a NaN on either side are dropped and
    :func:`scipy.stats.wilcoxon` (default options, but the normal approximation for more
    than 9 pairs whose differences have ties or zeros) is applied to the pairs; the p-value is NaN when
    no pair is left or no pair differs. Returns an array shaped (targets + 1,).
    """
    v = per_track_array(variant, "variant")
    b = per_track_array(baseline, "baseline")
    if v.shape[1:] != b.shape[1:]:
        raise ValueError(
            f"variant and baseline must have the same (tracks, targets), got {v.shape[1:]} and {b.shape[1:]}"
        )
    v_tracks = with_all(v.mean(axis=0))  # (N, K + 1)
    b_tracks = with_all(b.mean(axis=0))
    p_values = np.full(v_tracks.shape[1], np.nan)
    for column in range(v_tracks.shape[1]):
        x, y = v_tracks[:, column], b_tracks[:, column]
        keep = ~(np.isnan(x) | np.isnan(y))
        if not np.any(x[keep] != y[keep]):
            continue
        differences = x[keep] - y[keep]
        # With ties or zeros scipy's default runs an exact permutation test for up to 13 pairs: cheap
        # up to 9 (0.2 s), 1.4 s per cell at 12 and doubling per pair. Beyond 9 pairs the normal
        # approximation, scipy's own choice for larger samples, is used instead.
        tied = np.unique(np.abs(differences)).size < differences.size or not np.all(differences)
        method = "asymptotic" if tied and differences.size > 9 else "auto"
        p_values[column] = float(stats.wilcoxon(x[keep], y[keep], method=method).pvalue)
    return p_values


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (ddof=1 std / sqrt(n)) over seeds; SE is NaN for a single seed."""
    array = np.asarray(values, dtype=np.float64)
    mean = float(np.mean(array))
    se = float(np.std(array, ddof=1) / math.sqrt(array.size)) if array.size > 1 else math.nan
    return mean, se
