"""Multi-process (DistributedDataParallel) training helpers.

A multi-process run is started by torchrun (see `launch`), which starts one worker per GPU and
describes it in the environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, ...). A worker joins
the process group with `init_process_group`; everything here also works, as a 1-process run, in a
process that did not (rank 0 of world size 1).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from demixbench.constraints import check_batch_split

logger = logging.getLogger(__name__)

#: Signals `launch` forwards to torchrun. torchrun passes the signals in _TORCHRUN_SIGNALS on to
#: the workers (by default all but SIGUSR1, which Slurm sends before the time limit with --signal).
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
_TORCHRUN_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"


def env_world_size() -> int:
    """The number of processes torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """This worker's index on its machine: the GPU it uses (0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_distributed() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0: the process that logs and writes files."""
    return rank() == 0


def worker_device(device: torch.device) -> torch.device:
    """The device of this worker: cuda:LOCAL_RANK for a CUDA run under torchrun, else `device`."""
    if device.type == "cuda" and device.index is None and env_world_size() > 1:
        return torch.device("cuda", local_rank())
    return device


def init_process_group(device: torch.device) -> bool:
    """Join the process group described by torchrun's environment ("nccl" on CUDA, "gloo" on CPU).

    Does nothing outside torchrun (WORLD_SIZE unset or 1) or when the group is already initialised.
    Returns whether this is a multi-process run.
    """
    if env_world_size() <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={env_world_size()} but this torch build has no torch.distributed")
    if not dist.is_initialized():
        device = worker_device(device)
        if device.type == "cuda":
            torch.cuda.set_device(device)  # before any collective: NCCL and *_object collectives use it
            dist.init_process_group(backend="nccl", device_id=device)
        else:
            dist.init_process_group(backend="gloo")
        logger.info(
            "joined process group: rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(), dist.get_backend()
        )
    return is_distributed()


def cleanup() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    """Where tensors for a collective must live: the current GPU for NCCL, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_max(value: int) -> int:
    """The largest `value` over all ranks (the value itself in a 1-process run)."""
    if not is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def all_reduce_mean(values: Sequence[float]) -> list[float]:
    """The mean over all ranks of each of `values` (the values themselves in a 1-process run)."""
    if not is_distributed():
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return (tensor / dist.get_world_size()).tolist()


def all_gather_object(value: Any) -> list[Any]:
    """[value of rank 0, value of rank 1, ...] on every rank ([value] in a 1-process run)."""
    if not is_distributed():
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def barrier() -> None:
    """Wait for all ranks (nothing in a 1-process run)."""
    if is_distributed():
        dist.barrier()


def local_batch_size(batch_size: int, world_size: int) -> int:
    """The per-rank share of a global batch, which must split evenly over the ranks."""
    check_batch_split(batch_size, world_size)
    return batch_size // world_size


def torchrun_command(args_file: Path, nproc: int) -> list[str]:
    """torchrun, bound to this interpreter, running `python -m demixbench.train args_file` on `nproc` workers."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "demixbench.train",
        str(args_file),
    ]


def launch(args_file: Path, nproc: int, log: Path | None = None) -> None:
    """Run the training described by `args_file` (see demixbench.train.worker) on `nproc` workers.

    SIGTERM and SIGUSR1 sent to this process are forwarded to torchrun, which passes them on to
    the workers (SIGUSR1 too: it is added to torchrun's --signals-to-handle through the
    PET_SIGNALS_TO_HANDLE environment variable unless that is set): they save the rolling state at
    the same step and stop, so rerunning resumes. torchrun kills workers that are still running
    30 s after the signal; those resume from the last state saved before it.

    Args:
        args_file: JSON written by demixbench.train.worker.write_arguments.
        nproc: number of workers (GPUs).
        log: file that everything torchrun and the workers print is appended to (stdout and
            stderr); None: they print to this process's stdout and stderr.
    Raises:
        RuntimeError naming torchrun's exit code when the run fails or was stopped by a signal.
    """
    if nproc < 1:
        raise ValueError(f"nproc must be at least 1, got {nproc}")
    command = torchrun_command(args_file, nproc)
    env = dict(os.environ)
    env.setdefault("PET_SIGNALS_TO_HANDLE", _TORCHRUN_SIGNALS)  # torchrun --signals-to-handle
    forwarded: list[int] = []  # every signal received
    pending: list[int] = []  # received before torchrun was started
    child: subprocess.Popen | None = None

    def forward(signum: int, frame: Any) -> None:
        forwarded.append(signum)
        if child is None:
            pending.append(signum)
        elif child.poll() is None:
            child.send_signal(signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():  # handlers only work there
        previous = {signum: signal.signal(signum, forward) for signum in FORWARDED_SIGNALS}
    if log is not None:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
    sink = open(log, "a") if log is not None else None  # noqa: SIM115 (closed below)
    try:
        message = f"launching {nproc} training processes: {' '.join(command)}"
        logger.info(message)
        if sink is not None:
            sink.write(message + "\n")
            sink.flush()
        child = subprocess.Popen(command, env=env, stdout=sink, stderr=sink)
        for signum in pending:
            child.send_signal(signum)
        try:
            returncode = child.wait()
        except BaseException:  # e.g. KeyboardInterrupt: let torchrun stop its workers first
            if child.poll() is None:
                child.terminate()
            child.wait(timeout=60)
            raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if sink is not None:
            sink.close()
    if returncode != 0:
        names = sorted({signal.Signals(s).name for s in forwarded})
        reason = (
            f" after {'/'.join(names)} was forwarded to it (rerun to resume from the saved rolling state)"
            if names
            else ""
        )
        where = f"; see {log}" if log is not None else ""
        raise RuntimeError(
            f"training with {nproc} processes failed: torchrun exited with code {returncode}{reason}{where}"
        )
