"""Tests of demixbench.table (leaderboard aggregation, statistics, output formats) and the
``demixbench table`` CLI."""

from __future__ import annotations

import gzip
import json
import math
import statistics
from html.parser import HTMLParser
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from demixbench import TARGETS, cli
from demixbench.cli import main
from demixbench.table import (
    AGGREGATIONS,
    METRICS,
    Comparison,
    MethodRuns,
    SDRTable,
    build_table,
    load_track_scores,
    paired_bootstrap_ci,
    paired_wilcoxon,
    track_frame_medians,
)

SISEC18 = Path(__file__).parent / "data" / "sisec18"

#: Published SiSEC 2018 results: median over frames, median over tracks, SDR in dB.
PUBLISHED: dict[str, dict[str, float]] = {
    "IRM2": {"drums": 8.45, "bass": 7.12, "other": 7.85, "vocals": 9.43},
    "MIX": {"drums": 1.33, "bass": 0.67, "other": 1.16, "vocals": 1.12},
    "TAK1": {"drums": 6.43, "bass": 5.16, "other": 4.15, "vocals": 6.60},
    "STL2": {"drums": 4.22, "bass": 3.21, "other": 2.25, "vocals": 3.25},
    "UHL2": {"drums": 5.92, "bass": 5.03, "other": 4.19, "vocals": 5.93},
}


# --------------------------------------------------------------------------------------------------
# Helpers: synthetic score directories
# --------------------------------------------------------------------------------------------------


def write_track(
    directory: Path,
    track: str,
    frames: Mapping[str, Sequence[float]],
    *,
    gz: bool = False,
    metric: str = "SDR",
    nsdr: Mapping[str, float] | None = None,
) -> Path:
    """Write one museval-style score file; NaN is written as the JSON NaN literal, like museval.
    ``nsdr`` adds the project's top-level ``"nsdr"`` object."""
    directory.mkdir(parents=True, exist_ok=True)
    document: dict = {
        "targets": [
            {
                "name": name,
                "frames": [
                    {"time": float(i), "duration": 1.0, "metrics": {metric: value, "SIR": 0.0}}
                    for i, value in enumerate(values)
                ],
            }
            for name, values in frames.items()
        ]
    }
    if nsdr is not None:
        document["nsdr"] = dict(nsdr)
    text = json.dumps(document)  # allow_nan=True: writes NaN
    if gz:
        path = directory / f"{track}.json.gz"
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path = directory / f"{track}.json"
        path.write_text(text, encoding="utf-8")
    return path


def frames_with_median(value: float) -> list[float]:
    """Frames whose NaN-skipping median is ``value`` (a NaN frame included; np.median would give NaN)."""
    return [value - 3.0, math.nan, value, value + 1.0, math.nan]


def write_run(directory: Path, track_values: Mapping[str, Mapping[str, float]], *, gz: bool = False) -> Path:
    """A score directory: track -> target -> wanted per-track median over frames."""
    for track, per_target in track_values.items():
        write_track(directory, track, {t: frames_with_median(v) for t, v in per_target.items()}, gz=gz)
    return directory


def uniform_run(
    directory: Path, medians: Mapping[str, Sequence[float]], tracks: Sequence[str] = ("a", "b", "c")
) -> Path:
    """A score directory whose per-track medians for target t are ``medians[t][i]`` on track i."""
    per_track = {track: {t: medians[t][i] for t in medians} for i, track in enumerate(tracks)}
    return write_run(directory, per_track)


def write_values(
    directory: Path,
    values: np.ndarray,
    *,
    targets: Sequence[str] = TARGETS,
    nsdr: np.ndarray | None = None,
    metric: str = "SDR",
) -> Path:
    """A score directory whose per-track medians over frames are ``values[track, target]`` (tracks
    t00, t01, ...), optionally with per-track nSDR ``nsdr[track, target]``."""
    for index, row in enumerate(np.asarray(values, dtype=float)):
        extra = None if nsdr is None else dict(zip(targets, map(float, nsdr[index]), strict=True))
        frames = {target: frames_with_median(float(value)) for target, value in zip(targets, row, strict=True)}
        write_track(directory, f"t{index:02d}", frames, metric=metric, nsdr=extra)
    return directory


def cell(table: SDRTable, row: str, target: str, aggregation: str = "median") -> pd.Series:
    """The tidy-data row for (row, target) of one aggregation's table."""
    frame = table.results[aggregation]
    selected = frame[(frame["row"] == row) & (frame["target"] == target)]
    assert len(selected) == 1, selected
    return selected.iloc[0]


# --------------------------------------------------------------------------------------------------
# Real SiSEC 2018 data
# --------------------------------------------------------------------------------------------------


def test_sisec18_data_present() -> None:
    for entry in PUBLISHED:
        files = list((SISEC18 / entry).glob("*.json.gz"))
        assert len(files) == 50, f"{entry}: expected 50 score files in tests/data, found {len(files)}"


def test_sisec18_reproduces_published_medians() -> None:
    methods = [
        MethodRuns(entry, (SISEC18 / entry,), kind="oracle" if entry in ("IRM2", "MIX") else "imported")
        for entry in PUBLISHED
    ]
    table = build_table(methods)
    assert table.n_tracks == 50
    assert "1 s frames" in table.aggregation
    for entry, published in PUBLISHED.items():
        for target, value in published.items():
            row = cell(table, entry, target)
            assert row["mean"] == pytest.approx(value, abs=0.01), (entry, target)
            assert math.isnan(row["se"])
            assert row["n_seeds"] == 1
        assert cell(table, entry, "All")["mean"] == pytest.approx(np.mean(list(published.values())), abs=0.01)


