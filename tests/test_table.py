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
from demixbench.table.model import AGGREGATIONS, Comparison, MethodRuns
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
