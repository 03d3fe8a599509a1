"""Agreement check: the exact scorer (demixbench.score.bss_eval) against museval on a pipeline's own
estimates, next to museval against itself.

For every track of the given runs, the largest absolute difference per metric (SDR, ISR, SIR, SAR,
over targets and frames) between the fast scorer and museval.evaluate(mode="v4"), and between
museval and museval with the four sources listed in reverse order: the same mathematics, so what
that second column shows is how far rounding alone moves museval's own values on this input (the
floor any re-implementation can be held to there). A track is "OK" when SDR agrees to 1e-9 dB and
every other metric to max(1e-6, 2 x museval's own spread).

Usage (museval takes about 20 s per 12-s demo track and run here):
  .venv/bin/python bench/museval_agreement.py results/demo unet/seed1 MIX/oracle
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from demixbench import TARGETS
from demixbench.score.bss_eval import bss_eval_v4
from demixbench.separate.estimates import read_estimates

METRICS = ("SDR", "ISR", "SIR", "SAR")


def compare(references: np.ndarray, estimates: np.ndarray) -> tuple[list[float], list[float]]:
    """references, estimates: (sources, samples, channels) -> (fast vs museval, museval vs itself
    with the sources reversed): the largest absolute difference per metric."""
    import museval  # needs ffmpeg on PATH; imported here so --help works without it

    fast = bss_eval_v4(references, estimates, win=44100, hop=44100)
    slow = museval.evaluate(references, estimates, win=44100, hop=44100, mode="v4", padding=True)
    again = museval.evaluate(references[::-1], estimates[::-1], win=44100, hop=44100, mode="v4", padding=True)
    return (
        [float(np.nanmax(np.abs(a - b))) for a, b in zip(fast, slow, strict=True)],
        [float(np.nanmax(np.abs(a - b[::-1]))) for a, b in zip(slow, again, strict=True)],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", type=Path, help="an experiment's results tree, e.g. results/demo")
    parser.add_argument("runs", nargs="+", help="runs under separated/, e.g. unet/seed1 MIX/oracle")
    args = parser.parse_args(argv)
    failures = 0
    print(f"{'run':<22} {'track':<12} {'fast - museval (SDR ISR SIR SAR)':<40} museval - museval reversed")
    for run in args.runs:
        for folder in sorted((args.experiment / "separated" / run).iterdir()):
            decoded = args.experiment / "decoded" / folder.name
            references = np.stack([np.load(decoded / f"{target}.npy").T for target in TARGETS])
            estimates = read_estimates(folder, TARGETS).transpose(0, 2, 1)
            difference, spread = compare(references, estimates)
            ok = difference[0] <= 1e-9 and all(d <= max(1e-6, 2 * s) for d, s in zip(difference[1:], spread[1:]))
            failures += not ok
            print(
                f"{run:<22} {folder.name[:12]:<12} {' '.join(f'{d:.1e}' for d in difference):<40} "
                f"{' '.join(f'{s:.1e}' for s in spread)}  {'OK' if ok else 'beyond'}",
                flush=True,
            )
    print(f"{failures} track(s) beyond max(1e-6 dB, 2 x museval's own spread)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
