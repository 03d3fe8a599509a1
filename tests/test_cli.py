"""Tests of the ``demixbench table`` command line (demixbench.cli)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from demixbench import TARGETS, cli
from demixbench.cli import main
from demixbench.score.scorefile import METRICS
from demixbench.table.build import build_table
from demixbench.table.model import Comparison, MethodRuns
from demixbench.table.plan import plan_seeds
from table_helpers import SEED0, SEED1, SISEC18, seeded_runs, uniform_run, write_values


def test_cli_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "table",
            "--row", f"TAK1={SISEC18 / 'TAK1'}",
            "--row", f"UHL2={SISEC18 / 'UHL2'}",
            "--compare", "TAK1:UHL2",
            "--note", "TAK1=SiSEC 2018 submission, sigsep-mus-2018",
            "--trained-on", "TAK1=musdb18-train",  # both entries declare no data beyond MUSDB18 train
            "--trained-on", "UHL2=musdb18-train",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "sdr.csv",
        "sdr.html",
        "sdr.json",
        "sdr.md",
        "sdr.metrics.json",
        "sdr.tex",
    ]
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
    # SiSEC entries are single runs: 1 vs 1, no test (no interval, p, mark or MDD).
    difference = median["differences"]["TAK1 - UHL2"]
    assert difference["design"] == "untested"
    assert difference["seeds"] == "1 seed per side: seed variance unknown, no test"
    vocals = difference["vocals"]
    assert vocals["mean"] == pytest.approx(0.67, abs=0.02)
    for name in ("se", "se_total", "df", "ci_low", "ci_high", "p_value", "p_holm", "significant", "mdd"):
        assert vocals[name] is None, name
    assert 0 < vocals["p_wilcoxon_tracks"] < 0.05  # the secondary per-track test only
    assert document["statistics"]["n_tests"] == {"median": 0, "mean": 0}
    assert "| TAK1 - UHL2 | 1 vs 1, no test | " in printed
    assert "| TAK1 - UHL2: MDD | 80% power | n/a | n/a | n/a | n/a | n/a |" in printed
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
    assert sorted(p.name for p in out.iterdir()) == [
        "sar.csv",
        "sar.html",
        "sar.json",
        "sar.md",
        "sar.metrics.json",
        "sar.tex",
    ]
    printed = capsys.readouterr().out
    assert printed.startswith("## SAR: median over frames, median over tracks")
    document = json.loads((out / "sar.json").read_text(encoding="utf-8"))
    assert document["metric"] == "SAR"
    assert document["statistics"]["n_resamples"] == 300 and document["statistics"]["bootstrap_seed"] == 7
    expected = build_table([MethodRuns("TAK1", (SISEC18 / "TAK1",))], metric="SAR", n_resamples=1).seed_values["TAK1"][
        "TAK1"
    ]
    assert document["rows"]["TAK1"]["seeds"]["TAK1"] == pytest.approx(expected)
    assert cli.METRICS == METRICS


def test_cli_table_paired_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(30)
    tracks = rng.normal(4.0, 2.0, size=(12, 4))
    base = seeded_runs(tmp_path, "base", tracks + rng.normal(0.0, 0.1, size=(3, 12, 4)))
    gan = seeded_runs(tmp_path, "gan", tracks + 3.0 + rng.normal(0.0, 0.1, size=(3, 12, 4)))
    out = tmp_path / "out"
    code = main(
        [
            "table",
            "--row", "base=" + ",".join(map(str, base)),
            "--row", "gan=" + ",".join(map(str, gan)),
            "--compare", "gan:base",
            "--trained-on", "base=musdb18-train",
            "--trained-on", "gan=musdb18-train",
            "--resamples", "300",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "| gan - base | 3 vs 3, paired | +3." in printed
    assert "| gan - base: MDD | 80% power | " in printed
    document = json.loads((out / "sdr.json").read_text(encoding="utf-8"))
    difference = document["differences"]["gan - base"]
    assert difference["design"] == "paired"
    assert difference["seeds"] == "paired by seed (3 seeds shared)"
    for column in (*TARGETS, "All"):
        assert difference[column]["significant"] is True
        assert 0 < difference[column]["mdd"] < difference[column]["mean"]
    frame = pd.read_csv(out / "sdr.csv")
    rows = frame[frame["row"] == "gan - base"]
    assert len(rows) == 2 * 5 and (rows["design"] == "paired").all()


def test_cli_stem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["table", "--row", f"MIX={SISEC18 / 'MIX'}", "--stem", "mix", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "mix.csv",
        "mix.html",
        "mix.json",
        "mix.md",
        "mix.metrics.json",
        "mix.tex",
    ]


def test_cli_seeds_from_comma_separated_dirs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s0, s1 = uniform_run(tmp_path / "s0", SEED0), uniform_run(tmp_path / "s1", SEED1)
    assert main(["table", "--row", f"unet={s0},{s1}", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    # a row whose training data nobody declared is marked, with the reason under the table
    assert "| unet? | 2 | 3.00 ± 1.00 |" in printed and "? training data not declared" in printed


def test_cli_trained_on_marks_and_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s0 = uniform_run(tmp_path / "s0", SEED0)
    out = tmp_path / "out"
    assert main(["table", "--row", f"unet={s0}", "--trained-on", "unet=test-seen", "--out", str(out)]) == 0
    assert "| unet† | 1 |" in capsys.readouterr().out
    assert json.loads((out / "sdr.json").read_text())["rows"]["unet"]["comparable"] is False
    for bad, message in (("unet=train", "unknown value"), ("other=extra-data", "unknown row name")):
        with pytest.raises(SystemExit):
            main(["table", "--row", f"unet={s0}", "--trained-on", bad, "--out", str(out)])
        assert message in capsys.readouterr().err


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


# --------------------------------------------------------------------------------------------------
# demixbench plan
# --------------------------------------------------------------------------------------------------


def _seed_values(seed: int, n_seeds: int, shift: float = 0.0) -> np.ndarray:
    """(seeds, 12 tracks, targets) scores: shared track difficulty, a per-seed offset, noise."""
    rng = np.random.default_rng(seed)
    tracks = np.random.default_rng(99).normal(4.0, 2.0, size=(12, 4))
    return tracks + shift + rng.normal(0.0, 0.3, size=(n_seeds, 1, 4)) + rng.normal(0.0, 0.2, size=(n_seeds, 12, 4))


def _joined(dirs: tuple[Path, ...]) -> str:
    return ",".join(map(str, dirs))


def _mdd_rows(printed: str) -> dict[tuple[str, str], list[float]]:
    """(seeds per method, design) -> the MDD per column, from the printed Markdown table."""
    rows = {}
    for line in printed.splitlines():
        parts = [part.strip() for part in line.strip("|").split("|")]
        if line.startswith("| ") and len(parts) == 2 + len(TARGETS) + 1 and parts[0] != "seeds per method":
            rows[parts[0], parts[1]] = [float(value) for value in parts[2:]]
    return rows


def test_cli_plan_baseline_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = seeded_runs(tmp_path, "base", _seed_values(1, 3))
    assert main(["plan", "--baseline", _joined(base), "--max-seeds", "6"]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[0] == "# Minimum detectable difference (dB), 80% power, alpha 0.05, 12 test tracks"
    assert "lower bounds" in printed  # one method: the tracks' share is unknown
    assert "(2 degrees of freedom)" in printed  # 3 seeds of one method
    assert "| seeds per method | design | drums | bass | other | vocals | All |" in printed
    rows = _mdd_rows(printed)
    assert set(rows) == {*((str(n), "unpaired") for n in range(2, 7)), ("∞", "tracks only")}
    assert rows["∞", "tracks only"] == [0.0] * 5  # no variant: no tracks' share
    plan = plan_seeds(base)
    assert plan.paired_sd is None and plan.seed_df == 2
    for n in range(2, 7):
        np.testing.assert_allclose(rows[str(n), "unpaired"], np.round(plan.mdd(n), 2), atol=1e-9)
    # More seeds, smaller detectable differences.
    for column in range(5):
        values = [rows[str(n), "unpaired"][column] for n in range(2, 7)]
        assert values == sorted(values, reverse=True) and values[0] > values[-1]


def test_cli_plan_paired_json_and_difference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = seeded_runs(tmp_path, "base", _seed_values(1, 3))
    gan = seeded_runs(tmp_path, "gan", _seed_values(2, 3, shift=0.2))
    out = tmp_path / "plan" / "plan.json"
    arguments = ["plan", "--baseline", _joined(base), "--variant", _joined(gan), "--resamples", "300"]
    code = main([*arguments, "--max-seeds", "5", "--difference", "0.5", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "paired: 3 seeds shared by both methods" in printed
    assert "standard deviation of per-seed differences (paired)" in printed
    assert "lower bounds" not in printed
    rows = _mdd_rows(printed)
    assert set(rows) == {
        *((str(n), design) for n in range(2, 6) for design in ("unpaired", "paired")),
        ("∞", "tracks only"),
    }
    plan = plan_seeds(base, gan, n_resamples=300)
    assert plan.paired_sd is not None
    for n in range(2, 6):
        np.testing.assert_allclose(rows[str(n), "unpaired"], np.round(plan.mdd(n), 2), atol=1e-9)
        np.testing.assert_allclose(rows[str(n), "paired"], np.round(plan.mdd(n, paired=True), 2), atol=1e-9)
    assert min(rows["∞", "tracks only"]) > 0  # the tracks' share, measured from the variant
    np.testing.assert_allclose(rows["∞", "tracks only"], np.round(plan.floor(), 2), atol=1e-9)
    assert "Seeds per method to detect 0.5 dB:" in printed

    document = json.loads(out.read_text(encoding="utf-8"))
    assert set(document) == {
        "columns", "alpha", "power", "n_tracks", "notes", "seed_sd", "seed_df", "paired_sd", "track_se",
        "mdd", "mdd_tracks_only", "difference", "seeds_needed",
    }  # fmt: skip
    assert document["columns"] == [*TARGETS, "All"]
    assert document["alpha"] == pytest.approx(0.05) and document["power"] == 0.8
    assert document["n_tracks"] == 12 and document["seed_df"] == 4  # 3 + 3 seeds, 2 methods
    assert document["difference"] == 0.5
    np.testing.assert_allclose(document["seed_sd"], plan.seed_sd)
    np.testing.assert_allclose(document["paired_sd"], plan.paired_sd)
    np.testing.assert_allclose(document["track_se"], plan.track_se)
    assert set(document["mdd"]) == {"unpaired", "paired"}
    for design, paired in (("unpaired", False), ("paired", True)):
        assert list(document["mdd"][design]) == ["2", "3", "4", "5"]
        for n, values in document["mdd"][design].items():
            np.testing.assert_allclose(values, plan.mdd(int(n), paired=paired))
        needed = document["seeds_needed"][design]
        assert list(needed) == document["columns"]
        assert list(needed.values()) == plan.seeds_needed(0.5, paired=paired)
        # The fewest seeds whose MDD is at most 0.5 dB.
        for index, count in enumerate(needed.values()):
            assert count is not None
            assert plan.mdd(count, paired=paired)[index] <= 0.5
            if count > 2:
                assert plan.mdd(count - 1, paired=paired)[index] > 0.5
        tail = printed.split("Seeds per method to detect 0.5 dB:")[1]
        line = next(line for line in tail.splitlines() if line.startswith(f"- {design}: "))
        assert line == f"- {design}: " + ", ".join(f"{column} {count}" for column, count in needed.items())
    # Pairing by seed needs fewer seeds than not.
    assert sum(document["seeds_needed"]["paired"].values()) < sum(document["seeds_needed"]["unpaired"].values())


def test_cli_plan_mdd_matches_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A paired plan for as many seeds as measured predicts the MDD row of the table built from
    the same runs."""
    base = seeded_runs(tmp_path, "base", _seed_values(1, 3))
    gan = seeded_runs(tmp_path, "gan", _seed_values(2, 3, shift=0.2))
    plan = plan_seeds(base, gan, n_resamples=300)
    table = build_table(
        [MethodRuns("gan", gan), MethodRuns("base", base)], [Comparison("gan", "base")], n_resamples=300
    )
    frame = table.data[table.data["row"] == "gan - base"].set_index("target")
    np.testing.assert_allclose(frame.loc[list(table.columns), "mdd"].to_numpy(float), plan.mdd(3, paired=True))


