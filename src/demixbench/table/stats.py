"""Statistics of a table: aggregation over tracks, mean and standard error over seeds, and for
difference rows the paired bootstrap interval and the Wilcoxon signed-rank p-value (see
:mod:`demixbench.table` for what each statistic is).

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
    "combined_se",
    "mean_se",
    "over_tracks",
    "paired_bootstrap_ci",
    "paired_wilcoxon",
    "with_all",
]

#: Upper bound on the elements of one gathered bootstrap block (memory stays ~100 MB at most).
_BOOTSTRAP_BLOCK = 4_000_000


def over_tracks(values: np.ndarray, statistic: str, axis: int) -> np.ndarray:
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


def with_all(values: np.ndarray) -> np.ndarray:
    """Append the mean over the last axis (targets) as one more column: "All"."""
    return np.concatenate([values, values.mean(axis=-1, keepdims=True)], axis=-1)


def _seed_aggregate(values: np.ndarray, seeds: np.ndarray, tracks: np.ndarray, statistic: str) -> np.ndarray:
    """(resamples, targets): per resample, the mean over the drawn seeds of the aggregate over the
    drawn tracks. values (S, N, K); seeds (R, S') and tracks (R, N') indices."""
    gathered = values[seeds[:, :, np.newaxis], tracks[:, np.newaxis, :]]  # (R, S', N', K)
    return over_tracks(gathered, statistic, axis=2).mean(axis=1)


def check_bootstrap_settings(n_resamples: int, confidence: float) -> None:
    """ValueError unless ``n_resamples`` is a positive integer (a bool is not) and ``confidence``
    lies in (0, 1): the paired bootstrap's settings, checked by :func:`paired_bootstrap_ci` and
    before a table reads any score file."""
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


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
    check_bootstrap_settings(n_resamples, confidence)
    n_tracks = v.shape[1]
    identity = np.arange(n_tracks)[np.newaxis]
    estimate = with_all(
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
        differences[part] = with_all(
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
    v_tracks = with_all(v.mean(axis=0))  # (N, K + 1)
    b_tracks = with_all(b.mean(axis=0))
    p_values = np.full(v_tracks.shape[1], np.nan)
    for column in range(v_tracks.shape[1]):
        x, y = v_tracks[:, column], b_tracks[:, column]
        keep = ~(np.isnan(x) | np.isnan(y))
        if not np.any(x[keep] != y[keep]):
            continue
        p_values[column] = float(stats.wilcoxon(x[keep], y[keep]).pvalue)
    return p_values


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (ddof=1 std / sqrt(n)) over seeds; SE is NaN for a single seed."""
    array = np.asarray(values, dtype=np.float64)
    mean = float(np.mean(array))
    se = float(np.std(array, ddof=1) / math.sqrt(array.size)) if array.size > 1 else math.nan
    return mean, se


def combined_se(se_variant: float, se_baseline: float) -> float:
    """SE of a difference; a NaN SE (single run) counts as 0 unless both are NaN."""
    if math.isnan(se_variant) and math.isnan(se_baseline):
        return math.nan
    return math.hypot(
        0.0 if math.isnan(se_variant) else se_variant,
        0.0 if math.isnan(se_baseline) else se_baseline,
    )
