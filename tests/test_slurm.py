"""The workflow on a real one-node Slurm cluster: cluster/slurm-up.sh starts Slurm 22.05 with
accounting (slurmdbd) and two fake GPUs, and Snakemake submits every job through the slurm
executor plugin with profiles/slurm-test (profiles/slurm with fast status checks).

Checked: the tiny pipeline of test_workflow.py runs with every job either in a Slurm job or, for
the workflow's localrules, in Snakemake itself (sacct: one COMPLETED job per job, with the rule in
the comment, training on the GPU partition with a GPU; each Slurm job's log names the job it ran),
and gives the same tables as a local run; a job that fails is reported with its Slurm state and
submitted again with the next attempt's resources.

CI (as root on Debian 12) installs and starts the cluster here; where that is impossible the tests
FAIL with the reason. DEMIXBENCH_SKIP_SLURM=1 skips them explicitly (e.g. on a laptop without
root). DEMIXBENCH_SLURM_STATE picks the cluster's state directory (default /tmp/demixbench-slurm);
a cluster already running there is used and left running.
"""

from __future__ import annotations

import collections
import copy
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_workflow import job_counts, tiny_config

from conftest import REPO

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
PROFILE = REPO / "profiles/slurm-test"
STATE = Path(os.environ.get("DEMIXBENCH_SLURM_STATE", "/tmp/demixbench-slurm"))
#: What the submitting shell sets, read by the profile: training on the `gpu` partition, every job
#: on the `demixbench` account (both created by cluster/slurm-up.sh).
SLURM_ENV = {"SBATCH_ACCOUNT": "demixbench", "DEMIXBENCH_GPU_PARTITION": "gpu"}
UNSET = ("SBATCH_PARTITION", "DEMIXBENCH_GPU_MODEL")
#: The whole pipeline through Slurm takes about 3 minutes here; a hang must not eat CI's time.
PIPELINE_TIMEOUT = 900


