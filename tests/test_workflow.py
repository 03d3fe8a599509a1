"""The Snakemake workflow: lint, dry runs, config and dataset errors, and the whole pipeline on a
tiny config (slow), including what a rerun does after edits."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from demixbench import TARGETS
from demixbench.models import ARCHITECTURES, DISCRIMINATORS
from demixbench.score.track import BACKENDS
from demixbench.separate.oracles import ORACLES
from demixbench.train.config import PRECISIONS

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def load_demo() -> dict:
    return yaml.safe_load((REPO / "config/demo.yaml").read_text())


def snakemake(
    workdir: Path, config: dict | None, *args: str, timeout: int = 120, snakefile: Path = REPO / "Snakefile"
) -> subprocess.CompletedProcess:
    """Run `snakefile` (the repository's by default) in `workdir` with `config` (written to
    workdir/test-config.yaml)."""
    command = [SNAKEMAKE, "-s", str(snakefile), "--directory", str(workdir)]
    if config is not None:
        path = workdir / "test-config.yaml"
        path.write_text(yaml.safe_dump(config))
        command += ["--configfile", str(path)]
    return subprocess.run(command + list(args), capture_output=True, text=True, timeout=timeout, cwd=workdir)


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake run or dry run, as {rule: count}."""
    counts = {}
    in_table = False
    for line in output.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
            if match and match.group(1) != "total":
                counts[match.group(1)] = int(match.group(2))
            elif line.strip().startswith("total"):
                break
    return counts


def test_schema_enumerations_match_the_package_registries():
    definitions = SCHEMA["definitions"]
    assert definitions["model"]["properties"]["arch"]["enum"] == sorted(ARCHITECTURES)
    assert definitions["gan"]["properties"]["discriminator"]["enum"] == sorted(DISCRIMINATORS)
    assert SCHEMA["properties"]["oracles"]["items"]["enum"] == list(ORACLES)
    assert SCHEMA["properties"]["scoring"]["properties"]["backend"]["enum"] == list(BACKENDS)
    assert definitions["train"]["properties"]["precision"]["enum"] == list(PRECISIONS)


def test_every_config_key_is_commented():
    """config.yaml documents every key it sets, on the key's line or the line before."""
    lines = (REPO / "config.yaml").read_text().splitlines()
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("-") or ":" not in stripped:
            continue
        if stripped.startswith("<<:") or stripped.endswith(("*unet_args", "*unet_train")):
            continue
        previous = lines[number - 1].strip() if number else ""
        assert "#" in line or previous.startswith("#") or stripped.endswith(":"), (
            f"config.yaml:{number + 1} has no comment: {line}"
        )


