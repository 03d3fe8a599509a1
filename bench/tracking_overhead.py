"""Benchmark: what tracking costs a demo-size training (the demo's U-Net, batch 8 of 2 s, a log step
every 5 steps, as config/demo.yaml): the same short trainings with tracker "none" and "dvclive"
(system metrics on) in this run, alternated, and the tracker's own cost per log step measured
alone (DVCLive's files and the system metrics). The issue's budget is 2 % of a training step.

Usage: .venv/bin/python bench/tracking_overhead.py [--steps 40] [--repeats 3] [--log-every 5]
Prints the median training time per step with each tracker, their ratio, and the per-step cost of
the tracker's log steps alone as a fraction of a step. Then the cost of one audio snapshot (the
demo's: 1 excerpt of 3 s, 4 targets; not in the step loop: once every `snapshot_every_epochs`
epochs), alone and per training step at the demo's K = 3 epochs of 25 steps.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from demixbench.data.decode import decode_track
from demixbench.data.layout import list_tracks
from demixbench.data.synthetic.spec import SyntheticSpec, track_names
from demixbench.data.synthetic.writer import write_dataset
from demixbench.models import ModelSpec, build_model
from demixbench.train.config import TrainConfig
from demixbench.train.loop import train
from demixbench.train.snapshots import Snapshots
from demixbench.train.tracking import SystemMetrics, TrackingConfig, make_tracker

#: The demo's U-Net (config/demo.yaml, models.unet).
UNET = ModelSpec(
    "unet",
    {
        "n_fft": 1024,
        "hop_length": 256,
        "max_bins": 512,
        "channels": [8, 16, 32, 64, 128],
        "kernel_size": 5,
        "dropout": 0.5,
        "n_dropout_layers": 3,
        "leaky_slope": 0.2,
        "per_target": False,
        "mask_extension": "zeros",
    },
)


def seconds_per_step(root: Path, dirs: dict, splits, config: TrainConfig, tracker: str, name: str) -> float:
    """One training of one epoch; the wall time of its steps (the epoch minus its validation is not
    separable from outside, so validation is one 3 s track, the same in both)."""
    out = root / name
    started = time.perf_counter()
    train(
        UNET,
        config,
        [dirs[t] for t in splits.train],
        [dirs[t] for t in splits.valid],
        out / "model.safetensors",
        out / "history.csv",
        run_dir=out,
        tracking=TrackingConfig(tracker=tracker),
    )
    return (time.perf_counter() - started) / config.steps_per_epoch


def log_step_cost(root: Path, n: int = 200) -> float:
    """Seconds per log step of the DVCLive tracker alone: ~20 scalars and the system metrics."""
    tracker = make_tracker("dvclive", root / "alone", 0)
    system = SystemMetrics(torch.device("cpu"))
    names = [f"train/scalar{i}" for i in range(10)] + [f"valid/scalar{i}" for i in range(5)]
    started = time.perf_counter()
    for step in range(1, n + 1):
        tracker.log_scalars(step, {**dict.fromkeys(names, 0.5), **system.sample()})
    elapsed = (time.perf_counter() - started) / n
    tracker.close()
    return elapsed


def snapshot_cost(root: Path, valid_dirs: list[Path], repeats: int = 3) -> float:
    """Seconds of one demo-size snapshot (3 s of one track, 4 targets, DVCLive), the median."""
    tracking = TrackingConfig(
        snapshot_every_epochs=3, snapshot_tracks=1, snapshot_offset_seconds=2.0, snapshot_seconds=3.0
    )
    model = build_model(UNET.arch, UNET.args)
    snapshots = Snapshots(tracking, valid_dirs, model.targets, 44100, 3 * 44100, torch.device("cpu"))
    tracker = make_tracker("dvclive", root / "snapshots", 0)
    snapshots.log_references(tracker)  # once per run; warms matplotlib up
    times = []
    for epoch in range(1, repeats + 1):
        started = time.perf_counter()
        snapshots.log(tracker, model, epoch, epoch * 100)
        times.append(time.perf_counter() - started)
    tracker.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--log-every", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        spec = SyntheticSpec(n_train=3, n_test=1, duration=6.0, seed=1)
        write_dataset(spec, root / "data")
        splits = list_tracks("synthetic", root / "data", validation=track_names(spec)["train"][-1:])
        dirs = {}
        for track in (*splits.train, *splits.valid):
            dirs[track] = root / "decoded" / track
            decode_track("synthetic", root / "data", splits.subset_of(track), track, dirs[track])
        config = TrainConfig(
            seed=1,
            epochs=1,
            steps_per_epoch=args.steps,
            batch_size=8,
            segment_seconds=2.0,
            valid_segment_seconds=3.0,
            log_every_steps=args.log_every,
            device="cpu",
        )
        seconds_per_step(root, dirs, splits, config, "none", "warmup")
        times: dict[str, list[float]] = {"none": [], "dvclive": []}
        for repeat in range(args.repeats):
            for tracker in ("none", "dvclive") if repeat % 2 == 0 else ("dvclive", "none"):
                times[tracker].append(seconds_per_step(root, dirs, splits, config, tracker, f"{tracker}{repeat}"))
        none, dvclive = (statistics.median(times[t]) for t in ("none", "dvclive"))
        alone = log_step_cost(root)
        snapshot = snapshot_cost(root, [dirs[t] for t in splits.valid])
    print(f"demo U-Net, batch 8 x 2 s, {args.steps} steps, log every {args.log_every}, {args.repeats} repeats")
    for tracker in ("none", "dvclive"):
        runs = [round(t * 1e3, 1) for t in times[tracker]]
        print(f"tracker {tracker:8s} {statistics.median(times[tracker]) * 1e3:8.1f} ms per step (median of {runs})")
    print(f"ratio dvclive/none: {dvclive / none:.4f}")
    print(
        f"DVCLive log step alone: {alone * 1e3:.2f} ms, i.e. {alone / args.log_every * 1e3:.3f} ms per step "
        f"= {100 * alone / args.log_every / none:.2f} % of a step"
    )
    per_step = snapshot / (3 * 25)  # the demo: every 3 epochs of 25 steps (config/demo.yaml)
    print(
        f"audio snapshot (1 excerpt x 3 s, 4 targets): {snapshot * 1e3:.0f} ms, every 3 epochs of 25 steps "
        f"= {per_step * 1e3:.2f} ms per step = {100 * per_step / none:.2f} % of a step"
    )


if __name__ == "__main__":
    main()
