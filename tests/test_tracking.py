"""Training telemetry: the tracker interface, DVCLive's files, their continuity across a resume,
progress.json, and the GAN's scalars."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import _run  # the tiny training of the training tests

from demixbench.models import ModelSpec
from demixbench.models.losses import discriminator_loss
from demixbench.train.config import GANConfig, TrainConfig
from demixbench.train.runstatus import ProgressWriter
from demixbench.train.telemetry import discriminator_scalars
from demixbench.train.tracking import (
    TRACKERS,
    DVCLiveTracker,
    NullTracker,
    TrackingConfig,
    make_tracker,
)

SPEC = ModelSpec("unet", {"n_fft": 512, "hop_length": 128, "max_bins": 256, "channels": [4, 8, 16, 32]})
CONFIG = TrainConfig(
    seed=3,
    epochs=2,
    steps_per_epoch=4,
    batch_size=2,
    segment_seconds=0.5,
    valid_segment_seconds=3.0,
    log_every_steps=2,
)
GAN = GANConfig(discriminator_args={"in_channels": 10, "channels": [4, 8]}, warmup_steps=1, feature_match_weight=1.0)


def logged(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalar name -> (step, value) rows of the DVCLive files in `directory`."""
    root = directory / "plots" / "metrics"
    result = {}
    for path in sorted(root.rglob("*.tsv")):
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        leaf = path.stem
        result[path.relative_to(root).with_suffix("").as_posix()] = [(int(r["step"]), float(r[leaf])) for r in rows]
    return result


def test_registry_and_config():
    assert set(TRACKERS) == {"dvclive", "tensorboard", "wandb", "mlflow", "none"}
    assert isinstance(make_tracker("none", Path("anywhere"), 0), NullTracker)
    assert isinstance(make_tracker(["none"], Path("anywhere"), 0), NullTracker)
    with pytest.raises(ValueError, match="unknown tracker 'comet'; allowed: dvclive, tensorboard, wandb, mlflow, none"):
        TrackingConfig(tracker="comet")
    with pytest.raises(ValueError, match="unknown tracker"):
        make_tracker("comet", Path("x"), 0)
    assert TrackingConfig(tracker=["dvclive", "tensorboard"]).trackers == ("dvclive", "tensorboard")
    assert TrackingConfig(tracker="none").trackers == ()
    with pytest.raises(ValueError, match="a list of different trackers"):
        TrackingConfig(tracker=["dvclive", "dvclive"])
    with pytest.raises(ValueError, match="snapshot_every_epochs must be >= 0"):
        TrackingConfig(snapshot_every_epochs=-1)