def test_lint_is_clean(tmp_path):
    result = snakemake(tmp_path, load_demo(), "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_dry_run_of_the_demo_config(tmp_path):
    result = snakemake(tmp_path, load_demo(), "-n")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    # 12 + 4 tracks; 4 models x 2 seeds; 4 test tracks per run; 2 oracles; one scoring job per run
    # (8 + 2); SDR and SAR tables
    assert counts == {
        "prepare_dataset": 1,
        "decode_track": 16,
        "compute_input_stats": 1,
        "train_model": 8,
        "separate_track": 32,
        "separate_oracle": 8,
        "score_run": 10,
        "make_table": 2,
        "plot_scores": 2,
        "plot_learning_curves": 1,
        "make_listening_page": 1,
        "record_provenance": 1,
        "all": 1,
    }


def test_dry_run_of_the_paper_preset_on_a_local_musdb18hq_layout(tmp_path, small_dataset):
    """config.yaml (the experiment of record) pointed at a MUSDB18-HQ layout: 4 models x 5 seeds."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["data"]["root"] = str(small_dataset)
    config["data"]["validation_tracks"] = [sorted(os.listdir(small_dataset / "train"))[-1]]
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert counts["train_model"] == 20 and "prepare_dataset" not in counts
    assert counts["score_run"] == 4 * 5 + 6  # one per run: 4 models x 5 seeds and 6 oracles (2 test tracks each)
    train_jobs = [block for block in result.stdout.split("\n\n") if "rule train_model:" in block]
    assert len(train_jobs) == 20
    for block in train_jobs:  # the paper preset asks for a GPU, 32 GB and 48 h per training job
        resources = re.search(r"resources: (.*)", block).group(1)
        assert {"gpu=1", "mem_mb=32000", "runtime=2880"} <= set(resources.split(", ")), resources


def output_flags(config: dict, workdir: Path) -> dict[str, dict[str, bool]]:
    """rule -> output file name -> protected?, from the workflow as Snakemake loads it with `config`."""
    from snakemake.api import SnakemakeApi
    from snakemake.io import is_flagged
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    (workdir / "test-config.yaml").write_text(yaml.safe_dump(config))
    with SnakemakeApi(OutputSettings(quiet=True)) as api:
        loaded = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[workdir / "test-config.yaml"]),
            snakefile=REPO / "Snakefile",
            workdir=workdir,
        )
        return {
            rule.name: {Path(f).name: is_flagged(f, "protected") for f in rule.output}
            for rule in loaded._workflow.rules
        }


def test_paper_checkpoints_are_write_protected_and_the_demo_ones_are_not(tmp_path, small_dataset):
    """The paper preset's checkpoints cost GPU-days each: Snakemake write-protects them, so an edit that
    would retrain stops instead of deleting them. The demo's are cheap and stay writable."""
    paper = yaml.safe_load((REPO / "config.yaml").read_text())
    paper["data"]["root"] = str(small_dataset)
    paper["data"]["validation_tracks"] = [sorted(os.listdir(small_dataset / "train"))[-1]]
    flags = output_flags(paper, tmp_path)["train_model"]
    assert flags == {"model.safetensors": True, "model.json": True, "history.csv": False, "history.png": False}
    assert not any(output_flags(load_demo(), tmp_path)["train_model"].values())


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda c: c.update(seeds="one"), "config key seeds: 'one' is not of type 'array'"),
        (lambda c: c["models"]["unet"]["train"].update(epochs=2.5), ".train.epochs: 2.5 is not of type 'integer'"),
        (lambda c: c["data"].update(source="musdb19"), "config key data.source: 'musdb19' is not one of"),
        (lambda c: c["models"]["unet"]["train"].update(epoch=3), "('epoch' was unexpected); allowed keys: epochs,"),
        (
            lambda c: c.update(oracle=["MIX"]),
            "config key (top level): Additional properties are not allowed ('oracle' was unexpected)",
        ),
        (
            lambda c: c["models"]["unet_gan"]["gan"].update(loss="wasserstein"),
            "config key models.unet_gan.gan.loss: 'wasserstein' is not one of ['lsgan', 'hinge']",
        ),
        (
            lambda c: c["models"]["unet_gan"].update(baseline="resnet"),
            "config key models.unet_gan.baseline: 'resnet' is not a model",
        ),
        (
            lambda c: c["models"]["unet"]["args"].update(n_fft=2048),
            "config key models.unet.args.n_fft: 2048 differs from stft.n_fft",
        ),
        (
            lambda c: c["data"]["synthetic"].update(n_validation=12),
            "data.synthetic.n_validation: 12 must be smaller than",
        ),
        (lambda c: c.pop("experiment"), "config key (top level): 'experiment' is a required property"),
        (lambda c: c.update(experiment="../paper"), "config key experiment: '../paper' does not match"),
        (lambda c: c.update(experiment="scores"), "config key experiment: 'scores' is reserved"),
        (
            lambda c: c.update(experiment="other"),
            "config key data.root: results/demo/datasets/synthetic is inside another experiment's results tree",
        ),
    ],
)
def test_bad_config_stops_with_the_key(tmp_path, edit, message):
    config = load_demo()
    edit(config)
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr, result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_missing_dataset_directory_stops_before_any_job(tmp_path):
    config = load_demo()
    config["data"].update(source="musdb18hq", root=str(tmp_path / "MUSDB18-HQ"))
    result = snakemake(tmp_path, config, "--cores", "1")
    assert result.returncode != 0
    assert f"{tmp_path / 'MUSDB18-HQ'}: dataset directory does not exist" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_malformed_dataset_and_missing_stem_stop_before_any_job(tmp_path, small_dataset):
    root = tmp_path / "MUSDB18-HQ"
    shutil.copytree(small_dataset, root)
    shutil.rmtree(root / "test")
    config = load_demo()
    config["data"].update(
        source="musdb18hq", root=str(root), validation_tracks=[sorted(os.listdir(root / "train"))[-1]]
    )
    result = snakemake(tmp_path, config, "--cores", "1")
    assert result.returncode != 0 and f"{root / 'test'}: missing 'test/' directory" in result.stdout + result.stderr

    shutil.copytree(small_dataset / "test", root / "test")
    stem = next((root / "test").iterdir()) / "vocals.wav"
    stem.unlink()
    result = snakemake(tmp_path, config, "--cores", "1")
    assert result.returncode != 0 and f"{stem}: missing stem file" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


#: A path of the results or logs trees as a dry run prints it (inputs, outputs, logs, benchmarks).
TREE_PATH = re.compile(r"(?<![\w/.-])((?:results|logs)/[^\s,]+)")
#: A job Snakemake started (`rule NAME:`, `localrule NAME:`, `checkpoint NAME:`, ...).
JOB_LINE = re.compile(r"^(?:local)?(?:rule|checkpoint) \w+:$", re.M)


def test_dry_runs_of_two_experiments_list_only_their_own_trees(tmp_path):
    """Two configs with different `experiment` names in one working directory: every path a dry run
    lists (what jobs read and write, their logs and benchmarks) lies under that experiment's
    results/<experiment>/ or logs/<experiment>/."""
    second = load_demo()
    second["experiment"] = "second"
    second["data"]["root"] = "results/second/datasets/synthetic"
    for config in (load_demo(), second):
        result = snakemake(tmp_path, config, "-n")
        assert result.returncode == 0, result.stderr
        paths = set(TREE_PATH.findall(result.stdout))
        own = (f"results/{config['experiment']}/", f"logs/{config['experiment']}/")
        assert sum(path.startswith(own[0]) for path in paths) > 100, sorted(paths)[:20]
        assert sum(path.startswith(own[1]) for path in paths) > 10, sorted(paths)[:20]
        assert {
            f"results/{config['experiment']}/datasets/report.json",
            f"logs/{config['experiment']}/prepare_dataset.log",
        } <= paths
        outside = sorted(path for path in paths if not path.startswith(own))
        assert not outside, f"experiment {config['experiment']}: {outside[:10]}"


