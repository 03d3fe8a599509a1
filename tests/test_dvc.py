"""The project round-trips through DVC: a lab runs the tiny pipeline with `dvc repro`, pushes to
a DVC remote (a local directory here), and

* a reviewer's fresh clone rebuilds the tables with `make table`: only the table rules run
  (the dry run shows no training, separation or scoring), and the tables are byte-identical to
  the lab's and to the md5s in the lab's dvc.lock;
* a second lab clone separates and scores again from the pulled checkpoints with
  `make evaluate`, without training, and gets the same tables;
* `dvc metrics show` prints the table's numbers, and `dvc metrics diff` shows the SDR change
  between two commits of the lab.

The lab is a git repository made from the project's files with the tiny config of
tests/test_workflow.py as its config.yaml. The clones use this test run's virtual environment
(`make ... VENV=`), whose set-up stamp is made newer than the clone's lock file so that make
installs nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_workflow import job_counts, tiny_config

from conftest import REPO

VENV = Path(sys.executable).parent.parent
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "demixbench tests",
    "GIT_AUTHOR_EMAIL": "tests@demixbench.invalid",
    "GIT_COMMITTER_NAME": "demixbench tests",
    "GIT_COMMITTER_EMAIL": "tests@demixbench.invalid",
}
#: What DVC and the stages' `snakemake` need: the venv's commands first, no telemetry.
ENV = {**os.environ, **GIT_IDENTITY, "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
EXPENSIVE = ("train_model", "separate_track", "separate_oracle", "score_run", "decode_track", "prepare_dataset")


def run(command: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(command)} failed in {cwd}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


def project_files() -> list[str]:
    """The repository's files as a clone would have them (tracked, plus new files not ignored)."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return [name for name in listing.stdout.split("\0") if name and (REPO / name).is_file()]


def clone(lab: Path, name: str) -> Path:
    """A fresh clone of the lab, as a reviewer makes it, with a set-up stamp for `make`."""
    target = lab.parent / name
    run(["git", "clone", "--quiet", str(lab), str(target)], cwd=lab.parent)
    (target / ".installed-stamp").touch()  # newer than the clone's requirements.lock
    return target


def make(workdir: Path, target: str, timeout: int = 900) -> str:
    result = run(
        ["make", target, f"VENV={VENV}", f"STAMP={workdir / '.installed-stamp'}", "CORES=2"],
        cwd=workdir,
        timeout=timeout,
    )
    return result.stdout + result.stderr


def dry_run_part(output: str) -> str:
    """What a `make` target printed up to the end of its dry run."""
    end = output.find("This was a dry-run")
    assert end > 0, output[-3000:]
    return output[:end]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    """The lab's repository after `dvc repro` on the tiny config, committed and pushed."""
    root = tmp_path_factory.mktemp("dvc")
    lab = root / "lab"
    for name in project_files():
        (lab / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, lab / name)
    (lab / "config.yaml").write_text(yaml.safe_dump(tiny_config(), sort_keys=False))
    run(["git", "init", "--quiet"], cwd=lab)
    run(["git", "add", "--all"], cwd=lab)
    run(["git", "commit", "--quiet", "-m", "the tiny experiment"], cwd=lab)
    repro = run(["dvc", "repro"], cwd=lab, timeout=1500)
    assert (lab / "dvc.lock").is_file(), repro.stdout[-3000:]
    run(["dvc", "remote", "add", "--default", "storage", str(root / "remote")], cwd=lab)
    run(["git", "add", "dvc.lock", ".dvc/config"], cwd=lab)
    run(["git", "commit", "--quiet", "-m", "results of the tiny experiment"], cwd=lab)
    run(["dvc", "push"], cwd=lab)
    return lab


@pytest.mark.slow
def test_dvc_repro_runs_the_pipeline_and_metrics_show_prints_the_table(lab):
    headline = json.loads((lab / "results/tiny/tables/sdr.metrics.json").read_text())
    table = json.loads((lab / "results/tiny/tables/sdr.json").read_text())
    assert headline["rows"]["unet"]["All"] == table["rows"]["unet"]["All"]["mean"]
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], cwd=lab).stdout)
    metrics = shown[""]["data"]["results/tiny/tables/sdr.metrics.json"]["data"]
    assert metrics == headline
    printed = run(["dvc", "metrics", "show"], cwd=lab).stdout
    assert "rows.unet_gan.vocals" in printed and "differences.unet_gan - unet.All" in printed
    assert run(["dvc", "status"], cwd=lab).stdout.strip() == "Data and pipelines are up to date."


@pytest.mark.slow
def test_dvc_plots_show_renders_the_training_curves_of_every_run(lab):
    """dvc.yaml's plots cover the DVCLive logs of every model and seed (GAN terms for the GAN variants)."""
    shown = run(["dvc", "plots", "show", "--json"], cwd=lab).stdout
    for model in ("unet", "unet_gan", "demucs_v1", "demucs_v1_gan"):
        for seed in (1, 2):
            metrics = f"results/tiny/models/{model}/seed{seed}/dvclive/plots/metrics"
            assert f"{metrics}/train/loss.tsv" in shown and f"{metrics}/valid/nsdr_mean.tsv" in shown, (model, seed)
            assert (f"{metrics}/gan/d_loss_real.tsv" in shown) == model.endswith("_gan"), (model, seed)


