"""Resumable training: kill -9 and SIGTERM/SIGUSR1 mid-run, then a rerun ends with the same weights
as an uninterrupted run; early stopping; LR schedules; a stale rolling state is not resumed."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from demixbench.models import ModelSpec
from demixbench.models.checkpoint import load_weights
from demixbench.train.config import TrainConfig
from demixbench.train.loop import train

SPEC = ModelSpec("unet", {"n_fft": 512, "hop_length": 128, "max_bins": 256, "channels": [4, 8, 16, 32]})
CONFIG = TrainConfig(
    seed=5,
    epochs=4,
    steps_per_epoch=5,
    batch_size=2,
    segment_seconds=0.5,
    valid_segment_seconds=3.0,
    checkpoint_every_steps=1,
    log_every_steps=1,
)

DRIVER = """
import json, sys
from pathlib import Path
from demixbench.logs import setup_logging
from demixbench.models import ModelSpec
from demixbench.train.config import TrainConfig
from demixbench.train.loop import train
from demixbench.train.tracking import TrackingConfig
setup_logging()
a = json.loads(sys.argv[1])
train(ModelSpec(**a["spec"]), TrainConfig(**a["config"]), [Path(p) for p in a["train"]], [Path(p) for p in a["valid"]],
      Path(a["out"]) / "model.safetensors", Path(a["out"]) / "history.csv", work_dir=Path(a["work"]),
      run_dir=Path(a["out"]), tracking=TrackingConfig(**a["tracking"]))
