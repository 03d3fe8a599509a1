"""Benchmark: separation real-time factor and peak memory on CPU for a 1-minute and a 10-minute
track, per model, and the ratio of the two peaks (target: at most 1.5x).

Each measurement runs in a fresh process (peak resident memory, VmHWM, is per process) that builds
the model with its constructor arguments, writes a noise "mixture" in pieces and streams the
separation to files with demixbench.separate.track.separate_track.

Usage: .venv/bin/python bench/separation.py [--models unet_demo demucs_demo unet_paper] [--minutes 1 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

MODELS = {
    # config/demo.yaml's U-Net; a Demucs v1 of demo size; the paper-scale U-Net (config.yaml).
    "unet_demo": ("unet", {"n_fft": 1024, "hop_length": 256, "max_bins": 512, "channels": [8, 16, 32, 64, 128]}),
    "demucs_demo": ("demucs_v1", {"channels": 16, "depth": 5, "lstm_layers": 1}),
    "unet_paper": ("unet", {}),
    "demucs_paper": ("demucs_v1", {}),
}

CHILD = """
import json, sys, time
from pathlib import Path
import numpy as np, torch
from demixbench.models.checkpoint import save_checkpoint
from demixbench.models import build_model
from demixbench.separate.track import SeparationConfig, separate_track
arch, args, minutes, folder, segment = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), \
Path(sys.argv[4]), float(sys.argv[5])
torch.set_num_threads(2)
torch.manual_seed(0)
save_checkpoint(build_model(arch, args), folder / "model.safetensors", arch=arch, args=args, config={})
n = int(minutes * 60 * 44100)
with open(folder / "mixture.npy", "wb") as f:
    np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (2, n)})
    rng = np.random.default_rng(0)
    for channel in range(2):
        for start in range(0, n, 441000):
            rng.uniform(-0.5, 0.5, min(441000, n - start)).astype("<f4").tofile(f)
started = time.perf_counter()
separate_track(folder / "model.safetensors", folder / "mixture.npy", folder / "out", \
SeparationConfig(segment_seconds=segment, device="cpu"))
seconds = time.perf_counter() - started
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "peak_mb": peak / 1024}))
"""


def measure(arch: str, args: dict, minutes: float, segment: float) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        result = subprocess.run(
            [sys.executable, "-c", CHILD, arch, json.dumps(args), str(minutes), folder, str(segment)],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models", nargs="+", default=["unet_demo", "demucs_demo", "unet_paper"], choices=sorted(MODELS)
    )
    parser.add_argument("--minutes", nargs=2, type=float, default=[1.0, 10.0])
    parser.add_argument("--segment", type=float, default=10.0, help="separation segment in seconds")
    args = parser.parse_args()
    short, long = args.minutes
    print(
        f"| model | RTF {short:g} min | RTF {long:g} min | peak MB {short:g} min | peak MB {long:g} min | peak ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.models:
        arch, model_args = MODELS[name]
        a, b = (measure(arch, model_args, minutes, args.segment) for minutes in (short, long))
        rtf = [m["seconds"] / (minutes * 60) for m, minutes in ((a, short), (b, long))]
        print(
            f"| {name} | {rtf[0]:.3f} | {rtf[1]:.3f} | "
            f"{a['peak_mb']:.0f} | {b['peak_mb']:.0f} | {b['peak_mb'] / a['peak_mb']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
