"""Tests of demixbench.table (SDR leaderboard aggregation) and the ``demixbench table`` CLI."""

from __future__ import annotations

import gzip
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from demixbench import TARGETS
from demixbench.cli import main
from demixbench.table import (
    Comparison,
    MethodRuns,
    SDRTable,
    build_table,
    load_track_scores,
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
) -> Path:
    """Write one museval-style score file; NaN is written as the JSON NaN literal, like museval."""
    directory.mkdir(parents=True, exist_ok=True)
    document = {
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


def cell(table: SDRTable, row: str, target: str) -> pd.Series:
    """The tidy-data row for (row, target)."""
    selected = table.data[(table.data["row"] == row) & (table.data["target"] == target)]
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
    assert "median over 1 s frames" in lines[0] and "3 test tracks" in lines[0]
    table_lines = [line for line in lines if line.startswith("|")]
    assert table_lines[0] == "| method | seeds | drums | bass | other | vocals | All |"
    assert len(table_lines) == 2 + 4  # header, alignment, 3 methods, 1 difference
    assert table_lines[2] == (
        "| unet | 2 | 3.00 ± 1.00 | 1.50 ± 0.50 | 2.50 ± 0.50 | 6.50 ± 0.50 | 3.38 ± 0.12 |"
    )
    assert table_lines[3] == "| IRM2 | 1 | 9.00 | 9.00 | 9.00 | 9.00 | 9.00 |"
    assert table_lines[4].startswith("| silent | 1 | 1.00 |") and "n/a" in table_lines[4]
    assert table_lines[5].startswith("| unet - IRM2 | 2 vs 1 | -6.00 ± 1.00 |")


def test_csv(small_table: SDRTable, tmp_path: Path) -> None:
    path = small_table.to_csv(tmp_path / "out.csv")
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["row", "kind", "target", "mean", "se", "n_seeds"]
    assert len(frame) == 4 * 5
    unet = frame[(frame["row"] == "unet") & (frame["target"] == "drums")].iloc[0]
    assert (unet["kind"], unet["mean"], unet["se"], unet["n_seeds"]) == ("model", 3.0, 1.0, 2)


def test_json_is_strict_and_complete(small_table: SDRTable, tmp_path: Path) -> None:
    path = small_table.to_json(tmp_path / "out.json")
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text

    def reject(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    document = json.loads(text, parse_constant=reject)
    assert document["metric"] == "SDR"
    assert document["n_tracks"] == 3
    assert "median over tracks" in document["aggregation"]
    unet = document["rows"]["unet"]
    assert unet["kind"] == "model" and unet["n_seeds"] == 2
    assert unet["drums"] == {"mean": 3.0, "se": 1.0}
    assert unet["seeds"]["s0"]["drums"] == 2.0 and unet["seeds"]["s1"]["All"] == 3.5
    assert document["rows"]["IRM2"]["bass"] == {"mean": 9.0, "se": None}
    assert document["rows"]["silent"]["vocals"] == {"mean": None, "se": None}
    difference = document["differences"]["unet - IRM2"]
    assert difference["drums"]["mean"] == pytest.approx(-6.0)
    assert difference["drums"]["se"] == pytest.approx(1.0)


def test_write_is_complete_and_leaves_no_temp_files(small_table: SDRTable, tmp_path: Path) -> None:
    out = tmp_path / "results" / "table"
    paths = small_table.write(out)
    assert {p.name for p in paths.values()} == {"sdr.md", "sdr.csv", "sdr.json"}
    assert sorted(p.name for p in out.iterdir()) == ["sdr.csv", "sdr.json", "sdr.md"]
    assert paths["md"].read_text(encoding="utf-8") == small_table.to_markdown()
    small_table.write(out, stem="again")
    assert (out / "again.json").is_file()


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
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["sdr.csv", "sdr.json", "sdr.md"]
    printed = capsys.readouterr().out
    assert printed == (out / "sdr.md").read_text(encoding="utf-8")
    assert "| TAK1 | 1 | 6.43 | 5.16 | 4.15 | 6.60 |" in printed
    document = json.loads((out / "sdr.json").read_text(encoding="utf-8"))
    assert document["n_tracks"] == 50
    assert document["rows"]["UHL2"]["kind"] == "imported"
    assert document["differences"]["TAK1 - UHL2"]["vocals"]["mean"] == pytest.approx(0.67, abs=0.02)


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
