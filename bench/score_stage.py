"""Benchmark: the scoring stage as Snakemake runs it (rule score_run, one job per run) against the
sum of the pure scoring calls on the same tracks, in the same run.

Two sets of synthetic tracks (the project's generator, demixbench.data.synthetic):

* ``demo``: 3 runs x 4 test tracks of 12 s, the demo's scoring in small;
* ``stand-in``: 1 run x 50 test tracks of 5 s, a stand-in for the MUSDB18 test set (50 tracks)
  with short tracks, where the per-job costs weigh the most.

Set-up (not timed): the dataset is generated and its test tracks decoded into the cache with the
library (as tests/conftest.py does), and each run's estimates are the references, damped, with
cross-talk and noise, written as the pipeline writes estimates (32-bit float wav). Then, for each
set, one after the other:

* **pure**: ``score_arrays`` (the scorer and the nSDR, on arrays in memory; what a track's scoring
  cannot do without) for every run and track, after a warm-up call, (a) one after the other in
  this process, the scorer using its threads (all cores: its default), and (b) in a warm pool of
  ``--cores`` processes forked after the inputs were loaded (a track per process at a time). The
  faster of the two is the pure scoring time on these cores, the reference;
* **stage**: ``snakemake --cores C --allowed-rules score_run scored_runs`` in the prepared tree,
  from no scores (and no staged tracks): job starts, Snakemake's script preamble, imports, reading
  estimates and references, scoring, writing and placing the files. Snakemake's own start and DAG
  (a run with nothing to do, measured right after) are paid once per invocation whatever the jobs,
  and are subtracted; the total is printed too;
* **old stage** (``--old REV``, default: the last commit with one job per track): the same
  invocation with that commit's workflow and package (``git archive``), one score_track job per
  track, for comparison.

With ``--demo DIR`` (a clone in which ``make demo`` has run), the same measurement on the demo's own
results tree instead of the synthetic sets: every run the demo separated (models, seeds and
oracles) on its test tracks, with its config (``config/demo.yaml`` of that clone, the scoring
threads set by ``--threads``). Its score files are removed and scored again in place (the same
bytes: the scorer is deterministic), as are the score_run benchmark files; nothing else changes.

Prints, per set, the stage's wall time over the pure time on the cores (goal: at most 1.25x on 2
cores) for each ``--threads`` value (resources.score.threads: worker processes per job), and the
same for the old stage. The stage is also set against the serial sum of the pure calls (the
issue's "sum of the pure scoring calls"), a weaker reference wherever the warm pool is faster.
The machine's load average is printed before and after: other processes on the cores slow the
stage's parallel jobs and the serial pure calls differently.

Usage: .venv/bin/python bench/score_stage.py [--sets demo stand-in] [--cores 2] [--threads 1 2]
       [--old 61f4fec | --old none] [--workdir DIR] [--demo CLONE]
"""

from __future__ import annotations

import argparse
import copy
import csv
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# As in the workflow's jobs (common.smk): one BLAS/OpenMP thread per process, so that the pure
# calls here and the scoring jobs run the scorer under the same settings. Before numpy's import.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXPERIMENT = "bench-score"
#: The last commit whose scoring stage is one job per track (rule score_track).
OLD_STAGE = "61f4fec"
#: name -> (runs, test tracks, seconds per track)
SETS = {"demo": (3, 4, 12.0), "stand-in": (1, 50, 5.0)}


def bench_config(runs: int, tracks: int, seconds: float, threads: int, tree: Path = REPO) -> dict:
    """The demo config of `tree` with one model of `runs` seeds, no oracles, `tracks` test tracks."""
    config = copy.deepcopy(yaml.safe_load((tree / "config/demo.yaml").read_text()))
    config["experiment"] = EXPERIMENT
    config["data"]["root"] = f"results/{EXPERIMENT}/datasets/synthetic"
    config["data"]["synthetic"].update(n_train=2, n_test=tracks, n_validation=1, duration=seconds)
    config["models"] = {"unet": config["models"]["unet"]}
    config["seeds"] = list(range(1, runs + 1))
    config["oracles"] = []
    config["report"]["excerpt_tracks"] = 0
    config["resources"]["score"]["threads"] = threads
    return config


