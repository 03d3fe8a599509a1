"""Benchmark: peak memory of ``demixbench separate`` on a 1-minute and a 10-minute file, and the
ratio of the two (target: the 10-minute peak at most 1.5x the 1-minute peak, issue 14).

Writes a small randomly initialised model as a checkpoint (model.safetensors + model.json) and
stereo noise files of both lengths (16-bit wav; ``--formats wav flac mp3`` adds more formats, the
compressed ones through soundfile or ffmpeg), then runs the command line, ``python -m demixbench.cli
separate``, once per file in a fresh process on the CPU. Peak resident memory is that process's
own (``os.wait4``'s ru_maxrss: the larger of its own peak and that of ffmpeg where ffmpeg decodes),
so the measurements do not mix. The 1-minute file is the reference measured in the same run; the
10-minute file's float32 mixture alone would be 212 MB, so a run that held the track in memory shows.

Usage: .venv/bin/python bench/separate_memory.py [--model unet_demo] [--minutes 1 10]
    [--formats wav] [--segment 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 44100

MODELS = {
    # config/demo.yaml's U-Net and a Demucs v1 of demo size (as in bench/separation.py).
    "unet_demo": ("unet", {"n_fft": 1024, "hop_length": 256, "max_bins": 512, "channels": [8, 16, 32, 64, 128]}),
    "demucs_demo": ("demucs_v1", {"channels": 16, "depth": 5, "lstm_layers": 1}),
}

CHECKPOINT = """
import json, sys
from pathlib import Path
import torch
from demixbench.models import build_model
from demixbench.models.checkpoint import save_checkpoint
arch, args, folder = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
torch.manual_seed(0)
save_checkpoint(build_model(arch, args), folder / "model.safetensors", arch=arch, args=args,
                config={"train": {"sample_rate": 44100}})
"""


def write_input(path: Path, minutes: float, block: int = 10 * SAMPLE_RATE) -> None:
    """Stereo noise of `minutes` at 44.1 kHz, written in 10-second blocks (wav/flac: soundfile;
    others: a wav first, converted by ffmpeg)."""
    target = path if path.suffix in (".wav", ".flac") else path.with_suffix(".source.wav")
    n = int(minutes * 60 * SAMPLE_RATE)
    rng = np.random.default_rng(0)
    with sf.SoundFile(target, "w", SAMPLE_RATE, 2, subtype="PCM_16") as f:
        for start in range(0, n, block):
            f.write(rng.uniform(-0.3, 0.3, (min(block, n - start), 2)).astype(np.float32))
    if target != path:
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(target), str(path)], check=True)
        target.unlink()


def measure(checkpoint: Path, audio: Path, out: Path, segment: float, threads: int) -> dict:
    """Run ``demixbench separate`` on `audio` in a fresh process: wall seconds and peak RSS in MB."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "demixbench.cli", "separate", str(checkpoint), str(audio), "-o", str(out)]
    command += ["--segment", str(segment), "--device", "cpu"]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"demixbench separate failed on {audio}:\n{stderr.decode(errors='replace')[-2000:]}")
    written = sf.info(str(out / audio.stem / "vocals.wav")).frames
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024, "samples": written}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="unet_demo", choices=sorted(MODELS))
    parser.add_argument("--minutes", nargs=2, type=float, default=[1.0, 10.0])
    parser.add_argument("--formats", nargs="+", default=["wav"], choices=["wav", "flac", "mp3"])
    parser.add_argument("--segment", type=float, default=10.0, help="separation segment in seconds")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the separating process")
    args = parser.parse_args()
    if any(f != "wav" for f in args.formats) and shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg not found on PATH (needed for --formats other than wav)")
    short, long = args.minutes
    arch, model_args = MODELS[args.model]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        run = root / "run"
        run.mkdir()
        subprocess.run([sys.executable, "-c", CHECKPOINT, arch, json.dumps(model_args), str(run)], check=True)
        print(f"model {args.model} ({arch}), CPU, {args.threads} threads, {args.segment:g} s segments")
        peaks = f"peak MB {short:g} min | peak MB {long:g} min | peak ratio"
        print(f"| format | {peaks} | RTF {short:g} min | RTF {long:g} min |")
        print("|---|---:|---:|---:|---:|---:|")
        worst = 0.0
        for extension in args.formats:
            results = []
            for minutes in (short, long):
                audio = root / f"track{minutes:g}min.{extension}"
                write_input(audio, minutes)
                result = measure(run, audio, root / f"out-{extension}", args.segment, args.threads)
                expected = int(minutes * 60 * SAMPLE_RATE)
                if abs(result["samples"] - expected) > (0 if extension in ("wav", "flac") else 2304):  # mp3: 2 frames
                    sys.exit(f"{audio}: {result['samples']} samples written, expected {expected}")
                audio.unlink()
                results.append({**result, "rtf": result["seconds"] / (minutes * 60)})
            ratio = results[1]["peak_mb"] / results[0]["peak_mb"]
            worst = max(worst, ratio)
            print(
                f"| {extension} | {results[0]['peak_mb']:.0f} | {results[1]['peak_mb']:.0f} | {ratio:.2f} | "
                f"{results[0]['rtf']:.3f} | {results[1]['rtf']:.3f} |",
                flush=True,
            )
    mixture_mb = long * 60 * SAMPLE_RATE * 2 * 4 / 1e6
    print(f"\nthe {long:g}-minute mixture as float32 alone: {mixture_mb:.0f} MB")
    print(f"goal: peak ratio <= 1.5 ({'met' if worst <= 1.5 else 'NOT met'}: worst {worst:.2f})")


if __name__ == "__main__":
    main()