def test_cli_plan_unshared_seeds_are_unpaired(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = _seed_values(2, 3)
    base = seeded_runs(tmp_path, "base", _seed_values(1, 3))
    gan = tuple(write_values(tmp_path / "gan" / f"run{s}", values[s]) for s in range(3))
    assert main(["plan", "--baseline", _joined(base), "--variant", _joined(gan), "--resamples", "100"]) == 0
    printed = capsys.readouterr().out
    rows = _mdd_rows(printed)
    assert ("2", "unpaired") in rows and not [key for key in rows if key[1] == "paired"]
    assert "paired:" not in printed


def test_cli_plan_single_seed_baseline_with_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A single-run baseline is enough when the variant has seeds: their variance is used."""
    base = seeded_runs(tmp_path, "base", _seed_values(1, 1))
    gan = seeded_runs(tmp_path, "gan", _seed_values(2, 3))
    assert main(["plan", "--baseline", _joined(base), "--variant", _joined(gan), "--resamples", "100"]) == 0
    assert "seed variance pooled over 1 method(s) with 3 seeds" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--baseline", "/definitely/not/a/dir"], "is not a directory"),
        (["--baseline", "{base}", "--variant", "/definitely/not/a/dir"], "--variant"),
        (["--baseline", "{base}", "--difference", "0"], "--difference must be positive"),
        (["--baseline", "{base}", "--difference", "-0.3"], "--difference must be positive"),
        (["--baseline", "{base}", "--alpha", "1.5"], "expected a number in (0, 1)"),
        (["--baseline", "{base}", "--power", "0"], "expected a number in (0, 1)"),
        (["--baseline", "a,,b"], "empty directory"),
        (["--baseline", "{base}", "--max-seeds", "0"], "error:"),
        (["--variant", "{base}"], "--baseline"),
    ],
)
def test_cli_plan_usage_errors(
    arguments: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _joined(seeded_runs(tmp_path, "base", _seed_values(1, 2)))
    json_path = tmp_path / "plan.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", *(a.replace("{base}", base) for a in arguments), "--json", str(json_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err
    assert not json_path.exists()


def test_cli_plan_single_seed_baseline_returns_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = seeded_runs(tmp_path, "base", _seed_values(1, 1))
    json_path = tmp_path / "plan.json"
    assert main(["plan", "--baseline", _joined(base), "--json", str(json_path)]) == 1
    captured = capsys.readouterr()
    assert "demixbench plan: error:" in captured.err and "two seeds" in captured.err
    assert captured.out == ""
    assert not json_path.exists()


def test_cli_plan_mismatched_tracks_returns_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = seeded_runs(tmp_path, "base", _seed_values(1, 2))
    (base[1] / "t11.json").unlink()
    assert main(["plan", "--baseline", _joined(base)]) == 1
    assert "same tracks" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "place", "words"),
    [
        ("data:\n  root: x\n  seeds: [1, 2\nmodels: 3\n", ":4:7:", "flow sequence started at line 3, column 10"),
        ("a:\n\tb: 1\n", ":2:1:", "not tabs"),
        ("a: 'open\nb: 2\n", ":3:1:", "not valid YAML"),
    ],
)
def test_check_yaml_names_file_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, place: str, words: str
) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text(text, encoding="utf-8")
    good = tmp_path / "good.yaml"
    good.write_text("a: 1\n", encoding="utf-8")
    assert main(["check-yaml", str(good)]) == 0
    assert main(["check-yaml", str(good), str(bad)]) == 1
    error = capsys.readouterr().err
    assert f"{bad}{place} not valid YAML" in error and words in error
    assert main(["check-yaml", str(tmp_path / "missing.yaml")]) == 1
    assert "missing.yaml: no such file" in capsys.readouterr().err


def test_cli_plan_labels_seeds_as_the_table_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Seed directories that share their last name (runs/s0/scores) are labelled by as many trailing
    components as tell them apart, as in the tables, so shared seeds pair here too."""
    rng = np.random.default_rng(3)
    dirs = {
        name: [write_values(tmp_path / name / f"s{s}" / "scores", rng.normal(5, 1, size=(6, 4))) for s in range(3)]
        for name in ("base", "gan")
    }
    code = main(["plan", "--baseline", ",".join(map(str, dirs["base"])), "--variant", ",".join(map(str, dirs["gan"]))])
    out = capsys.readouterr().out
    assert code == 0 and "paired: 3 seeds shared by both methods" in out and "| 2 | paired |" in out
