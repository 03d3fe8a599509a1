"""Tests of the ``demixbench table`` command line (demixbench.cli)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from demixbench import cli
from demixbench.cli import main
from demixbench.score.scorefile import METRICS
from demixbench.table.build import build_table
from demixbench.table.model import MethodRuns
from table_helpers import SEED0, SEED1, SISEC18, uniform_run


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
