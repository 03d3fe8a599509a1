"""Experiment trackers: where a training run's scalars, audio and images go while it trains
(``TRACKERS``).

A tracker is anything with the small :class:`Tracker` interface: parameters once, scalars at a
step, epoch-level scalars, audio and images at a step, close. ``make_tracker(names, run_dir,
resume_step)`` builds one by name, or several behind one :class:`MultiTracker`:

- ``"dvclive"`` (the default): DVCLive files in ``<run_dir>/dvclive/`` (``dvc plots show``); audio
  as wav files in ``dvclive/audio/<name>/<step>.wav`` (DVCLive has no audio), images in
  ``dvclive/plots/images/<name>/<step>.png``.
- ``"tensorboard"``, ``"wandb"`` (offline), ``"mlflow"`` (a file store): see
  demixbench.train.trackers; their packages are optional (``OPTIONAL_PACKAGES``) and imported only
  when such a tracker is built.
- ``"none"``: nothing.

Resume contract: a run killed after step k and resumed from a rolling state saved at step j <= k
builds its tracker with ``resume_step=j``. DVCLive drops whatever was logged after step j (scalars,
audio and images) and continues the same logs, and a scalar logged again at a step it already
holds replaces the old value, so the final logs hold every logged step of every scalar exactly
once, in order. (The optional trackers do what their format allows: see demixbench.train.trackers.)
``resume_step=0`` starts fresh (earlier logs in the directory are deleted).

Only rank 0 of a multi-process run builds a real tracker (the others get a :class:`NullTracker`).
``dvclive`` is imported only when its tracker is built, so ``import demixbench.train`` stays light.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import logging
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf
import torch

from demixbench.fileio import atomic_path, atomic_write_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackingConfig:
    """The config's ``tracking:`` section: which trackers a training logs to, and its snapshots."""

    tracker: str | tuple[str, ...] = "dvclive"  # a key of TRACKERS, or several ("none": no tracker files)
    system_metrics: bool = True  # also log CPU, memory, and GPU utilisation/memory when on a GPU
    snapshot_every_epochs: int = 0  # every K epochs, separate fixed validation excerpts (0: never)
    snapshot_tracks: int = 2  # the excerpts: the first N validation tracks (fewer if there are fewer)
    snapshot_offset_seconds: float = 30.0  # where each excerpt starts (earlier when the track is shorter)
    snapshot_seconds: float = 4.0  # the excerpts' length

    def __post_init__(self) -> None:
        names = (self.tracker,) if isinstance(self.tracker, str) else tuple(self.tracker)
        object.__setattr__(self, "tracker", names[0] if isinstance(self.tracker, str) else names)  # lists: tuple
        for name in names:
            if name not in TRACKERS:
                raise ValueError(f"unknown tracker {name!r}; allowed: {', '.join(TRACKERS)}")
        if not names or len(set(names)) != len(names):
            raise ValueError(f"tracking.tracker: a tracker or a list of different trackers, not {list(names)}")
        if self.snapshot_every_epochs < 0 or self.snapshot_tracks < 1:
            raise ValueError("tracking.snapshot_every_epochs must be >= 0 and tracking.snapshot_tracks >= 1")
        if self.snapshot_offset_seconds < 0 or self.snapshot_seconds <= 0:
            raise ValueError("tracking.snapshot_offset_seconds must be >= 0 and tracking.snapshot_seconds > 0")

    @property
    def trackers(self) -> tuple[str, ...]:
        """The trackers to build ("none" left out)."""
        names = (self.tracker,) if isinstance(self.tracker, str) else self.tracker
        return tuple(name for name in names if name != "none")


