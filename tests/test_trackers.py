"""The optional trackers (TensorBoard, W&B offline, MLflow's file store): a tiny training logs its
scalars and snapshots, read back with each tool's own reader; resume semantics; the message when a
package is missing; their pins.

Their packages are in requirements.lock, so `make test` (and CI) runs these tests. A missing package
skips a test on a developer's machine but fails it in CI (CI=true), so CI never skips one silently.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import struct
import tomllib
from pathlib import Path

import pytest
from test_tracking import _train  # the tiny training of the DVCLive tests, with the same model

from demixbench.train.config import TrainConfig
from demixbench.train.tracking import OPTIONAL_PACKAGES, MultiTracker, TrackingConfig, make_tracker

REPO = Path(__file__).resolve().parents[1]
#: steps 1-8, logged at 2, 4, 6, 8; the epochs end at 4 and 8 (as tests/test_tracking.py)
TINY = TrainConfig(
    seed=3,
    epochs=2,
    steps_per_epoch=4,
    batch_size=2,
    segment_seconds=0.5,
    valid_segment_seconds=3.0,
    log_every_steps=2,
    grad_clip=None,
)
SNAPSHOTS = {"snapshot_every_epochs": 2, "snapshot_tracks": 1, "snapshot_seconds": 0.5}


def need(module: str):
    """`module`, or skip (fail in CI: a test there must never be skipped silently)."""
    if os.environ.get("CI") == "true":
        return importlib.import_module(module)
    return pytest.importorskip(module)


def _resume_sequence(name: str, run_dir: Path) -> None:
    """Steps 2..10 logged, the process ended without saving its state, resumed from a state saved at step 6, steps 8..12
    logged again with other values; epoch scalars at 8 before and after."""
    tracker = make_tracker(name, run_dir, 0)
    for step in range(2, 12, 2):
        tracker.log_scalars(step, {"train/loss": float(step)})
        if step == 8:
            tracker.log_epoch(1, 8, {"valid/loss": 8.0})
    tracker.close()  # the process ends (W&B's service would hold the run id of a live one)
    resumed = make_tracker(name, run_dir, 6)
    for step in range(8, 14, 2):
        resumed.log_scalars(step, {"train/loss": step + 0.5})
        if step == 8:
            resumed.log_epoch(1, 8, {"valid/loss": 7.5})
    resumed.close()


# ---- TensorBoard ----------------------------------------------------------------------------------


def _tensorboard(directory: Path):
    need("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory), size_guidance={"scalars": 0, "images": 0, "audio": 0})
    events.Reload()
    return events


def test_tensorboard_logs_scalars_audio_and_images(tmp_path, decoded, small_splits):
    need("tensorboard")
    tracking = TrackingConfig(tracker="tensorboard", **SNAPSHOTS)
    out = _train(tmp_path, decoded, small_splits, TINY, tracking=tracking)
    assert not (out / "dvclive").exists()
    events = _tensorboard(out / "tensorboard")
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6, 8]
    assert [e.step for e in events.Scalars("valid/nsdr/vocals")] == [4, 8]
    history = json.loads((out / "history.json").read_text())
    assert events.Scalars("valid/loss")[-1].value == pytest.approx(history[-1]["valid_loss"])
    (track,) = small_splits.valid
    assert [e.step for e in events.Audio(f"audio/snapshots/{track}/estimate/vocals")] == [8]
    assert [e.step for e in events.Audio(f"audio/snapshots/{track}/reference/mixture")] == [0]
    image = events.Images(f"images/snapshots/{track}/estimate/vocals")
    assert [e.step for e in image] == [8] and image[0].width > 200
    assert "params/text_summary" in events.Tags()["tensors"]


def test_tensorboard_resume_purges_what_came_after_the_saved_state(tmp_path):
    need("tensorboard")
    _resume_sequence("tensorboard", tmp_path)
    events = _tensorboard(tmp_path / "tensorboard")
    loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert loss == [(2, 2.0), (4, 4.0), (6, 6.0), (8, 8.5), (10, 10.5), (12, 12.5)]
    assert [e.value for e in events.Scalars("valid/loss")] == [7.5]


# ---- Weights & Biases, offline ----------------------------------------------------------------------


def _wandb_history(directory: Path) -> list[dict]:
    """The history rows of every offline run in `directory`, in file order, read from W&B's
    transaction logs (a 7-byte header, then LevelDB log blocks of protobuf ``Record`` messages)."""
    need("wandb")
    from wandb.proto import wandb_internal_pb2

    rows = []
    for path in sorted(directory.glob("offline-run-*/run-*.wandb")):
        data = path.read_bytes()
        assert data[:4] == b":W&B"
        position, pending = 7, b""
        while position + 7 <= len(data):
            if 32768 - position % 32768 < 7:  # a block's tail too short for a header is padding
                position += 32768 - position % 32768
                continue
            _, length, kind = struct.unpack("<IHB", data[position : position + 7])
            chunk = data[position + 7 : position + 7 + length]
            position += 7 + length
            pending = chunk if kind in (1, 2) else pending + chunk  # FULL, FIRST / MIDDLE, LAST
            if kind in (1, 4):
                record = wandb_internal_pb2.Record()
                record.ParseFromString(pending)
                if record.WhichOneof("record_type") == "history":
                    row: dict = {}
                    for item in record.history.item:  # a medium's fields under nested keys (name, field)
                        key = [item.key] if item.key else list(item.nested_key)
                        node = row
                        for part in key[:-1]:
                            node = node.setdefault(part, {})
                        node[key[-1]] = json.loads(item.value_json)
                    rows.append(row)
    return rows


def test_wandb_offline_logs_scalars_audio_and_images(tmp_path, decoded, small_splits):
    need("wandb")
    tracking = TrackingConfig(tracker="wandb", **SNAPSHOTS)
    out = _train(tmp_path, decoded, small_splits, TINY, tracking=tracking)
    rows = _wandb_history(out / "wandb")
    assert [row["_step"] for row in rows if "train/loss" in row] == [2, 4, 6, 8]
    assert [row["_step"] for row in rows if "valid/nsdr/vocals" in row] == [4, 8]
    (track,) = small_splits.valid
    audio = [row for row in rows if f"audio/snapshots/{track}/estimate/vocals" in row]
    assert [row["_step"] for row in audio] == [8]
    media = list((out / "wandb").glob("offline-run-*/files/media/audio/**/*.wav"))
    assert len(media) == 1 + 4 + 4  # the mixture and the 4 references at step 0, the 4 estimates at step 8
    assert list((out / "wandb").glob("offline-run-*/files/media/images/**/*.png"))
    assert json.loads((out / "wandb" / "demixbench.json").read_text())["id"]


def test_wandb_resume_keeps_one_run_and_skips_steps_already_logged(tmp_path):
    need("wandb")
    _resume_sequence("wandb", tmp_path)
    logs = sorted((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(logs) == 2 and len({log.name for log in logs}) == 1  # two processes, one run id
    rows = _wandb_history(tmp_path / "wandb")
    loss = [(row["_step"], row["train/loss"]) for row in rows if "train/loss" in row]
    assert loss == [(2, 2.0), (4, 4.0), (6, 6.0), (8, 8.0), (10, 10.0), (12, 12.5)]  # the first value kept
    assert [row["valid/loss"] for row in rows if "valid/loss" in row] == [8.0]


# ---- MLflow file store ---------------------------------------------------------------------------------


def _mlflow(directory: Path):
    need("mlflow")
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=directory.resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("demixbench").experiment_id])
    return client, run


def test_mlflow_file_store_logs_scalars_params_and_artifacts(tmp_path, decoded, small_splits):
    need("mlflow")
    tracking = TrackingConfig(tracker="mlflow", **SNAPSHOTS)
    out = _train(tmp_path, decoded, small_splits, TINY, tracking=tracking)
    client, run = _mlflow(out / "mlruns")
    assert run.info.status == "FINISHED" and run.data.params["train.seed"] == str(TINY.seed)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [2, 4, 6, 8]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "valid/nsdr/vocals")] == [4, 8]
    (track,) = small_splits.valid
    files = [f.path for f in client.list_artifacts(run.info.run_id, f"snapshots/{track}/estimate/vocals")]
    assert files == [f"snapshots/{track}/estimate/vocals/8.png", f"snapshots/{track}/estimate/vocals/8.wav"]


def test_mlflow_resume_keeps_one_run_and_skips_steps_already_logged(tmp_path):
    need("mlflow")
    _resume_sequence("mlflow", tmp_path)
    client, run = _mlflow(tmp_path / "mlruns")
    loss = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert loss == [(2, 2.0), (4, 4.0), (6, 6.0), (8, 8.0), (10, 10.0), (12, 12.5)]
    assert [m.value for m in client.get_metric_history(run.info.run_id, "valid/loss")] == [8.0]


# ---- several trackers, missing packages, pins -------------------------------------------------------------


def test_several_trackers_at_once(tmp_path):
    need("tensorboard")
    tracker = make_tracker(["dvclive", "tensorboard"], tmp_path, 0)
    assert isinstance(tracker, MultiTracker)
    tracker.log_scalars(2, {"train/loss": 1.0})
    tracker.close()
    assert (tmp_path / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv").is_file()
    assert [e.step for e in _tensorboard(tmp_path / "tensorboard").Scalars("train/loss")] == [2]


@pytest.mark.parametrize("name", ["tensorboard", "wandb", "mlflow"])
def test_a_missing_package_names_the_config_key_and_the_pip_command(tmp_path, monkeypatch, name):
    real = importlib.import_module

    def without(module, *args):
        if module.split(".")[0] == name:
            raise ModuleNotFoundError(f"No module named {module!r}")
        return real(module, *args)

    monkeypatch.setattr(importlib, "import_module", without)
    with pytest.raises(ImportError) as error:
        make_tracker(name, tmp_path, 0)
    message = str(error.value)
    assert f"tracking.tracker: {name} needs the package" in message
    assert f"pip install {OPTIONAL_PACKAGES[name]}" in message and f"'.[{name}]'" in message


def test_the_optional_packages_are_pinned_alike_in_pyproject_the_lock_and_the_conda_environment():
    import yaml

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    lock = dict(line.split("==") for line in (REPO / "requirements.lock").read_text().splitlines() if "==" in line)
    lock = {name.lower().replace("_", "-"): version for name, version in lock.items()}
    env = yaml.safe_load((REPO / "envs" / "trackers.yaml").read_text())
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    for name, requirement in OPTIONAL_PACKAGES.items():
        assert extras[name] == [requirement], name
        package, version = requirement.split("==")
        assert lock.get(package) == version, f"requirements.lock lacks {requirement}"
        assert requirement in pip, f"envs/trackers.yaml lacks {requirement}"
    assert sorted(extras["trackers"]) == sorted(OPTIONAL_PACKAGES.values())
    base = yaml.safe_load((REPO / "envs" / "demixbench.yaml").read_text())
    base_pip = next(item["pip"] for item in base["dependencies"] if isinstance(item, dict))
    assert [r for r in pip if not re.match("tensorboard|wandb|mlflow", r)] == base_pip  # the rest as the base env
