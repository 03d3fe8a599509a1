"""Benchmark: demixbench's exact BSS Eval v4 scorer (demixbench.bss_eval.bss_eval_v4) against
museval.evaluate(mode="v4") on the same 4-source stereo 44.1 kHz inputs.

Inputs are synthetic float32 "stems" (coloured noise, a nearly-mono bass) and estimates made of
the filtered own source, leakage of the others and noise. Each scorer runs once, in a fresh
process, which reports its wall time and peak resident memory (VmHWM from /proc/self/status,
input generation included; it is the same for both). The parent prints the wall-time ratio,
both peaks, the max abs difference per metric, and the wall time extrapolated to the 50-track
MUSDB18 test set for the paper preset (22 runs x 50 tracks of about 4 min).

Usage:
  .venv/bin/python bench/scoring.py           # 30-s excerpt (museval takes about 20 s)
  .venv/bin/python bench/scoring.py --long    # 4-min track (museval: about 150 s and 7 GB)
  .venv/bin/python bench/scoring.py --seconds 60 --skip-museval   # the fast scorer only
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
t = time.perf_counter()
if which == "museval":
    import museval
    res = museval.evaluate(refs, ests, win=44100, hop=44100, mode="v4", padding=True)
else:
    from demixbench.bss_eval import bss_eval_v4
    res = bss_eval_v4(refs, ests, win=44100, hop=44100)
wall = time.perf_counter() - t
np.save(out, np.stack(res))
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"wall_s": wall, "peak_mb": int(hwm) / 1024}))
"""

NAMES = ("SDR", "ISR", "SIR", "SAR")


def run(seconds: float, which: str, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(seconds), which, str(out)], check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="4-min track instead of 30 s")
    parser.add_argument("--seconds", type=float, default=None, help="track length (overrides --long)")
    parser.add_argument("--skip-museval", action="store_true")
    args = parser.parse_args()
    seconds = args.seconds or (240.0 if args.long else 30.0)
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        fast = run(seconds, "fast", Path(tmp) / "fast.npy")
        print(f"{seconds:g}-s track, 4 sources, stereo, 44.1 kHz")
        print(f"fast:    {fast['wall_s']:8.2f} s, peak RSS {fast['peak_mb']:7.0f} MB")
        per_track = 240.0 / seconds
        runs = 22 * 50
        print(f"  extrapolated to 22 runs x 50 tracks of 4 min: {fast['wall_s'] * per_track * runs / 3600:.2f} h")
        if args.skip_museval:
            return
        ref = run(seconds, "museval", Path(tmp) / "museval.npy")
        print(f"museval: {ref['wall_s']:8.2f} s, peak RSS {ref['peak_mb']:7.0f} MB")
        print(f"  extrapolated to 22 runs x 50 tracks of 4 min: {ref['wall_s'] * per_track * runs / 3600:.1f} h")
        print(f"speed ratio museval / fast: {ref['wall_s'] / fast['wall_s']:.1f}x")
        a, b = np.load(Path(tmp) / "museval.npy"), np.load(Path(tmp) / "fast.npy")
        same = all(np.array_equal(np.isnan(a[k]), np.isnan(b[k])) and np.array_equal(np.isinf(a[k]), np.isinf(b[k])) for k in range(4))
        diffs = {name: float(np.nanmax(np.abs(np.where(np.isfinite(a[k]), a[k] - b[k], 0.0)))) for k, name in enumerate(NAMES)}
        print("max |fast - museval| (dB): " + ", ".join(f"{n} {d:.2e}" for n, d in diffs.items()) + f"; NaN/inf pattern identical: {same}")


if __name__ == "__main__":
    main()