def write_dataset_report(small_dataset: Path, validation: list[str], path: Path) -> dict:
    """The dataset report verify_dataset writes for `small_dataset` read as MUSDB18-HQ."""
    from demixbench.data.verify import VerifySpec, verify_dataset

    spec = VerifySpec("musdb18hq", counts={"train": 3, "test": 2}, validation=validation)
    verify_dataset(small_dataset, spec, progress=False).write(path)
    return json.loads(path.read_text())


def test_a_dataset_report_serves_only_its_own_experiment(tmp_path, small_dataset):
    """The reviewer flow: the audio is not here, but the experiment's dataset report and scores are,
    so the tables are planned from the report's split. Another experiment with the same missing
    dataset never takes that report's track list (a shared results/datasets/report.json once let
    config.yaml plan 48 jobs on the demo's tracks): it stops before any job, naming data.root; so
    does the same experiment once data.source no longer matches its report, and the experiment
    itself when a job would need the audio (a full run, not the table rules)."""
    validation = sorted(os.listdir(small_dataset / "train"))[-1:]
    root = tmp_path / "MUSDB18-HQ"  # not there
    reviewed = load_demo()
    reviewed["experiment"] = "reviewed"
    reviewed["data"].update(source="musdb18hq", root=str(root), validation_tracks=validation)
    report = write_dataset_report(small_dataset, validation, tmp_path / "results/reviewed/datasets/report.json")
    for method in [*reviewed["models"], *reviewed["oracles"]]:
        for run in ["oracle"] if method in reviewed["oracles"] else [f"seed{seed}" for seed in reviewed["seeds"]]:
            for track in report["subsets"]["test"]:
                score = tmp_path / f"results/reviewed/scores/{method}/{run}/{track}.json.gz"
                score.parent.mkdir(parents=True, exist_ok=True)
                score.touch()
    result = snakemake(tmp_path, reviewed, "-n", "tables", "--allowed-rules", "make_table", "tables")
    assert result.returncode == 0, result.stdout + result.stderr
    assert job_counts(result.stdout) == {"make_table": 2, "tables": 1}

    other = copy.deepcopy(reviewed)
    other["experiment"] = "other"
    mismatched = copy.deepcopy(reviewed)
    mismatched["data"]["source"] = "musdb18"
    for config, message in [
        (reviewed, f"data.root: {root}: dataset directory does not exist; the dataset report results/reviewed/"),
        (other, f"data.root: {root}: dataset directory does not exist"),
        (mismatched, f"data.root: {root}: dataset directory does not exist, and the dataset report results/"),
    ]:
        result = snakemake(tmp_path, config, "--cores", "1")
        output = result.stdout + result.stderr
        assert result.returncode != 0 and message in output, output
        assert not JOB_LINE.search(output), output
    assert sorted(os.listdir(tmp_path / "results")) == ["reviewed"]
    assert not (tmp_path / "logs").exists()