@pytest.fixture(scope="session")
def slurm_cluster():
    """The test cluster's state directory; the cluster is stopped at the end if started here."""
    if os.environ.get("DEMIXBENCH_SKIP_SLURM") == "1":
        pytest.skip("DEMIXBENCH_SKIP_SLURM=1: the Slurm tests were skipped on request")
    started = time.perf_counter()
    try:
        result = subprocess.run(
            ["bash", str(REPO / "cluster/slurm-up.sh"), str(STATE)], capture_output=True, text=True, timeout=600
        )
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"cluster/slurm-up.sh did not finish within 600 s:\n{err.stdout}\n{err.stderr}")
    if result.returncode != 0:
        pytest.fail(
            "could not start the local Slurm cluster with cluster/slurm-up.sh (it needs root and apt-get on Debian 12, "
            "as CI has; set DEMIXBENCH_SKIP_SLURM=1 to skip these tests):"
            f"\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    print(f"slurm-up: {time.perf_counter() - started:.1f} s\n{result.stdout}")
    ours = "already running" not in result.stdout
    yield STATE
    if ours:
        subprocess.run(
            ["bash", str(REPO / "cluster/slurm-down.sh"), str(STATE)], capture_output=True, text=True, timeout=180
        )


class Run:
    """Snakemake started in the background on `snakefile` in `workdir`, with its output in files
    beside `workdir` (several runs go on at once), killed after `timeout` s (SIGKILL 10 s after
    SIGTERM: a stuck Snakemake ignores SIGTERM)."""

    def __init__(self, snakefile: Path, workdir: Path, config: dict | None, *args: str, timeout: int):
        command = ["timeout", "-k", "10", str(timeout), SNAKEMAKE, "-s", str(snakefile), "--directory", str(workdir)]
        if config is not None:
            path = workdir / "test-config.yaml"
            path.write_text(yaml.safe_dump(config))
            command += ["--configfile", str(path)]
        env = {name: value for name, value in os.environ.items() if name not in UNSET} | SLURM_ENV
        self.workdir, self.timeout, self.started = workdir, timeout, time.perf_counter()
        self.output = workdir.parent / f"{workdir.name}.snakemake.log"
        with open(self.output, "w") as sink:
            self.process = subprocess.Popen(
                command + list(args),
                stdout=sink,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=workdir,
                env=env,
                start_new_session=True,
            )

    def wait(self) -> tuple[int, str]:
        """(exit status, everything Snakemake printed), once it has finished."""
        try:
            returncode = self.process.wait(timeout=self.timeout + 60)
        except subprocess.TimeoutExpired:
            self.stop()
            returncode = self.process.wait()
        output = self.output.read_text()
        print(f"{self.workdir.name}: {time.perf_counter() - self.started:.1f} s")
        assert returncode not in (124, 137, -9), f"snakemake did not finish within {self.timeout} s:\n{output[-5000:]}"
        return returncode, output

    def stop(self) -> None:
        """Kill Snakemake (and what it started here) if it still runs, and cancel its Slurm jobs."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        run_id = re.search(r"SLURM run ID: (\S+)", self.output.read_text())
        if run_id:
            subprocess.run(["scancel", "--name", run_id.group(1)], capture_output=True, timeout=60)


def slurm_jobs(output: str) -> list[dict[str, str]]:
    """The Slurm jobs of the Snakemake run whose output is `output`, from sacct (by the run ID the
    executor plugin gives every job as its name)."""
    run_id = re.search(r"SLURM run ID: (\S+)", output)
    assert run_id, output[-3000:]
    fields = ["JobIDRaw", "State", "Comment", "Partition", "Account", "AllocTRES", "Timelimit", "ExitCode"]
    result = subprocess.run(
        [
            "sacct",
            "-X",
            "--parsable2",
            "--noheader",
            "--starttime",
            "now-2days",
            "--name",
            run_id.group(1),
            f"--format={','.join(fields)}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [dict(zip(fields, line.split("|"))) for line in result.stdout.splitlines()]


def rule_of(job: dict[str, str]) -> str:
    """The rule of a job, from the comment the executor plugin sets: rule_NAME[_wildcards_...]."""
    assert job["Comment"].startswith("rule_"), job
    return job["Comment"].removeprefix("rule_").split("_wildcards_")[0]


FLAKY_SNAKEFILE = """
rule flaky:
    output: "done.txt"
    resources:
        mem_mb=100,
        runtime=lambda wildcards, attempt: 2 * attempt,
    shell:
        "if [ ! -e attempted ]; then touch attempted; echo 'failing on purpose' >&2; exit 3; fi; echo ok > {output}"
"""


@pytest.fixture(scope="module")
def runs(slurm_cluster, request, tmp_path_factory):
    """Three runs at once (the node is busy either way): the tiny pipeline through Slurm, the same
    locally, and a one-rule workflow through Slurm whose job fails on its first attempt. Returns
    {"slurm": (workdir, output), "local": workdir, "flaky": (workdir, exit status, output)}."""
    copy_root = tmp_path_factory.mktemp("repository")
    for name in ("Snakefile", "config.yaml"):
        shutil.copy2(REPO / name, copy_root / name)
    for name in ("workflow", "profiles", "envs", "src"):
        shutil.copytree(REPO / name, copy_root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    config = tiny_config()
    # As in the paper preset, training asks for a GPU (Slurm: --gpus=1 on a fake GPU; the job still
    # trains on the CPU). Resources reach no job's params, so the outputs are those of `config`.
    slurm_config = copy.deepcopy(config)
    slurm_config["resources"]["train"]["gpu"] = 1
    slurm = Run(
        copy_root / "Snakefile",
        tmp_path_factory.mktemp("pipeline-slurm"),
        slurm_config,
        "--profile",
        str(PROFILE),
        timeout=PIPELINE_TIMEOUT,
    )
    flaky_dir = tmp_path_factory.mktemp("flaky")
    (flaky_dir / "Snakefile").write_text(FLAKY_SNAKEFILE)
    flaky = Run(flaky_dir / "Snakefile", flaky_dir, None, "--profile", str(PROFILE), timeout=300)
    started = [slurm, flaky]
    try:
        # The local run to compare with: test_workflow's `pipeline` (the same tiny config) where a
        # conftest.py provides it for the whole session, else a run of our own.
        try:
            local_dir = request.getfixturevalue("pipeline")[0]
        except pytest.FixtureLookupError:
            local = Run(
                copy_root / "Snakefile",
                tmp_path_factory.mktemp("pipeline-local"),
                config,
                "--cores",
                "2",
                timeout=PIPELINE_TIMEOUT,
            )
            started.append(local)
            returncode, output = local.wait()
            assert returncode == 0, output[-5000:]
            local_dir = local.workdir
        returncode, output = slurm.wait()
        assert returncode == 0, output[-5000:]
        return {"slurm": (slurm.workdir, output), "local": local_dir, "flaky": (flaky_dir, *flaky.wait())}
    finally:
        for run in started:
            run.stop()


def local_rules() -> set[str]:
    """The rules named in the workflow's `localrules:` statements."""
    names = set()
    for path in (REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))):
        for block in re.findall(r"^localrules:(.*(?:\n[ \t]+\S.*)*)", path.read_text(), re.M):
            names.update(re.findall(r"\w+", block))
    return names


