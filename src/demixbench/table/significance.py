"""Seed-aware comparison of two methods: the difference of their table aggregates, its standard
error with seeds *and* tracks as sources of variance, a t interval and test, the Holm correction
across a table's cells, and the minimum detectable difference (docs/statistics.md says why).

Per-track values are arrays shaped (seeds, tracks, targets), tracks in the same order on both
sides; every result is per column (targets, then "All", the mean of the targets), shaped
(targets + 1,).

The model behind it: a cell's statistic is, per seed, the aggregate over tracks (median or mean)
of the per-track values, then the mean over seeds. Its difference ``D`` between two methods varies
with the training seeds drawn and with the test tracks drawn. The two parts of its variance are
estimated separately and added:

* **seeds**: from the per-seed aggregates. When both methods were trained with the same seed values
  (common random numbers, see docs/architecture.md) the per-seed differences are paired: ``var(d_s)
  / S``; otherwise each side's ``s² / S`` (Welch), and a side with one run borrows the other side's
  ``s²`` (pooled: assumes equal seed variance). With one run per side it is unknown: no test.
* **tracks**: the variance of ``D`` over bootstrap resamples of the test tracks, the same draw for
  every seed of both methods (paired by track), seeds held fixed.

The two estimates share the seed-by-track residual once too often, which makes the total slightly
conservative. The reference distribution is Student's t with the seed part's degrees of freedom
(Welch-Satterthwaite over the two sides when unpaired), so that 2 to 5 seeds (1 to 4 degrees of
freedom) get the wide intervals they need; a bootstrap over so few seeds would not.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from demixbench.table.stats import check_bootstrap_settings, per_track_array, seed_aggregate, with_all
from demixbench.table.stats import over_tracks as aggregate_over_tracks

__all__ = [
    "DESIGNS",
    "Difference",
    "SeedDesign",
    "compare",
    "detectable_difference",
    "holm",
    "satterthwaite",
    "seed_design",
    "track_variance",
]

#: Seed design of a comparison -> what it means (captions and docs/statistics.md).
DESIGNS: dict[str, str] = {
    "paired": "both methods trained with the same seeds: per-seed differences, their mean ± s.e.",
    "unpaired": "the seeds differ: each method's seed variance on its own (Welch)",
    "pooled": "one method has a single run: it borrows the other method's seed variance (pooled, "
    "assumes equal seed variance)",
    "untested": "one run per method: seed variance unknown, no test",
}

#: Upper bound on the elements of one gathered bootstrap block (memory stays ~100 MB at most).
_BOOTSTRAP_BLOCK = 4_000_000


@dataclass(frozen=True)
class SeedDesign:
    """How the seeds of a comparison's two methods relate (one of :data:`DESIGNS`).

    variant_seeds, baseline_seeds: the seed labels of each side, e.g. ``("seed1", "seed2")``.
    """

    kind: str
    variant_seeds: tuple[str, ...]
    baseline_seeds: tuple[str, ...]

    @property
    def counts(self) -> str:
        """``"5 vs 1"``."""
        return f"{len(self.variant_seeds)} vs {len(self.baseline_seeds)}"

    @property
    def reason(self) -> str:
        """One sentence for captions: the design and, where it is not paired, why."""
        variant, baseline = set(self.variant_seeds), set(self.baseline_seeds)
        if self.kind == "paired":
            return f"paired by seed ({len(variant)} seeds shared)"
        if self.kind == "untested":
            return "1 seed per side: seed variance unknown, no test"
        single = "A" if len(variant) == 1 else "B"
        other = "B" if single == "A" else "A"
        if self.kind == "pooled":
            return f"{single} has 1 seed: its seed variance is borrowed from {other} (pooled)"
        only = sorted(variant ^ baseline)
        return f"unpaired: seeds {', '.join(only)} are on one side only" if only else "unpaired"


def seed_design(variant_seeds: Sequence[str], baseline_seeds: Sequence[str]) -> SeedDesign:
    """Paired when both sides have the same (at least two) seed labels; otherwise unpaired when
    both have two or more, pooled when one side has a single run, untested when both do."""
    variant, baseline = tuple(variant_seeds), tuple(baseline_seeds)
    if not variant or not baseline:
        raise ValueError("each side of a comparison needs at least one seed")
    if len(set(variant)) != len(variant) or len(set(baseline)) != len(baseline):
        raise ValueError(f"duplicate seed labels: {variant} vs {baseline}")
    if set(variant) == set(baseline) and len(variant) >= 2:
        kind = "paired"
    elif len(variant) >= 2 and len(baseline) >= 2:
        kind = "unpaired"
    elif len(variant) + len(baseline) >= 3:
        kind = "pooled"
    else:
        kind = "untested"
    return SeedDesign(kind, variant, baseline)


@dataclass(frozen=True)
class Difference:
    """The statistics of one comparison ``variant - baseline``, each shaped (targets + 1,).

    estimate: mean over seeds of the variant's aggregates minus the baseline's.
    se_seeds: standard error from the seeds alone (what the tables print after ±).
    se_tracks: standard error from resampling the test tracks.
    se: sqrt(se_seeds² + se_tracks²), the standard error the test and interval use.
    df: degrees of freedom of the test: those of the seed part (pairs - 1, Welch-Satterthwaite
        over the two sides, or the borrowing side's seeds - 1); the tracks' are larger.
    ci_low, ci_high: ``confidence`` t interval ``estimate ± t(df) se``.
    p_value: two-sided t test of "no difference" (not corrected for multiple cells: see :func:`holm`).
    mdd: minimum detectable difference: the smallest true difference the test detects with
        probability ``power`` at level 1 - ``confidence``.
    NaN everywhere but ``estimate`` (and ``se_tracks``) when the design is untested.
    """

    design: SeedDesign
    estimate: np.ndarray
    se_seeds: np.ndarray
    se_tracks: np.ndarray
    se: np.ndarray
    df: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_value: np.ndarray
    mdd: np.ndarray


def satterthwaite(variances: Sequence[np.ndarray], dofs: Sequence[float]) -> np.ndarray:
    """Welch-Satterthwaite degrees of freedom of a sum of independent variance estimates:
    ``(sum v)² / sum(v² / dof)`` elementwise; infinite where the sum is 0."""
    total = np.sum(variances, axis=0)
    denominator = np.sum([np.square(v) / d for v, d in zip(variances, dofs, strict=True)], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, np.square(total) / np.where(denominator > 0, denominator, 1.0), np.inf)


def track_variance(
    variant: np.ndarray,
    baseline: np.ndarray,
    *,
    over_tracks: str = "median",
    n_resamples: int = 2000,
    seed: int = 0,
) -> np.ndarray:
    """Variance of the difference of the aggregates over bootstrap resamples of the test tracks.

    ``variant`` (S_a, tracks, targets) and ``baseline`` (S_b, tracks, targets). Each resample draws
    the tracks with replacement from ``numpy.random.default_rng(seed)``, the same draw for every
    seed of both sides; the difference (per seed the ``over_tracks`` aggregate over the drawn
    tracks, mean over seeds, variant minus baseline; All the mean of the targets) is recomputed.
    Returns the sample variance (ddof=1) over resamples per column, shaped (targets + 1,).
    """
    n_tracks = variant.shape[1]
    rng = np.random.default_rng(seed)
    tracks = rng.integers(0, n_tracks, size=(n_resamples, n_tracks))
    seeds_v = np.arange(variant.shape[0])[np.newaxis]
    seeds_b = np.arange(baseline.shape[0])[np.newaxis]
    block = max(1, _BOOTSTRAP_BLOCK // (max(variant.shape[0], baseline.shape[0]) * n_tracks * variant.shape[2]))
    differences = np.empty((n_resamples, variant.shape[2] + 1), dtype=np.float64)
    for start in range(0, n_resamples, block):
        part = tracks[start : start + block]
        differences[start : start + block] = with_all(
            seed_aggregate(variant, np.broadcast_to(seeds_v, (len(part), seeds_v.shape[1])), part, over_tracks)
            - seed_aggregate(baseline, np.broadcast_to(seeds_b, (len(part), seeds_b.shape[1])), part, over_tracks)
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN
        return np.nanvar(differences, axis=0, ddof=1)


def detectable_difference(se: float, df: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable difference of a two-sided t test with standard error ``se`` and ``df``
    degrees of freedom at level ``alpha``: the true difference ``delta`` whose power,
    ``P(|T| > t(1 - alpha/2, df))`` with ``T`` noncentral t (noncentrality ``delta / se``), is
    ``power``. NaN when ``se`` or ``df`` is NaN; 0 when ``se`` is 0."""
    if not (math.isfinite(se) and not math.isnan(df)) or df <= 0:
        return math.nan
    if se == 0.0:
        return 0.0
    critical = float(stats.t.ppf(1.0 - alpha / 2.0, df))

    def shortfall(noncentrality: float) -> float:
        # P(T < -c) is written as the upper tail at -noncentrality: scipy's nct.cdf far in the
        # lower tail returns NaN where this stays finite (it is then negligible anyway).
        upper = float(stats.nct.sf(critical, df, noncentrality))
        lower = float(stats.nct.sf(critical, df, -noncentrality))
        return upper + (lower if math.isfinite(lower) else 0.0) - power

    # The approximation critical + t(power) bounds the root from below within a few percent; the
    # upper end doubles until the power is reached.
    high = critical + float(stats.t.ppf(power, df)) + 1.0
    while shortfall(high) < 0.0:
        high *= 2.0
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-10)) * se