@pytest.mark.slow
def test_a_zipped_dataset_is_acquired_by_the_checkpoint_then_decoded(tmp_path, small_dataset):
    """data.origin = a MUSDB18-HQ-layout zip: the dry run can only show the acquisition (the track
    names are in the archive); the run extracts, verifies and locks it, then decodes every track."""
    import zipfile

    archive = tmp_path / "musdb18hq.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(small_dataset.rglob("*.wav")):
            zf.write(path, Path("musdb18hq") / path.relative_to(small_dataset))
    config = load_demo()
    validation = sorted(os.listdir(small_dataset / "train"))[-1]
    # A made-up archive: its own checksum stands in for the published one of musdb18hq.zip.
    checksum = {"sha256": hashlib.sha256(archive.read_bytes()).hexdigest(), "size": archive.stat().st_size}
    config["data"].update(
        source="musdb18hq",
        root=str(tmp_path / "MUSDB18-HQ"),
        origin=str(archive),
        counts={"train": 3, "test": 2},
        checksum=checksum,
        validation_tracks=[validation],
        lock_file=str(tmp_path / "datasets.lock.json"),
    )
    dry = snakemake(tmp_path, config, "-n")
    assert dry.returncode == 0, dry.stderr
    assert "prepare_dataset" in job_counts(dry.stdout) and "decode_track" not in job_counts(dry.stdout)
    result = snakemake(tmp_path, config, "--cores", "2", "results/demo/stats/input_stats.npz", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # the statistics need the training tracks only (validation held out)
    assert sorted(os.listdir(tmp_path / "results/demo/decoded")) == sorted(
        set(os.listdir(small_dataset / "train")) - {validation}
    )
    report = json.loads((tmp_path / "results/demo/datasets/report.json").read_text())
    lock = json.loads((tmp_path / "datasets.lock.json").read_text())
    assert lock["sources"]["musdb18hq"]["dataset"]["fingerprint"] == report["fingerprint"]
    # Once in place, the tracks are listed when the DAG is built: a full dry run lists every job.
    counts = job_counts(snakemake(tmp_path, config, "-n").stdout)
    assert counts["train_model"] == 8 and "prepare_dataset" not in counts


# ---- the whole pipeline ----------------------------------------------------------------------


def tiny_config() -> dict:
    """The demo config shrunk to run in about two minutes on 2 cores, as the experiment `tiny`."""
    config = load_demo()
    config["experiment"] = "tiny"
    config["data"]["root"] = "results/tiny/datasets/synthetic"
    config["data"]["synthetic"].update(n_train=3, n_test=2, n_validation=1, duration=4.0)
    for entry in config["models"].values():
        entry["train"] = {
            **entry["train"],
            "epochs": 2,
            "steps_per_epoch": 2,
            "batch_size": 2,
            "segment_seconds": 1.0,
            "valid_segment_seconds": 4.0,
            "log_every_steps": 1,
        }
    config["models"]["unet_gan"]["gan"]["warmup_steps"] = 1
    config["models"]["demucs_v1_gan"]["gan"]["warmup_steps"] = 1
    config["separation"]["segment_seconds"] = 4.0
    config["report"]["excerpt_seconds"] = 2.0
    return config


STAND_IN = """\
\"\"\"Stands in for an external separator: every target is the mixture, scaled by a constant.\"\"\"
import sys
from pathlib import Path

import soundfile as sf

mixture, outdir = sys.argv[1], Path(sys.argv[2])
audio, rate = sf.read(mixture, dtype="float32")
for target, gain in (("drums", 0.3), ("bass", 0.2), ("other", 0.2), ("vocals", 0.3)):
    sf.write(outdir / f"{target}.wav", audio * gain, rate, subtype="FLOAT")
"""


def external_methods(config: dict, root: Path) -> dict:
    """One method of each external kind for the tiny config, made under `root`:
    `lab` (kind estimates): two folders of 16-bit estimates in museval's layout, with an extra
    accompaniment.wav that must be left out; `stand_in` (kind command): STAND_IN run on every test
    track; `released` (kind checkpoint): a Demucs v1 file in its authors' release format,
    declared as trained with test tracks."""
    import numpy as np
    import soundfile as sf
    from test_release import write_release_file

    from demixbench.data.synthetic import SyntheticSpec
    from demixbench.data.synthetic.writer import write_dataset

    data = config["data"]
    synthetic = {key: value for key, value in data["synthetic"].items() if key != "n_validation"}
    names = write_dataset(SyntheticSpec(**synthetic, sample_rate=data["sample_rate"]), root / "dataset")
    rng = np.random.default_rng(5)
    for run in ("run_a", "run_b"):
        for track in names["test"]:
            folder = root / "lab" / run / "test" / track
            folder.mkdir(parents=True)
            stems = {
                t: sf.read(root / "dataset/test" / track / f"{t}.wav")[0] for t in ("drums", "bass", "other", "vocals")
            }
            for target, stem in stems.items():
                estimate = 0.9 * stem + rng.normal(0, 0.01, size=stem.shape)
                sf.write(folder / f"{target}.wav", estimate.clip(-1, 1), data["sample_rate"], subtype="PCM_16")
            sf.write(folder / "accompaniment.wav", stems["drums"], data["sample_rate"], subtype="PCM_16")
    (root / "stand_in.py").write_text(STAND_IN)
    release = write_release_file(root / "demucs.th.gz", channels=8, depth=2, lstm_layers=1)
    return {
        "lab": {"kind": "estimates", "trained_on": "extra-data", "dirs": str(root / "lab" / "run_*"), "note": "a lab"},
        "stand_in": {
            "kind": "command",
            "trained_on": "musdb18-train",
            "command": f"{sys.executable} {root / 'stand_in.py'} {{mixture}} {{outdir}}",
            "resources": {"threads": 1, "mem_mb": 1000, "runtime": 10, "gpu": 0},
        },
        "released": {
            "kind": "checkpoint",
            "trained_on": "test-seen",
            "arch": "demucs_v1",
            "file": str(release),
            "format": "demucs_v1_release",
            "separation": {"shifts": 1},
            "note": "release-format file written by the test",
        },
    }


EXTERNAL_ROWS = {"lab", "stand_in", "released"}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Run the whole pipeline once on the tiny config, with one external method of each kind
    (external_methods); returns (workdir, config, snakefile).

    The workflow runs from a copy of the repository's workflow files and package sources, so the
    tests can edit that copy's code the way a user edits theirs (jobs still import the installed
    package; only the DAG's view of the code is the copy's)."""
    copy_root = tmp_path_factory.mktemp("repository")
    for name in ("Snakefile", "config.yaml"):
        shutil.copy2(REPO / name, copy_root / name)
    for name in ("workflow", "profiles", "envs", "src"):
        shutil.copytree(REPO / name, copy_root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    workdir = tmp_path_factory.mktemp("pipeline")
    config = tiny_config()
    config["external"] = external_methods(config, tmp_path_factory.mktemp("external"))
    snakefile = copy_root / "Snakefile"
    result = snakemake(workdir, config, "--cores", "2", timeout=1200, snakefile=snakefile)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return workdir, config, snakefile


@pytest.mark.slow
def test_pipeline_produces_the_table(pipeline):
    workdir, _, _ = pipeline
    table = json.loads((workdir / "results/tiny/tables/sdr.json").read_text())
    assert set(table["rows"]) == {"unet", "unet_gan", "demucs_v1", "demucs_v1_gan", "MIX", "IRM2"} | EXTERNAL_ROWS
    assert table["rows"]["unet"]["n_seeds"] == 2 and table["rows"]["MIX"]["n_seeds"] == 1
    assert table["n_tracks"] == 2
    for row in table["rows"].values():
        for target in ("drums", "bass", "other", "vocals", "All"):
            assert row[target]["mean"] is not None
    assert {"unet_gan - unet", "demucs_v1_gan - demucs_v1"} <= set(table["differences"])
    difference = table["differences"]["unet_gan - unet"]
    assert (difference["variant"], difference["baseline"]) == ("unet_gan", "unet")
    for column in (difference[target] for target in ("drums", "bass", "other", "vocals", "All")):
        assert column["ci_low"] <= column["mean"] <= column["ci_high"] and 0 <= column["p_value"] <= 1
        assert column["p_value"] <= column["p_holm"] <= 1 and column["mdd"] > 0
    # Both seeds of the variant are its baseline's: the row is paired by seed (common random numbers).
    assert difference["design"] == "paired" and difference["seeds"] == "paired by seed (2 seeds shared)"
    for name in ("sdr", "sar"):
        for suffix in ("md", "csv", "json", "tex", "html"):
            assert (workdir / f"results/tiny/tables/{name}.{suffix}").stat().st_size > 100
        for figure in ("boxplots", "seeds"):
            assert (workdir / f"results/tiny/figures/{name}_{figure}.png").read_bytes()[:4] == b"\x89PNG"
    assert (workdir / "results/tiny/figures/learning_curves.svg").stat().st_size > 1000
    assert (workdir / "results/tiny/report/listening.html").read_text().count("<audio") == 2 * (5 + 6 * 4)
    markdown = (workdir / "results/tiny/tables/sdr.md").read_text()
    assert "| unet_gan - unet | 2 vs 2, paired |" in markdown and "| unet_gan - unet: MDD | 80% power |" in markdown
    assert "Holm-adjusted across the" in markdown
    # IRM2 is an upper bound no trained model reaches, even a tiny one
    for target in ("drums", "bass", "other", "vocals"):
        assert table["rows"]["IRM2"][target]["mean"] > table["rows"]["unet"][target]["mean"]
    assert (workdir / "results/tiny/models/unet_gan/seed2/history.png").stat().st_size > 1000
    # every run's DVCLive logs (GAN scalars for the GAN variants) and its finished progress file
    for model in ("unet", "unet_gan", "demucs_v1", "demucs_v1_gan"):
        for seed in (1, 2):
            run = workdir / f"results/tiny/models/{model}/seed{seed}"
            metrics = run / "dvclive/plots/metrics"
            steps = [line.split("\t")[0] for line in (metrics / "train/loss.tsv").read_text().splitlines()[1:]]
            assert steps == ["1", "2", "3", "4"], (model, seed, steps)
            assert (metrics / "valid/nsdr_mean.tsv").is_file() and (metrics / "train/grad_norm.tsv").is_file()
            assert (metrics / "gan/d_loss_real.tsv").is_file() == model.endswith("_gan")
            progress = json.loads((run / "progress.json").read_text())
            assert (progress["state"], progress["step"], progress["total_steps"]) == ("done", 4, 4)
    assert not list((workdir / "results/tiny/work").rglob("state.pt"))  # rolling states removed after success
    meta = json.loads((workdir / "results/tiny/models/unet/seed1/model.json").read_text())
    assert meta["config"]["train"]["seed"] == 1 and meta["provenance"]["git"]["commit"]
    dataset = json.loads((workdir / "results/tiny/datasets/report.json").read_text())
    assert meta["provenance"]["dataset_fingerprint"]["fingerprint"] == dataset["fingerprint"]
    assert meta["provenance"]["config_hash"]
    run = json.loads((workdir / "results/tiny/provenance.json").read_text())
    assert run["dataset_fingerprint"]["fingerprint"] == dataset["fingerprint"]


@pytest.mark.slow
def test_the_report_opens_on_a_front_page_with_what_was_run_and_what_it_cost(pipeline):
    """Every row's cost (training, separation, scoring of all its seeds) is in provenance.json; the
    training's in model.json, each separation job's beside its benchmark file; `snakemake --report`
    puts the front page in the category listed first and links it from the landing page."""
    import base64

    workdir, config, snakefile = pipeline
    results = workdir / "results/tiny"
    costs = json.loads((results / "provenance.json").read_text())["costs"]
    trained = {"unet", "unet_gan", "demucs_v1", "demucs_v1_gan"}
    assert set(costs["rows"]) == trained | {"MIX", "IRM2"} | EXTERNAL_ROWS and costs["left_out"] == []
    for model in trained:
        row = costs["rows"][model]
        assert (row["training"]["jobs"], row["separation"]["jobs"]) == (2, 4), (model, row)  # 2 seeds, 2 tracks
        assert row["scoring"]["jobs"] >= 2 and row["total"]["wall_hours"] > row["training"]["wall_hours"] > 0
        assert row["total"]["gpu_hours"] == 0 and row["total"]["energy"]["gpu"]["unused_jobs"] == row["total"]["jobs"]
        assert row["training"]["hardware"] and row["separation"]["hardware"]  # metered: cost records
    assert "training" not in costs["rows"]["MIX"] and costs["rows"]["MIX"]["separation"]["jobs"] == 2
    assert costs["total"]["jobs"] == sum(stage["jobs"] for stage in costs["stages"].values())
    assert costs["stages"]["data"]["jobs"] == 5  # decode_track: 3 + 2 tracks
    meta = json.loads((results / "models/unet/seed1/model.json").read_text())
    assert meta["costs"]["jobs"] == 1 and meta["costs"]["cpu_hours"] > 0 and meta["costs"]["energy_text"]
    benchmarks = sorted((results / "benchmarks/separate_track").rglob("*.tsv"))
    assert len(benchmarks) == 4 * 2 * 2 + 2  # and the converted checkpoint's 2 tracks
    assert all(path.with_suffix(".costs.json").is_file() for path in benchmarks)
    front = (results / "report/front_page.html").read_text()
    dataset = json.loads((results / "datasets/report.json").read_text())
    for text in ("<h1>tiny: what was run</h1>", dataset["fingerprint"], "<td>1, 2</td>", "What each row cost"):
        assert text in front, text
    assert "unet + patchgan discriminator (variant of unet)" in front and "CPUs)" in front  # hardware
    assert "SDR: median over frames, median over tracks (SiSEC 2018)" in front and '<th scope="row">unet</th>' in front
    result = snakemake(workdir, config, "--report", "report.html", snakefile=snakefile, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = (workdir / "report.html").read_text()
    categories = json.loads(re.search(r"var categories = (.*?);\n", report).group(1))
    assert categories["0. Overview"] == {"Other": ["results/tiny/report/front_page.html"]}
    assert sorted(categories)[0] == "0. Overview"  # the menu sorts the categories by name
    assert "javascript:app.showCategory('0.%20Overview')" in report  # the landing page's link
    assert base64.b64encode((results / "report/front_page.html").read_bytes()).decode() in report


@pytest.mark.slow
def test_methods_not_trained_here_are_scored_and_tabled_with_their_provenance(pipeline):
    """One external method of each kind (external_methods) goes through the pipeline: its
    estimates are checked and copied, scored like a trained run's, and its row carries what it
    was trained on; the row declared as trained with test tracks is marked in every format."""
    import pandas as pd
    import soundfile as sf

    workdir, config, _ = pipeline
    results = workdir / "results/tiny"
    table = json.loads((results / "tables/sdr.json").read_text())
    rows = table["rows"]
    assert (rows["lab"]["n_seeds"], rows["stand_in"]["n_seeds"], rows["released"]["n_seeds"]) == (2, 1, 1)
    assert {name: rows[name]["kind"] for name in EXTERNAL_ROWS} == {
        "lab": "estimates",
        "stand_in": "command",
        "released": "checkpoint",
    }
    assert {name: rows[name]["trained_on"] for name in EXTERNAL_ROWS} == {
        "lab": "extra-data",
        "stand_in": "musdb18-train",
        "released": "test-seen",
    }
    assert rows["released"]["comparable"] is False and rows["unet"]["trained_on"] == "musdb18-train"
    # the lab's estimates (0.9 x the true stems plus noise) score far above the tiny models
    assert rows["lab"]["All"]["mean"] > rows["unet"]["All"]["mean"] + 5
    tracks = sorted(path.name for path in (results / "separated/lab/seed1").iterdir())
    assert len(tracks) == 2 and sorted(path.name for path in (results / "scores/lab").iterdir()) == ["seed1", "seed2"]
    for name, run in (("lab", "seed2"), ("stand_in", "command"), ("released", "checkpoint")):
        folder = results / "separated" / name / run / tracks[0]
        assert sorted(path.name for path in folder.iterdir()) == sorted(f"{t}.wav" for t in TARGETS)  # no accompaniment
        assert sf.info(folder / "vocals.wav").subtype == "FLOAT"
    log = (workdir / "logs/tiny/import_estimates/lab/seed1" / f"{tracks[0]}.log").read_text()
    assert "accompaniment.wav left out" in log
    meta = json.loads((results / "external/released/model.json").read_text())
    assert meta["source"]["format"] == "demucs_v1_release" and meta["args"]["normalize"] == "track"
    assert meta["trained_on"] == "test-seen"
    # the command's temporary outputs and the exported mixtures are gone once imported
    assert not (results / "work/run_command").exists() or not any((results / "work/run_command").rglob("*.wav"))
    assert not list((results / "work").glob("export_mixture/*.wav"))
    # the mark, in every table format
    for name in ("sdr", "sar"):
        tables = results / "tables"
        markdown = (tables / f"{name}.md").read_text()
        assert "| released† |" in markdown and r"| lab\* |" in markdown
        assert r"released\textsuperscript{\dag}" in (tables / f"{name}.tex").read_text()
        assert "released<sup>†</sup>" in (tables / f"{name}.html").read_text()
        frame = pd.read_csv(tables / f"{name}.csv")
        marked = frame[frame["row"] == "released"]
        assert (marked["trained_on"] == "test-seen").all() and not marked["comparable"].astype(bool).any()
        assert json.loads((tables / f"{name}.json").read_text())["rows"]["released"]["comparable"] is False


@pytest.mark.slow
def test_rerun_after_a_finished_run_does_nothing(pipeline):
    workdir, config, snakefile = pipeline
    result = snakemake(workdir, config, "-n", snakefile=snakefile)
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout


#: Loaded by the Snakemake process of test_a_run_ends_with_its_last_job (PYTHONPATH): when the
#: interpreter shuts down, before it joins the threads still running, it writes how many
#: threading.Timer threads are still pending (not cancelled, not fired).
PENDING_TIMERS_SITECUSTOMIZE = """\
import os, sys, threading

