"""Benchmark: demixbench's exact BSS Eval v4 scorer (demixbench.score.bss_eval.bss_eval_v4) against
museval.evaluate(mode="v4") on the same 4-source stereo 44.1 kHz inputs.

Inputs are synthetic float32 "stems" (coloured noise, a nearly-mono bass) and estimates made of
the filtered own source, leakage of the others and noise. Each scorer runs in a fresh process,
museval once, the fast scorers --repeats times (default 3: on a shared or virtual machine one
run of a second or two varies by 10-20 %; the median is reported, with every run), and each
process reports the wall time of the scoring call (imports done before) and its peak
resident memory while scoring: the peak (VmHWM) is reset through /proc/self/clear_refs once the inputs exist, so it
counts the resident inputs (0.68 GB for 4 minutes) plus what the scorer allocates, not the
input generation. The scorers are museval, the fast scorer, and the fast scorer's SDR-only
path; with --device, also the torch backend (demixbench.score.bss_eval_torch) on that device,
after a warm-up call on a 10-s excerpt outside the clock (CUDA context, FFT plans: a per-process
cost like the imports). The parent prints the wall-time ratios, the peaks, the max abs difference per metric
against museval, and the wall time extrapolated to the 50-track MUSDB18 test set for the paper
preset (22 runs x 50 tracks of about 4 min).

Usage:
  .venv/bin/python bench/scoring.py           # 30-s excerpt (museval takes about 20 s)
  .venv/bin/python bench/scoring.py --long    # 4-min track (museval: about 150 s and 7 GB)
  .venv/bin/python bench/scoring.py --seconds 60 --skip-museval   # the fast scorer only
  .venv/bin/python bench/scoring.py --long --device cuda   # + the torch backend on a GPU (or cpu)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, sys, time
import numpy as np
from scipy.signal import lfilter

seconds, which, out = float(sys.argv[1]), sys.argv[2], sys.argv[3]
rng = np.random.default_rng(0)
n = int(seconds * 44100)
refs = np.empty((4, n, 2), dtype=np.float32)
for j in range(4):
    x = lfilter([1.0], [1.0, -0.3 * j], rng.standard_normal((n, 2)), axis=0)
    if j == 1:  # nearly-mono bass
        x[:, 1] = x[:, 0] + 0.05 * rng.standard_normal(n)
    refs[j] = x
ests = np.empty_like(refs)
for j in range(4):
    e = lfilter(rng.standard_normal(16) / 4, [1.0], refs[j], axis=0)
    e += 0.2 * refs[(j + 1) % 4] + 0.1 * rng.standard_normal((n, 2))
    ests[j] = e
del x, e


def status(key):
    return int([line for line in open("/proc/self/status") if line.startswith(key)][0].split()[1]) / 1024


# The scorer's imports come before the clock starts (museval pulls in musdb and stempeg, the
# torch backend torch): a score job pays them once, whatever it scores.
if which == "museval":
    import museval
elif which.startswith("torch:"):
    from demixbench.score.bss_eval_torch import bss_eval_v4_torch

    device = which.split(":", 1)[1]
    bss_eval_v4_torch(refs[:, : 10 * 44100], ests[:, : 10 * 44100], device=device)  # warm-up
else:
    from demixbench.score.bss_eval import bss_eval_v4
try:  # start the peak from the current resident set: inputs in, generation garbage gone
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    reset = True
except OSError:
    reset = False
resident = status("VmRSS")
t = time.perf_counter()
if which == "museval":
    res = museval.evaluate(refs, ests, win=44100, hop=44100, mode="v4", padding=True)
elif which.startswith("torch:"):
    res = bss_eval_v4_torch(refs, ests, win=44100, hop=44100, device=device)
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
else:
    res = bss_eval_v4(refs, ests, win=44100, hop=44100, sdr_only=which == "sdr")
    res = [r for r in res if r is not None]
wall = time.perf_counter() - t
np.save(out, np.stack(res))
print(json.dumps({"wall_s": wall, "peak_mb": status("VmHWM"), "before_mb": resident, "peak_is_scoring_only": reset}))
"""