@pytest.mark.slow
def test_reviewer_rebuilds_the_published_tables_with_make_table(lab):
    reviewer = clone(lab, "reviewer")
    output = make(reviewer, "table", timeout=600)
    planned = job_counts(dry_run_part(output))
    assert planned == {"make_table": 2, "tables": 1}, output[-3000:]
    assert not any(f"rule {name}:" in output for name in EXPENSIVE), output[-3000:]
    published = sorted(path.name for path in (lab / "results/tiny/tables").iterdir())
    assert sorted(path.name for path in (reviewer / "results/tiny/tables").iterdir()) == published
    for name in published:
        assert (reviewer / "results/tiny/tables" / name).read_bytes() == (
            lab / "results/tiny/tables" / name
        ).read_bytes(), name
        assert f"results/tiny/tables/{name}: identical to the published table (dvc.lock)" in output
    # the scores and the dataset report were pulled, nothing else
    assert sorted(path.name for path in (reviewer / "results").iterdir()) == [".gitkeep", "tiny"]
    assert sorted(path.name for path in (reviewer / "results/tiny").iterdir()) == ["datasets", "scores", "tables"]
    assert [path.name for path in (reviewer / "results/tiny/datasets").iterdir()] == ["report.json"]


@pytest.mark.slow
def test_a_changed_table_is_reported_as_differing_from_the_published_one(lab):
    reviewer = clone(lab, "reviewer-edited")
    config = yaml.safe_load((reviewer / "config.yaml").read_text())
    config["table"]["bootstrap_seed"] += 1  # other intervals: the tables differ
    (reviewer / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run(
        ["make", "table", f"VENV={VENV}", f"STAMP={reviewer / '.installed-stamp'}"],
        cwd=reviewer,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0
    assert "results/tiny/tables/sdr.json: DIFFERS from the published table (dvc.lock)" in result.stdout
    assert (
        "results/tiny/tables/sdr.metrics.json: identical to the published table (dvc.lock)" in result.stdout
    )  # the means did not change


@pytest.mark.slow
def test_lab_clone_evaluates_the_pulled_checkpoints_without_training(lab):
    second = clone(lab, "second-lab")
    output = make(second, "evaluate", timeout=900)
    planned = job_counts(dry_run_part(output))
    assert "train_model" not in planned and "decode_track" not in planned, planned
    models = yaml.safe_load((lab / "config.yaml").read_text())["models"]
    separated = [path for path in (lab / "results/tiny/separated").glob("*/*/*") if path.is_dir()]
    assert planned["separate_track"] == sum(path.parts[-3] in models for path in separated), planned
    scored_runs = {path.parent for path in (lab / "results/tiny/scores").rglob("*.json.gz")}
    assert planned["score_run"] == len(scored_runs), planned  # one scoring job per run
    assert "rule train_model:" not in output
    for name in sorted(path.name for path in (lab / "results/tiny/tables").iterdir()):
        assert (second / "results/tiny/tables" / name).read_bytes() == (
            lab / "results/tiny/tables" / name
        ).read_bytes(), name
    # the checkpoints were used as pulled
    for weights in (lab / "results/tiny/models").rglob("model.safetensors"):
        assert (second / weights.relative_to(lab)).read_bytes() == weights.read_bytes()


@pytest.mark.slow
def test_metrics_diff_shows_the_sdr_change_between_two_commits(lab):
    """Dropping seed 2 from the lab's config: `dvc repro` rebuilds only the tables (the seed-1 runs
    are in place), and `dvc metrics diff` shows how the seed means moved."""
    before = json.loads((lab / "results/tiny/tables/sdr.metrics.json").read_text())
    config = yaml.safe_load((lab / "config.yaml").read_text())
    config["seeds"] = [1]
    (lab / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    repro = run(["dvc", "repro"], cwd=lab, timeout=900)
    assert "rule train_model:" not in repro.stdout and "rule score_run:" not in repro.stdout, repro.stdout[-3000:]
    run(["git", "commit", "--quiet", "-am", "one seed"], cwd=lab)
    after = json.loads((lab / "results/tiny/tables/sdr.metrics.json").read_text())
    assert after["rows"]["unet"]["All"] != before["rows"]["unet"]["All"]
    diff = json.loads(run(["dvc", "metrics", "diff", "HEAD~1", "--json"], cwd=lab).stdout)
    change = diff["results/tiny/tables/sdr.metrics.json"]["rows.unet.All"]
    assert change["old"] == before["rows"]["unet"]["All"] and change["new"] == after["rows"]["unet"]["All"]
    assert change["diff"] == pytest.approx(after["rows"]["unet"]["All"] - before["rows"]["unet"]["All"])
    assert "rows.unet.All" in run(["dvc", "metrics", "diff", "HEAD~1"], cwd=lab).stdout


@pytest.mark.slow
def test_retraining_with_the_same_seed_leaves_the_weights_unchanged_for_dvc(lab):
    """Issue 17: the same seed on the same machine writes the same weight bytes, so after a retrain
    DVC sees model.json (its provenance records the time) changed but not the weights, and stores
    and transfers no new copy of them. Runs last: it retrains one model in the lab."""
    weights = "results/tiny/models/unet/seed1/model.safetensors"
    before = (lab / weights).read_bytes()
    retrain = run(["snakemake", "--cores", "2", "--force", weights], cwd=lab, timeout=900)
    assert "rule train_model:" in retrain.stdout + retrain.stderr
    assert (lab / weights).read_bytes() == before
    status = json.loads(run(["dvc", "data", "status", "--granular", "--json"], cwd=lab).stdout)
    changed = [path for paths in status.get("uncommitted", {}).values() for path in paths]
    assert "results/tiny/models/unet/seed1/model.json" in changed, status
    assert weights not in changed, status