if os.path.basename(sys.argv[0]) == "snakemake":
    def _report():
        pending = [t for t in threading.enumerate() if isinstance(t, threading.Timer) and not t.finished.is_set()]
        with open(os.environ["PENDING_TIMERS_REPORT"], "w") as report:
            report.write(str(len(pending)))

    threading._register_atexit(_report)
"""


@pytest.mark.slow
def test_a_run_ends_with_its_last_job(pipeline, tmp_path, monkeypatch):
    """Snakemake 9's job rate limiter leaves a non-daemon timer behind after each round of job
    selection, which kept every run that executed a job alive about a second after its last one;
    the workflow cancels it at shutdown. A run that executes one job (the provenance record, which
    nothing downstream reads) has no timer pending when the interpreter shuts down."""
    workdir, config, snakefile = pipeline
    (tmp_path / "sitecustomize.py").write_text(PENDING_TIMERS_SITECUSTOMIZE)
    report = tmp_path / "pending-timers"
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("PENDING_TIMERS_REPORT", str(report))
    provenance = f"results/{config['experiment']}/provenance.json"
    result = snakemake(
        workdir, config, "--forcerun", "record_provenance", "--cores", "1", provenance, snakefile=snakefile
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert job_counts(result.stdout + result.stderr) == {"record_provenance": 1}
    assert report.read_text() == "0"


def tree_listing(workdir: Path) -> dict[str, tuple[int, int]]:
    """Every file under workdir's results/ and logs/: relative path -> (size, mtime in ns)."""
    return {
        str(path.relative_to(workdir)): (path.stat().st_size, path.stat().st_mtime_ns)
        for folder in ("results", "logs")
        for path in sorted((workdir / folder).rglob("*"))
        if path.is_file()
    }


