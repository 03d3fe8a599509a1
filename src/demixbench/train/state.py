"""The rolling state of a run (demucs keeps the same in ``states.py``): what a killed or preempted
training saves in its work directory and resumes from, ending with the weights of an uninterrupted
run (on CPU).

The state holds the model, optimisers, schedulers and loss scalers (their state dicts), the numpy
generator of the sampler, every rank's torch generator states and the :class:`_Progress` of the
run; :func:`fingerprint` decides whether a state on disk belongs to this run. :class:`_StopSignals`
turns Slurm's warning signals into a flag the loop polls, so the state it saves is consistent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from demixbench.fileio import atomic_path
from demixbench.models import ModelSpec
from demixbench.train import distributed
from demixbench.train.config import GANConfig, TrainConfig

log = logging.getLogger(__name__)


class TrainingInterrupted(RuntimeError):
    """Raised after SIGTERM/SIGUSR1: the rolling state was saved; rerunning resumes from it."""


@dataclass
class _Progress:
    """Everything about a run that changes while it trains, apart from modules and optimisers."""

    step: int = 0  # optimiser steps done
    epoch: int = 0  # epochs completed (trained and validated)
    sums: dict[str, float] = field(default_factory=lambda: {"train_loss": 0.0, "train_adv": 0.0, "train_d": 0.0})
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch: int = -1
    best_loss: float = float("inf")
    stale_epochs: int = 0  # epochs since the validation loss last improved
    stopped_early: bool = False


class _StopSignals:
    """Turns SIGTERM and SIGUSR1 (what Slurm sends before preemption or the time limit) into a
    flag the training loop polls between steps, so it can save a consistent state."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():  # handlers only work there
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def fingerprint(model_spec: ModelSpec, config: TrainConfig, gan: GANConfig | None) -> str:
    """What a rolling state must match to be resumed: everything that changes the weights."""
    settings = {
        k: v
        for k, v in asdict(config).items()
        if k
        not in ("threads", "device", "checkpoint_every_steps", "log_every_steps", "loader_workers", "prefetch_batches")
    }
    text = json.dumps(
        {"model": asdict(model_spec), "train": settings, "gan": asdict(gan) if gan else None},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _torch_rng_state(device: torch.device) -> dict[str, torch.Tensor | None]:
    """This process's torch generator states: CPU, and the CUDA device it trains on."""
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def save_state(
    path: Path, fingerprint: str, modules: Mapping[str, Any], rng_state: dict, progress: _Progress, device: torch.device
) -> None:
    """Write the rolling state (rank 0; the other ranks take part in gathering their RNG states)."""
    rng_ranks = distributed.all_gather_object(_torch_rng_state(device)) if distributed.is_distributed() else None
    if distributed.rank() != 0:
        return
    state = {
        "fingerprint": fingerprint,
        "progress": {k: v for k, v in asdict(progress).items() if k != "best_state"},
        "best_state": progress.best_state,
        "rng_numpy": json.dumps(rng_state),
        **{name: module.state_dict() for name, module in modules.items() if module is not None},
    }
    if rng_ranks is None:
        state["rng_torch"] = torch.get_rng_state()
        state["rng_cuda"] = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    else:  # rank 0's as the main state (what a 1-process resume restores), and every rank's
        state["rng_torch"] = rng_ranks[0]["torch"]
        state["rng_cuda"] = [rng_ranks[0]["cuda"]] if rng_ranks[0]["cuda"] is not None else []
        state["rng_ranks"] = rng_ranks
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def load_state(
    path: Path, fingerprint: str, modules: Mapping[str, Any], rng: np.random.Generator, device: torch.device
) -> _Progress | None:
    """Restore a rolling state written with the same settings; None when there is none to resume.

    Every rank of a multi-process run reads the same file and restores its own torch RNG state."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["fingerprint"] != fingerprint:
        log.warning("%s was written with other settings; starting from scratch", path)
        return None
    for name, module in modules.items():
        if module is not None:
            module.load_state_dict(state[name])
    rng.bit_generator.state = json.loads(state["rng_numpy"])
    rng_ranks = state.get("rng_ranks")
    world = distributed.world_size()
    if len(rng_ranks or [None]) != world:
        log.warning(
            "%s was written by a run with %d processes, this one has %d: the data and weights continue, "
            "but the torch random streams (dropout) differ from an uninterrupted run",
            path,
            len(rng_ranks or [None]),
            world,
        )
    if world == 1:
        torch.set_rng_state(state["rng_torch"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
    elif rng_ranks is not None and len(rng_ranks) == world:
        own = rng_ranks[distributed.rank()]
        torch.set_rng_state(own["torch"])
        if own["cuda"] is not None and device.type == "cuda":
            torch.cuda.set_rng_state(own["cuda"], device)
    return _Progress(**state["progress"], best_state=state["best_state"])
