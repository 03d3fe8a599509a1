"""Tests of demixbench.table.stats and the difference rows: paired bootstrap interval, significance,
Wilcoxon p-value."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from demixbench import TARGETS
from demixbench.table.build import build_table
from demixbench.table.model import Comparison, MethodRuns
from demixbench.table.runs import track_frame_medians
from demixbench.table.stats import paired_bootstrap_ci, paired_wilcoxon
from table_helpers import SEED0, SEED1, SISEC18, cell, seeded_runs, uniform_run


def naive_bootstrap(
    variant: np.ndarray, baseline: np.ndarray, statistic: str, n_resamples: int, seed: int, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """The documented bootstrap, written as plain loops: per resample, tracks drawn with replacement
    (shared), each side's seeds drawn with replacement; per drawn seed the median/mean over the drawn
    tracks, mean over seeds, variant minus baseline; All = mean of the targets."""
    rng = np.random.default_rng(seed)
    n_variant, n_tracks, n_targets = variant.shape
    tracks = rng.integers(0, n_tracks, size=(n_resamples, n_tracks))
    seeds_v = rng.integers(0, n_variant, size=(n_resamples, n_variant))
    seeds_b = rng.integers(0, baseline.shape[0], size=(n_resamples, baseline.shape[0]))
    aggregate = np.median if statistic == "median" else np.mean
    differences = []
    for r in range(n_resamples):
        per_target = [
            np.mean([aggregate(variant[s, tracks[r], k]) for s in seeds_v[r]])
            - np.mean([aggregate(baseline[s, tracks[r], k]) for s in seeds_b[r]])
            for k in range(n_targets)
        ]
        differences.append([*per_target, np.mean(per_target)])
    alpha = (1 - confidence) / 2
    low, high = np.quantile(np.asarray(differences), [alpha, 1 - alpha], axis=0)
    return low, high


@pytest.mark.parametrize("statistic", ["median", "mean"])
@pytest.mark.parametrize(("n_variant", "n_baseline"), [(1, 1), (3, 2), (1, 4)])
def test_bootstrap_matches_its_definition(statistic: str, n_variant: int, n_baseline: int) -> None:
    rng = np.random.default_rng(1)
    variant = rng.normal(5.0, 2.0, size=(n_variant, 11, 4))
    baseline = rng.normal(4.0, 2.0, size=(n_baseline, 11, 4))
    estimate, low, high = paired_bootstrap_ci(
        variant, baseline, over_tracks=statistic, n_resamples=150, seed=3, confidence=0.9
    )
    aggregate = np.median if statistic == "median" else np.mean
    expected = aggregate(variant, axis=1).mean(axis=0) - aggregate(baseline, axis=1).mean(axis=0)
    np.testing.assert_allclose(estimate, [*expected, expected.mean()])
    naive_low, naive_high = naive_bootstrap(variant, baseline, statistic, 150, 3, 0.9)
    np.testing.assert_allclose(low, naive_low)
    np.testing.assert_allclose(high, naive_high)


def test_bootstrap_is_deterministic_given_the_seed() -> None:
    rng = np.random.default_rng(2)
    variant, baseline = rng.normal(size=(5, 50, 4)), rng.normal(size=(5, 50, 4))
    first = paired_bootstrap_ci(variant, baseline, seed=0)
    second = paired_bootstrap_ci(variant, baseline, seed=0)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    other = paired_bootstrap_ci(variant, baseline, seed=1)
    np.testing.assert_array_equal(first[0], other[0])  # same estimate
    assert not np.array_equal(first[1], other[1])  # other resamples


def test_bootstrap_and_wilcoxon_argument_errors() -> None:
    values = np.zeros((2, 5, 4))
    with pytest.raises(ValueError, match="same"):
        paired_bootstrap_ci(values, np.zeros((2, 6, 4)))
    with pytest.raises(ValueError, match="n_resamples"):
        paired_bootstrap_ci(values, values, n_resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap_ci(values, values, confidence=1.0)
    with pytest.raises(ValueError, match="median"):
        paired_bootstrap_ci(values, values, over_tracks="mode")
    with pytest.raises(ValueError, match="shaped"):
        paired_wilcoxon(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="n_resamples"):
        build_table([MethodRuns("m", (SISEC18 / "MIX",))], n_resamples=0)


def test_large_difference_is_significant(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    base = rng.normal(4.0, 2.0, size=(20, 4))
    baseline = base + rng.normal(0.0, 0.1, size=(2, 20, 4))
    variant = base + 2.0 + rng.normal(0.0, 0.3, size=(3, 20, 4))
    table = build_table(
        [
            MethodRuns("better", seeded_runs(tmp_path, "better", variant)),
            MethodRuns("base", seeded_runs(tmp_path, "base", baseline)),
        ],
        [Comparison("better", "base")],
    )
    for aggregation in ("median", "mean"):
        for column in table.columns:
            row = cell(table, "better - base", column, aggregation)
            assert row["ci_low"] <= row["mean"] <= row["ci_high"]
            assert row["ci_low"] > 0.5, (aggregation, column)
            assert row["significant"] is True or row["significant"] == True  # noqa: E712 (numpy/pandas bool)
            assert row["p_value"] < 0.001
    assert not [line for line in table.to_markdown().splitlines() if line.startswith("|") and " n.s." in line]


def test_pure_noise_is_not_significant(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    baseline = rng.normal(4.0, 2.0, size=(3, 30, 4))
    # Small, exactly symmetric per-track noise: tracks in pairs get +e and -e.
    half = rng.uniform(0.01, 0.1, size=(3, 15, 4))
    noise = np.concatenate([half, -half], axis=1)[:, rng.permutation(30)]
    variant = baseline + noise
    table = build_table(
        [
            MethodRuns("noisy", seeded_runs(tmp_path, "noisy", variant)),
            MethodRuns("base", seeded_runs(tmp_path, "base", baseline)),
        ],
        [Comparison("noisy", "base")],
    )
    for aggregation in ("median", "mean"):
        for column in table.columns:
            row = cell(table, "noisy - base", column, aggregation)
            assert abs(row["mean"]) < 0.1
            assert row["ci_low"] <= 0.0 <= row["ci_high"], (aggregation, column)
            assert row["ci_low"] <= row["mean"] <= row["ci_high"]
            assert row["significant"] is False or row["significant"] == False  # noqa: E712
            assert row["p_value"] > 0.05
    difference_line = next(line for line in table.to_markdown().splitlines() if line.startswith("| noisy - base"))
    assert difference_line.count(" n.s.") == len(table.columns)
    assert difference_line.startswith("| noisy - base | 3 vs 3 |")


def test_wilcoxon_p_value_equals_scipy(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    variant = rng.normal(5.0, 1.0, size=(2, 15, 4))
    baseline = rng.normal(4.6, 1.0, size=(3, 15, 4))
    table = build_table(
        [
            MethodRuns("v", seeded_runs(tmp_path, "v", variant)),
            MethodRuns("b", seeded_runs(tmp_path, "b", baseline)),
        ],
        [Comparison("v", "b")],
    )
    per_track_v, per_track_b = variant.mean(axis=0), baseline.mean(axis=0)  # seed-averaged
    for k, target in enumerate(TARGETS):
        expected = stats.wilcoxon(per_track_v[:, k], per_track_b[:, k]).pvalue
        assert cell(table, "v - b", target)["p_value"] == pytest.approx(expected, rel=1e-12)
        assert cell(table, "v - b", target, "mean")["p_value"] == pytest.approx(expected, rel=1e-12)
    expected_all = stats.wilcoxon(per_track_v.mean(axis=1), per_track_b.mean(axis=1)).pvalue
    assert cell(table, "v - b", "All")["p_value"] == pytest.approx(expected_all, rel=1e-12)
    np.testing.assert_allclose(
        paired_wilcoxon(variant, baseline),
        [*(stats.wilcoxon(per_track_v[:, k], per_track_b[:, k]).pvalue for k in range(4)), expected_all],
    )


def test_identical_methods(tmp_path: Path) -> None:
    runs = (uniform_run(tmp_path / "s0", SEED0), uniform_run(tmp_path / "s1", SEED1))
    table = build_table(
        [MethodRuns("a", runs), MethodRuns("b", runs), MethodRuns("c", runs[:1]), MethodRuns("d", runs[:1])],
        [Comparison("a", "b"), Comparison("c", "d")],
    )
    for column in table.columns:
        # Single runs: only tracks are resampled, every resample gives 0.
        row = cell(table, "c - d", column)
        assert (row["mean"], row["ci_low"], row["ci_high"]) == (0.0, 0.0, 0.0)
        assert not row["significant"]
        assert math.isnan(row["p_value"])  # no track differs: the test is undefined
        # Several seeds: each side's seeds are resampled independently, so the interval widens.
        row = cell(table, "a - b", column)
        assert row["mean"] == 0.0 and row["ci_low"] <= 0.0 <= row["ci_high"]
        assert not row["significant"]
    assert "| c - d | 1 vs 1 | +0.00 [+0.00, +0.00] n.s. |" in table.to_markdown()
    assert cell(table, "a - b", "drums")["ci_low"] < 0 < cell(table, "a - b", "drums")["ci_high"]


def test_sisec18_intervals_contain_the_estimates() -> None:
    entries = ("TAK1", "UHL2", "STL2")
    table = build_table(
        [MethodRuns(entry, (SISEC18 / entry,), kind="imported") for entry in entries],
        [Comparison("TAK1", "UHL2"), Comparison("UHL2", "STL2")],
    )
    differences = table.tidy()[table.tidy()["kind"] == "difference"]
    assert len(differences) == 2 * 2 * 5
    assert (differences["ci_low"] <= differences["mean"]).all()
    assert (differences["mean"] <= differences["ci_high"]).all()
    assert differences["se"].isna().all()  # single runs: no seed s.e.
    significant = ~((differences["ci_low"] <= 0) & (differences["ci_high"] >= 0))
    assert (differences["significant"].astype(bool) == significant).all()
    # UHL2 is clearly better than STL2 on every target.
    assert cell(table, "UHL2 - STL2", "All")["significant"]
    # The bootstrap's estimate is the table's difference.
    v = track_frame_medians(SISEC18 / "UHL2").to_numpy()
    b = track_frame_medians(SISEC18 / "STL2").to_numpy()
    estimate, low, high = paired_bootstrap_ci(v, b)
    assert estimate[-1] == pytest.approx(cell(table, "UHL2 - STL2", "All")["mean"])
    assert (low[-1], high[-1]) == pytest.approx(
        (cell(table, "UHL2 - STL2", "All")["ci_low"], cell(table, "UHL2 - STL2", "All")["ci_high"])
    )