def prepare(work: Path, config: dict) -> list[str]:
    """Generate the dataset, decode its test tracks and write every run's estimates (once per
    work directory and config); returns the test tracks."""
    from demixbench import TARGETS
    from demixbench.data.cache import load_decoded
    from demixbench.data.decode import decode_track
    from demixbench.data.synthetic import SyntheticSpec, track_names
    from demixbench.data.synthetic.writer import write_dataset
    from demixbench.separate.estimates import write_estimates

    synthetic = {key: value for key, value in config["data"]["synthetic"].items() if key != "n_validation"}
    spec = SyntheticSpec(**synthetic, sample_rate=config["data"]["sample_rate"])
    tracks = list(track_names(spec)["test"])
    results = work / "results" / EXPERIMENT
    marker = work / "prepared.yaml"
    if marker.is_file() and yaml.safe_load(marker.read_text()) == config["data"] | {"seeds": config["seeds"]}:
        return tracks
    shutil.rmtree(work / "results", ignore_errors=True)
    root = work / config["data"]["root"]
    write_dataset(spec, root)
    rng = np.random.default_rng(0)
    for track in tracks:
        decode_track("synthetic", root, "test", track, results / "decoded" / track)
        decoded = load_decoded(results / "decoded" / track, TARGETS, mmap=False)
        references = np.stack([decoded[target] for target in TARGETS])
        for seed in config["seeds"]:
            noisy = 0.8 * references + 0.1 * np.roll(references, 1, axis=0)
            noisy += rng.normal(0, 0.01, size=references.shape)
            write_estimates(results / f"separated/unet/seed{seed}" / track, noisy.astype(np.float32), TARGETS, 44100)
    marker.write_text(yaml.safe_dump(config["data"] | {"seeds": config["seeds"]}))
    return tracks


#: The pure calls' inputs, set before the pool forks so that its workers share them (no copies).
_INPUTS: list[tuple[np.ndarray, np.ndarray]] = []
_SCORING: list = []


def _pure_call(index: int) -> float:
    """score_arrays on input `index`; its seconds."""
    from demixbench import TARGETS
    from demixbench.score.track import score_arrays

    start = time.perf_counter()
    score_arrays(*_INPUTS[index], TARGETS, _SCORING[0])
    return time.perf_counter() - start


def bench_runs(work: Path, config: dict, tracks: list[str]) -> list[tuple[Path, Path]]:
    """(decoded reference folder, estimates folder) of every run and track of a prepared set."""
    results = work / "results" / config["experiment"]
    return [
        (results / "decoded" / track, results / f"separated/unet/seed{seed}" / track)
        for seed in config["seeds"]
        for track in tracks
    ]


def demo_runs(clone: Path, config: dict) -> list[tuple[Path, Path]]:
    """(decoded reference folder, estimates folder) of every run and test track the demo separated
    in `clone` (results/<experiment>/separated/<method>/<run>/<track>)."""
    results = clone / "results" / config["experiment"]
    folders = sorted(path for path in results.glob("separated/*/*/*") if path.is_dir())
    if not folders:
        raise SystemExit(f"{clone}: no separated tracks under {results}/separated: run `make demo` there first")
    return [(results / "decoded" / folder.name, folder) for folder in folders]


