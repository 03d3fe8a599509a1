"""Tests of demixbench.table.significance: seed designs, the track variance, the t test and interval,
Holm's correction, the minimum detectable difference, and (slow) a simulation of the false-positive
rate and power of every mark a table prints (issue 13)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from demixbench.table.build import build_table
from demixbench.table.model import Comparison, MethodRuns
from demixbench.table.significance import (
    compare,
    detectable_difference,
    holm,
    seed_design,
    track_variance,
)
from table_helpers import cell, seeded_runs

N_TRACKS = 50
N_TARGETS = 4


def simulate(
    rng: np.random.Generator,
    n_seeds: int,
    *,
    tracks: np.ndarray,
    shift: float = 0.0,
    seed_sd: float = 0.2,
    interaction_sd: float = 0.3,
    residual_sd: float = 0.5,
) -> np.ndarray:
    """Per-track values (seeds, tracks, targets) of one method: the tracks' difficulty (shared by
    the methods), a method-by-track effect (this method's luck on each track), a seed effect per
    seed and target, and per-(seed, track) noise."""
    interaction = rng.normal(0.0, interaction_sd, size=(1, N_TRACKS, N_TARGETS))
    seed_effect = rng.normal(0.0, seed_sd, size=(n_seeds, 1, N_TARGETS))
    residual = rng.normal(0.0, residual_sd, size=(n_seeds, N_TRACKS, N_TARGETS))
    return tracks + interaction + seed_effect + residual + shift


def labels(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


# ---- seed designs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "baseline", "kind"),
    [
        (["seed1", "seed2"], ["seed2", "seed1"], "paired"),
        (["seed1", "seed2"], ["seed1", "seed3"], "unpaired"),
        (["seed1", "seed2", "seed3"], ["seed1", "seed2"], "unpaired"),
        (["seed1"], ["seed1", "seed2", "seed3", "seed4", "seed5"], "pooled"),
        (["a", "b"], ["c"], "pooled"),
        (["seed1"], ["seed1"], "untested"),
        (["a"], ["b"], "untested"),
    ],
)
def test_seed_design(variant: list[str], baseline: list[str], kind: str) -> None:
    design = seed_design(variant, baseline)
    assert design.kind == kind
    assert design.counts == f"{len(variant)} vs {len(baseline)}"
    if kind == "untested":
        assert "seed variance unknown" in design.reason
    if kind == "pooled":
        assert "borrowed" in design.reason
    if variant == ["seed1", "seed2"] and baseline == ["seed1", "seed3"]:
        assert design.reason == "unpaired: seeds seed2, seed3 are on one side only"


def test_seed_design_errors() -> None:
    with pytest.raises(ValueError, match="at least one seed"):
        seed_design([], ["a"])
    with pytest.raises(ValueError, match="duplicate"):
        seed_design(["a", "a"], ["a", "b"])


# ---- the statistics against their definitions --------------------------------------------------


@pytest.mark.parametrize("statistic", ["median", "mean"])
def test_track_variance_matches_its_definition(statistic: str) -> None:
    rng = np.random.default_rng(4)
    variant, baseline = rng.normal(5, 2, size=(3, 9, 2)), rng.normal(4, 2, size=(2, 9, 2))
    aggregate = np.median if statistic == "median" else np.mean
    draws = np.random.default_rng(7).integers(0, 9, size=(120, 9))
    naive = []
    for tracks in draws:
        per_target = [
            np.mean([aggregate(variant[s, tracks, k]) for s in range(3)])
            - np.mean([aggregate(baseline[s, tracks, k]) for s in range(2)])
            for k in range(2)
        ]
        naive.append([*per_target, np.mean(per_target)])
    expected = np.var(np.asarray(naive), axis=0, ddof=1)
    got = track_variance(variant, baseline, over_tracks=statistic, n_resamples=120, seed=7)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_paired_compare_matches_a_hand_computation() -> None:
    rng = np.random.default_rng(0)
    tracks = rng.normal(5.0, 3.0, size=(1, N_TRACKS, N_TARGETS))
    variant = simulate(rng, 3, tracks=tracks, shift=0.2)
    baseline = simulate(rng, 3, tracks=tracks)
    # The baseline's seeds in another order: pairing goes by label, not position.
    result = compare(
        variant, baseline[[2, 0, 1]], ["s0", "s1", "s2"], ["s2", "s0", "s1"], over_tracks="mean", n_resamples=300
    )
    assert result.design.kind == "paired"
    per_seed = np.concatenate([variant.mean(axis=1), variant.mean(axis=1).mean(axis=1, keepdims=True)], axis=1)
    per_seed -= np.concatenate([baseline.mean(axis=1), baseline.mean(axis=1).mean(axis=1, keepdims=True)], axis=1)
    np.testing.assert_allclose(result.estimate, per_seed.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(result.se_seeds, per_seed.std(axis=0, ddof=1) / math.sqrt(3), rtol=1e-12)
    track_part = track_variance(variant, baseline, over_tracks="mean", n_resamples=300, seed=0)
    np.testing.assert_allclose(result.se, np.sqrt(result.se_seeds**2 + track_part), rtol=1e-12)
    df = np.full(N_TARGETS + 1, 2.0)  # the seed part's: 3 pairs - 1
    np.testing.assert_allclose(result.df, df, rtol=1e-10)
    t = stats.t.ppf(0.975, df)
    np.testing.assert_allclose(result.ci_low, result.estimate - t * result.se, rtol=1e-10)
    np.testing.assert_allclose(result.ci_high, result.estimate + t * result.se, rtol=1e-10)
    np.testing.assert_allclose(result.p_value, 2 * stats.t.sf(np.abs(result.estimate) / result.se, df), rtol=1e-10)


def test_pooled_and_untested_single_runs() -> None:
    rng = np.random.default_rng(1)
    tracks = rng.normal(5.0, 3.0, size=(1, N_TRACKS, N_TARGETS))
    one, five = simulate(rng, 1, tracks=tracks), simulate(rng, 5, tracks=tracks)
    pooled = compare(one, five, ["seed1"], labels("seed", 5), over_tracks="mean", n_resamples=200)
    per_seed = np.concatenate([five.mean(axis=1), five.mean(axis=1).mean(axis=1, keepdims=True)], axis=1)
    expected = per_seed.std(axis=0, ddof=1) * math.sqrt(1 + 1 / 5)  # the single run borrows the 5 seeds' s.d.
    np.testing.assert_allclose(pooled.se_seeds, expected, rtol=1e-12)
    assert np.all(np.isfinite(pooled.p_value)) and np.all(pooled.mdd > pooled.se)

    untested = compare(one, five[:1], ["a"], ["b"], n_resamples=50)
    assert untested.design.kind == "untested"
    assert np.all(np.isfinite(untested.estimate))
    for values in (untested.se, untested.ci_low, untested.p_value, untested.mdd):
        assert np.all(np.isnan(values))


def test_identical_methods_and_constant_shift() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(5.0, 2.0, size=(3, 20, 2))
    same = compare(values, values, labels("s", 3), labels("s", 3), n_resamples=100)
    np.testing.assert_array_equal(same.estimate, 0.0)
    np.testing.assert_array_equal(same.p_value, 1.0)
    np.testing.assert_array_equal(same.ci_low, 0.0)
    np.testing.assert_array_equal(same.ci_high, 0.0)
    shifted = compare(values + 1.0, values, labels("s", 3), labels("s", 3), n_resamples=100)
    np.testing.assert_allclose(shifted.estimate, 1.0)
    assert np.all(shifted.p_value < 1e-100)  # rounding leaves a tiny variance


def test_holm() -> None:
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.005])
    np.testing.assert_allclose(holm(p), [0.03, 0.06, np.nan, 0.06, 0.02])
    assert np.isnan(holm([np.nan, np.nan])).all()
    np.testing.assert_allclose(holm([0.4, 0.5]), [0.8, 0.8])
    np.testing.assert_allclose(holm([0.9, 0.2]), [0.9, 0.4])  # capped at 1, monotone


@pytest.mark.parametrize("df", [1.0, 2.5, 4.0, 30.0])
def test_detectable_difference_has_the_stated_power(df: float) -> None:
    se = 0.17
    mdd = detectable_difference(se, df, alpha=0.05, power=0.8)
    critical = stats.t.ppf(0.975, df)
    power = stats.nct.sf(critical, df, mdd / se) + stats.nct.cdf(-critical, df, mdd / se)
    assert power == pytest.approx(0.8, abs=1e-6)
    # Monte Carlo check of the same power with the t test itself.
    rng = np.random.default_rng(int(df * 10))
    estimates = rng.normal(mdd, se, size=200_000)
    se_draws = se * np.sqrt(rng.chisquare(df, size=200_000) / df)
    assert np.mean(np.abs(estimates / se_draws) > critical) == pytest.approx(0.8, abs=0.005)


def test_detectable_difference_limits() -> None:
    assert detectable_difference(1.0, 1e7) == pytest.approx(stats.norm.ppf(0.975) + stats.norm.ppf(0.8), rel=1e-4)
    assert detectable_difference(0.0, 3.0) == 0.0
    assert math.isnan(detectable_difference(math.nan, 3.0))
    assert detectable_difference(1.0, 2.0) > detectable_difference(1.0, 10.0)


# ---- common random numbers pay off in the paired design -----------------------------------------


def test_paired_design_uses_common_random_numbers(tmp_path: Path) -> None:
    """A variant trained with the baseline's seeds shares its seed effect: pairing by seed removes it,
    so a small true effect is detected paired and not when the seed names differ."""
    rng = np.random.default_rng(3)
    tracks = rng.normal(5.0, 3.0, size=(1, N_TRACKS, N_TARGETS))
    baseline = simulate(rng, 4, tracks=tracks, seed_sd=0.4, residual_sd=0.05, interaction_sd=0.0)
    variant = baseline + 0.15 + rng.normal(0.0, 0.02, size=baseline.shape)
    paired = compare(variant, baseline, labels("seed", 4), labels("seed", 4), n_resamples=300)
    unpaired = compare(variant, baseline, labels("seed", 4), labels("other", 4), n_resamples=300)
    assert paired.design.kind == "paired" and unpaired.design.kind == "unpaired"
    np.testing.assert_allclose(paired.estimate, unpaired.estimate)
    assert np.all(paired.se < unpaired.se / 4)
    assert np.all(paired.p_value < 0.005) and np.all(unpaired.p_value > 0.05)

    # The same through the table: seed directory names decide the pairing.
    a = seeded_runs(tmp_path, "base", baseline)
    b = seeded_runs(tmp_path, "gan", variant)
    table = build_table([MethodRuns("base", a), MethodRuns("gan", b)], [Comparison("gan", "base")], n_resamples=300)
    for column in table.columns:
        row = cell(table, "gan - base", column)
        assert row["design"] == "paired" and bool(row["significant"])
    assert "| gan - base | 4 vs 4, paired |" in table.to_markdown()
    assert "paired by seed (4 seeds shared)" in table.long_caption()


def test_table_cells_are_compare_with_holm_across_the_table(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    tracks = rng.normal(5.0, 3.0, size=(1, N_TRACKS, N_TARGETS))
    arrays = {"a": simulate(rng, 3, tracks=tracks), "b": simulate(rng, 3, tracks=tracks, shift=0.5)}
    arrays["c"] = simulate(rng, 2, tracks=tracks)
    methods = [MethodRuns(name, seeded_runs(tmp_path, name, values)) for name, values in arrays.items()]
    comparisons = [Comparison("b", "a"), Comparison("c", "a")]
    table = build_table(methods, comparisons, n_resamples=200, bootstrap_seed=11)
    for aggregation, statistic in (("median", "median"), ("mean", "mean")):
        results = [
            compare(
                arrays[c.variant],
                arrays[c.baseline],
                labels("seed", len(arrays[c.variant])),
                labels("seed", len(arrays[c.baseline])),
                over_tracks=statistic,
                n_resamples=200,
                seed=11,
            )
            for c in comparisons
        ]
        adjusted = holm(np.concatenate([r.p_value for r in results])).reshape(2, -1)
        for comparison, result, p_holm in zip(comparisons, results, adjusted, strict=True):
            for index, column in enumerate(table.columns):
                row = cell(table, comparison.label, column, aggregation)
                assert row["p_value"] == pytest.approx(result.p_value[index], rel=1e-9)
                assert row["p_holm"] == pytest.approx(p_holm[index], rel=1e-9)
                assert bool(row["significant"]) == (p_holm[index] < 0.05)
                assert row["mdd"] == pytest.approx(result.mdd[index], rel=1e-9)
                assert row["ci_low"] == pytest.approx(result.ci_low[index], rel=1e-9)
        assert table.n_tests(aggregation) == 10
        assert "Holm-adjusted across the 10 tested cells" in table.long_caption(aggregation)
    assert "c - a: unpaired: seeds seed2 are on one side only" in table.long_caption()


def test_single_runs_get_no_mark_and_say_why(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    tracks = rng.normal(5.0, 3.0, size=(1, N_TRACKS, N_TARGETS))
    one = seeded_runs(tmp_path / "x", "one", simulate(rng, 1, tracks=tracks, shift=2.0))
    other = seeded_runs(tmp_path / "y", "other", simulate(rng, 1, tracks=tracks))
    table = build_table([MethodRuns("one", one), MethodRuns("other", other)], [Comparison("one", "other")])
    for column in table.columns:
        row = cell(table, "one - other", column)
        assert row["design"] == "untested" and row["significant"] is pd.NA
        assert math.isnan(row["p_value"]) and math.isnan(row["ci_low"]) and math.isnan(row["mdd"])
        assert row["p_wilcoxon_tracks"] < 0.001  # the per-track test alone would call it significant
    markdown = table.to_markdown()
    assert "| one - other | 1 vs 1, no test |" in markdown
    assert "1 seed per side: seed variance unknown, no test" in markdown
    line = next(line for line in markdown.splitlines() if line.startswith("| one - other |"))
    assert "n.s." not in line and "p=" not in line and "[" not in line


# ---- one seed against the other seeds of the same model -----------------------------------------


def test_one_seed_against_the_other_seeds_of_the_same_model(tmp_path: Path) -> None:
    """The issue's check on the same model on both sides (per-target seed s.d. about 0.2 dB, like
    Demucs v1's five seeds): no cell is marked and every MDD exceeds the observed difference."""
    rng = np.random.default_rng(2018)
    tracks = rng.normal(5.0, 3.0, size=(1, N_TRACKS, N_TARGETS))
    interaction = rng.normal(0.0, 0.3, size=(1, N_TRACKS, N_TARGETS))  # one model: one luck per track
    seeds = tracks + interaction + rng.normal(0, 0.2, size=(5, 1, N_TARGETS)) + rng.normal(0, 0.5, (5, N_TRACKS, 4))
    directories = seeded_runs(tmp_path, "demucs", seeds)
    methods = [MethodRuns("seed0", directories[:1]), MethodRuns("seeds1-4", directories[1:])]
    table = build_table(methods, [Comparison("seed0", "seeds1-4")], n_resamples=1000)
    for aggregation in table.aggregations:
        frame = table.results[aggregation]
        differences = frame[frame["kind"] == "difference"]
        assert set(differences["design"]) == {"pooled"}
        assert not differences["significant"].any(), differences
        assert (differences["mdd"] > differences["mean"].abs()).all(), differences
        assert (differences["p_value"] > 0.05).all()
    assert "n.s." in table.to_markdown()


# ---- simulation: false positives and power of every mark ----------------------------------------


def mc_bound(alpha: float, repetitions: int) -> float:
    """alpha plus three Monte-Carlo standard errors of a rejection rate."""
    return alpha + 3.0 * math.sqrt(alpha * (1.0 - alpha) / repetitions)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("n_variant", "n_baseline", "paired", "statistic", "seed_sd"),
    [
        (2, 2, False, "median", 0.2),
        (3, 3, True, "median", 0.2),
        (5, 5, False, "median", 0.2),
        (2, 5, False, "median", 0.2),
        (1, 4, False, "median", 0.2),
        (4, 1, False, "mean", 0.2),
        (3, 3, False, "mean", 0.2),
        (5, 5, True, "mean", 0.2),
        # Seed variance dominating the tracks': few degrees of freedom, where a normal reference fails.
        (2, 2, True, "mean", 1.0),
        (2, 3, False, "median", 1.0),
    ],
)
def test_false_positive_rate_is_at_most_alpha(
    n_variant: int, n_baseline: int, paired: bool, statistic: str, seed_sd: float
) -> None:
    """No true difference, 50 tracks, a few hundred tables: every cell's uncorrected test rejects at
    most alpha of the time (plus Monte-Carlo error), and so does "any cell of the table marked"
    after Holm's correction (the family-wise rate)."""
    repetitions, alpha = 300, 0.05
    rng = np.random.default_rng(1000 * n_variant + 10 * n_baseline + paired)
    rejected = np.zeros(N_TARGETS + 1)
    any_marked = 0
    for repetition in range(repetitions):
        tracks = rng.normal(5.0, 3.0, size=(1, N_TRACKS, N_TARGETS))
        variant = simulate(rng, n_variant, tracks=tracks, seed_sd=seed_sd)
        baseline = simulate(rng, n_baseline, tracks=tracks, seed_sd=seed_sd)
        result = compare(
            variant,
            baseline,
            labels("seed", n_variant),
            labels("seed" if paired else "other", n_baseline),
            over_tracks=statistic,
            n_resamples=200,
            seed=repetition,
        )
        assert result.design.kind == ("paired" if paired else "pooled" if 1 in (n_variant, n_baseline) else "unpaired")
        rejected += result.p_value < alpha
        any_marked += bool(np.any(holm(result.p_value) < alpha))
    rates = rejected / repetitions
    bound = mc_bound(alpha, repetitions)
    assert np.all(rates <= bound), (rates, bound)
    assert any_marked / repetitions <= bound, (any_marked / repetitions, bound)


