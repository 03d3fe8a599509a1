"""`python -m demixbench.train ARGS.json`: one `train(...)` call described by a JSON file.

What torchrun runs in every worker of a multi-process run (see demixbench.train.distributed.launch);
it works as a plain 1-process command too. The file holds JSON-able values only:

    {"model": {"arch": ..., "args": {...}},           # ModelSpec
     "train": {"seed": ..., ...},                      # TrainConfig fields
     "gan": {...} or null,                             # GANConfig fields
     "train_dirs": [...], "valid_dirs": [...],         # decoded track directories
     "checkpoint": ".../model.safetensors", "history_csv": ".../history.csv",
     "input_stats": ".../stats.npz" or null, "stft": {"n_fft": ..., "hop_length": ...} or null,
     "record": {...} or null, "work_dir": ... or null, "provenance": {...} or null,
     "run_dir": ... or null, "tracking": {"tracker": ..., "system_metrics": ..., ...} or null}
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from demixbench.audio import STFTConfig
from demixbench.costs import Cost, CostMeter
from demixbench.data.stats import load_input_stats
from demixbench.devices import resolve_device
from demixbench.fileio import atomic_write_text
from demixbench.logs import setup_logging
from demixbench.models import ModelSpec
from demixbench.models.checkpoint import add_metadata
from demixbench.train import distributed
from demixbench.train.config import GANConfig, TrainConfig
from demixbench.train.loop import train
from demixbench.train.tracking import TrackingConfig

log = logging.getLogger(__name__)

REQUIRED = ("model", "train", "train_dirs", "valid_dirs", "checkpoint", "history_csv")


def _check_required(arguments: dict[str, Any]) -> None:
    missing = [key for key in REQUIRED if key not in arguments]
    if missing:
        raise ValueError(f"training arguments lack {', '.join(missing)}")


def write_arguments(path: Path, arguments: dict[str, Any]) -> Path:
    """Write the arguments of one training (the format above) as JSON, atomically; returns `path`."""
    _check_required(arguments)
    atomic_write_text(Path(path), json.dumps(arguments, indent=1))
    return Path(path)


def train_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of `train` for arguments in the format above (input stats loaded)."""
    _check_required(arguments)
    gan = arguments.get("gan")
    stats = arguments.get("input_stats")
    if stats is not None and not arguments.get("stft"):
        raise ValueError("input_stats needs the STFT they were computed with ('stft': {n_fft, hop_length})")
    work_dir = arguments.get("work_dir")
    return {
        "model_spec": ModelSpec(arch=arguments["model"]["arch"], args=dict(arguments["model"].get("args", {}))),
        "config": TrainConfig(**arguments["train"]),
        "train_dirs": [Path(p) for p in arguments["train_dirs"]],
        "valid_dirs": [Path(p) for p in arguments["valid_dirs"]],
        "checkpoint": Path(arguments["checkpoint"]),
        "history_csv": Path(arguments["history_csv"]),
        "input_stats": load_input_stats(Path(stats), STFTConfig(**arguments["stft"])) if stats is not None else None,
        "gan": GANConfig(**gan) if gan else None,
        "record": arguments.get("record"),
        "work_dir": Path(work_dir) if work_dir is not None else None,
        "provenance": arguments.get("provenance"),
        "run_dir": Path(arguments["run_dir"]) if arguments.get("run_dir") is not None else None,
        "tracking": TrackingConfig(**arguments["tracking"]) if arguments.get("tracking") else None,
    }


def measured_training(
    run: Callable[[], object], checkpoint: Path, gpus: int, ledger: Path | None = None, key: str = ""
) -> Cost:
    """Run `run` (one training that writes `checkpoint`: `train` in this process, or the torchrun
    launch of a multi-GPU run) under a :class:`demixbench.costs.CostMeter` and add what it cost to
    the checkpoint's metadata: ``model.json["costs"]`` (:meth:`demixbench.costs.Cost.to_dict`:
    wall, CPU and GPU hours, energy or why it was not measured, hardware).

    Args:
        gpus: the GPUs the training uses (:func:`demixbench.costs.gpus_used`).
        ledger: where the cost of interrupted attempts is kept until the run finishes (e.g.
            ``<work_dir>/costs.json``, beside the rolling state it resumes from); None: this
            attempt only.
        key: what the attempts in the ledger must have been training
            (:func:`demixbench.costs.arguments_key` of the training's arguments).
    Returns:
        The cost, earlier interrupted attempts included.
    """
    with CostMeter(gpus, ledger=ledger, key=key) as meter:
        run()
    cost = meter.cost
    add_metadata(Path(checkpoint), {"costs": cost.to_dict()})
    log.info(
        "training cost %.3f h wall, %.3f CPU-h, %.3f GPU-h, energy %s",
        cost.wall_s / 3600,
        cost.cpu_s / 3600,
        cost.gpu_s / 3600,
        cost.energy_text(),
    )
    return cost


def _setup_logging() -> None:
    """Rank 0 logs everything, the other ranks warnings and errors, each line naming its rank."""
    world, rank = distributed.env_world_size(), int(os.environ.get("RANK", "0"))
    setup_logging(level=logging.INFO if rank == 0 else logging.WARNING)
    if world > 1:
        formatter = logging.Formatter(f"%(asctime)s %(levelname)s [rank {rank}/{world}] %(name)s: %(message)s")
        for handler in logging.getLogger().handlers:
            handler.setFormatter(formatter)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        raise SystemExit("usage: python -m demixbench.train ARGS.json")
    _setup_logging()
    kwargs = train_arguments(json.loads(Path(argv[0]).read_text()))
    distributed.init_process_group(distributed.worker_device(resolve_device(kwargs["config"].device)))
    try:
        train(**kwargs)
    finally:
        distributed.cleanup()