def compare(
    variant: np.ndarray,
    baseline: np.ndarray,
    variant_seeds: Sequence[str],
    baseline_seeds: Sequence[str],
    *,
    over_tracks: str = "median",
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    power: float = 0.8,
) -> Difference:
    """Compare ``variant`` with ``baseline`` (per-track values (seeds, tracks, targets), seed labels
    in the order of the first axis): see the module docstring and :class:`Difference`."""
    v = per_track_array(variant, "variant")
    b = per_track_array(baseline, "baseline")
    if v.shape[1:] != b.shape[1:]:
        raise ValueError(
            f"variant and baseline must have the same (tracks, targets), got {v.shape[1:]} and {b.shape[1:]}"
        )
    check_bootstrap_settings(n_resamples, confidence)
    if n_resamples < 2:
        raise ValueError(f"n_resamples must be at least 2 to estimate the tracks' variance, got {n_resamples}")
    design = seed_design(variant_seeds, baseline_seeds)
    if (len(design.variant_seeds), len(design.baseline_seeds)) != (v.shape[0], b.shape[0]):
        raise ValueError(f"seed labels {design.counts} do not match the arrays' seeds {v.shape[0]} vs {b.shape[0]}")
    per_seed_v = with_all(aggregate_over_tracks(v, over_tracks, axis=1))  # (S_a, targets + 1)
    per_seed_b = with_all(aggregate_over_tracks(b, over_tracks, axis=1))
    estimate = per_seed_v.mean(axis=0) - per_seed_b.mean(axis=0)

    if design.kind == "paired":
        order = [design.baseline_seeds.index(label) for label in design.variant_seeds]
        per_seed_d = per_seed_v - per_seed_b[order]
        seed_parts = [(per_seed_d.var(axis=0, ddof=1) / len(order), len(order) - 1)]
    elif design.kind == "unpaired":
        seed_parts = [(side.var(axis=0, ddof=1) / len(side), len(side) - 1) for side in (per_seed_v, per_seed_b)]
    elif design.kind == "pooled":
        several = per_seed_v if len(per_seed_v) > 1 else per_seed_b
        factor = 1.0 / len(per_seed_v) + 1.0 / len(per_seed_b)
        seed_parts = [(several.var(axis=0, ddof=1) * factor, len(several) - 1)]
    else:
        seed_parts = []

    track_part = track_variance(v, b, over_tracks=over_tracks, n_resamples=n_resamples, seed=seed)
    nan = np.full_like(estimate, np.nan)
    if not seed_parts:
        return Difference(design, estimate, nan, np.sqrt(track_part), nan, nan, nan, nan, nan, nan)

    seed_variance = np.sum([part for part, _ in seed_parts], axis=0)
    variance = seed_variance + track_part
    # The degrees of freedom are the seed part's, not a Satterthwaite over seeds and tracks: with
    # 1 to 4 seed degrees of freedom a small seed-variance estimate would hand the test the tracks'
    # 49 and reject far too often (10 % at 2 vs 2 paired in tests/test_significance.py).
    df = satterthwaite([part for part, _ in seed_parts], [d for _, d in seed_parts])
    se = np.sqrt(variance)
    alpha = round(1.0 - confidence, 12)  # 0.05, not 0.050000000000000044
    with np.errstate(divide="ignore", invalid="ignore"):
        half_width = stats.t.ppf(1.0 - alpha / 2.0, df) * se
        statistic = np.abs(estimate) / se
    p_value = 2.0 * stats.t.sf(statistic, df)
    # Zero variance: identical methods (p = 1) or a constant shift on every track and seed (p = 0).
    zero = se == 0.0
    p_value = np.where(zero, np.where(estimate == 0.0, 1.0, 0.0), p_value)
    p_value = np.where(np.isnan(estimate) | np.isnan(se), np.nan, p_value)
    mdd = np.array(
        [detectable_difference(float(s), float(d), alpha=alpha, power=power) for s, d in zip(se, df, strict=True)]
    )
    return Difference(
        design=design,
        estimate=estimate,
        se_seeds=np.sqrt(seed_variance),
        se_tracks=np.sqrt(track_part),
        se=se,
        df=df,
        ci_low=estimate - np.where(zero, 0.0, half_width),
        ci_high=estimate + np.where(zero, 0.0, half_width),
        p_value=p_value,
        mdd=mdd,
    )


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (Holm 1979): the i-th smallest of the m
    defined p-values becomes ``max over j <= i of min(1, (m - j + 1) p_(j))``. Rejecting where the
    adjusted p-value is below alpha keeps the chance of any false rejection in the family at most
    alpha, whatever the dependence between the tests. NaN entries stay NaN and do not count in m."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    defined = np.flatnonzero(~np.isnan(p))
    if defined.size == 0:
        return adjusted
    order = defined[np.argsort(p[defined], kind="stable")]
    m = order.size
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted
