"""Tests of demixbench.table.build (leaderboard aggregation: seeds, differences, aggregations and
metrics) on the SiSEC 2018 results and on synthetic score directories."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from demixbench import TARGETS
from demixbench.table.build import build_table
from demixbench.table.model import AGGREGATIONS, KINDS, Comparison, MethodRuns
from demixbench.table.significance import compare, holm
from table_helpers import (
    SEED0,
    SEED1,
    SISEC18,
    cell,
    frames_with_median,
    seeded_runs,
    uniform_run,
    write_track,
    write_values,
)

#: Published SiSEC 2018 results: median over frames, median over tracks, SDR in dB.
PUBLISHED: dict[str, dict[str, float]] = {
    "IRM2": {"drums": 8.45, "bass": 7.12, "other": 7.85, "vocals": 9.43},
    "MIX": {"drums": 1.33, "bass": 0.67, "other": 1.16, "vocals": 1.12},
    "TAK1": {"drums": 6.43, "bass": 5.16, "other": 4.15, "vocals": 6.60},
    "STL2": {"drums": 4.22, "bass": 3.21, "other": 2.25, "vocals": 3.25},
    "UHL2": {"drums": 5.92, "bass": 5.03, "other": 4.19, "vocals": 5.93},
}


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


# --------------------------------------------------------------------------------------------------
# Seed statistics and differences
# --------------------------------------------------------------------------------------------------


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
    runs = tuple(uniform_run(tmp_path / f"s{i}", {t: [v, v, v] for t in TARGETS}) for i, v in enumerate(values))
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
    zero = {t: [0.0, 0.0, 0.0] for t in TARGETS}
    base = (uniform_run(tmp_path / "base" / "s0", constant), uniform_run(tmp_path / "base" / "s1", zero))
    # The same values as base under other seed names: not paired with gan.
    other = (uniform_run(tmp_path / "other" / "t0", constant), uniform_run(tmp_path / "other" / "t1", zero))
    single_a = (uniform_run(tmp_path / "oracle", {t: [10.0, 10.0, 10.0] for t in TARGETS}),)
    single_b = (uniform_run(tmp_path / "mix", constant),)
    table = build_table(
        [
            MethodRuns("gan", variant),
            MethodRuns("base", base),
            MethodRuns("other", other),
            MethodRuns("oracle", single_a, kind="oracle"),
            MethodRuns("mix", single_b, kind="oracle"),
        ],
        [
            Comparison("gan", "base"),
            Comparison("gan", "other"),
            Comparison("oracle", "mix"),
            Comparison("gan", "mix"),
        ],
    )
    assert {label: design.kind for label, design in table.designs.items()} == {
        "gan - base": "paired",
        "gan - other": "unpaired",
        "oracle - mix": "untested",
        "gan - mix": "pooled",
    }
    # Paired by seed (s0, s1): drums per-seed differences 2 - 1 and 4 - 0 -> 2.5 ± std(1, 4) / sqrt(2).
    row = cell(table, "gan - base", "drums")
    assert row["kind"] == "difference" and row["design"] == "paired"
    assert row["mean"] == pytest.approx(2.5)
    assert row["se"] == pytest.approx(1.5)
    assert pd.isna(row["n_seeds"])
    # All per seed: gan 3.25, 3.5; base 1, 0 -> differences 2.25, 3.5.
    row = cell(table, "gan - base", "All")
    assert row["mean"] == pytest.approx(2.875)
    assert row["se"] == pytest.approx(0.625)
    # Unpaired: gan drums mean 3, se 1; other: mean 0.5, se 0.5 -> 2.5 ± sqrt(1.25) (Welch).
    row = cell(table, "gan - other", "drums")
    assert row["design"] == "unpaired"
    assert row["mean"] == pytest.approx(2.5)
    assert row["se"] == pytest.approx(math.sqrt(1.0**2 + 0.5**2))
    row = cell(table, "gan - other", "All")
    assert row["se"] == pytest.approx(math.sqrt(0.125**2 + 0.5**2))
    # Two single runs: untested, no seed s.e., no interval, no test.
    row = cell(table, "oracle - mix", "vocals")
    assert row["design"] == "untested"
    assert row["mean"] == pytest.approx(9.0)
    assert row[["se", "se_total", "df", "ci_low", "ci_high", "p_value", "p_holm", "mdd"]].isna().all()
    assert pd.isna(row["significant"])
    # Multi-seed vs single run: pooled, the single run borrows gan's seed variance:
    # vocals per seed 7, 6 -> variance 0.5 x (1/2 + 1/1).
    row = cell(table, "gan - mix", "vocals")
    assert row["design"] == "pooled"
    assert row["mean"] == pytest.approx(5.5)
    assert row["se"] == pytest.approx(math.sqrt(0.5 * 1.5))
    # Every tested cell: the total s.e. adds the tracks' share to the seeds', the interval holds
    # the estimate, the MDD is positive; significance is the Holm-adjusted p below alpha.
    tested = table.data[table.data["design"].isin(["paired", "unpaired", "pooled"])]
    assert len(tested) == 3 * len(table.columns)
    assert (tested["se_total"] >= tested["se"] - 1e-12).all()
    assert (tested["df"] > 0).all()
    assert ((tested["ci_low"] <= tested["mean"]) & (tested["mean"] <= tested["ci_high"])).all()
    assert (tested["mdd"] > 0).all()
    assert (tested["p_holm"] >= tested["p_value"]).all()
    assert (tested["significant"] == (tested["p_holm"] < table.alpha)).all()
    # The JSON names the design and why.
    document = table.to_dict()["differences"]
    assert document["gan - base"]["design"] == "paired"
    assert document["gan - base"]["seeds"] == "paired by seed (2 seeds shared)"
    assert document["gan - other"]["seeds"] == "unpaired: seeds s0, s1, t0, t1 are on one side only"
    assert document["gan - mix"]["seeds"] == "B has 1 seed: its seed variance is borrowed from A (pooled)"
    assert document["oracle - mix"]["seeds"] == "1 seed per side: seed variance unknown, no test"


def test_paired_seeds_match_by_label_not_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    variant = rng.normal(5.0, 1.0, size=(3, 8, 4))
    baseline = variant - 0.5 + rng.normal(0.0, 0.2, size=(3, 8, 4))
    gan = seeded_runs(tmp_path, "gan", variant)
    base = seeded_runs(tmp_path, "base", baseline)
    ordered = build_table([MethodRuns("gan", gan), MethodRuns("base", base)], [Comparison("gan", "base")])
    shuffled = build_table(
        [MethodRuns("gan", gan[::-1]), MethodRuns("base", base[1:] + base[:1])], [Comparison("gan", "base")]
    )
    names = ["mean", "se", "se_total", "df", "ci_low", "ci_high", "p_value", "p_holm", "mdd"]
    for column in ordered.columns:
        first, second = cell(ordered, "gan - base", column), cell(shuffled, "gan - base", column)
        assert first["design"] == second["design"] == "paired"
        np.testing.assert_allclose(first[names].to_numpy(float), second[names].to_numpy(float), rtol=1e-12)
    # The paired s.e. is that of the per-seed differences, seed by seed.
    per_seed = np.median(variant, axis=1) - np.median(baseline, axis=1)
    assert cell(ordered, "gan - base", "drums")["se"] == pytest.approx(per_seed[:, 0].std(ddof=1) / math.sqrt(3))


@pytest.mark.parametrize(("n_variant", "n_baseline", "same_names"), [(3, 3, True), (3, 2, False), (1, 4, False)])
def test_difference_rows_are_compare(tmp_path: Path, n_variant: int, n_baseline: int, same_names: bool) -> None:
    rng = np.random.default_rng(4)
    variant = rng.normal(5.0, 1.0, size=(n_variant, 9, 4))
    baseline = rng.normal(4.8, 1.0, size=(n_baseline, 9, 4))
    gan = seeded_runs(tmp_path, "gan", variant)
    base = seeded_runs(tmp_path, "base", baseline)
    table = build_table(
        [MethodRuns("gan", gan), MethodRuns("base", base)],
        [Comparison("gan", "base")],
        n_resamples=300,
        bootstrap_seed=5,
        confidence=0.9,
        power=0.7,
    )
    for aggregation, statistic in (("median", "median"), ("mean", "mean")):
        expected = compare(
            variant,
            baseline,
            [d.name for d in gan],
            [d.name for d in base],
            over_tracks=statistic,
            n_resamples=300,
            seed=5,
            confidence=0.9,
            power=0.7,
        )
        assert expected.design.kind == ("paired" if same_names else "unpaired" if n_variant > 1 else "pooled")
        frame = table.results[aggregation]
        rows = frame[frame["row"] == "gan - base"].set_index("target").loc[list(table.columns)]
        assert (rows["design"] == expected.design.kind).all()
        for name, values in (
            ("mean", expected.estimate),
            ("se", expected.se_seeds),
            ("se_total", expected.se),
            ("df", expected.df),
            ("ci_low", expected.ci_low),
            ("ci_high", expected.ci_high),
            ("p_value", expected.p_value),
            ("mdd", expected.mdd),
        ):
            np.testing.assert_allclose(rows[name].to_numpy(float), values, rtol=1e-9, atol=1e-12, err_msg=name)
        # One comparison: Holm over its 5 cells.
        np.testing.assert_allclose(rows["p_holm"].to_numpy(float), holm(expected.p_value))
        assert (rows["significant"] == (rows["p_holm"] < 0.1)).all()
    document = table.to_dict()
    assert document["statistics"]["alpha"] == pytest.approx(0.1)
    assert document["statistics"]["power"] == 0.7


def test_holm_across_the_cells_of_one_table(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    tracks = rng.normal(4.0, 2.0, size=(12, 4))
    values = {
        name: tracks + shift + rng.normal(0.0, 0.1, size=(3, 1, 4)) + rng.normal(0.0, 0.2, size=(3, 12, 4))
        for name, shift in (("a", 0.0), ("b", 0.4), ("c", 6.0))
    }
    runs = {name: seeded_runs(tmp_path, name, array) for name, array in values.items()}
    single = (write_values(tmp_path / "single" / "x", tracks),)
    # (Not a constant shift: scipy's Wilcoxon test on tied differences over <= 13 tracks runs a
    # slow permutation test.)
    one_more = (write_values(tmp_path / "one_more" / "y", tracks + rng.normal(1.0, 0.3, size=tracks.shape)),)
    comparisons = [
        Comparison("b", "a"),
        Comparison("c", "a"),
        Comparison("c", "b"),
        Comparison("single", "one_more"),  # untested: not in the family
    ]
    table = build_table(
        [
            *(MethodRuns(name, dirs) for name, dirs in runs.items()),
            MethodRuns("single", single),
            MethodRuns("one_more", one_more),
        ],
        comparisons,
        n_resamples=300,
    )
    for aggregation in table.aggregations:
        frame = table.results[aggregation]
        differences = frame[frame["kind"] == "difference"]
        tested = differences[differences["p_value"].notna()]
        assert len(tested) == 3 * len(table.columns)
        assert table.n_tests(aggregation) == len(tested)
        # Holm over the whole table's cells, not per row.
        np.testing.assert_allclose(tested["p_holm"].to_numpy(float), holm(tested["p_value"].to_numpy(float)))
        per_row = np.concatenate(
            [holm(tested[tested["row"] == c.label]["p_value"].to_numpy(float)) for c in comparisons[:3]]
        )
        assert not np.allclose(tested["p_holm"].to_numpy(float), per_row)
        assert (tested["significant"] == (tested["p_holm"] < table.alpha)).all()
        untested = differences[differences["row"] == "single - one_more"]
        assert untested["p_holm"].isna().all() and untested["significant"].isna().all()
        # The large difference is significant everywhere.
        assert differences[differences["row"] == "c - a"]["significant"].all()
    assert table.to_dict()["statistics"]["n_tests"] == {aggregation: 15 for aggregation in table.aggregations}
    assert "Holm-adjusted across the 15 tested cells of this table" in table.long_caption("median")


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


def test_trained_on_defaults_and_validation() -> None:
    """Each kind's default training data; an unknown value or a contradiction is refused, naming
    the method and the allowed values."""
    run = (Path("x"),)
    defaults = {kind: MethodRuns("m", run, kind=kind).trained_on for kind in KINDS}
    assert defaults == {
        "model": "musdb18-train",
        "oracle": "oracle",
        "imported": "undeclared",
        "estimates": "undeclared",
        "command": "undeclared",
        "checkpoint": "undeclared",
    }
    assert MethodRuns("m", run).comparable is True
    assert MethodRuns("m", run, kind="imported").comparable is None
    checkpoint = MethodRuns("mdx_extra", run, kind="checkpoint", trained_on="test-seen")
    assert (checkpoint.trained_on, checkpoint.comparable) == ("test-seen", False)
    assert MethodRuns("IRM2", run, kind="imported", trained_on="oracle").comparable is True  # a SiSEC oracle
    with pytest.raises(ValueError, match=r"method 'm': trained_on must be one of .*'musdb18-train'.*got 'train'"):
        MethodRuns("m", run, trained_on="train")
    with pytest.raises(ValueError, match="an oracle is computed from the test stems"):
        MethodRuns("IRM2", run, kind="oracle", trained_on="musdb18-train")
    with pytest.raises(ValueError, match="cannot be trained_on 'oracle'"):
        MethodRuns("unet", run, kind="model", trained_on="oracle")


def test_comparability_of_difference_rows(tmp_path: Path) -> None:
    """A difference row is comparable only as far as both sides are (Kleene's and), is tested
    unless a side saw the test tracks, and Holm's family leaves the untested row out."""
    rng = np.random.default_rng(2)
    base = rng.normal(4.0, 1.0, size=(3, 6, 4))
    runs = {name: seeded_runs(tmp_path, name, base + shift) for name, shift in (("a", 0.0), ("b", 0.5), ("c", 1.0))}
    methods = [
        MethodRuns("a", runs["a"]),
        MethodRuns("b", runs["b"], kind="estimates"),  # undeclared: comparability unknown, still tested
        MethodRuns("c", runs["c"], kind="command", trained_on="test-seen"),
    ]
    table = build_table(methods, [Comparison("b", "a"), Comparison("c", "a"), Comparison("c", "b")], n_resamples=50)
    frame = table.data.drop_duplicates("row").set_index("row")
    assert frame.at["a", "comparable"]
    assert pd.isna(frame.at["b", "comparable"]) and not frame.at["c", "comparable"]
    assert pd.isna(frame.at["b - a", "comparable"]) and pd.notna(frame.at["b - a", "p_value"])
    for label in ("c - a", "c - b"):
        assert not frame.at[label, "comparable"] and pd.isna(frame.at[label, "p_value"])
    assert table.n_tests() == len(table.columns)  # only b - a's cells
    assert {label: table.marks(label) for label in frame.index} == {
        "a": "",
        "b": "?",
        "c": "†",
        "b - a": "?",
        "c - a": "†",
        "c - b": "†?",
    }
    # The same b - a numbers as in a table without the contaminated row.
    clean = build_table(methods[:2], [Comparison("b", "a")], n_resamples=50)
    for column in table.columns:
        for name in ("mean", "se", "ci_low", "ci_high", "p_holm"):
            assert cell(table, "b - a", column)[name] == pytest.approx(cell(clean, "b - a", column)[name]), name


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
    # The imported row declares no training data: marked "?", and so is its difference row.
    assert "| sisec? | 1 | n/a | n/a | n/a | n/a | n/a |" in section
    assert "| model - sisec? | 2 vs 1, pooled | n/a |" in section
    assert "| model - sisec: MDD | 80% power | n/a |" in section
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
    runs = tuple(write_values(tmp_path / "sar", values[0], nsdr=values[0], metric="SAR") for _ in range(1))
    table = build_table([MethodRuns("m", runs)], metric="SAR")
    assert table.aggregations == ("median", "mean")


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
    assert {p.name for p in paths.values()} == {
        "sar.md",
        "sar.csv",
        "sar.json",
        "sar.tex",
        "sar.html",
        "sar.metrics.json",
    }
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
