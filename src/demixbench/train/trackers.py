"""The optional trackers (config ``tracking.tracker``: ``tensorboard``, ``wandb``, ``mlflow``),
for labs that follow their runs with those tools. Each logs what demixbench.train.tracking's
``Tracker`` interface gives it, into its own folder of the run's directory, offline, without a
server and without network; its package is imported when the tracker is built, and a missing one
is reported with the config key and the pip command (``tracking.require``).

Audio and images go under ``audio/<name>`` and ``images/<name>`` in TensorBoard and W&B (one key
each), and as artifacts ``<name>/<step>.wav|png`` in MLflow.

Resume (a run resumed from a rolling state saved at step j, see demixbench.train.tracking), as far
as each format allows:

- TensorBoard (``tensorboard/``, event files): the resumed writer starts with ``purge_step=j + 1``,
  so TensorBoard's reader drops every event the killed process logged after step j (scalars,
  audio, images) and shows the resumed run's instead. A value logged again at step j itself (the
  epoch scalars of an epoch whose state was saved before its validation) appears twice there.
- Weights & Biases (``wandb/``, offline): one run id for the whole training (kept in
  ``wandb/demixbench.json``), so ``wandb sync --include-offline <run dir>/wandb/offline-run-*``
  uploads the run's processes into one W&B run. W&B cannot rewrite a logged step offline, so the
  resumed process skips every scalar, audio and image already logged at its step (the file records
  the last step of each name): every step appears once, the first value kept.
- MLflow (``mlruns/``, a file store ``file:<run dir>/mlruns``, read by ``mlflow ui
  --backend-store-uri``): one MLflow run for the whole training (the only run of experiment
  "demixbench" in that store); the resumed process reads each metric's history and skips steps
  already logged, as for W&B; artifacts logged again replace the old ones. MLflow 3 keeps the
  file store in maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE=true``, which the
  tracker sets for its process (``mlflow migrate-filestore`` turns the store into a database).

A fresh run (j = 0) deletes the tracker's folder first. Audio goes to TensorBoard as the mono
down-mix (its audio summaries hold one channel), to W&B and MLflow as recorded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from demixbench.fileio import atomic_write_text
from demixbench.train.tracking import require, write_wav

log = logging.getLogger(__name__)


def _flat(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as flat ``a.b.c`` -> JSON text (what MLflow's params and TensorBoard's text hold)."""
    flat = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value, default=str)
    return flat