@pytest.mark.slow
@pytest.mark.parametrize("paired", [False, True])
def test_power_for_three_seed_standard_deviations_with_5_vs_5_seeds(paired: bool) -> None:
    repetitions, alpha = 200, 0.05
    rng = np.random.default_rng(77 + paired)
    # The seed standard deviation of a per-seed aggregate (median over tracks), measured.
    tracks = rng.normal(5.0, 3.0, size=(1, N_TRACKS, N_TARGETS))
    many = simulate(rng, 4000, tracks=tracks)
    seed_sd = float(np.median(many, axis=1).std(axis=0, ddof=1).mean())
    detected = np.zeros(N_TARGETS + 1)
    for repetition in range(repetitions):
        tracks = rng.normal(5.0, 3.0, size=(1, N_TRACKS, N_TARGETS))
        variant = simulate(rng, 5, tracks=tracks, shift=3.0 * seed_sd)
        baseline = simulate(rng, 5, tracks=tracks)
        result = compare(
            variant,
            baseline,
            labels("seed", 5),
            labels("seed" if paired else "other", 5),
            n_resamples=200,
            seed=repetition,
        )
        detected += result.p_value < alpha
    power = detected / repetitions
    print(f"power at 3 seed s.d. ({3 * seed_sd:.2f} dB), 5 vs 5 seeds, {'paired' if paired else 'unpaired'}: {power}")
    assert np.all(power[:N_TARGETS] > 0.5), power


def test_plan_floor_is_the_limit_of_more_seeds() -> None:
    """The tracks-only floor is what ever more seeds approach, never above what a finite count allows."""
    from demixbench.table.plan import SeedPlan

    plan = SeedPlan(
        columns=("drums", "All"),
        seed_sd=np.array([0.3, 0.1]),
        seed_df=4,
        paired_sd=np.array([0.1, 0.05]),
        track_se=np.array([0.19, 0.07]),
        track_df=2,
        n_tracks=3,
    )
    floor = plan.floor()
    np.testing.assert_allclose(floor, 2.8016 * plan.track_se, rtol=1e-3)
    for paired in (False, True):
        previous = np.full(2, np.inf)
        for n in range(2, 60):
            mdd = plan.mdd(n, paired=paired)
            assert np.all(mdd >= floor) and np.all(mdd <= previous)
            previous = mdd
        assert np.all(plan.mdd(10_000, paired=paired) == pytest.approx(floor, rel=0.01))