def test_importing_the_training_does_not_import_dvclive():
    code = "import sys, demixbench.train.loop; assert 'dvclive' not in sys.modules and 'dvc' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dvclive_outside_any_repository_writes_only_its_directory(tmp_path, monkeypatch):
    """In a Git checkout without DVC, dvclive.Live would run `dvc init`; the tracker must not."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.chdir(tmp_path)
    tracker = make_tracker("dvclive", tmp_path / "run", 0)
    tracker.log_params({"train": {"lr": 0.1, "betas": (0.5, 0.9)}})
    tracker.log_scalars(2, {"train/loss": 1.5, "valid/nsdr/vocals": float("nan")})
    tracker.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".git", "run"]
    assert sorted(p.name for p in (tmp_path / "run" / "dvclive").iterdir()) == ["metrics.json", "params.yaml", "plots"]
    assert json.loads((tmp_path / "run" / "dvclive" / "metrics.json").read_text())["train"]["loss"] == 1.5
    assert logged(tmp_path / "run" / "dvclive")["train/loss"] == [(2, 1.5)]


def test_resume_drops_what_was_logged_after_the_saved_state_and_continues(tmp_path):
    directory = tmp_path / "dvclive"
    tracker = DVCLiveTracker(directory, 0)
    for step in range(2, 12, 2):  # steps 2..10, then "killed" (no close)
        tracker.log_scalars(step, {"train/loss": float(step), "train/lr": 0.1})
        if step == 8:
            tracker.log_epoch(1, 8, {"valid/loss": 8.5})
    # a row half written when the process was killed
    with (directory / "plots" / "metrics" / "train" / "loss.tsv").open("a") as handle:
        handle.write("12\t1")
    resumed = DVCLiveTracker(directory, 6)  # the rolling state was saved at step 6
    assert json.loads((directory / "metrics.json").read_text()) == {"train": {"loss": 6.0, "lr": 0.1}, "step": 6}
    for step in range(8, 14, 2):
        resumed.log_scalars(step, {"train/loss": step + 0.5, "train/lr": 0.1})
        if step == 8:
            resumed.log_epoch(1, 8, {"valid/loss": 7.5})
    resumed.close()
    rows = logged(directory)
    assert rows["train/loss"] == [(2, 2.0), (4, 4.0), (6, 6.0), (8, 8.5), (10, 10.5), (12, 12.5)]
    assert [step for step, _ in rows["train/lr"]] == [2, 4, 6, 8, 10, 12]
    assert rows["valid/loss"] == [(8, 7.5)]
    assert json.loads((directory / "metrics.json").read_text())["step"] == 12


def test_a_value_logged_again_at_a_step_it_holds_replaces_the_old_one(tmp_path):
    """The epoch-end scalars of an epoch whose validation was interrupted after they were logged,
    but before the state was saved, are logged again at the same step: once in the end."""
    directory = tmp_path / "dvclive"
    tracker = DVCLiveTracker(directory, 0)
    tracker.log_scalars(4, {"train/loss": 1.0})
    tracker.log_epoch(1, 4, {"valid/loss": 2.0})
    resumed = DVCLiveTracker(directory, 4)  # saved at step 4, before the epoch's validation
    resumed.log_epoch(1, 4, {"valid/loss": 3.0})
    assert logged(directory) == {"train/loss": [(4, 1.0)], "valid/loss": [(4, 3.0)]}


def test_a_fresh_run_deletes_earlier_logs(tmp_path):
    tracker = DVCLiveTracker(tmp_path / "dvclive", 0)
    tracker.log_scalars(10, {"old/metric": 1.0})
    fresh = DVCLiveTracker(tmp_path / "dvclive", 0)
    fresh.log_scalars(2, {"train/loss": 1.0})
    assert list(logged(tmp_path / "dvclive")) == ["train/loss"]


def test_run_status_format(tmp_path):
    status = ProgressWriter(tmp_path / "progress.json", total_steps=100, epochs=4, resumed=False)
    status.write("training", 50, 2, 3.5, 4.0, {"vocals": float("nan"), "bass": 1.0})
    record = json.loads((tmp_path / "progress.json").read_text())
    assert set(record) == {
        "state", "step", "total_steps", "epoch", "epochs", "steps_per_second", "best_valid_nsdr",
        "valid_nsdr", "started", "updated", "host", "pid",
    }  # fmt: skip
    assert record["valid_nsdr"] == {"vocals": None, "bass": 1.0} and record["steps_per_second"] == 3.5
    again = ProgressWriter(tmp_path / "progress.json", total_steps=100, epochs=4, resumed=True)
    assert again.started == record["started"]
    with pytest.raises(ValueError, match="unknown run state"):
        status.write("paused", 1, 0)


@pytest.mark.parametrize("kind", ["lsgan", "hinge"])
def test_discriminator_scalars_split_the_discriminator_loss(kind):
    generator = torch.Generator().manual_seed(0)
    real = [torch.randn(2, 1, 5, generator=generator), torch.randn(2, 1, 3, generator=generator)]
    fake = [torch.randn(2, 1, 5, generator=generator), torch.randn(2, 1, 3, generator=generator)]
    scalars = discriminator_scalars(real, fake, kind)
    total = discriminator_loss(real, fake, kind)
    torch.testing.assert_close(scalars["gan/d_loss_real"] + scalars["gan/d_loss_fake"], total)
    torch.testing.assert_close(scalars["gan/d_real_mean"], torch.stack([r.mean() for r in real]).mean())


def _train(tmp_path, decoded, splits, config=CONFIG, gan=None, tracking=None, name="run"):
    """test_train's tiny training with this module's model and config, logging into the run's
    directory; returns it."""
    out = tmp_path / name
    return _run(tmp_path, decoded, splits, name, config=config, gan=gan, spec=SPEC, run_dir=out, tracking=tracking)[0]


def test_a_gan_training_logs_every_scalar_at_its_steps(tmp_path, decoded, small_splits):
    out = _train(tmp_path, decoded, small_splits, gan=GAN)
    rows = logged(out / "dvclive")
    steps = [2, 4, 6, 8]
    for name in ("train/loss", "train/reconstruction", "train/lr", "train/grad_norm", "train/samples_per_second"):
        assert [s for s, _ in rows[name]] == steps, name
    for name in ("d_loss_real", "d_loss_fake", "d_real_mean", "d_fake_mean", "g_adv", "g_feature_matching"):
        assert [s for s, _ in rows[f"gan/{name}"]] == steps, name  # adversarial from step 2 on
    assert "train/loss_scale" not in rows  # fp32: no GradScaler
    for name in ("nsdr/vocals", "nsdr/drums", "loss", "nsdr_mean", "best_nsdr", "epoch_seconds"):
        assert [s for s, _ in rows[f"valid/{name}"]] == [4, 8], name
    history = json.loads((out / "history.json").read_text())
    assert rows["valid/loss"][-1][1] == pytest.approx(history[-1]["valid_loss"])
    assert rows["valid/best_nsdr"][-1][1] == pytest.approx(max(h["valid_nsdr"] for h in history))
    # the mean of the steps' ratios (steps 3 and 4, both adversarial) against the ratio of the means
    ratio = rows["gan/adv_to_reconstruction"][1][1]
    expected = GAN.adv_weight * rows["gan/g_adv"][1][1] / rows["train/reconstruction"][1][1]
    assert ratio == pytest.approx(expected, rel=0.3)
    ratio = rows["gan/fm_to_reconstruction"][1][1]
    expected = GAN.feature_match_weight * rows["gan/g_feature_matching"][1][1] / rows["train/reconstruction"][1][1]
    assert ratio == pytest.approx(expected, rel=0.3)
    assert any(name.startswith("system/") for name in rows)
    assert all(np.isfinite(v) for name, series in rows.items() for _, v in series)
    progress = json.loads((out / "progress.json").read_text())
    assert progress["state"] == "done" and progress["step"] == progress["total_steps"] == 8
    assert progress["epoch"] == progress["epochs"] == 2 and progress["steps_per_second"] > 0
    assert set(progress["valid_nsdr"]) == {"drums", "bass", "other", "vocals"}
    assert progress["best_valid_nsdr"] == pytest.approx(max(h["valid_nsdr"] for h in history))


def test_tracking_off_writes_no_tracker_files_but_progress(tmp_path, decoded, small_splits):
    config = replace(CONFIG, epochs=1, grad_clip=None)
    out = _train(tmp_path, decoded, small_splits, config, tracking=TrackingConfig(tracker="none"))
    assert not (out / "dvclive").exists()
    assert json.loads((out / "progress.json").read_text())["state"] == "done"


def test_tracking_does_not_change_the_weights(tmp_path, decoded, small_splits):
    """Measuring the gradient norm at log steps without clipping leaves the update unchanged."""
    from demixbench.models.checkpoint import load_weights

    config = replace(CONFIG, epochs=1, grad_clip=None, log_every_steps=1)
    tracked = _train(tmp_path, decoded, small_splits, config, name="tracked")
    plain = _train(tmp_path, decoded, small_splits, config, tracking=TrackingConfig("none"), name="plain")
    a, b = load_weights(tracked / "model.safetensors"), load_weights(plain / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [s for s, _ in logged(tracked / "dvclive")["train/grad_norm"]] == [1, 2, 3, 4]


def test_a_failing_training_says_failed(tmp_path, decoded, small_splits, monkeypatch):
    import demixbench.train.loop as loop

    def broken(*args, **kwargs):
        raise RuntimeError("validation broke")

    monkeypatch.setattr(loop, "validate", broken)
    with pytest.raises(RuntimeError, match="validation broke"):
        _train(tmp_path, decoded, small_splits)
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert progress["state"] == "failed" and progress["step"] == 4 and progress["epoch"] == 0


def test_fp16_logs_the_loss_scales(tmp_path, decoded, small_splits):
    config = replace(CONFIG, epochs=1, precision="fp16")
    out = _train(tmp_path, decoded, small_splits, config, gan=GAN, tracking=TrackingConfig(system_metrics=False))
    rows = logged(out / "dvclive")
    assert [s for s, _ in rows["train/loss_scale"]] == [2, 4] and rows["train/loss_scale"][0][1] > 1
    assert [s for s, _ in rows["gan/d_loss_scale"]] == [2, 4]
    assert not any(name.startswith("system/") for name in rows)


# ---- audio snapshots ----------------------------------------------------------------------------------


def test_snapshots_every_k_epochs_write_audio_and_spectrograms_and_leave_the_weights_alone(
    tmp_path, decoded, small_splits
):
    import soundfile as sf
    from PIL import Image

    from demixbench.models.checkpoint import load_weights

    config = replace(CONFIG, epochs=3, grad_clip=None)
    tracking = TrackingConfig(snapshot_every_epochs=2, snapshot_tracks=5, snapshot_seconds=1.0)
    out = _train(tmp_path, decoded, small_splits, config, tracking=tracking, name="snapshots")
    plain = _train(tmp_path, decoded, small_splits, config, tracking=TrackingConfig("none"), name="plain")
    a, b = load_weights(out / "model.safetensors"), load_weights(plain / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # eval mode, no random numbers drawn
    (track,) = small_splits.valid  # 5 tracks asked for, 1 there
    audio = out / "dvclive" / "audio" / "snapshots" / track
    images = out / "dvclive" / "plots" / "images" / "snapshots" / track
    for target in ("drums", "bass", "other", "vocals"):
        assert sorted(p.name for p in (audio / "estimate" / target).iterdir()) == ["8.wav"]  # epoch 2 of 3
        assert sorted(p.name for p in (images / "estimate" / target).iterdir()) == ["8.png"]
        assert [p.name for p in (audio / "reference" / target).iterdir()] == ["0.wav"]
        samples, rate = sf.read(audio / "estimate" / target / "8.wav")
        assert (
            rate == 44100
            and samples.shape == (44100, 2)
            and sf.info(audio / "estimate" / target / "8.wav").subtype == "PCM_16"
        )
    reference, _ = sf.read(audio / "reference" / "mixture" / "0.wav", dtype="float32")
    mixture = np.load(decoded[track] / "mixture.npy")
    start = max(0, min(30 * 44100, mixture.shape[-1] - 44100))  # the default offset, moved to fit
    np.testing.assert_allclose(reference.T, mixture[:, start : start + 44100], atol=1 / 32767)
    with Image.open(images / "estimate" / "vocals" / "8.png") as image:
        assert image.mode == "RGB" and image.size[0] > 200
    assert [s for s, _ in logged(out / "dvclive")["valid/snapshot_seconds"]] == [8]


def test_resume_drops_snapshots_logged_after_the_saved_state(tmp_path):
    tracker = DVCLiveTracker(tmp_path / "dvclive", 0)
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    for step in (0, 4, 8):
        tracker.log_audio("snapshots/t/estimate/vocals", step, np.zeros((2, 100), np.float32), 44100)
        tracker.log_image("snapshots/t/estimate/vocals", step, image)
    DVCLiveTracker(tmp_path / "dvclive", 4)
    assert sorted(p.name for p in (tmp_path / "dvclive/audio/snapshots/t/estimate/vocals").iterdir()) == [
        "0.wav",
        "4.wav",
    ]
    images = tmp_path / "dvclive/plots/images/snapshots/t/estimate/vocals"
    assert sorted(p.name for p in images.iterdir()) == ["0.png", "4.png"]
    DVCLiveTracker(tmp_path / "dvclive", 0)  # a fresh run
    assert not (tmp_path / "dvclive" / "audio").exists() and not images.exists()


def test_a_spectrogram_image_has_a_fixed_scale():
    from demixbench.train.snapshots import spectrogram_image

    t = np.arange(44100) / 44100
    loud = np.stack([np.sin(2 * np.pi * 1000 * t)] * 2).astype(np.float32)
    a, b = spectrogram_image(loud, 44100, "x"), spectrogram_image(loud * 0.01, 44100, "x")
    assert a.shape == b.shape and a.dtype == np.uint8 and a.shape[-1] == 3
    assert not np.array_equal(a, b)  # quieter is darker: the colour scale does not follow the signal