def jobs_run_by(workdir: Path, slurm_job: dict[str, str]) -> list[str]:
    """The rules of the Snakemake jobs that one Slurm job ran, from its log (the test profile keeps
    the logs): Snakemake prints `localrule NAME:` (`localcheckpoint NAME:`) where it runs a job of NAME."""
    logs = list((workdir / ".snakemake/slurm_logs").rglob(f"{slurm_job['JobIDRaw']}.log"))
    assert len(logs) == 1, (slurm_job, logs)
    return re.findall(r"^local(?:rule|checkpoint) (\w+):$", logs[0].read_text(), re.M)


@pytest.mark.slow
def test_every_job_of_the_pipeline_ran_as_a_slurm_job(runs):
    workdir, output = runs["slurm"]
    expected = job_counts(output)  # every job of the run, by rule
    ran_here = collections.Counter(re.findall(r"^local(?:rule|checkpoint) (\w+):$", output, re.M))
    assert set(ran_here) <= local_rules() and "train_model" in expected, (ran_here, expected)
    jobs = slurm_jobs(output)
    assert {job["State"] for job in jobs} == {"COMPLETED"}, jobs
    ran_in_slurm = collections.Counter(rule for job in jobs for rule in jobs_run_by(workdir, job))
    assert ran_here + ran_in_slurm == collections.Counter(expected), (ran_here, ran_in_slurm, expected)

    # One Slurm job per job (scoring too: one job per run, no group to bundle).
    per_slurm_job = collections.Counter(rule_of(job) for job in jobs)
    assert per_slurm_job == ran_in_slurm, per_slurm_job

    assert {job["Account"] for job in jobs} == {"demixbench"}, jobs  # SBATCH_ACCOUNT, via the profile
    for job in jobs:
        if rule_of(job) == "train_model":  # DEMIXBENCH_GPU_PARTITION and resources.train.gpu
            assert job["Partition"] == "gpu" and "gres/gpu=1" in job["AllocTRES"], job
        else:
            assert job["Partition"] == "debug" and "gres/gpu" not in job["AllocTRES"], job


@pytest.mark.slow
def test_the_slurm_run_gives_the_tables_of_the_local_run(runs):
    local, (slurm, _) = runs["local"], runs["slurm"]
    tables = sorted(path.name for path in (local / "results/tiny/tables").iterdir())
    assert any(name.endswith(".json") for name in tables), tables
    assert sorted(path.name for path in (slurm / "results/tiny/tables").iterdir()) == tables
    for name in tables:
        assert (slurm / "results/tiny/tables" / name).read_bytes() == (
            local / "results/tiny/tables" / name
        ).read_bytes(), name


@pytest.mark.slow
def test_a_failed_job_is_reported_and_submitted_again_with_the_next_attempts_resources(runs):
    workdir, returncode, output = runs["flaky"]
    assert returncode == 0, output[-5000:]
    assert (workdir / "done.txt").read_text() == "ok\n"
    jobs = slurm_jobs(output)
    assert [(rule_of(job), job["State"], job["Timelimit"]) for job in jobs] == [
        ("flaky", "FAILED", "00:02:00"),
        ("flaky", "COMPLETED", "00:04:00"),
    ], jobs
    assert f"SLURM-job '{jobs[0]['JobIDRaw']}' failed, SLURM status is: 'FAILED'" in output, output[-5000:]
    assert "Trying to restart job" in output, output[-5000:]


def test_profiles_slurm_and_slurm_test_differ_only_in_the_test_settings():
    """profiles/slurm-test stands for profiles/slurm in these tests: the same keys and values, but
    for those its comments mark "test:"."""
    lab = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    test = yaml.safe_load((REPO / "profiles/slurm-test/config.yaml").read_text())
    test_only = {"slurm-init-seconds-before-status-checks", "slurm-keep-successful-logs"}
    overridden = {"retries", "latency-wait"}
    assert set(test) - test_only == set(lab)
    for key, value in lab.items():
        if key == "default-resources":
            assert {k: v for k, v in test[key].items() if k != "mem_mb"} == {
                k: v for k, v in value.items() if k != "mem_mb"
            }
        elif key not in overridden:
            assert test[key] == value, key
    assert lab["executor"] == "slurm" and lab["slurm-requeue"] is True and lab["replace-workflow-config"] is True
    assert "slurm_partition" in lab["default-resources"] and "slurm_account" in lab["default-resources"]
