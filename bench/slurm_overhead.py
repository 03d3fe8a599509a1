"""Benchmark: scheduler overhead, the tiny pipeline of the tests through the Slurm test profile vs
the local profile, one after the other in the same run, on the same machine.

Needs the one-node test cluster (`make slurm-up`, as root). Both runs use the tiny config of
tests/test_workflow.py from empty working directories; the Slurm run uses profiles/slurm-test
(status checks from 2 s after a submission). Printed: both wall times and their ratio, and where
the extra time goes, from sacct and Snakemake's log:

* queue wait: Slurm's Submit -> Start per job;
* job run time: Start -> End per job (includes the job's own Snakemake start inside the job);
* detection delay: End -> the moment Snakemake logged the job as finished (its status polling);
* the local jobs run inside Snakemake (localrules), and the time Snakemake itself needs.

Usage: .venv/bin/python bench/slurm_overhead.py
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_workflow import tiny_config  # noqa: E402  (the tests' tiny config, one definition)

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
ENV = {**os.environ, "SBATCH_ACCOUNT": "demixbench", "DEMIXBENCH_GPU_PARTITION": "gpu"}


def run(workdir: Path, *args: str) -> tuple[float, str]:
    (workdir / "bench.yaml").write_text(yaml.safe_dump(tiny_config()))
    start = time.perf_counter()
    result = subprocess.run(
        [
            "timeout",
            "-k",
            "10",
            "1200",
            SNAKEMAKE,
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(workdir / "bench.yaml"),
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=workdir,
        env=ENV,
    )
    wall = time.perf_counter() - start
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed:\n{output[-4000:]}")
    return wall, output


def finished_times(output: str) -> dict[str, dt.datetime]:
    """Snakemake job id -> when Snakemake logged it as finished."""
    times, stamp = {}, None
    for line in output.splitlines():
        match = re.match(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$", line)
        if match:
            stamp = dt.datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y")
        match = re.match(r"^Finished jobid: (\d+)", line)
        if match and stamp:
            times[match.group(1)] = stamp
    return times


def main() -> None:
    if shutil.which("sinfo") is None or subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        raise SystemExit("no Slurm cluster answers: start the test cluster with `make slurm-up` (root) first")
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        local_dir, slurm_dir = Path(tmp) / "local", Path(tmp) / "slurm"
        local_dir.mkdir(), slurm_dir.mkdir()
        local, local_out = run(local_dir, "--cores", "2")
        slurm, slurm_out = run(slurm_dir, "--profile", str(REPO / "profiles/slurm-test"))
        run_id = re.search(r"SLURM run ID: (\S+)", slurm_out).group(1)
        fields = ["JobIDRaw", "Submit", "Start", "End"]
        sacct = subprocess.run(
            ["sacct", "-X", "--parsable2", "--noheader", "--name", run_id, f"--format={','.join(fields)}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        jobs = [dict(zip(fields, line.split("|"))) for line in sacct.splitlines()]
        parse = dt.datetime.fromisoformat
        waits = [(parse(j["Start"]) - parse(j["Submit"])).total_seconds() for j in jobs]
        runs = [(parse(j["End"]) - parse(j["Start"])).total_seconds() for j in jobs]
        submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", slurm_out))
        finished = finished_times(slurm_out)
        end = {j["JobIDRaw"]: parse(j["End"]) for j in jobs}
        delays = [
            (finished[job] - end[slurm_id]).total_seconds()
            for job, slurm_id in submitted.items()
            if job in finished and slurm_id in end
        ]
        n_local = len(re.findall(r"^local(?:rule|checkpoint) \w+:$", slurm_out, re.M))
        print(f"tiny pipeline, local profile (--cores 2):   {local:6.1f} s")
        print(f"tiny pipeline, Slurm test profile:          {slurm:6.1f} s  ({slurm / local:.2f}x local)")
        print(f"  {len(jobs)} Slurm jobs, {n_local} local jobs in Snakemake itself")
        print(f"  queue wait (submit -> start):   mean {statistics.mean(waits):5.1f} s, max {max(waits):5.1f} s")
        print(f"  job run time (start -> end):    mean {statistics.mean(runs):5.1f} s, sum {sum(runs):6.1f} s")
        if delays:
            print(
                f"  detection delay (end -> logged): mean {statistics.mean(delays):5.1f} s, "
                f"max {max(delays):5.1f} s (1-s resolution)"
            )


if __name__ == "__main__":
    main()