def test_load_track_scores_real_file_has_extra_target() -> None:
    path = SISEC18 / "IRM2" / "AM Contra - Heart Peripheral.json.gz"
    scores = load_track_scores(path)
    assert set(TARGETS) <= set(scores)
    assert "accompaniment" in scores  # extra targets are read but ignored by the table
    assert scores["drums"][0] == pytest.approx(1.17433)
    medians = track_frame_medians(SISEC18 / "IRM2")
    assert list(medians.columns) == list(TARGETS)
    assert len(medians) == 50 and "AM Contra - Heart Peripheral" in medians.index


# --------------------------------------------------------------------------------------------------
# Reading and per-track medians
# --------------------------------------------------------------------------------------------------


def test_load_track_scores_json_and_gz_keep_nan(tmp_path: Path) -> None:
    frames = {"drums": [1.0, math.nan, 3.0], "bass": [2.0]}
    for gz in (False, True):
        path = write_track(tmp_path / str(gz), "t", frames, gz=gz)
        scores = load_track_scores(path)
        assert set(scores) == {"drums", "bass"}
        np.testing.assert_array_equal(scores["drums"], [1.0, math.nan, 3.0])


def test_load_track_scores_other_metric(tmp_path: Path) -> None:
    path = write_track(tmp_path, "t", {"drums": [1.0, 2.0]})
    np.testing.assert_array_equal(load_track_scores(path, metric="SIR")["drums"], [0.0, 0.0])
    with pytest.raises(ValueError, match="no metric 'ISR'"):
        load_track_scores(path, metric="ISR")


def test_track_frame_medians_skips_nan_frames(tmp_path: Path) -> None:
    write_track(tmp_path, "one", {t: [1.0, math.nan, 2.0, 10.0, math.nan] for t in TARGETS}, gz=True)
    write_track(tmp_path, "two", {**{t: [5.0] for t in TARGETS}, "accompaniment": [9.0]})
    (tmp_path / "notes.txt").write_text("ignored")
    medians = track_frame_medians(tmp_path)
    assert list(medians.index) == ["one", "two"]
    assert list(medians.columns) == list(TARGETS)
    assert medians.loc["one", "drums"] == 2.0
    assert medians.loc["two", "vocals"] == 5.0