"""

#: Audio snapshots every epoch (the uninterrupted run takes none: they must not change the weights).
TRACKING = {"snapshot_every_epochs": 1, "snapshot_tracks": 1, "snapshot_seconds": 0.5}


def _arguments(decoded, splits, out: Path, work: Path, config: TrainConfig = CONFIG) -> dict:
    return {
        "spec": asdict(SPEC),
        "config": asdict(config),
        "out": str(out),
        "work": str(work),
        "train": [str(decoded[t]) for t in splits.train],
        "valid": [str(decoded[t]) for t in splits.valid],
        "tracking": TRACKING,
    }


def _start(tmp_path: Path, arguments: dict) -> subprocess.Popen:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    return subprocess.Popen(
        [sys.executable, str(driver), json.dumps(arguments)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _logged_steps(run_dir: Path) -> dict[str, list[int]]:
    """Scalar name -> the steps its DVCLive file holds, in file order."""
    root = run_dir / "dvclive" / "plots" / "metrics"
    result = {}
    for path in root.rglob("*.tsv"):
        with path.open(newline="") as handle:
            result[path.relative_to(root).with_suffix("").as_posix()] = [
                int(row["step"]) for row in csv.DictReader(handle, delimiter="\t")
            ]
    return result


def _assert_logs_continuous(run_dir: Path) -> None:
    """After a kill and a resume every step (and every epoch end) is logged exactly once, in order."""
    steps = _logged_steps(run_dir)
    total = CONFIG.epochs * CONFIG.steps_per_epoch
    for name in ("train/loss", "train/lr", "train/grad_norm", "system/cpu_percent"):
        assert steps[name] == list(range(1, total + 1)), name
    for name in ("valid/loss", "valid/nsdr/vocals", "valid/best_nsdr"):
        assert steps[name] == list(range(CONFIG.steps_per_epoch, total + 1, CONFIG.steps_per_epoch)), name
    assert json.loads((run_dir / "dvclive" / "metrics.json").read_text())["step"] == total
    # one audio snapshot (and spectrogram) per epoch end, the references once, at step 0
    epoch_ends = [str(step) for step in range(CONFIG.steps_per_epoch, total + 1, CONFIG.steps_per_epoch)]
    for folder, suffix in ((run_dir / "dvclive" / "audio", ".wav"), (run_dir / "dvclive" / "plots" / "images", ".png")):
        (track,) = [path.name for path in (folder / "snapshots").iterdir()]
        estimates = folder / "snapshots" / track / "estimate" / "vocals"
        assert sorted((p.stem for p in estimates.iterdir()), key=int) == epoch_ends, folder
        assert all(p.suffix == suffix for p in estimates.iterdir())
        assert [p.name for p in (folder / "snapshots" / track / "reference" / "mixture").iterdir()] == [f"0{suffix}"]
    progress = json.loads((run_dir / "progress.json").read_text())
    assert progress["state"] == "done" and progress["step"] == total and progress["epoch"] == CONFIG.epochs


def _wait_for_step(state: Path, step: int, process: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "training finished before it could be interrupted"
        if state.is_file():
            try:
                saved = torch.load(state, weights_only=True)["progress"]["step"]
            except (EOFError, RuntimeError):  # replaced while being read
                continue
            if saved >= step:
                return saved
        time.sleep(0.01)
    raise TimeoutError(f"{state} never reached step {step}")


@pytest.fixture(scope="module")
def uninterrupted(decoded, small_splits, tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("uninterrupted")
    train(
        SPEC,
        CONFIG,
        [decoded[t] for t in small_splits.train],
        [decoded[t] for t in small_splits.valid],
        out / "model.safetensors",
        out / "history.csv",
        work_dir=out / "work",
    )
    assert not (out / "work" / "state.pt").exists()  # removed after success
    assert (out / "history.png").stat().st_size > 1000
    return load_weights(out / "model.safetensors")


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("loader_workers", [0, 2])
def test_kill_9_then_rerun_gives_the_same_weights(tmp_path, decoded, small_splits, uninterrupted, loader_workers):
    # With loader workers the generator has already drawn the prefetched batches when the state
    # is saved; the state must hold the generator as of the last batch used.
    config = replace(CONFIG, loader_workers=loader_workers, prefetch_batches=3)
    arguments = _arguments(decoded, small_splits, tmp_path / "out", tmp_path / "work", config)
    process = _start(tmp_path, arguments)
    saved = _wait_for_step(tmp_path / "work" / "state.pt", 7, process)  # mid-way through epoch 2
    process.kill()  # SIGKILL: no chance to save anything more
    process.wait()
    assert not (tmp_path / "out" / "model.safetensors").exists()
    rerun = _start(tmp_path, arguments)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert "resumed at step" in stderr and int(stderr.split("resumed at step ")[1].split()[0]) >= saved
    _assert_same_weights(load_weights(tmp_path / "out" / "model.safetensors"), uninterrupted)
    _assert_logs_continuous(tmp_path / "out")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_sigterm_or_sigusr1_saves_and_exits_then_resumes(tmp_path, decoded, small_splits, uninterrupted, signum):
    arguments = _arguments(decoded, small_splits, tmp_path / "out", tmp_path / "work")
    process = _start(tmp_path, arguments)
    _wait_for_step(tmp_path / "work" / "state.pt", 3, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    assert f"{signal.Signals(signum).name} received: state saved at step" in stderr
    step = int(stderr.rsplit("state saved at step ", 1)[1].split()[0])  # the message, not the traceback's source line
    assert torch.load(tmp_path / "work" / "state.pt", weights_only=True)["progress"]["step"] == step
    assert json.loads((tmp_path / "out" / "progress.json").read_text())["state"] == "failed"
    rerun = _start(tmp_path, arguments)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert f"resumed at step {step}" in stderr
    _assert_same_weights(load_weights(tmp_path / "out" / "model.safetensors"), uninterrupted)
    _assert_logs_continuous(tmp_path / "out")


def test_fp16_resume_restores_the_loss_scaler(tmp_path, decoded, small_splits):
    """fp16's GradScaler state (scale, growth tracker) is part of the rolling state: kill -9 and a
    rerun give the weights of an uninterrupted fp16 run (CPU autocast runs the same code as CUDA)."""
    config = replace(CONFIG, precision="fp16", epochs=2)
    dirs = ([decoded[t] for t in small_splits.train], [decoded[t] for t in small_splits.valid])
    whole = tmp_path / "whole"
    train(SPEC, config, *dirs, whole / "model.safetensors", whole / "history.csv", work_dir=whole / "work")
    arguments = _arguments(decoded, small_splits, tmp_path / "out", tmp_path / "work", config)
    process = _start(tmp_path, arguments)
    _wait_for_step(tmp_path / "work" / "state.pt", 6, process)
    assert "scaler" in torch.load(tmp_path / "work" / "state.pt", weights_only=True)
    process.kill()
    process.wait()
    rerun = _start(tmp_path, arguments)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert "resumed at step" in stderr
    _assert_same_weights(
        load_weights(tmp_path / "out" / "model.safetensors"), load_weights(whole / "model.safetensors")
    )


def test_a_state_written_with_other_settings_is_not_resumed(tmp_path, decoded, small_splits, uninterrupted, caplog):
    arguments = _arguments(decoded, small_splits, tmp_path / "out", tmp_path / "work", replace(CONFIG, lr=0.5))
    process = _start(tmp_path, arguments)
    _wait_for_step(tmp_path / "work" / "state.pt", 2, process)
    process.kill()
    process.wait()
    out = tmp_path / "again"
    train(
        SPEC,
        CONFIG,
        [decoded[t] for t in small_splits.train],
        [decoded[t] for t in small_splits.valid],
        out / "model.safetensors",
        out / "history.csv",
        work_dir=tmp_path / "work",
    )
    assert "written with other settings; starting from scratch" in caplog.text
    _assert_same_weights(load_weights(out / "model.safetensors"), uninterrupted)


def test_early_stopping_after_patience_epochs_without_improvement():
    from demixbench.train.loop import _end_epoch
    from demixbench.train.state import _Progress

    model = torch.nn.Linear(1, 1)
    config = replace(CONFIG, epochs=10, early_stopping_patience=2)
    progress = _Progress()
    for epoch, loss in enumerate([1.0, 0.9, 0.95, 0.9], start=1):  # 0.9 again is no improvement
        _end_epoch(progress, epoch, config, None, model, 1e-3, {"valid_loss": loss, "valid_nsdr": 0.0}, 1.0)
        assert progress.stopped_early == (epoch == 4)
    assert progress.best_epoch == 2 and progress.best_loss == 0.9


def test_lr_schedules(tmp_path, decoded, small_splits):
    dirs = ([decoded[t] for t in small_splits.train], [decoded[t] for t in small_splits.valid])
    cosine = replace(CONFIG, epochs=3, lr_schedule="cosine", checkpoint_every_steps=0)
    history = train(SPEC, cosine, *dirs, tmp_path / "b" / "model.safetensors", tmp_path / "b" / "history.csv")
    lrs = [row["lr"] for row in history]
    # "lr" is the rate after the epoch's last step: cosine from CONFIG.lr down to 0 over 15 steps
    assert CONFIG.lr > lrs[0] > lrs[1] > lrs[2] and lrs[2] == pytest.approx(0, abs=1e-12)
    with pytest.raises(ValueError, match="allowed: constant, cosine, step, plateau"):
        train(
            SPEC,
            replace(CONFIG, lr_schedule="linear"),
            *dirs,
            tmp_path / "c" / "model.safetensors",
            tmp_path / "c" / "history.csv",
        )