@pytest.mark.slow
def test_a_missing_dataset_stops_before_any_job_and_leaves_the_tiny_results_intact(pipeline):
    """After the tiny experiment has run: the experiment of record (config.yaml as it is: experiment
    `paper`, MUSDB18-HQ at data/musdb18hq, not here), and the tiny experiment itself pointed at a
    MUSDB18-HQ that is not here, each stop before any job, naming data.root; the tiny experiment's
    results and logs are untouched and still up to date."""
    workdir, config, snakefile = pipeline
    before = tree_listing(workdir)
    assert len(before) > 100 and all(path.startswith(("results/tiny/", "logs/tiny/")) for path in before)
    paper = yaml.safe_load((REPO / "config.yaml").read_text())
    assert (paper["experiment"], paper["data"]["root"]) == ("paper", "data/musdb18hq")
    moved = copy.deepcopy(config)
    moved["data"].update(source="musdb18hq", root="data/musdb18hq")
    try:
        for edited in (paper, moved):
            result = snakemake(workdir, edited, "--cores", "2", snakefile=snakefile)
            output = result.stdout + result.stderr
            assert result.returncode != 0, output[-3000:]
            assert "data.root: data/musdb18hq: dataset directory does not exist" in output, output[-3000:]
            assert not JOB_LINE.search(output), output[-3000:]
            assert tree_listing(workdir) == before
    finally:
        (workdir / "test-config.yaml").write_text(yaml.safe_dump(config))
    assert not (workdir / "results/paper").exists() and not (workdir / "logs/paper").exists()
    result = snakemake(workdir, config, "-n", snakefile=snakefile)
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout[-3000:]