class TensorBoardTracker:
    """TensorBoard event files in `directory` (torch.utils.tensorboard's SummaryWriter); read with
    ``tensorboard --logdir <run dir>/tensorboard``."""

    def __init__(self, directory: Path, resume_step: int) -> None:
        require("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.directory = Path(directory)
        if resume_step == 0:
            shutil.rmtree(self.directory, ignore_errors=True)
        self._writer = SummaryWriter(str(self.directory), purge_step=resume_step + 1 if resume_step else None)

    def log_params(self, params: Mapping[str, Any]) -> None:
        text = "\n".join(f"    {key} = {value}" for key, value in _flat(params).items())
        self._writer.add_text("params", text, 0)

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self._writer.add_scalar(name, float(value), step)

    def log_epoch(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        self.log_scalars(step, values)
        self._writer.flush()

    def log_audio(self, name: str, step: int, audio: np.ndarray, sample_rate: int) -> None:
        mono = np.clip(np.asarray(audio, dtype=np.float32).mean(axis=0), -1, 1)
        self._writer.add_audio(f"audio/{name}", mono[None], step, sample_rate=sample_rate)

    def log_image(self, name: str, step: int, image: np.ndarray) -> None:
        self._writer.add_image(f"images/{name}", image, step, dataformats="HWC")

    def close(self) -> None:
        self._writer.close()


class WandbTracker:
    """A Weights & Biases run in offline mode in `directory` (a folder named ``wandb``, where W&B
    writes ``offline-run-*``): nothing is sent; ``wandb sync`` uploads it later from a machine with
    network."""

    def __init__(self, directory: Path, resume_step: int) -> None:
        wandb = require("wandb", "wandb")
        self.directory = Path(directory)
        self._state_file = self.directory / "demixbench.json"
        if resume_step == 0:
            shutil.rmtree(self.directory, ignore_errors=True)
        state = json.loads(self._state_file.read_text()) if self._state_file.is_file() else {}
        self._id = state.get("id") or uuid.uuid4().hex[:8]
        #: the last step logged for each name, by this process and the earlier ones of the run
        self._last: dict[str, int] = dict(state.get("last", {}))
        self.directory.mkdir(parents=True, exist_ok=True)
        self._save_state()
        settings = wandb.Settings(  # no console capture, system monitor, git or code look-up
            console="off",
            silent=True,
            disable_git=True,
            save_code=False,
            x_disable_stats=True,
            x_save_requirements=False,
        )
        self._wandb = wandb
        self._run = wandb.init(
            mode="offline",
            dir=str(self.directory.parent),  # W&B writes into <dir>/wandb/
            project="demixbench",
            name=self.directory.parent.name,
            id=self._id,
            resume="allow",
            settings=settings,
            reinit="create_new",
        )

    def _save_state(self) -> None:
        atomic_write_text(self._state_file, json.dumps({"id": self._id, "last": self._last}, indent=1))

    def _new(self, step: int, names: list[str]) -> list[str]:
        """The names not yet logged at `step` (nor later), now recorded as logged there."""
        fresh = [name for name in names if self._last.get(name, -1) < step]
        self._last.update(dict.fromkeys(fresh, step))
        return fresh

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._run.config.update(json.loads(json.dumps(dict(params), default=str)), allow_val_change=True)

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        fresh = self._new(step, list(values))
        if fresh:
            self._run.log({name: float(values[name]) for name in fresh}, step=step)
            self._save_state()

    def log_epoch(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        self.log_scalars(step, values)

    def log_audio(self, name: str, step: int, audio: np.ndarray, sample_rate: int) -> None:
        if self._new(step, [f"audio/{name}"]):
            clip = np.clip(np.asarray(audio, dtype=np.float32), -1, 1).T
            self._run.log({f"audio/{name}": self._wandb.Audio(clip, sample_rate=sample_rate)}, step=step)
            self._save_state()

    def log_image(self, name: str, step: int, image: np.ndarray) -> None:
        if self._new(step, [f"images/{name}"]):
            self._run.log({f"images/{name}": self._wandb.Image(image)}, step=step)
            self._save_state()

    def close(self) -> None:
        self._run.finish()


class MLflowTracker:
    """An MLflow run in a file store in `directory` (tracking URI ``file:<directory>``)."""

    EXPERIMENT = "demixbench"

    def __init__(self, directory: Path, resume_step: int) -> None:
        require("mlflow", "mlflow")
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        self._metric, self._param = Metric, Param
        # MLflow 3 keeps its file store in maintenance mode and refuses it unless this says so.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.directory = Path(directory).resolve()
        if resume_step == 0:
            shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._client = MlflowClient(tracking_uri=self.directory.as_uri())
        experiment = self._client.get_experiment_by_name(self.EXPERIMENT)
        experiment_id = experiment.experiment_id if experiment else self._client.create_experiment(self.EXPERIMENT)
        runs = self._client.search_runs([experiment_id], max_results=1)
        self._last: dict[str, int] = {}
        if runs:  # a resumed run: the steps already logged are skipped
            self._run_id = runs[0].info.run_id
            for name in runs[0].data.metrics:
                self._last[name] = max(m.step for m in self._client.get_metric_history(self._run_id, name))
            self._client.update_run(self._run_id, status="RUNNING")
        else:
            self._run_id = self._client.create_run(experiment_id, run_name=self.directory.parent.name).info.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        logged = self._client.get_run(self._run_id).data.params
        fresh = [self._param(k, v[:6000]) for k, v in _flat(params).items() if k not in logged]
        for start in range(0, len(fresh), 100):  # MLflow takes at most 100 params per batch
            self._client.log_batch(self._run_id, params=fresh[start : start + 100])

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        metrics = [self._metric(k, float(v), now, step) for k, v in values.items() if self._last.get(k, -1) < step]
        self._last.update({metric.key: step for metric in metrics})
        if metrics:
            self._client.log_batch(self._run_id, metrics=metrics)

    def log_epoch(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        self.log_scalars(step, values)

    def _artifact(self, name: str, filename: str, write: Any) -> None:
        with tempfile.TemporaryDirectory() as temporary:
            path = Path(temporary) / filename
            write(path)
            self._client.log_artifact(self._run_id, str(path), artifact_path=name)

    def log_audio(self, name: str, step: int, audio: np.ndarray, sample_rate: int) -> None:
        self._artifact(name, f"{step}.wav", lambda path: write_wav(path, audio, sample_rate))

    def log_image(self, name: str, step: int, image: np.ndarray) -> None:
        from PIL import Image  # matplotlib's dependency

        self._artifact(name, f"{step}.png", lambda path: Image.fromarray(image).save(path))

    def close(self) -> None:
        self._client.set_terminated(self._run_id)
