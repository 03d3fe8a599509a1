"""Benchmark: `snakemake -n` on the full MUSDB18-HQ layout with the paper preset.

A stand-in MUSDB18-HQ is written with the official track names (100 train, 50 test; each stem a
tiny 16-bit wav of `--seconds`: the DAG reads directory listings and headers only). The paper
preset (config.yaml: 4 models x 5 seeds, 6 oracles) is pointed at it (`data.source: musdb18hq`,
`data.root`), and `snakemake -n` is timed from a fresh working directory: config validation,
the dataset listing and checks, and the DAG of every job (decoding 150 tracks, 20 trainings,
separation and scoring of 50 test tracks per run, tables). The reference measured in the same
run is the dry run of the demo config (16 tracks, 8 runs).

Target: under 10 s for the full layout.

Usage: .venv/bin/python bench/dry_run.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from demixbench.data.synthetic.spec import SyntheticSpec  # noqa: E402
from demixbench.data.synthetic.writer import write_dataset  # noqa: E402

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def dry_run(workdir: Path, config: Path) -> tuple[float, int]:
    """Wall time of one `snakemake -n` and the number of jobs it lists."""
    start = time.perf_counter()
    result = subprocess.run(
        [
            SNAKEMAKE,
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(config),
            "-n",
            "--quiet",
            "rules",
        ],
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"snakemake -n failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    total = re.search(r"^total\s+(\d+)$", result.stdout, re.M)
    return wall, int(total.group(1)) if total else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="dry runs of each config (the fastest is reported)")
    parser.add_argument("--seconds", type=float, default=0.05, help="length of the stand-in stems")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "MUSDB18-HQ"
        started = time.perf_counter()
        write_dataset(SyntheticSpec(n_train=100, n_test=50, duration=args.seconds, names="musdb18"), root)
        print(
            f"stand-in MUSDB18-HQ (official names, 150 tracks x 5 stems of {args.seconds:g} s) "
            f"written in {time.perf_counter() - started:.1f} s"
        )

        paper = yaml.safe_load((REPO / "config.yaml").read_text())
        paper["data"].update(source="musdb18hq", root=str(root))
        configs = {
            "paper preset, full MUSDB18-HQ layout": paper,
            "demo config (reference)": yaml.safe_load((REPO / "config/demo.yaml").read_text()),
        }
        results = {}
        for name, config in configs.items():
            workdir = tmp / re.sub(r"\W+", "-", name)
            workdir.mkdir()
            path = workdir / "bench.yaml"
            path.write_text(yaml.safe_dump(config))
            runs = [dry_run(workdir, path) for _ in range(args.repeat)]
            results[name] = min(runs)
            print(
                f"{name:40s} {results[name][0]:6.2f} s  "
                f"({results[name][1]} jobs; runs: {', '.join(f'{w:.2f}' for w, _ in runs)} s)"
            )
        full, demo = results.values()
        print(f"ratio full layout / demo: {full[0] / demo[0]:.2f}x for {full[1] / max(demo[1], 1):.0f}x the jobs")
        print(f"target: full layout under 10 s: {'met' if full[0] < 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