NAMES = ("SDR", "ISR", "SIR", "SAR")


def run(seconds: float, which: str, out: Path, repeats: int = 1) -> dict:
    """`which` scored in `repeats` fresh processes: the run of median wall time, with every
    run's wall time in "runs_s" (the scores, in `out`, are the same in every run)."""
    results = []
    for _ in range(repeats):
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(seconds), which, str(out)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"the {which} scorer failed (exit status {proc.returncode}):\n{proc.stderr[-3000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    median = sorted(results, key=lambda result: result["wall_s"])[(repeats - 1) // 2]
    return {**median, "runs_s": [result["wall_s"] for result in results]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="4-min track instead of 30 s")
    parser.add_argument("--seconds", type=float, default=None, help="track length (overrides --long)")
    parser.add_argument("--skip-museval", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process runs of each fast scorer (median)")
    parser.add_argument(
        "--device", default=None, help="also time the torch backend on this torch device (cpu, cuda, cuda:1, ...)"
    )
    args = parser.parse_args()
    seconds = args.seconds or (240.0 if args.long else 30.0)
    import numpy as np

    per_track = 240.0 / seconds
    n_scored = 22 * 50

    def report(name: str, result: dict) -> None:
        scope = "while scoring" if result["peak_is_scoring_only"] else "whole process"
        runs = result["runs_s"]
        spread = f" (median of {len(runs)} runs: {', '.join(f'{s:.2f}' for s in runs)} s)" if len(runs) > 1 else ""
        print(
            f"{name:11s}{result['wall_s']:8.2f} s{spread}, peak RSS {result['peak_mb']:7.0f} MB {scope} "
            f"(inputs resident: {result['before_mb']:.0f} MB)"
        )
        print(f"  extrapolated to 22 runs x 50 tracks of 4 min: {result['wall_s'] * per_track * n_scored / 3600:.2f} h")

    with tempfile.TemporaryDirectory() as tmp:
        print(f"{seconds:g}-s track, 4 sources, stereo, 44.1 kHz")
        fast = run(seconds, "fast", Path(tmp) / "fast.npy", args.repeats)
        report("fast:", fast)
        sdr = run(seconds, "sdr", Path(tmp) / "sdr.npy", args.repeats)
        report("SDR only:", sdr)
        scorers = [("fast", fast, "fast.npy"), ("SDR only", sdr, "sdr.npy")]
        if args.device:
            name = f"torch {args.device}"
            try:
                on_device = run(seconds, f"torch:{args.device}", Path(tmp) / "torch.npy", args.repeats)
            except RuntimeError as error:  # museval's run below still gives the CPU scorer's ratio
                print(error, file=sys.stderr)
            else:
                report(f"{name}:", on_device)
                scorers.append((name, on_device, "torch.npy"))
                a, b = np.load(Path(tmp) / "fast.npy"), np.load(Path(tmp) / "torch.npy")
                print(f"max |{name} - fast| (dB): {float(np.nanmax(np.abs(a - b))):.2e}")
        if args.skip_museval:
            return
        ref = run(seconds, "museval", Path(tmp) / "museval.npy")
        report("museval:", ref)
        print(
            "speed ratio "
            + "; ".join(f"museval / {name}: {ref['wall_s'] / result['wall_s']:.1f}x" for name, result, _ in scorers)
        )
        a = np.load(Path(tmp) / "museval.npy")
        for name, _, file in scorers:
            b = np.load(Path(tmp) / file)
            same = all(
                np.array_equal(np.isnan(a[k]), np.isnan(b[k])) and np.array_equal(np.isinf(a[k]), np.isinf(b[k]))
                for k in range(len(b))
            )
            diffs = {
                metric: float(np.nanmax(np.abs(np.where(np.isfinite(a[k]), a[k] - b[k], 0.0))))
                for k, metric in enumerate(NAMES[: len(b)])
            }
            print(
                f"max |{name} - museval| (dB): "
                + ", ".join(f"{n} {d:.2e}" for n, d in diffs.items())
                + f"; NaN/inf pattern identical: {same}"
            )


if __name__ == "__main__":
    main()