class Tracker(Protocol):
    """What the training loop logs to. Names are slash-separated paths (``train/loss``,
    ``valid/nsdr/vocals``); values are Python floats; steps are optimiser steps done."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """The run's settings, once per process (JSON-able values)."""

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Scalars at optimiser step `step` (steps increase between calls, except after resume)."""

    def log_epoch(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        """Scalars of completed epoch `epoch`, which ended at optimiser step `step`."""

    def log_audio(self, name: str, step: int, audio: np.ndarray, sample_rate: int) -> None:
        """Audio `(channels, samples)` float32 in [-1, 1] at step `step` (0: before training)."""

    def log_image(self, name: str, step: int, image: np.ndarray) -> None:
        """An RGB image `(height, width, 3)` uint8 at step `step` (0: before training)."""

    def close(self) -> None:
        """Flush everything; the tracker is not used afterwards."""


class NullTracker:
    """Logs nothing (tracker "none", and every rank but 0)."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        pass

    def log_epoch(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        pass

    def log_audio(self, name: str, step: int, audio: np.ndarray, sample_rate: int) -> None:
        pass

    def log_image(self, name: str, step: int, image: np.ndarray) -> None:
        pass

    def close(self) -> None:
        pass


class MultiTracker:
    """Several trackers at once (config ``tracker: [dvclive, tensorboard]``): each call goes to each."""

    def __init__(self, trackers: Sequence[Tracker]) -> None:
        self.trackers = list(trackers)

    def log_params(self, params: Mapping[str, Any]) -> None:
        for tracker in self.trackers:
            tracker.log_params(params)

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        for tracker in self.trackers:
            tracker.log_scalars(step, values)

    def log_epoch(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        for tracker in self.trackers:
            tracker.log_epoch(epoch, step, values)

    def log_audio(self, name: str, step: int, audio: np.ndarray, sample_rate: int) -> None:
        for tracker in self.trackers:
            tracker.log_audio(name, step, audio, sample_rate)

    def log_image(self, name: str, step: int, image: np.ndarray) -> None:
        for tracker in self.trackers:
            tracker.log_image(name, step, image)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


class DVCLiveTracker:
    """DVCLive's files in `directory`: ``plots/metrics/<name>.tsv`` (columns ``step`` and the
    scalar's last name component), ``metrics.json`` (the latest value of each scalar and the
    step), ``params.yaml``, images ``plots/images/<name>/<step>.png`` (DVCLive's pattern for an
    image slider) and audio ``audio/<name>/<step>.wav`` (16-bit PCM; DVCLive logs no audio).

    DVCLive runs offline and outside any repository: no Git or DVC repository is looked up (its
    ``Live`` would otherwise initialise DVC in a bare Git checkout), no dvc.yaml is written, nothing
    is sent to DVC Studio, and no experiment is saved; ``dvc plots show`` reads the files through
    the project's dvc.yaml. DVCLive's own system monitor is not used: it logs from a thread, at
    whatever step is current, every second (so a step would appear many times); the loop logs
    :class:`SystemMetrics` at its log steps instead.
    """

    def __init__(self, directory: Path, resume_step: int) -> None:
        self.directory = Path(directory)
        if resume_step > 0:
            truncate_logs(self.directory, resume_step)
        else:
            shutil.rmtree(self.directory / "audio", ignore_errors=True)  # DVCLive clears the rest
        self._live = _offline_live_class()(
            str(self.directory), resume=resume_step > 0, save_dvc_exp=False, dvcyaml=False, monitor_system=False
        )
        #: the last step each scalar's file holds: logging it again at or before that step replaces rows
        self._last = {name: steps[-1] for name, steps in _logged_steps(self.directory).items() if steps}

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._live.log_params(json.loads(json.dumps(dict(params), default=str)))  # tuples, paths -> YAML-able

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        self._live.step = step
        for name, value in values.items():
            if self._last.get(name, -1) >= step:  # re-logged after a resume: the new value replaces the old
                _truncate_tsv(_metric_file(self.directory, name), lambda logged: logged < step)
            self._live.log_metric(name, float(value))
            self._last[name] = step
        self._live.make_summary()  # metrics.json

    def log_epoch(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        self.log_scalars(step, values)

    def log_audio(self, name: str, step: int, audio: np.ndarray, sample_rate: int) -> None:
        write_wav(self.directory / "audio" / name / f"{step}.wav", audio, sample_rate)

    def log_image(self, name: str, step: int, image: np.ndarray) -> None:
        self._live.log_image(f"{name}/{step}.png", image)

    def close(self) -> None:
        self._live.make_summary()


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> Path:
    """`audio` (channels, samples) as a 16-bit PCM wav file (clipped to [-1, 1]), atomically.
    16 bits: snapshots are for listening, and are a quarter of the size of 32-bit float files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".wav") as temporary:
        sf.write(temporary, np.clip(np.asarray(audio, dtype=np.float32), -1, 1).T, sample_rate, subtype="PCM_16")
    return path


def _optional(class_name: str) -> Callable[[Path, int], Tracker]:
    """The optional tracker `class_name` of demixbench.train.trackers, imported when it is built."""

    def build(directory: Path, resume_step: int) -> Tracker:
        return getattr(importlib.import_module("demixbench.train.trackers"), class_name)(directory, resume_step)

    return build


#: Trackers by config name: a class taking (directory, resume_step), or None for NullTracker. Each
#: writes into its own folder of the run's directory.
TRACKERS: dict[str, Callable[[Path, int], Tracker] | None] = {
    "dvclive": lambda run_dir, resume_step: DVCLiveTracker(Path(run_dir) / "dvclive", resume_step),
    "tensorboard": lambda run_dir, step: _optional("TensorBoardTracker")(Path(run_dir) / "tensorboard", step),
    "wandb": lambda run_dir, step: _optional("WandbTracker")(Path(run_dir) / "wandb", step),
    "mlflow": lambda run_dir, step: _optional("MLflowTracker")(Path(run_dir) / "mlruns", step),
    "none": None,
}

#: The package (exact pin, as pyproject.toml's extra of the same name) each optional tracker needs.
OPTIONAL_PACKAGES: dict[str, str] = {
    "tensorboard": "tensorboard==2.21.0",
    "wandb": "wandb==0.31.0",
    "mlflow": "mlflow-skinny==3.17.2",
}


def require(module: str, tracker: str) -> Any:
    """Import `module` for the optional tracker `tracker`, or say which config key chose it and
    how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = OPTIONAL_PACKAGES[tracker]
        raise ImportError(
            f"tracking.tracker: {tracker} needs the package {package.split('==')[0]!r}, which is not installed: "
            f"pip install {package} (or pip install -e '.[{tracker}]'; with --sdm conda the training "
            f"rule uses envs/trackers.yaml), or choose another tracker"
        ) from error


def make_tracker(names: str | Sequence[str], run_dir: Path | None, resume_step: int) -> Tracker:
    """The tracker `names` (a key of TRACKERS, or several: a MultiTracker) logging into the run's
    directory `run_dir` (results/<experiment>/models/<model>/seed<N>/ in the workflow), continuing
    the logs of a run resumed at step `resume_step` (0: a fresh run). A NullTracker without a run
    directory or without a tracker ("none")."""
    names = (names,) if isinstance(names, str) else tuple(names)
    for name in names:
        if name not in TRACKERS:
            raise ValueError(f"unknown tracker {name!r}; allowed: {', '.join(TRACKERS)}")
    factories = [TRACKERS[name] for name in names if TRACKERS[name] is not None]
    if not factories or run_dir is None:
        return NullTracker()
    trackers = [factory(Path(run_dir), resume_step) for factory in factories]
    return trackers[0] if len(trackers) == 1 else MultiTracker(trackers)


# ---- resume: drop what was logged after the saved state --------------------------------------------


def _metric_file(directory: Path, name: str) -> Path:
    return directory / "plots" / "metrics" / f"{name}.tsv"


def _read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and complete rows of a DVCLive metric file; a row cut short by a kill is dropped."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()  # written half when the process was killed
    rows = list(csv.reader(lines, delimiter="\t"))
    if not rows:
        return [], []
    header, body = rows[0], rows[1:]
    return header, [row for row in body if len(row) == len(header)]


def _truncate_tsv(path: Path, keep: Callable[[int], bool]) -> list[list[str]]:
    """Rewrite `path` (atomically) with the rows whose step satisfies `keep`; returns them."""
    header, rows = _read_tsv(path)
    if not header:
        return []
    column = header.index("step")
    kept = [row for row in rows if keep(int(row[column]))]
    text = io.StringIO()
    writer = csv.writer(text, delimiter="\t", lineterminator="\n")
    writer.writerow(header)
    writer.writerows(kept)
    atomic_write_text(path, text.getvalue())
    return [header, *kept]


def _logged_steps(directory: Path) -> dict[str, list[int]]:
    """Scalar name -> the steps its file holds, in file order."""
    root = directory / "plots" / "metrics"
    steps = {}
    for path in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        header, rows = _read_tsv(path)
        if header:
            column = header.index("step")
            steps[path.relative_to(root).with_suffix("").as_posix()] = [int(row[column]) for row in rows]
    return steps


def truncate_logs(directory: Path, step: int) -> None:
    """Drop every row logged after `step` from the DVCLive files in `directory` and rewrite
    metrics.json with the latest value of each scalar that remains (what DVCLive resumes from);
    delete the images and audio logged after `step`."""
    root = directory / "plots" / "metrics"
    summary: dict[str, Any] = {}
    for path in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        rows = _truncate_tsv(path, lambda logged: logged <= step)
        if len(rows) > 1:
            node = summary
            *parents, leaf = path.relative_to(root).with_suffix("").parts
            for part in parents:
                node = node.setdefault(part, {})
            value = float(rows[-1][-1])
            node[leaf] = value if math.isfinite(value) else rows[-1][-1]  # DVCLive keeps NaN as "nan"
    summary["step"] = step
    atomic_write_text(directory / "metrics.json", json.dumps(summary, indent=4))
    for pattern in ("plots/images/**/*.png", "audio/**/*.wav"):  # media files are named <step>.<suffix>
        for path in directory.glob(pattern):
            if path.stem.isdigit() and int(path.stem) > step:
                path.unlink()
    log.info("tracker logs in %s continue after step %d", directory, step)


@cache
def _offline_live_class() -> type:
    """dvclive.Live without its repository and DVC Studio integration (see DVCLiveTracker)."""
    from dvclive import Live  # here: importing DVCLive (and DVC) costs every training ~1 s

    class OfflineLive(Live):
        def _init_dvc(self) -> None:  # Live would look up (or even create) a DVC repository here
            self._dvc_file = self._init_dvc_file()

        def _init_studio(self) -> None:
            self._studio_events_to_skip.update({"start", "data", "done"})

        def post_data_to_studio(self) -> None:  # Live re-reads every metric file here, at each sync
            pass

    return OfflineLive


# ---- system metrics ----------------------------------------------------------------------------------


class SystemMetrics:
    """CPU, memory and (on a CUDA device) GPU utilisation and memory, sampled on demand in the
    calling thread: ``sample()`` gives ``system/...`` scalars, CPU percentages averaged since the
    previous sample. Cheap (no GPU synchronisation): psutil, the CUDA caching allocator's counters
    and NVML's utilisation. In a multi-process run rank 0 samples its own GPU."""

    def __init__(self, device: torch.device) -> None:
        import psutil  # here: only runs that log system metrics need it

        self._psutil = psutil
        self._process = psutil.Process()
        self._device = device
        self._gpu_utilisation = device.type == "cuda"
        psutil.cpu_percent(None)  # the first call starts the interval
        self._process.cpu_percent(None)

    def sample(self) -> dict[str, float]:
        memory = self._psutil.virtual_memory()
        values = {
            "system/cpu_percent": self._psutil.cpu_percent(None),
            "system/process_cpu_percent": self._process.cpu_percent(None),
            "system/ram_percent": memory.percent,
            "system/ram_used_gb": memory.used / 1e9,
            "system/process_rss_gb": self._process.memory_info().rss / 1e9,
        }
        if self._device.type == "cuda":
            values["system/gpu_memory_allocated_gb"] = torch.cuda.memory_allocated(self._device) / 1e9
            values["system/gpu_memory_reserved_gb"] = torch.cuda.memory_reserved(self._device) / 1e9
            values["system/gpu_max_memory_allocated_gb"] = torch.cuda.max_memory_allocated(self._device) / 1e9
            if self._gpu_utilisation:
                try:
                    values["system/gpu_utilization_percent"] = float(torch.cuda.utilization(self._device))
                except Exception as error:  # NVML missing or refused (e.g. in some containers)
                    log.warning("GPU utilisation is not logged: %s", error)
                    self._gpu_utilisation = False
        return values
