"""Tests of demixbench.table.stats and the difference rows: the seed-aware significance of the
difference rows (t interval and test, Holm-adjusted), and the per-track Wilcoxon p-value kept as
the secondary column ``p_wilcoxon_tracks``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from demixbench import TARGETS
from demixbench.table.build import build_table
from demixbench.table.model import Comparison, MethodRuns
from demixbench.table.runs import track_frame_medians
from demixbench.table.significance import compare
from demixbench.table.stats import paired_wilcoxon
from table_helpers import SEED0, SEED1, SISEC18, cell, seeded_runs, uniform_run, write_values


def baseline_runs(root: Path, values: np.ndarray, *, paired: bool) -> tuple[Path, ...]:
    """The baseline's seed directories: named seed0, seed1, ... like :func:`seeded_runs` (so that
    a variant written by it is paired by seed), or seed3, seed4, ... (unpaired: no seed shared)."""
    offset = 0 if paired else values.shape[0]
    return tuple(write_values(root / "base" / f"seed{s + offset}", values[s]) for s in range(values.shape[0]))


def test_argument_errors() -> None:
    values = np.zeros((2, 5, 4))
    labels = ("seed0", "seed1")
    with pytest.raises(ValueError, match="same"):
        compare(values, np.zeros((2, 6, 4)), labels, labels)
    with pytest.raises(ValueError, match="median"):
        compare(values, values, labels, labels, over_tracks="mode")
    with pytest.raises(ValueError, match="do not match"):
        compare(values, values, ("seed0",), labels)
    with pytest.raises(ValueError, match="shaped"):
        paired_wilcoxon(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="same"):
        paired_wilcoxon(values, np.zeros((2, 6, 4)))
    with pytest.raises(ValueError, match="n_resamples"):
        build_table([MethodRuns("m", (SISEC18 / "MIX",))], n_resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        build_table([MethodRuns("m", (SISEC18 / "MIX",))], confidence=1.0)
    with pytest.raises(ValueError, match="power"):
        build_table([MethodRuns("m", (SISEC18 / "MIX",))], power=1.0)


@pytest.mark.parametrize("paired", [True, False], ids=["paired", "unpaired"])
def test_large_difference_is_significant(tmp_path: Path, paired: bool) -> None:
    rng = np.random.default_rng(10)
    base = rng.normal(4.0, 2.0, size=(20, 4))
    baseline = base + rng.normal(0.0, 0.1, size=(3, 20, 4))
    variant = base + 2.0 + rng.normal(0.0, 0.3, size=(3, 20, 4))
    table = build_table(
        [
            MethodRuns("better", seeded_runs(tmp_path, "better", variant)),
            MethodRuns("base", baseline_runs(tmp_path, baseline, paired=paired)),
        ],
        [Comparison("better", "base")],
    )
    design = "paired" if paired else "unpaired"
    assert table.designs["better - base"].kind == design
    for aggregation in ("median", "mean"):
        for column in table.columns:
            row = cell(table, "better - base", column, aggregation)
            assert row["design"] == design
            assert row["ci_low"] <= row["mean"] <= row["ci_high"]
            assert row["ci_low"] > 0.5, (aggregation, column)
            assert row["significant"] is True or row["significant"] == True  # noqa: E712 (numpy/pandas bool)
            assert row["p_value"] <= row["p_holm"] < table.alpha
            assert 0.0 < row["mdd"] < row["mean"]  # 3 seeds per side resolve 2 dB
            assert row["p_wilcoxon_tracks"] < 0.001  # the secondary test agrees here
    difference_lines = [line for line in table.to_markdown().splitlines() if line.startswith("| better - base |")]
    assert len(difference_lines) == 2  # one per aggregation
    for line in difference_lines:
        assert line.startswith(f"| better - base | 3 vs 3, {design} |")
        assert " n.s." not in line
        assert line.count(" (p") == len(table.columns)


@pytest.mark.parametrize("paired", [True, False], ids=["paired", "unpaired"])
def test_pure_noise_is_not_significant(tmp_path: Path, paired: bool) -> None:
    rng = np.random.default_rng(11)
    baseline = rng.normal(4.0, 2.0, size=(3, 30, 4))
    # Small, exactly symmetric per-track noise: tracks in pairs get +e and -e.
    half = rng.uniform(0.01, 0.1, size=(3, 15, 4))
    noise = np.concatenate([half, -half], axis=1)[:, rng.permutation(30)]
    variant = baseline + noise
    table = build_table(
        [
            MethodRuns("noisy", seeded_runs(tmp_path, "noisy", variant)),
            MethodRuns("base", baseline_runs(tmp_path, baseline, paired=paired)),
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
            assert row["p_holm"] >= row["p_value"] > 0.05
            assert abs(row["mean"]) < row["mdd"]  # below what the seeds and tracks can resolve
    design = "paired" if paired else "unpaired"
    difference_line = next(line for line in table.to_markdown().splitlines() if line.startswith("| noisy - base"))
    assert difference_line.count(" n.s.") == len(table.columns)
    assert difference_line.startswith(f"| noisy - base | 3 vs 3, {design} |")
    if not paired:
        # Unpaired, the baseline's seed-to-seed variation (tracks drawn afresh per seed) is not
        # cancelled: far wider intervals than paired by seed.
        assert cell(table, "noisy - base", "All")["se"] > 0.05


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
        assert cell(table, "v - b", target)["p_wilcoxon_tracks"] == pytest.approx(expected, rel=1e-12)
        assert cell(table, "v - b", target, "mean")["p_wilcoxon_tracks"] == pytest.approx(expected, rel=1e-12)
        # It is not the p-value of the difference row.
        assert cell(table, "v - b", target)["p_value"] != pytest.approx(expected, rel=1e-6)
    expected_all = stats.wilcoxon(per_track_v.mean(axis=1), per_track_b.mean(axis=1)).pvalue
    assert cell(table, "v - b", "All")["p_wilcoxon_tracks"] == pytest.approx(expected_all, rel=1e-12)
    np.testing.assert_allclose(
        paired_wilcoxon(variant, baseline),
        [*(stats.wilcoxon(per_track_v[:, k], per_track_b[:, k]).pvalue for k in range(4)), expected_all],
    )
    # Method rows have no Wilcoxon p-value.
    assert cell(table, "v", "drums")[["p_wilcoxon_tracks", "p_value", "p_holm"]].isna().all()


def test_wilcoxon_never_marks_significance(tmp_path: Path) -> None:
    """The issue's case: the same model on both sides, each seed shifting every track alike. The
    seed-averaged per-track test sees a consistent shift on all 30 tracks (tiny p), the seed-aware
    test sees 3 vs 3 seeds that disagree (nothing significant)."""
    rng = np.random.default_rng(21)
    tracks = rng.normal(4.0, 2.0, size=(30, 4))
    variant = tracks + rng.normal(0.0, 1.0, size=(3, 1, 4)) + rng.normal(0.0, 0.05, size=(3, 30, 4))
    baseline = tracks + rng.normal(0.0, 1.0, size=(3, 1, 4)) + rng.normal(0.0, 0.05, size=(3, 30, 4))
    table = build_table(
        [
            MethodRuns("a", seeded_runs(tmp_path, "a", variant)),
            MethodRuns("b", baseline_runs(tmp_path, baseline, paired=False)),
        ],
        [Comparison("a", "b")],
    )
    for aggregation in ("median", "mean"):
        for column in table.columns:
            row = cell(table, "a - b", column, aggregation)
            assert row["p_wilcoxon_tracks"] < 1e-5, (aggregation, column)
            assert row["p_value"] > 0.05
            assert row["significant"] == False  # noqa: E712
            assert abs(row["mean"]) < row["mdd"]
    for line in table.to_markdown().splitlines():
        if line.startswith("| a - b |"):
            assert line.count(" n.s.") == len(table.columns)
            assert "p<0.001" not in line


def test_identical_methods(tmp_path: Path) -> None:
    runs = (uniform_run(tmp_path / "s0", SEED0), uniform_run(tmp_path / "s1", SEED1))
    table = build_table(
        [MethodRuns("a", runs), MethodRuns("b", runs), MethodRuns("c", runs[:1]), MethodRuns("d", runs[:1])],
        [Comparison("a", "b"), Comparison("c", "d")],
    )
    for aggregation in table.aggregations:
        for column in table.columns:
            # Several seeds, paired by seed: every per-seed and per-track difference is 0.
            row = cell(table, "a - b", column, aggregation)
            assert row["design"] == "paired"
            assert (row["mean"], row["ci_low"], row["ci_high"]) == (0.0, 0.0, 0.0)
            assert (row["se"], row["se_total"]) == (0.0, 0.0)
            assert (row["p_value"], row["p_holm"]) == (1.0, 1.0)
            assert row["significant"] == False  # noqa: E712
            assert row["mdd"] == 0.0
            assert math.isnan(row["p_wilcoxon_tracks"])  # no track differs: the test is undefined
            # Single runs: no test, nothing to mark.
            row = cell(table, "c - d", column, aggregation)
            assert row["design"] == "untested"
            assert row["mean"] == 0.0
            assert row[["se", "se_total", "df", "ci_low", "ci_high", "p_value", "p_holm", "mdd"]].isna().all()
            assert pd.isna(row["significant"])
    assert table.n_tests("median") == len(table.columns)  # only a - b is tested
    markdown = table.to_markdown()
    assert "| a - b | 2 vs 2, paired | +0.00 ± 0.00 [+0.00, +0.00] n.s. (p=1.000) |" in markdown
    assert "| c - d | 1 vs 1, no test | +0.00 | +0.00 |" in markdown
    assert "| c - d: MDD | 80% power | n/a | n/a | n/a | n/a | n/a |" in markdown


def test_sisec18_single_runs_are_untested() -> None:
    entries = ("TAK1", "UHL2", "STL2")
    table = build_table(
        # none of the three declares training data beyond MUSDB18's (tests/data/README.md)
        [MethodRuns(entry, (SISEC18 / entry,), kind="imported", trained_on="musdb18-train") for entry in entries],
        [Comparison("TAK1", "UHL2"), Comparison("UHL2", "STL2")],
    )
    differences = table.tidy()[table.tidy()["kind"] == "difference"]
    assert len(differences) == 2 * 2 * 5
    # One run per side: the seed variance is unknown; no interval, test, mark or MDD.
    assert (differences["design"] == "untested").all()
    for name in ("se", "se_total", "df", "ci_low", "ci_high", "p_value", "p_holm", "mdd"):
        assert differences[name].isna().all(), name
    assert differences["significant"].isna().all()
    assert table.n_tests("median") == table.n_tests("mean") == 0
    assert table.designs["UHL2 - STL2"].reason == "1 seed per side: seed variance unknown, no test"
    # The estimates are the differences of the rows, and the secondary per-track test is reported.
    for aggregation in ("median", "mean"):
        for column in table.columns:
            expected = (
                cell(table, "UHL2", column, aggregation)["mean"] - cell(table, "STL2", column, aggregation)["mean"]
            )
            assert cell(table, "UHL2 - STL2", column, aggregation)["mean"] == pytest.approx(expected)
    v = track_frame_medians(SISEC18 / "UHL2").to_numpy()
    b = track_frame_medians(SISEC18 / "STL2").to_numpy()
    np.testing.assert_allclose(
        [cell(table, "UHL2 - STL2", column)["p_wilcoxon_tracks"] for column in table.columns],
        paired_wilcoxon(v, b),
    )
    assert cell(table, "UHL2 - STL2", "All")["p_wilcoxon_tracks"] < 0.001  # UHL2 is better on most tracks
    lines = table.to_markdown().splitlines()
    difference_lines = [line for line in lines if line.startswith(("| TAK1 - UHL2 |", "| UHL2 - STL2 |"))]
    assert len(difference_lines) == 2 * 2
    for line in difference_lines:
        assert "1 vs 1, no test" in line
        assert "[" not in line and "(p" not in line and "n.s." not in line
