"""Benchmark: training steps per second of the paper-scale models with and without mixed precision,
and the peak GPU memory of `demucs_v1` at the paper's batch of 64 (10-s examples).

Each (model, precision) runs the training step of demixbench.train.loop (autocast forward, the model's
separation loss, GradScaler for fp16, Adam step) on random stereo batches already on the device, so
it measures the model, not the data path (bench/data_path.py covers that). Times are taken after
warm-up steps with CUDA synchronised; the peak memory is torch.cuda.max_memory_allocated. Ratios
are printed against fp32 measured in the same run, and, for `demucs_v1`, against the reference:
the same model trained the way the authors' Demucs v1 loop does it, measured in the same run
(fp32 without autocast or a loss scaler; the augmentation on the device inside the step: random
time shift of each source, sign and channel flips, sources remixed across the batch; the sum of
the sources as the mixture; L1 on the waveforms; Adam at 3e-4).

Usage:
  .venv/bin/python bench/gpu_training.py                       # on a CUDA machine
  .venv/bin/python bench/gpu_training.py --device cpu --batch 1 --segment 1 --steps 1 --warmup 0 \
      --skip-peak   # smoke test of the code path on CPU
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from demixbench.models import build_model
from demixbench.train.config import PRECISIONS
from demixbench.train.parts import _MixedPrecision

#: Paper-scale models with their paper batch size and example length (config.yaml).
MODELS = {
    "demucs_v1": ("demucs_v1", {}, 64, 10.0),
    "unet": ("unet", {}, 16, 11.89),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, device: torch.device, steps: int, warmup: int) -> dict:
    """Steps/s of `steps` calls of step() after `warmup` calls, and the peak GPU memory from here on
    (the model, its optimiser and the batch already allocated)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"steps_per_s": steps / seconds, "peak_gib": peak}


def measure(
    arch: str, args: dict, batch: int, segment: float, precision: str, device: torch.device, steps: int, warmup: int
) -> dict:
    """Steps/s and peak memory of `steps` training steps after `warmup` steps."""
    torch.manual_seed(0)
    model = build_model(arch, args).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    amp = _MixedPrecision(precision, device)
    scaler = amp.scaler()
    n = int(segment * 44100)
    sources = 0.1 * torch.randn(batch, 4, 2, n, device=device)
    mixture = sources.sum(dim=1)

    def step() -> None:
        with amp.autocast():
            loss, _, _ = model.separation_loss(mixture, sources)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return _timed(step, device, steps, warmup)


def _authors_augment(sources: torch.Tensor, shift: int) -> torch.Tensor:
    """The Demucs v1 authors' augmentation, on the device: sources (batch, targets, channels,
    time + shift) -> (batch, targets, channels, time): a random time shift per source, a random
    sign and a random channel order per source, and each target drawn from another example of the
    batch (remix)."""
    batch, targets, channels, length = sources.shape
    time = length - shift
    offsets = torch.randint(0, shift + 1, (batch, targets, 1, 1), device=sources.device)
    index = offsets + torch.arange(time, device=sources.device)
    out = sources.gather(3, index.expand(batch, targets, channels, time))
    out = out * (2 * torch.randint(0, 2, (batch, targets, 1, 1), device=sources.device) - 1)
    swap = torch.randint(0, 2, (batch, targets, 1, 1), device=sources.device).bool()
    out = torch.where(swap, out.flip(2), out)
    remix = torch.argsort(torch.rand(batch, targets, device=sources.device), dim=0)
    return out[remix, torch.arange(targets, device=sources.device)]


def measure_reference(batch: int, segment: float, device: torch.device, steps: int, warmup: int) -> dict:
    """Steps/s and peak memory of demucs_v1 trained as in the authors' Demucs v1 loop (see the
    module docstring), on random batches already on the device, with 1 s of margin for the shift."""
    torch.manual_seed(0)
    model = build_model("demucs_v1", {}).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    shift = 44100
    streams = 0.1 * torch.randn(batch, 4, 2, int(segment * 44100) + shift, device=device)

    def step() -> None:
        sources = _authors_augment(streams, shift)
        estimates = model(sources.sum(dim=1))
        loss = torch.nn.functional.l1_loss(estimates, sources)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return _timed(step, device, steps, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=list(PRECISIONS))
    parser.add_argument("--batch", type=int, default=None, help="override the paper batch (e.g. when memory is short)")
    parser.add_argument("--segment", type=float, default=None, help="override the example length in seconds")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--skip-peak", action="store_true", help="skip demucs_v1 at batch 64")
    parser.add_argument("--skip-reference", action="store_true", help="skip the authors' training loop (demucs_v1)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    results = []
    for name in args.models:
        arch, model_args, batch, segment = MODELS[name]
        batch, segment = args.batch or batch, args.segment or segment
        baseline = reference = None
        if name == "demucs_v1" and not args.skip_reference:
            row = {"model": name, "precision": "reference", "batch": batch, "segment_s": segment}
            try:
                row.update(measure_reference(batch, segment, device, args.steps, args.warmup))
            except torch.OutOfMemoryError:
                row.update(steps_per_s=float("nan"), peak_gib=float("nan"), error="out of memory")
            reference = row["steps_per_s"]
            print(
                f"{name:10s} authors' loop, fp32, batch {batch:3d} x {segment:5.2f} s: {reference:7.3f} steps/s, "
                f"peak {row['peak_gib']:6.2f} GiB {row.get('error', '')}"
            )
            results.append(row)
        for precision in args.precisions:
            row = {"model": name, "precision": precision, "batch": batch, "segment_s": segment}
            try:
                row.update(measure(arch, model_args, batch, segment, precision, device, args.steps, args.warmup))
            except torch.OutOfMemoryError:
                row.update(steps_per_s=float("nan"), peak_gib=float("nan"), error="out of memory")
            if precision == "fp32":
                baseline = row["steps_per_s"]
            speedup = row["steps_per_s"] / baseline if baseline else float("nan")
            versus_reference = f", {row['steps_per_s'] / reference:4.2f}x the authors' loop" if reference else ""
            print(
                f"{name:10s} {precision:5s} batch {batch:3d} x {segment:5.2f} s: {row['steps_per_s']:7.3f} steps/s "
                f"({speedup:4.2f}x fp32{versus_reference}), peak {row['peak_gib']:6.2f} GiB {row.get('error', '')}"
            )
            results.append(row)
    if not args.skip_peak and "demucs_v1" in args.models and (args.batch or 64) != 64:
        row = {"model": "demucs_v1", "precision": "fp32", "batch": 64, "segment_s": 10.0}
        row.update(measure("demucs_v1", {}, 64, 10.0, "fp32", device, 2, 1))
        print(f"demucs_v1 at batch 64: peak {row['peak_gib']:.2f} GiB")
        results.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