def test_track_frame_medians_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        track_frame_medians(empty)
    partial = tmp_path / "partial"
    write_track(partial, "Lonely Track", {"drums": [1.0], "bass": [1.0], "other": [1.0]})
    with pytest.raises(ValueError, match=r"Lonely Track\.json.*vocals"):
        track_frame_medians(partial)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"scores": []}', "no 'targets'"),
        ('[1, 2]', "expected a JSON object"),
        ('{"targets": [{"name": "drums"}]}', "no 'frames'"),
        ('{"targets": [{"name": "drums", "frames": [{"time": 0}]}]}', "no 'metrics'"),
        ('{"targets": [{"name": "drums", "frames": [{"metrics": {"SDR": "high"}}]}]}', "not a number"),
    ],
)
def test_malformed_file_names_file(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "Broken Song.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="Broken Song.json") as error:
        load_track_scores(path)
    assert problem in str(error.value)
    with pytest.raises(ValueError, match="Broken Song.json"):
        track_frame_medians(tmp_path)


def test_corrupt_gzip_names_file(tmp_path: Path) -> None:
    path = tmp_path / "Zipped.json.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(ValueError, match="Zipped.json.gz"):
        load_track_scores(path)


# --------------------------------------------------------------------------------------------------
# Seed statistics and differences
# --------------------------------------------------------------------------------------------------

# Per-track medians (tracks a, b, c) -> median over tracks is the middle value.
SEED0 = {
    "drums": [0.0, 2.0, 9.0],
    "bass": [1.0, 1.0, 1.0],
    "other": [-5.0, 3.0, 4.0],
    "vocals": [6.0, 7.0, 8.0],
}
SEED1 = {
    "drums": [4.0, 4.0, 4.0],
    "bass": [0.0, 2.0, 3.0],
    "other": [1.0, 2.0, 3.0],
    "vocals": [5.0, 6.0, 7.0],
}
# Medians over tracks per seed: seed0 drums 2, bass 1, other 3, vocals 7 (All 3.25);
#                               seed1 drums 4, bass 2, other 2, vocals 6 (All 3.5).


def test_seed_statistics(tmp_path: Path) -> None:
    runs = (uniform_run(tmp_path / "unet" / "seed0", SEED0), uniform_run(tmp_path / "unet" / "seed1", SEED1))
    table = build_table([MethodRuns("unet", runs)])
    expected = {"drums": (2.0, 4.0), "bass": (1.0, 2.0), "other": (3.0, 2.0), "vocals": (7.0, 6.0)}
    for target, (v0, v1) in expected.items():
        row = cell(table, "unet", target)
        assert row["mean"] == pytest.approx((v0 + v1) / 2)
        assert row["se"] == pytest.approx(abs(v0 - v1) / 2)  # std(ddof=1) / sqrt(2) of two values
        assert row["n_seeds"] == 2
        assert row["kind"] == "model"
    all_row = cell(table, "unet", "All")
    assert all_row["mean"] == pytest.approx(np.mean([3.0, 1.5, 2.5, 6.5]))
    assert all_row["se"] == pytest.approx(0.125)  # All per seed: 3.25 and 3.5
    assert table.n_tracks == 3
    assert table.seed_values["unet"] == {
        "seed0": {"drums": 2.0, "bass": 1.0, "other": 3.0, "vocals": 7.0, "All": 3.25},
        "seed1": {"drums": 4.0, "bass": 2.0, "other": 2.0, "vocals": 6.0, "All": 3.5},
    }


def test_three_seeds_use_sample_std(tmp_path: Path) -> None:
    values = [1.0, 2.0, 4.0]
    runs = tuple(
        uniform_run(tmp_path / f"s{i}", {t: [v, v, v] for t in TARGETS}) for i, v in enumerate(values)
    )
    row = cell(build_table([MethodRuns("m", runs)]), "m", "drums")
    assert row["mean"] == pytest.approx(statistics.mean(values))
    assert row["se"] == pytest.approx(statistics.stdev(values) / math.sqrt(3))
    assert row["n_seeds"] == 3


def test_seed_labels_disambiguate_same_dir_names(tmp_path: Path) -> None:
    runs = (uniform_run(tmp_path / "s0" / "scores", SEED0), uniform_run(tmp_path / "s1" / "scores", SEED1))
    table = build_table([MethodRuns("m", runs)])
    assert list(table.seed_values["m"]) == ["s0/scores", "s1/scores"]


def test_difference_rows(tmp_path: Path) -> None:
    variant = (uniform_run(tmp_path / "gan" / "s0", SEED0), uniform_run(tmp_path / "gan" / "s1", SEED1))
    constant = {t: [1.0, 1.0, 1.0] for t in TARGETS}
    base = (
        uniform_run(tmp_path / "base" / "s0", constant),
        uniform_run(tmp_path / "base" / "s1", {t: [0.0, 0.0, 0.0] for t in TARGETS}),
    )
    single_a = (uniform_run(tmp_path / "oracle", {t: [10.0, 10.0, 10.0] for t in TARGETS}),)
    single_b = (uniform_run(tmp_path / "mix", constant),)
    table = build_table(
        [
            MethodRuns("gan", variant),
            MethodRuns("base", base),
            MethodRuns("oracle", single_a, kind="oracle"),
            MethodRuns("mix", single_b, kind="oracle"),
        ],
        [Comparison("gan", "base"), Comparison("oracle", "mix"), Comparison("gan", "mix")],
    )
    # gan drums: mean 3, se 1; base: mean 0.5, se 0.5 -> difference 2.5 ± sqrt(1.25).
    row = cell(table, "gan - base", "drums")
    assert row["kind"] == "difference"
    assert row["mean"] == pytest.approx(2.5)
    assert row["se"] == pytest.approx(math.sqrt(1.0**2 + 0.5**2))
    assert pd.isna(row["n_seeds"])
    # All: gan 3.375 ± 0.125, base 0.5 ± 0.5.
    row = cell(table, "gan - base", "All")
    assert row["mean"] == pytest.approx(2.875)
    assert row["se"] == pytest.approx(math.sqrt(0.125**2 + 0.5**2))
    # Two single runs: SE undefined.
    row = cell(table, "oracle - mix", "vocals")
    assert row["mean"] == pytest.approx(9.0)
    assert math.isnan(row["se"])
    # Multi-seed vs single run: the single run's NaN SE counts as 0.
    row = cell(table, "gan - mix", "vocals")
    assert row["mean"] == pytest.approx(5.5)
    assert row["se"] == pytest.approx(0.5)


def test_unknown_comparison_method(tmp_path: Path) -> None:
    run = (uniform_run(tmp_path / "m", SEED0),)
    with pytest.raises(ValueError, match="nope"):
        build_table([MethodRuns("m", run)], [Comparison("m", "nope")])


def test_duplicate_method_names(tmp_path: Path) -> None:
    run = (uniform_run(tmp_path / "m", SEED0),)
    with pytest.raises(ValueError, match="duplicate"):
        build_table([MethodRuns("m", run), MethodRuns("m", run)])


def test_invalid_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        MethodRuns("m", (Path("x"),), kind="baseline")


def test_mismatched_tracks_across_seeds(tmp_path: Path) -> None:
    seed0 = uniform_run(tmp_path / "s0", SEED0, tracks=("a", "b", "c"))
    seed1 = uniform_run(tmp_path / "s1", SEED1, tracks=("a", "b", "Missing Song"))
    with pytest.raises(ValueError) as error:
        build_table([MethodRuns("unet", (seed0, seed1))])
    message = str(error.value)
    assert "'unet' seed 's1'" in message and "['c']" in message
    assert "'unet' seed 's0'" in message and "Missing Song" in message


def test_mismatched_tracks_across_methods(tmp_path: Path) -> None:
    full = uniform_run(tmp_path / "full", SEED0, tracks=("a", "b", "c"))
    short = uniform_run(tmp_path / "short", {t: v[:2] for t, v in SEED1.items()}, tracks=("a", "b"))
    with pytest.raises(ValueError, match=r"'shorty'.*\['c'\]"):
        build_table([MethodRuns("full", (full,)), MethodRuns("shorty", (short,))])


# --------------------------------------------------------------------------------------------------
# Difference rows: paired bootstrap interval, significance, Wilcoxon p-value
# --------------------------------------------------------------------------------------------------


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


def seeded_runs(
    root: Path, name: str, values: np.ndarray, *, nsdr: np.ndarray | None = None
) -> tuple[Path, ...]:
    """One score directory per seed: values[seed, track, target] (and nsdr[seed, track, target])."""
    return tuple(
        write_values(root / name / f"seed{s}", values[s], nsdr=None if nsdr is None else nsdr[s])
        for s in range(values.shape[0])
    )


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


# --------------------------------------------------------------------------------------------------
# Aggregations and metrics
# --------------------------------------------------------------------------------------------------


def test_mean_over_tracks_aggregation(tmp_path: Path) -> None:
    runs = (uniform_run(tmp_path / "s0", SEED0), uniform_run(tmp_path / "s1", SEED1))
    table = build_table([MethodRuns("unet", runs)])
    assert table.aggregations == ("median", "mean")
    per_seed = {
        seed: {t: statistics.mean(values[t]) for t in TARGETS} for seed, values in (("s0", SEED0), ("s1", SEED1))
    }
    for seed in per_seed:
        per_seed[seed]["All"] = statistics.mean(per_seed[seed].values())
    assert table.seeds["mean"]["unet"].keys() == per_seed.keys()
    for seed, expected in per_seed.items():
        assert table.seeds["mean"]["unet"][seed] == pytest.approx(expected)
    for column in table.columns:
        row = cell(table, "unet", column, "mean")
        values = [per_seed["s0"][column], per_seed["s1"][column]]
        assert row["mean"] == pytest.approx(statistics.mean(values))
        assert row["se"] == pytest.approx(statistics.stdev(values) / math.sqrt(2))
        assert row["aggregation"] == "mean"
    assert "mean over tracks" in table.describe("mean")
    assert table.title("mean") == "SDR: median over frames, mean over tracks"
    # The primary table is unchanged.
    assert cell(table, "unet", "drums")["mean"] == pytest.approx(3.0)


def test_nsdr_aggregation(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    values = np.full((2, 3, 4), 1.0)
    nsdr = np.array(
        [
            [[1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0], [8.0, 0.0, 1.0, 2.0]],  # seed 0
            [[2.0, 2.0, 2.0, 2.0], [2.0, 2.0, 2.0, 2.0], [5.0, 2.0, 2.0, 2.0]],  # seed 1
        ]
    )
    model = seeded_runs(tmp_path, "model", values, nsdr=nsdr)
    oracle = seeded_runs(tmp_path, "oracle", values[:1], nsdr=nsdr[:1] + 10.0)
    imported = write_values(tmp_path / "imported", values[0])  # SiSEC-like: no nsdr
    table = build_table(
        [
            MethodRuns("model", model),
            MethodRuns("oracle", oracle, kind="oracle"),
            MethodRuns("sisec", (imported,), kind="imported", note="SiSEC 2018"),
        ],
        [Comparison("model", "oracle"), Comparison("model", "sisec")],
    )
    assert table.aggregations == ("median", "mean", "nsdr")
    assert table.title("nsdr") == AGGREGATIONS["nsdr"] == "nSDR (MDX), mean over tracks"
    # Per seed: mean over tracks of the per-track nSDR; then mean ± s.e. over seeds.
    seed_means = nsdr.mean(axis=1)  # (seeds, targets)
    for k, target in enumerate(TARGETS):
        row = cell(table, "model", target, "nsdr")
        assert row["mean"] == pytest.approx(seed_means[:, k].mean())
        assert row["se"] == pytest.approx(statistics.stdev(seed_means[:, k]) / math.sqrt(2))
    assert cell(table, "model", "All", "nsdr")["mean"] == pytest.approx(seed_means.mean())
    assert table.seeds["nsdr"]["model"]["seed0"]["drums"] == pytest.approx(4.0)
    assert cell(table, "oracle", "drums", "nsdr")["mean"] == pytest.approx(14.0)
    # The method without nSDR is NA, as is its difference; the other difference is computed.
    assert cell(table, "sisec", "drums", "nsdr")[["mean", "se"]].isna().all()
    missing = cell(table, "model - sisec", "All", "nsdr")
    assert math.isnan(missing["mean"]) and math.isnan(missing["ci_low"]) and pd.isna(missing["significant"])
    present = cell(table, "model - oracle", "drums", "nsdr")
    assert present["mean"] == pytest.approx(seed_means[:, 0].mean() - 14.0)
    assert present["ci_low"] <= present["mean"] <= present["ci_high"]
    # The SDR tables ignore the nSDR.
    assert cell(table, "model", "drums")["mean"] == 1.0
    # Rendered: an nSDR section with n/a for the method without it; null in JSON.
    markdown = table.to_markdown()
    assert "## nSDR (MDX), mean over tracks" in markdown
    section = markdown.split("## nSDR (MDX), mean over tracks")[1]
    assert "| sisec | 1 | n/a | n/a | n/a | n/a | n/a |" in section
    assert "| model - sisec | 2 vs 1 | n/a |" in section
    assert "no nSDR in the score files" in section
    document = table.to_dict()
    assert document["aggregations"]["nsdr"]["rows"]["sisec"]["drums"] == {"mean": None, "se": None}
    assert document["aggregations"]["nsdr"]["differences"]["model - sisec"]["All"]["significant"] is None
    assert table.to_latex().count("\\toprule") == 3
    assert table.to_html().count("<table>") == 3
    assert set(table.tidy()["aggregation"]) == {"median", "mean", "nsdr"}


def test_nsdr_partial_run_is_na(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    values = np.ones((1, 3, 4))
    full = seeded_runs(tmp_path, "full", values, nsdr=np.full((1, 3, 4), 5.0))
    partial = seeded_runs(tmp_path, "partial", values, nsdr=np.full((1, 3, 4), 6.0))
    write_values(tmp_path / "partial" / "seed0", values[0])  # overwrite: no nsdr anywhere...
    write_track(
        tmp_path / "partial" / "seed0", "t00", {t: [1.0] for t in TARGETS}, nsdr={t: 6.0 for t in TARGETS}
    )  # ...but in one file
    with caplog.at_level("WARNING"):
        table = build_table([MethodRuns("full", full), MethodRuns("partial", partial)])
    assert "2 of 3 score files lack 'nsdr'" in caplog.text
    assert cell(table, "full", "All", "nsdr")["mean"] == 5.0
    assert math.isnan(cell(table, "partial", "All", "nsdr")["mean"])


def test_nsdr_only_for_sdr(tmp_path: Path) -> None:
    values = np.ones((1, 3, 4))
    runs = tuple(
        write_values(tmp_path / "sar", values[0], nsdr=values[0], metric="SAR") for _ in range(1)
    )
    table = build_table([MethodRuns("m", runs)], metric="SAR")
    assert table.aggregations == ("median", "mean")


def test_malformed_nsdr_names_file(tmp_path: Path) -> None:
    path = write_track(tmp_path, "Odd Song", {t: [1.0] for t in TARGETS})
    document = json.loads(path.read_text())
    document["nsdr"] = {"drums": "loud"}
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"Odd Song\.json.*not a number"):
        build_table([MethodRuns("m", (tmp_path,))])
    document["nsdr"] = [1.0]
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"Odd Song\.json.*'nsdr' must be an object"):
        build_table([MethodRuns("m", (tmp_path,))])


def test_metric_sar(tmp_path: Path) -> None:
    sar = {t: [1.0 + i, 2.0 + i, 6.0 + i] for i, t in enumerate(TARGETS)}
    run = tmp_path / "sar"
    for index, track in enumerate(("a", "b", "c")):
        write_track(run, track, {t: frames_with_median(sar[t][index]) for t in TARGETS}, metric="SAR")
    table = build_table([MethodRuns("m", (run,))], metric="SAR")
    assert table.metric == "SAR"
    for i, target in enumerate(TARGETS):
        assert cell(table, "m", target)["mean"] == pytest.approx(2.0 + i)
        assert cell(table, "m", target, "mean")["mean"] == pytest.approx(3.0 + i)
    assert table.aggregation.startswith("SAR (dB): median over 1 s frames")
    assert table.to_markdown().startswith("## SAR: median over frames, median over tracks")
    paths = table.write(tmp_path / "out")
    assert {p.name for p in paths.values()} == {"sar.md", "sar.csv", "sar.json", "sar.tex", "sar.html", "sar.metrics.json"}
    assert json.loads(paths["json"].read_text())["metric"] == "SAR"
    with pytest.raises(ValueError, match=r"sar/a\.json.*no metric 'SDR'"):
        build_table([MethodRuns("m", (run,))], metric="SDR")
    with pytest.raises(ValueError, match="metric must be one of"):
        build_table([MethodRuns("m", (run,))], metric="SDRi")


@pytest.mark.parametrize("metric", ["ISR", "SIR", "SAR"])
def test_sisec18_other_metrics(metric: str) -> None:
    table = build_table([MethodRuns("TAK1", (SISEC18 / "TAK1",)), MethodRuns("IRM2", (SISEC18 / "IRM2",))],
                        [Comparison("IRM2", "TAK1")], metric=metric, n_resamples=200)  # fmt: skip
    sdr = build_table([MethodRuns("TAK1", (SISEC18 / "TAK1",))], n_resamples=1)
    assert table.n_tracks == 50
    values = table.data[table.data["kind"] != "difference"]["mean"]
    assert values.notna().all()
    assert cell(table, "TAK1", "All")["mean"] != pytest.approx(cell(sdr, "TAK1", "All")["mean"])


def test_method_note() -> None:
    assert MethodRuns("m", (Path("x"),)).note == ""
    assert MethodRuns("m", (Path("x"),), note="  SiSEC 2018\n submission ").note == "SiSEC 2018 submission"


# --------------------------------------------------------------------------------------------------
# Output formats
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def small_table(tmp_path: Path) -> SDRTable:
    unet = (uniform_run(tmp_path / "unet" / "s0", SEED0), uniform_run(tmp_path / "unet" / "s1", SEED1))
    irm = (uniform_run(tmp_path / "irm", {t: [8.0, 9.0, 10.0] for t in TARGETS}),)
    # A target with only NaN frames on every track gives a NaN median: it must become null in JSON.
    nan_dir = tmp_path / "silent"
    for track in ("a", "b", "c"):
        write_track(nan_dir, track, {**{t: [1.0] for t in TARGETS}, "vocals": [math.nan, math.nan]})
    return build_table(
        [
            MethodRuns("unet", unet),
            MethodRuns("IRM2", irm, kind="oracle"),
            MethodRuns("silent", (nan_dir,), kind="imported"),
        ],
        [Comparison("unet", "IRM2")],
    )


def test_markdown(small_table: SDRTable) -> None:
    text = small_table.to_markdown()
    lines = text.splitlines()
    assert lines[0] == "## SDR: median over frames, median over tracks (SiSEC 2018)"
    caption = lines[2]
    assert "median over 1 s frames" in caption and "3 test tracks" in caption
    assert "95% paired bootstrap" in caption and "2000 resamples, seed 0" in caption
    assert "Wilcoxon signed-rank" in caption and "n.s.: the interval contains 0" in caption
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == [
        "## SDR: median over frames, median over tracks (SiSEC 2018)",
        "## SDR: median over frames, mean over tracks",
    ]  # no nSDR in these score files: no nSDR section
    table_lines = [line for line in lines if line.startswith("|")]
    assert table_lines[0] == "| method | seeds | drums | bass | other | vocals | All |"
    assert len(table_lines) == 2 * (2 + 4)  # per section: header, alignment, 3 methods, 1 difference
    assert table_lines[2] == (
        "| unet | 2 | 3.00 ± 1.00 | 1.50 ± 0.50 | 2.50 ± 0.50 | 6.50 ± 0.50 | 3.38 ± 0.12 |"
    )
    assert table_lines[3] == "| IRM2 | 1 | 9.00 | 9.00 | 9.00 | 9.00 | 9.00 |"
    assert table_lines[4].startswith("| silent | 1 | 1.00 |") and "n/a" in table_lines[4]
    difference = table_lines[5]
    assert difference.startswith("| unet - IRM2 | 2 vs 1 | -6.00 ± 1.00 [")
    assert "(p=0.250)" in difference  # three tracks, all lower: the smallest exact two-sided p
    # Mean over tracks: unet drums per seed 11/3 and 4 -> 3.83 ± 0.17.
    assert table_lines[8].startswith("| unet | 2 | 3.83 ± 0.17 | 1.33 ± 0.33 |")
    assert "Notes" not in text


def test_csv(small_table: SDRTable, tmp_path: Path) -> None:
    path = small_table.to_csv(tmp_path / "out.csv")
    frame = pd.read_csv(path)
    assert list(frame.columns) == [
        "aggregation", "row", "kind", "target", "mean", "se", "n_seeds",
        "ci_low", "ci_high", "p_value", "significant",
    ]  # fmt: skip
    assert len(frame) == 2 * 4 * 5  # aggregations x rows x columns
    assert list(dict.fromkeys(frame["aggregation"])) == ["median", "mean"]
    median = frame[frame["aggregation"] == "median"]
    unet = median[(median["row"] == "unet") & (median["target"] == "drums")].iloc[0]
    assert (unet["kind"], unet["mean"], unet["se"], unet["n_seeds"]) == ("model", 3.0, 1.0, 2)
    assert pd.isna(unet["ci_low"]) and pd.isna(unet["significant"])
    difference = median[(median["row"] == "unet - IRM2") & (median["target"] == "drums")].iloc[0]
    assert difference["mean"] == pytest.approx(-6.0)
    assert difference["ci_low"] <= -6.0 <= difference["ci_high"]
    assert difference["p_value"] == pytest.approx(0.25)
    assert difference["significant"] in (True, "True")


def test_json_is_strict_and_complete(small_table: SDRTable, tmp_path: Path) -> None:
    path = small_table.to_json(tmp_path / "out.json")
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text

    def reject(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    document = json.loads(text, parse_constant=reject)
    assert document["metric"] == "SDR" and document["unit"] == "dB"
    assert document["n_tracks"] == 3
    assert document["frame_duration"] == 1.0
    assert document["targets"] == list(TARGETS)
    assert document["primary"] == "median"
    assert "median over tracks" in document["aggregation"]
    assert document["statistics"]["n_resamples"] == 2000
    assert document["statistics"]["bootstrap_seed"] == 0
    assert document["statistics"]["confidence"] == 0.95
    assert "Wilcoxon" in document["statistics"]["p_value"]
    assert document["notes"] == {}
    # The primary table at the top level, the further aggregations under "aggregations".
    assert document["title"].startswith("SDR: median over frames, median over tracks")
    assert list(document["aggregations"]) == ["mean"]
    median = document
    unet = median["rows"]["unet"]
    assert unet["kind"] == "model" and unet["n_seeds"] == 2
    assert unet["drums"] == {"mean": 3.0, "se": 1.0}
    assert unet["seeds"]["s0"]["drums"] == 2.0 and unet["seeds"]["s1"]["All"] == 3.5
    assert median["rows"]["IRM2"]["bass"] == {"mean": 9.0, "se": None}
    assert median["rows"]["silent"]["vocals"] == {"mean": None, "se": None}
    difference = median["differences"]["unet - IRM2"]
    assert (difference["variant"], difference["baseline"]) == ("unet", "IRM2")
    drums = difference["drums"]
    assert set(drums) == {"mean", "se", "ci_low", "ci_high", "p_value", "significant"}
    assert drums["mean"] == pytest.approx(-6.0)
    assert drums["se"] == pytest.approx(1.0)
    assert drums["ci_low"] <= drums["mean"] <= drums["ci_high"] < 0
    assert drums["significant"] is True
    assert drums["p_value"] == pytest.approx(0.25)
    mean = document["aggregations"]["mean"]
    assert mean["rows"]["unet"]["seeds"]["s0"]["drums"] == pytest.approx(11 / 3)
    # Every value under rows/differences is a number, a bool or null (DVC metrics).
    for row in (*median["rows"].values(), *median["differences"].values()):
        for column in small_table.columns:
            assert all(v is None or isinstance(v, (int, float)) for v in row[column].values())


class _CellCollector(HTMLParser):
    """Collects the text of every <caption>, <th> and <td>, and checks tags are balanced."""

    VOID = {"meta", "br", "hr", "img", "link", "input"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.cells: list[tuple[str, str]] = []
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag in ("caption", "th", "td", "li", "h2"):
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (self.stack, tag)
        self.stack.pop()
        if tag in ("caption", "th", "td", "li", "h2") and self._text is not None:
            self.cells.append((tag, "".join(self._text)))
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def test_write_all_formats(tmp_path: Path) -> None:
    tricky = "a_b & <c> 100% #1"
    runs = uniform_run(tmp_path / "t", {t: [4.0, 5.0, 6.0] for t in TARGETS})
    base = uniform_run(tmp_path / "b", {t: [1.0, 2.0, 3.0] for t in TARGETS})
    table = build_table(
        [
            MethodRuns(tricky, (runs,), note="from <somewhere> & co"),
            MethodRuns("base", (base,), kind="imported", note="SiSEC 2018 submission, sigsep-mus-2018"),
        ],
        [Comparison(tricky, "base")],
    )
    out = tmp_path / "results" / "table"
    paths = table.write(out)
    assert set(paths) == {"md", "csv", "json", "tex", "html", "metrics"}
    assert sorted(p.name for p in out.iterdir()) == ["sdr.csv", "sdr.html", "sdr.json", "sdr.md", "sdr.metrics.json", "sdr.tex"]
    assert paths["md"].read_text(encoding="utf-8") == table.to_markdown()

    # Markdown: notes listed under the tables.
    markdown = paths["md"].read_text(encoding="utf-8")
    assert "## Notes" in markdown
    assert "- base (imported): SiSEC 2018 submission, sigsep-mus-2018" in markdown

    # CSV and JSON parse, with numbers.
    assert len(pd.read_csv(paths["csv"])) == 2 * 3 * 5
    document = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert document["notes"] == {tricky: "from <somewhere> & co", "base": "SiSEC 2018 submission, sigsep-mus-2018"}
    assert document["rows"]["base"]["All"]["mean"] == 2.0
    assert isinstance(document["differences"][f"{tricky} - base"]["All"]["mean"], float)
    assert document["aggregations"]["mean"]["rows"]["base"]["All"]["mean"] == 2.0

    # Metrics (DVC): the primary table's seed means, nothing else.
    headline = json.loads(paths["metrics"].read_text(encoding="utf-8"))
    assert set(headline) == {"metric", "n_tracks", "rows", "differences"}
    assert headline["n_tracks"] == document["n_tracks"]
    for part in ("rows", "differences"):
        assert set(headline[part]) == set(document[part])
        for label, columns in headline[part].items():
            assert columns == {column: document[part][label][column]["mean"] for column in (*TARGETS, "All")}

    # LaTeX: booktabs rules, escaped names, ± as $\pm$.
    latex = paths["tex"].read_text(encoding="utf-8")
    assert latex.count("\\toprule") == latex.count("\\bottomrule") == 2  # one table per aggregation
    assert "\\midrule" in latex and "\\begin{tabular}{lrrrrrr}" in latex
    assert "a\\_b \\& \\textless{}c\\textgreater{} 100\\% \\#1" in latex
    assert tricky not in latex
    assert "$\\pm$" in latex and "±" not in latex
    assert "\\caption{SDR: median over frames, median over tracks" in latex
    assert "\\label{tab:sdr-median}" in latex and "\\label{tab:sdr-mean}" in latex
    assert "\\item \\textbf{base} (imported): SiSEC 2018 submission, sigsep-mus-2018" in latex
    assert latex.count("\\begin{table}") == latex.count("\\end{table}") == 2

    # HTML: standalone, escaped, captioned, well nested.
    page = paths["html"].read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<link" not in page and "<script" not in page
    assert "a_b &amp; &lt;c&gt; 100% #1" in page and "<c>" not in page
    collector = _CellCollector()
    collector.feed(page)
    collector.close()
    assert collector.stack == []
    captions = [text for tag, text in collector.cells if tag == "caption"]
    assert len(captions) == 2 and "median over 1 s frames, median over tracks" in captions[0]
    row_headers = [text for tag, text in collector.cells if tag == "th"]
    assert tricky in row_headers and f"{tricky} - base" in row_headers
    assert "from <somewhere> & co" in "".join(text for tag, text in collector.cells if tag == "li")

    table.write(out, stem="again")
    assert (out / "again.json").is_file() and (out / "again.tex").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def test_cli_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "table",
            "--row", f"TAK1={SISEC18 / 'TAK1'}",
            "--row", f"UHL2={SISEC18 / 'UHL2'}",
            "--compare", "TAK1:UHL2",
            "--note", "TAK1=SiSEC 2018 submission, sigsep-mus-2018",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["sdr.csv", "sdr.html", "sdr.json", "sdr.md", "sdr.metrics.json", "sdr.tex"]
    printed = capsys.readouterr().out
    assert printed == (out / "sdr.md").read_text(encoding="utf-8")
    assert "| TAK1 | 1 | 6.43 | 5.16 | 4.15 | 6.60 |" in printed
    assert "- TAK1 (imported): SiSEC 2018 submission, sigsep-mus-2018" in printed
    document = json.loads((out / "sdr.json").read_text(encoding="utf-8"))
    assert document["n_tracks"] == 50
    assert document["notes"] == {"TAK1": "SiSEC 2018 submission, sigsep-mus-2018"}
    assert list(document["aggregations"]) == ["mean"]  # SiSEC files carry no nSDR
    median = document
    assert median["rows"]["UHL2"]["kind"] == "imported"
    vocals = median["differences"]["TAK1 - UHL2"]["vocals"]
    assert vocals["mean"] == pytest.approx(0.67, abs=0.02)
    assert vocals["ci_low"] <= vocals["mean"] <= vocals["ci_high"]
    assert vocals["significant"] == (not vocals["ci_low"] <= 0 <= vocals["ci_high"])
    assert 0 < vocals["p_value"] < 0.05
    assert "\\toprule" in (out / "sdr.tex").read_text(encoding="utf-8")
    assert "<table>" in (out / "sdr.html").read_text(encoding="utf-8")


def test_cli_metric_sar_and_bootstrap_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    arguments = [
        "table", "--row", f"TAK1={SISEC18 / 'TAK1'}", "--row", f"UHL2={SISEC18 / 'UHL2'}",
        "--compare", "TAK1:UHL2", "--metric", "SAR", "--resamples", "300", "--bootstrap-seed", "7",
        "--out", str(out),
    ]  # fmt: skip
    assert main(arguments) == 0
    assert sorted(p.name for p in out.iterdir()) == ["sar.csv", "sar.html", "sar.json", "sar.md", "sar.metrics.json", "sar.tex"]
    printed = capsys.readouterr().out
    assert printed.startswith("## SAR: median over frames, median over tracks")
    document = json.loads((out / "sar.json").read_text(encoding="utf-8"))
    assert document["metric"] == "SAR"
    assert document["statistics"]["n_resamples"] == 300 and document["statistics"]["bootstrap_seed"] == 7
    expected = build_table(
        [MethodRuns("TAK1", (SISEC18 / "TAK1",))], metric="SAR", n_resamples=1
    ).seed_values["TAK1"]["TAK1"]
    assert document["rows"]["TAK1"]["seeds"]["TAK1"] == pytest.approx(expected)
    assert cli.METRICS == METRICS


def test_cli_stem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["table", "--row", f"MIX={SISEC18 / 'MIX'}", "--stem", "mix", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["mix.csv", "mix.html", "mix.json", "mix.md", "mix.metrics.json", "mix.tex"]


def test_cli_seeds_from_comma_separated_dirs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s0, s1 = uniform_run(tmp_path / "s0", SEED0), uniform_run(tmp_path / "s1", SEED1)
    assert main(["table", "--row", f"unet={s0},{s1}", "--out", str(tmp_path / "out")]) == 0
    assert "| unet | 2 | 3.00 ± 1.00 |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "arguments",
    [
        ["--row", "no-equals-sign"],
        ["--row", "=some/dir"],
        ["--row", "name="],
        ["--row", "name=a,,b"],
        ["--row", "name=/definitely/not/a/dir"],
        ["--row", f"TAK1={SISEC18 / 'TAK1'}", "--compare", "TAK1"],
        ["--row", f"TAK1={SISEC18 / 'TAK1'}", "--compare", "TAK1:NOPE"],
        ["--row", f"TAK1={SISEC18 / 'TAK1'}", "--row", f"TAK1={SISEC18 / 'UHL2'}"],
        ["--row", f"TAK1={SISEC18 / 'TAK1'}", "--metric", "SDRi"],
        ["--row", f"TAK1={SISEC18 / 'TAK1'}", "--note", "NOPE=text"],
        ["--row", f"TAK1={SISEC18 / 'TAK1'}", "--note", "TAK1"],
        ["--row", f"TAK1={SISEC18 / 'TAK1'}", "--note", "TAK1="],
        ["--row", f"TAK1={SISEC18 / 'TAK1'}", "--note", "TAK1=a", "--note", "TAK1=b"],
        ["--row", f"TAK1={SISEC18 / 'TAK1'}", "--resamples", "0"],
    ],
)
def test_cli_bad_arguments_exit_with_usage_error(
    arguments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["table", *arguments, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_data_error_returns_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    full = uniform_run(tmp_path / "full", SEED0, tracks=("a", "b", "c"))
    short = uniform_run(tmp_path / "short", SEED0, tracks=("a", "b", "c"))
    (short / "c.json").unlink()
    code = main(["table", "--row", f"full={full}", "--row", f"short={short}", "--out", str(tmp_path / "out")])
    assert code == 1
    assert "missing" in capsys.readouterr().err