def pure_seconds(config: dict, runs: list[tuple[Path, Path]], cores: int) -> tuple[list[float], float]:
    """score_arrays per run and track (`runs`: reference and estimates folders), inputs in memory,
    after a warm-up call: (each call's seconds one after the other in this process, wall time of
    all of them in a warm pool of `cores` processes)."""
    import multiprocessing

    from demixbench import TARGETS
    from demixbench.data.cache import load_decoded
    from demixbench.score.track import ScoringConfig
    from demixbench.separate.estimates import read_estimates

    _SCORING[:] = [ScoringConfig(**config["scoring"], sample_rate=config["data"]["sample_rate"])]

    def stacked(track_dir: Path) -> np.ndarray:
        decoded = load_decoded(track_dir, TARGETS, mmap=False)
        return np.stack([decoded[target] for target in TARGETS])

    _INPUTS[:] = [(stacked(references), read_estimates(estimates, TARGETS)) for references, estimates in runs]
    _pure_call(0)  # warm-up: first-call costs are not the scorer's
    serial = [_pure_call(index) for index in range(len(_INPUTS))]
    with multiprocessing.get_context("fork").Pool(cores) as pool:
        pool.map(_pure_call, [0] * cores, chunksize=1)  # each worker's warm-up
        start = time.perf_counter()
        pool.map(_pure_call, range(len(_INPUTS)), chunksize=1)
        pooled = time.perf_counter() - start
    _INPUTS.clear()
    return serial, pooled