@pytest.mark.slow
def test_editing_the_table_code_reruns_only_the_table(pipeline):
    workdir, config, snakefile = pipeline
    table_code = snakefile.parent / "src/demixbench/table/build.py"
    original = table_code.read_text()
    table_code.write_text(original + "\n# an edit\n")
    try:
        counts = job_counts(snakemake(workdir, config, "-n", snakefile=snakefile).stdout)
    finally:
        table_code.write_text(original)  # same content again: Snakemake compares checksums too
    assert counts == {"make_table": 2, "plot_scores": 2, "record_provenance": 1, "all": 1}


@pytest.mark.slow
def test_editing_one_model_reruns_only_its_jobs_and_the_table(pipeline):
    workdir, config, snakefile = pipeline
    edited = copy.deepcopy(config)
    edited["models"]["unet_gan"]["gan"]["adv_weight"] = 0.5
    counts = job_counts(snakemake(workdir, edited, "-n", snakefile=snakefile).stdout)
    # 2 seeds; 2 test tracks per seed, scored by one job per seed; the listening page plays the
    # first seed's estimates
    assert counts == {
        "train_model": 2,
        "separate_track": 4,
        "score_run": 2,
        "make_table": 2,
        "plot_scores": 2,
        "plot_learning_curves": 1,
        "make_listening_page": 1,
        "record_provenance": 1,
        "all": 1,
    }


@pytest.mark.slow
def test_reviewer_rebuilds_the_tables_from_pulled_scores_only(pipeline, tmp_path):
    """What `make table` does after a fresh clone and a pull of the scores: no dataset, no models,
    no estimates, files newer than the code (DVC does not keep mtimes). Only make_table runs, and
    the tables are byte-identical to the lab's."""
    workdir, config, snakefile = pipeline
    reviewer = tmp_path / "reviewer"
    shutil.copytree(workdir / "results/tiny/scores", reviewer / "results/tiny/scores")
    shutil.copy2(workdir / "test-config.yaml", reviewer / "test-config.yaml")
    for path in (reviewer / "results").rglob("*"):
        os.utime(path)  # as freshly pulled
    args = ("tables", "--allowed-rules", "make_table", "tables")
    counts = job_counts(snakemake(reviewer, config, "-n", *args, snakefile=snakefile).stdout)
    assert counts == {"make_table": 2, "tables": 1}
    result = snakemake(reviewer, config, "--cores", "1", *args, snakefile=snakefile)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("sdr", "sar"):
        for suffix in ("md", "csv", "json", "tex", "html"):
            published = (workdir / f"results/tiny/tables/{name}.{suffix}").read_bytes()
            assert (reviewer / f"results/tiny/tables/{name}.{suffix}").read_bytes() == published, f"{name}.{suffix}"
    assert not (reviewer / "results/tiny/models").exists() and not (reviewer / "results/tiny/separated").exists()