def snakemake(work: Path, snakefile: Path, cores: int, rule: str, env: dict | None = None) -> float:
    """Wall time of one `snakemake` scoring invocation in `work`."""
    start = time.perf_counter()
    result = subprocess.run(
        [
            str(BIN / "snakemake"),
            "scored_runs",
            "-s",
            str(snakefile),
            "--directory",
            str(work),
            "--configfile",
            str(work / f"{rule}.yaml"),
            "--cores",
            str(cores),
            "--allowed-rules",  # the estimates and references are given: nothing upstream runs
            rule,
            "scored_runs",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"snakemake failed in {work}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return elapsed


def clean(work: Path, rule: str, experiment: str = EXPERIMENT) -> None:
    """No scores, no staged tracks, no benchmark files of `rule`: the stage starts from nothing."""
    results = work / "results" / experiment
    for folder in ("scores", f"work/{rule}", f"benchmarks/{rule}"):
        shutil.rmtree(results / folder, ignore_errors=True)


def job_seconds(work: Path, rule: str, experiment: str = EXPERIMENT) -> tuple[int, float]:
    """(jobs, summed wall time) from the Snakemake benchmark files of `rule`."""
    files = sorted((work / "results" / experiment / "benchmarks" / rule).rglob("*.tsv"))
    seconds = 0.0
    for path in files:
        with path.open() as handle:
            seconds += float(list(csv.DictReader(handle, delimiter="\t"))[-1]["s"])
    return len(files), seconds


def stage(
    work: Path, snakefile: Path, cores: int, rule: str, env: dict | None = None, experiment: str = EXPERIMENT
) -> dict[str, float]:
    """The stage from nothing, then a run with nothing to do (Snakemake's fixed cost)."""
    clean(work, rule, experiment)
    total = snakemake(work, snakefile, cores, rule, env)
    jobs, job_sum = job_seconds(work, rule, experiment)
    noop = snakemake(work, snakefile, cores, rule, env)
    return {"total": total, "noop": noop, "stage": total - noop, "jobs": jobs, "job_sum": job_sum}


def old_tree(revision: str, into: Path) -> Path | None:
    """`revision`'s tree (workflow and package) extracted with git archive, or None if that fails."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision], capture_output=True)
    if archive.returncode != 0:
        print(f"old stage skipped: git archive {revision}: {archive.stderr.decode().strip()}")
        return None
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def measure(
    title: str, work: Path, config: dict, runs: list[tuple[Path, Path]], args: argparse.Namespace, config_of
) -> float:
    """Print the pure time of `runs` and the stage's for each --threads value (config_of(threads):
    the config the stage runs with), in `work`; returns the pure time (the reference)."""
    serial, pooled = pure_seconds(config, runs, args.cores)
    pure = min(sum(serial), pooled)
    print(
        f"\n{title}, --cores {args.cores} (load {load()})\n"
        f"  pure scoring calls: one after the other {sum(serial):.2f} s ({np.mean(serial):.3f} s per track), "
        f"in a warm pool of {args.cores} processes {pooled:.2f} s; reference {pure:.2f} s"
    )
    for threads in args.threads:
        (work / "score_run.yaml").write_text(yaml.safe_dump(config_of(threads), sort_keys=False))
        new = stage(work, REPO / "Snakefile", args.cores, "score_run", experiment=config["experiment"])
        print(
            f"  stage, threads {threads} ({new['jobs']} score_run jobs): {new['stage']:.2f} s "
            f"(snakemake {new['total']:.2f} s - {new['noop']:.2f} s with nothing to do; jobs' own "
            f"wall time {new['job_sum']:.2f} s): **{new['stage'] / pure:.2f}x** the pure time "
            f"({new['total'] / pure:.2f}x with Snakemake's start; {new['stage'] / sum(serial):.2f}x the "
            "sum of the calls one after the other)"
        )
    return pure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores (default 2)")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="resources.score.threads values (default 1 2)"
    )
    parser.add_argument(
        "--old", default=OLD_STAGE, help=f"commit of the per-track stage (default {OLD_STAGE}); none: skip"
    )
    parser.add_argument("--workdir", type=Path, help="keep the prepared trees here and reuse them (default: temporary)")
    parser.add_argument(
        "--demo", type=Path, metavar="CLONE", help="measure the results tree of a finished `make demo` in CLONE instead"
    )
    args = parser.parse_args()

    print(f"load average before: {load()} ({os.cpu_count()} CPUs)")
    if args.demo is not None:
        clone = args.demo.resolve()
        demo = yaml.safe_load((clone / "config/demo.yaml").read_text())

        def demo_config(threads: int) -> dict:
            config = copy.deepcopy(demo)
            config["resources"]["score"]["threads"] = threads
            return config

        runs = demo_runs(clone, demo)
        title = f"demo tree {clone}: {len({estimates.parent for _, estimates in runs})} runs, {len(runs)} run-tracks"
        measure(title, clone, demo, runs, args, demo_config)
        print(f"\nload average after: {load()}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = args.workdir or Path(tmp)
        old = old_tree(args.old, Path(tmp) / "old") if args.old != "none" else None
        old_env = {**os.environ, "PYTHONPATH": str(old / "src")} if old else None
        for name in args.sets:
            n_runs, n_tracks, seconds = SETS[name]
            work = base / name
            work.mkdir(parents=True, exist_ok=True)
            config = bench_config(n_runs, n_tracks, seconds, args.threads[0])
            tracks = prepare(work, config)
            title = f"{name}: {n_runs} run(s) x {n_tracks} tracks of {seconds:g} s"
            pure = measure(
                title,
                work,
                config,
                bench_runs(work, config, tracks),
                args,
                functools.partial(bench_config, n_runs, n_tracks, seconds),
            )
            if old is not None:  # the same experiment in the keys that commit's schema knows
                old_config = bench_config(n_runs, n_tracks, seconds, 1, old)
                (work / "score_track.yaml").write_text(yaml.safe_dump(old_config, sort_keys=False))
                before = stage(work, old / "Snakefile", args.cores, "score_track", old_env)
                print(
                    f"  old stage at {args.old} ({before['jobs']} score_track jobs): {before['stage']:.2f} s "
                    f"(snakemake {before['total']:.2f} s - {before['noop']:.2f} s; jobs' own wall time "
                    f"{before['job_sum']:.2f} s): {before['stage'] / pure:.2f}x the pure time"
                )
            for rule in ("score_run", "score_track"):
                clean(work, rule)
    print(f"\nload average after: {load()}")


if __name__ == "__main__":
    main()