@pytest.mark.slow
def test_killing_the_decode_stage_midway_then_rerunning_finishes_without_partial_arrays(tmp_path):
    """kill -9 of Snakemake and its jobs once the first tracks are decoded; the rerun decodes the
    rest (jobs cut off are incomplete and re-run), and no array in the cache is partial."""
    import signal
    import time

    import numpy as np

    config = tiny_config()
    config["data"]["synthetic"].update(n_train=6, n_validation=1, n_test=2, duration=20.0)
    (tmp_path / "test-config.yaml").write_text(yaml.safe_dump(config))
    command = [
        SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(tmp_path / "test-config.yaml"),
        "--cores",
        "2",
        "decoded_dataset",
    ]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while (
        not list((tmp_path / "results/tiny/decoded").glob("*/meta.json"))
        and time.monotonic() < deadline
        and process.poll() is None
    ):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = len(list((tmp_path / "results/tiny/decoded").glob("*/meta.json")))
    assert 1 <= done < 8, done  # killed mid-way
    # a killed Snakemake leaves its lock: --unlock, as its message says, then the same command
    assert subprocess.run([*command, "--unlock"], cwd=tmp_path, capture_output=True, timeout=120).returncode == 0
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    tracks = sorted((tmp_path / "results/tiny/decoded").iterdir())
    assert len(tracks) == 8 and not [p for p in (tmp_path / "results/tiny/decoded").rglob(".*")]
    for track in tracks:
        samples = json.loads((track / "meta.json").read_text())["samples"]
        for stem in ("mixture", "drums", "bass", "other", "vocals"):
            assert np.load(track / f"{stem}.npy", mmap_mode="r").shape == (2, samples)


def test_a_config_yaml_that_is_not_yaml_is_named_with_line_and_column(tmp_path):
    """Snakemake alone says "Config file is not valid JSON or YAML", naming neither file nor line."""
    (tmp_path / "config.yaml").write_text((REPO / "config/demo.yaml").read_text() + "oops: [1\n")
    result = snakemake(tmp_path, None, "-n")
    assert result.returncode != 0
    lines = len((REPO / "config/demo.yaml").read_text().splitlines())
    assert f"config.yaml:{lines + 2}:1: not valid YAML" in result.stdout + result.stderr, result.stdout
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_a_test_track_with_silent_vocals_still_gets_a_table(tmp_path, small_dataset):
    """Issue 17: one test track's vocals all zeros (an instrumental). The pipeline finishes, the
    table is finite where defined, and the vocals cells say they rest on one track fewer."""
    import numpy as np
    import soundfile as sf

    root = tmp_path / "MUSDB18-HQ"
    shutil.copytree(small_dataset, root)
    track = sorted(os.listdir(root / "test"))[0]
    folder = root / "test" / track
    vocals, rate = sf.read(folder / "vocals.wav", dtype="int16")
    mixture, _ = sf.read(folder / "mixture.wav", dtype="int16")
    sf.write(folder / "mixture.wav", mixture - vocals, rate, subtype="PCM_16")  # still the sum of the stems
    sf.write(folder / "vocals.wav", np.zeros_like(vocals), rate, subtype="PCM_16")

    config = tiny_config()
    config["experiment"] = "instrumental"
    validation = [sorted(os.listdir(root / "train"))[-1]]
    config["data"].update(source="musdb18hq", root=str(root), validation_tracks=validation)
    config["data"]["counts"] = {"train": len(os.listdir(root / "train")), "test": len(os.listdir(root / "test"))}
    config["models"] = {"unet": config["models"]["unet"]}
    config["seeds"] = [1]
    config["report"]["excerpt_tracks"] = 0
    result = snakemake(tmp_path, config, "--cores", "2", timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    decode_log = (tmp_path / "logs/instrumental/decode_track" / f"{track}.log").read_text()
    assert f"{track}: vocals is silent over the whole track" in decode_log

    tables = tmp_path / "results/instrumental/tables"
    table = json.loads((tables / "sdr.json").read_text())
    for name, row in table["rows"].items():
        for column in ("drums", "bass", "other", "vocals", "All"):
            assert row[column]["mean"] is not None, (name, column)
    csv = (tables / "sdr.csv").read_text().splitlines()
    header = csv[0].split(",")
    n_tracks = {
        (fields[header.index("row")], fields[header.index("target")]): fields[header.index("n_tracks")]
        for fields in (line.split(",") for line in csv[1:])
        if fields[header.index("aggregation")] == "median"
    }
    assert n_tracks[("unet", "vocals")] == "1" and n_tracks[("unet", "drums")] == "2"
    markdown = (tables / "sdr.md").read_text()
    assert "(1 track)" in markdown and "(N tracks): the cell rests on N of the 2 tracks" in markdown
