"""The state of every training run of an experiment, read from its files: ``demixbench runs``.

A run is one model and one seed. Its files (see docs/architecture.md for the tree):

``<results>/models/<model>/seed<N>/``
    ``model.json`` + ``model.safetensors`` (or a legacy ``model.pt``): written when the training
    job succeeded. ``history.csv``: the per-epoch learning curves, written at the end.
    ``progress.json``: written atomically by the training (rank 0) while it runs::

        {"state": "training" | "done" | "failed", "step", "total_steps", "epoch" (completed),
         "epochs", "steps_per_second" (or null), "best_valid_nsdr" (or null),
         "valid_nsdr" ({target: nSDR} or null), "started", "updated" (ISO 8601), "host", "pid"}

``<logs>/train_model/<model>/seed<N>.log``
    The job's log; a job that died of an exception ends with its CRITICAL record and traceback
    (demixbench.logs).

The states, decided in this order:

failed
    ``progress.json`` says so, or the log's tail ends with a CRITICAL record or a traceback (no
    ordinary log record after it) and ``progress.json`` was not rewritten after the log, or the run
    is stale (below) and its process, on this host, is gone.
training
    ``progress.json`` says "training" and the run shows a sign of life (the progress file's
    modification time or ``updated``, or the log's modification time, whichever is latest) within
    :func:`stale_after` seconds, or its process is alive on this host. A fresh "training" newer than
    the weights is a re-run and shows as training.
done
    the weights and ``model.json`` exist, or ``progress.json`` says "done".
stalled
    ``progress.json`` says "training", the last sign of life is older than :func:`stale_after`, and
    the process cannot be checked (it ran on another host, e.g. a Slurm node): it may be in a long
    validation, or killed without a word (out of memory, time limit). Read its log, or ``squeue``.
unreadable
    ``progress.json`` is not the format above (the note names the file and the fix) and there are no
    weights.
waiting
    none of these files yet (a run the config lists but whose job has not started).

The ETA is ``(total_steps - step) / steps_per_second`` from ``progress.json``: the training steps
left at the current rate. The validation after each epoch and the final checkpoint are not counted,
so it runs slightly short when validation is long. ``best_valid_nsdr`` is the highest per-epoch
validation nSDR so far (from ``progress.json``, or for a run finished without one, the maximum of
``history.csv``'s ``valid_nsdr``); the checkpoint is chosen by validation *loss*, so its own nSDR
may be lower.

Only the standard library is used, so the command answers in a fraction of a second on a login
node while the pipeline runs.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "STATES",
    "ProgressError",
    "RunStatus",
    "RunsError",
    "collect_runs",
    "finished",
    "format_eta",
    "format_runs",
    "read_progress",
    "runs_to_json",
    "stale_after",
    "summary_line",
]

WAITING, TRAINING, STALLED, DONE, FAILED, UNREADABLE = "waiting", "training", "stalled", "done", "failed", "unreadable"
#: Every state a run can be in, in the order of the summary line.
STATES = (DONE, TRAINING, WAITING, FAILED, STALLED, UNREADABLE)

#: A "training" run without a sign of life for this long is stale (seconds), unless 20 steps at
#: its last rate take longer (see :func:`stale_after`). Ten minutes covers the validation after an
#: epoch, during which nothing is written, on the project's configurations.
STALE_SECONDS = 600.0
#: ... or this many steps at the run's last rate, whichever is longer.
STALE_STEPS = 20

PROGRESS_FILE = "progress.json"
_WEIGHTS = ("model.safetensors", "model.pt")
_SEED_DIR = re.compile(r"^seed(\d+)$")
_LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
_TAIL_BYTES = 64 * 1024
#: Progress rewritten this long after the log's last write means the run outlived the logged error.
_CLOCK_SLACK = 5.0


class RunsError(ValueError):
    """The runs cannot be listed (e.g. the results directory does not exist); names the path."""


class ProgressError(ValueError):
    """A progress.json that is not the training's progress format; names the file and the fix."""


@dataclass(frozen=True)
class RunStatus:
    """What the files say about one run (one model, one seed)."""

    model: str
    seed: int
    state: str
    run_dir: Path
    log: Path | None
    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    total_steps: int | None = None
    steps_per_second: float | None = None
    eta_seconds: float | None = None
    best_valid_nsdr: float | None = None
    updated: datetime | None = None
    #: why a run is failed, stalled or unreadable (the log's error, the file's problem), else "".
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: paths as strings, ``updated`` as ISO 8601, NaN never (None instead)."""
        return {
            "model": self.model,
            "seed": self.seed,
            "state": self.state,
            "epoch": self.epoch,
            "epochs": self.epochs,
            "step": self.step,
            "total_steps": self.total_steps,
            "steps_per_second": self.steps_per_second,
            "eta_seconds": self.eta_seconds,
            "best_valid_nsdr": self.best_valid_nsdr,
            "updated": self.updated.isoformat() if self.updated else None,
            "log": str(self.log) if self.log else None,
            "run_dir": str(self.run_dir),
            "note": self.note,
        }


# ---- reading the files ----------------------------------------------------------------------


def _parse_time(value: Any, path: Path, key: str) -> datetime:
    if not isinstance(value, str):
        raise ProgressError(f"{path}: {key!r} must be an ISO 8601 time, got {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ProgressError(f"{path}: {key!r} must be an ISO 8601 time, got {value!r}") from None
    return moment if moment.tzinfo else moment.astimezone()  # a time without zone is local time


def _check_number(document: dict, key: str, path: Path, integer: bool, optional: bool) -> Any:
    value = document.get(key)
    if value is None and optional:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or value < 0:
        what = "an integer >= 0" if integer else "a number >= 0"
        raise ProgressError(f"{path}: {key!r} must be {what}{' or null' if optional else ''}, got {value!r}")
    return value


def read_progress(path: Path) -> dict[str, Any]:
    """The progress file at ``path``, checked: the keys of the format (module docstring) with
    ``started`` and ``updated`` as aware datetimes. Raises ProgressError naming the file, the key
    and the fix; FileNotFoundError when there is none."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    fix = "it is written by the training; delete it if an older version left it (the next training rewrites it)"
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ProgressError(f"{path}: not valid JSON ({error}); {fix}") from None
    if not isinstance(document, dict):
        raise ProgressError(f"{path}: expected a JSON object, got {type(document).__name__}; {fix}")
    try:
        state = document.get("state")
        if state not in (TRAINING, DONE, FAILED):
            raise ProgressError(f"{path}: 'state' must be 'training', 'done' or 'failed', got {state!r}")
        checked: dict[str, Any] = {"state": state}
        for key in ("step", "total_steps", "epoch", "epochs"):
            checked[key] = _check_number(document, key, path, integer=True, optional=False)
        checked["steps_per_second"] = _check_number(document, "steps_per_second", path, integer=False, optional=True)
        checked["best_valid_nsdr"] = _nsdr_number(document, "best_valid_nsdr", path)
        checked["updated"] = _parse_time(document.get("updated"), path, "updated")
        checked["started"] = (
            _parse_time(document["started"], path, "started") if document.get("started") is not None else None
        )
        checked["host"] = document.get("host") if isinstance(document.get("host"), str) else None
        pid = document.get("pid")
        checked["pid"] = pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None
        checked["valid_nsdr"] = document.get("valid_nsdr") if isinstance(document.get("valid_nsdr"), dict) else None
    except ProgressError as error:
        raise ProgressError(f"{error}; {fix}") from None
    return checked


def _nsdr_number(document: dict, key: str, path: Path) -> float | None:
    """nSDR may be negative, unlike the counters: any finite number or null."""
    value = document.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProgressError(f"{path}: {key!r} must be a number or null, got {value!r}")
    return float(value)


def _read_json(path: Path) -> dict | None:
    """A JSON object, or None when the file is missing, being replaced or not an object."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def _best_from_history(path: Path) -> tuple[int | None, float | None]:
    """(epochs in history.csv, the highest valid_nsdr) or Nones when it is missing or has no such column."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, csv.Error, UnicodeDecodeError):
        return None, None
    values = []
    for row in rows:
        try:
            value = float(row.get("valid_nsdr") or "nan")
        except ValueError:
            continue
        if math.isfinite(value):
            values.append(value)
    return (len(rows) or None), (max(values) if values else None)


def _log_failure(path: Path | None) -> str | None:
    """The error when the log's tail ends with a failure: a CRITICAL record, or a traceback, with
    no ordinary record after it. Its message (the CRITICAL record's, or the traceback's last line),
    or None."""
    if path is None:
        return None
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - _TAIL_BYTES))
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    failure, message = None, ""
    for index, line in enumerate(lines):
        record = _LOG_RECORD.match(line)
        if record and record.group(1) == "CRITICAL":
            failure, message = index, line[record.end() :].strip()
        elif line.startswith("Traceback (most recent call last):") and failure is None:
            failure = index  # a traceback printed without a record (e.g. by a torchrun worker)
        elif record:  # an ordinary record: whatever failed before it, the job went on
            failure, message = None, ""
    if failure is None:
        return None
    if not message:  # a bare traceback (e.g. a torchrun worker): its last non-empty line is the error
        tail = [line.strip() for line in lines[failure:] if line.strip()]
        message = tail[-1] if tail else "traceback"
    return message if len(message) <= 240 else message[:237] + "..."


def _mtime(path: Path | None) -> float | None:
    try:
        return path.stat().st_mtime if path is not None else None
    except OSError:
        return None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process with that id: alive
        return True
    except OSError:
        return False
    return True


def _this_host(host: str | None) -> bool:
    if not host:
        return False
    names = {socket.gethostname(), socket.getfqdn()}
    return host in names or host.split(".")[0] in {name.split(".")[0] for name in names}


def stale_after(steps_per_second: float | None) -> float:
    """Seconds without a sign of life after which a "training" run is stale: STALE_SECONDS, or
    STALE_STEPS steps at its last rate when those take longer."""
    if steps_per_second and steps_per_second > 0:
        return max(STALE_SECONDS, STALE_STEPS / steps_per_second)
    return STALE_SECONDS


# ---- one run --------------------------------------------------------------------------------


def _status(model: str, seed: int, run_dir: Path, log_file: Path | None, now: datetime) -> RunStatus:
    base = {"model": model, "seed": seed, "run_dir": run_dir, "log": log_file}
    meta_file = run_dir / "model.json"
    done = meta_file.is_file() and any((run_dir / name).is_file() for name in _WEIGHTS)
    progress_file = run_dir / PROGRESS_FILE
    progress, problem = None, ""
    try:
        progress = read_progress(progress_file)
    except FileNotFoundError:
        pass
    except (ProgressError, OSError, UnicodeDecodeError) as error:
        problem = str(error) if isinstance(error, ProgressError) else f"{progress_file}: cannot be read ({error})"
    log_mtime, progress_mtime = _mtime(log_file), _mtime(progress_file)
    failure = _log_failure(log_file)
    if failure is not None and progress_mtime is not None and log_mtime is not None:
        if progress_mtime > log_mtime + _CLOCK_SLACK:
            failure = None  # the progress moved on after the logged error: a later attempt runs

    if progress is not None:
        fields = {
            "epoch": progress["epoch"],
            "epochs": progress["epochs"],
            "step": progress["step"],
            "total_steps": progress["total_steps"],
            "steps_per_second": progress["steps_per_second"],
            "best_valid_nsdr": progress["best_valid_nsdr"],
            "updated": progress["updated"],
        }
    else:
        fields = _finished_fields(run_dir) if done else {}
        if progress_mtime is None and log_mtime is not None:
            fields["updated"] = datetime.fromtimestamp(log_mtime, UTC)

    if progress is not None and progress["state"] == FAILED:
        return RunStatus(**base, **fields, state=FAILED, note=failure or f"{progress_file} says failed; see the log")
    if failure is not None and not (done and _mtime(meta_file) is not None and _mtime(meta_file) >= (log_mtime or 0)):
        return RunStatus(**base, **fields, state=FAILED, note=failure)
    if progress is not None and progress["state"] == TRAINING:
        meta_mtime = _mtime(meta_file)
        rerun = not done or (progress_mtime is not None and meta_mtime is not None and progress_mtime > meta_mtime)
        if rerun:
            return _training(base, fields, progress, progress_mtime, log_mtime, now)
    if done or (progress is not None and progress["state"] == DONE):
        return RunStatus(**base, **fields, state=DONE, note=problem)
    if problem:
        return RunStatus(**base, **fields, state=UNREADABLE, note=problem)
    return RunStatus(**base, **fields, state=WAITING)


def _training(
    base: dict, fields: dict, progress: dict, progress_mtime: float | None, log_mtime: float | None, now: datetime
) -> RunStatus:
    """A run whose progress says "training": training, stalled or (its process gone) failed."""
    signs = [progress["updated"].timestamp()] + [t for t in (progress_mtime, log_mtime) if t is not None]
    silent = now.timestamp() - max(signs)
    rate = progress["steps_per_second"]
    eta = None
    if rate and rate > 0:
        eta = max(0, progress["total_steps"] - progress["step"]) / rate
    if silent <= stale_after(rate):
        return RunStatus(**base, **fields, state=TRAINING, eta_seconds=eta)
    host, pid = progress["host"], progress["pid"]
    quiet = f"no progress for {_age(silent)}"
    if _this_host(host) and pid is not None:
        if _process_alive(pid):
            return RunStatus(**base, **fields, state=TRAINING, eta_seconds=eta, note=f"{quiet}; process {pid} is alive")
        return RunStatus(
            **base, **fields, state=FAILED, note=f"{quiet} and process {pid} on {host} is gone (killed?); see the log"
        )
    where = f"on {host}" if host else "on an unknown host"
    return RunStatus(
        **base, **fields, state=STALLED, note=f"{quiet}; process {pid} {where} cannot be checked from here"
    )


def _finished_fields(run_dir: Path) -> dict[str, Any]:
    """epochs, steps and the best nSDR of a finished run without progress.json: model.json's
    config and counters, history.csv's epochs and nSDR."""
    meta = _read_json(run_dir / "model.json") or {}
    train = (meta.get("config") or {}).get("train") or {}
    epochs, per_epoch = train.get("epochs"), train.get("steps_per_epoch")
    ran, best = _best_from_history(run_dir / "history.csv")
    total = epochs * per_epoch if isinstance(epochs, int) and isinstance(per_epoch, int) else None
    steps = meta.get("steps") if isinstance(meta.get("steps"), int) else None
    return {
        "epoch": ran,
        "epochs": epochs if isinstance(epochs, int) else None,
        "step": steps,
        "total_steps": total,
        "best_valid_nsdr": best,
        "updated": datetime.fromtimestamp(_mtime(run_dir / "model.json") or 0, UTC),
    }


# ---- every run ------------------------------------------------------------------------------


def _found_runs(results_dir: Path, logs_dir: Path | None) -> list[tuple[str, int]]:
    """(model, seed) of every run directory under results/models and every job log under logs/train_model."""
    found = set()
    for directory in sorted((results_dir / "models").glob("*/seed*")):
        match = _SEED_DIR.match(directory.name)
        if match and directory.is_dir():
            found.add((directory.parent.name, int(match.group(1))))
    if logs_dir is not None:
        for path in sorted((logs_dir / "train_model").glob("*/seed*.log")):
            match = _SEED_DIR.match(path.stem)
            if match:
                found.add((path.parent.name, int(match.group(1))))
    return sorted(found)


def collect_runs(
    results_dir: Path,
    logs_dir: Path | None,
    expected: Sequence[tuple[str, int]] | None = None,
    now: datetime | None = None,
) -> list[RunStatus]:
    """The status of each run of the experiment at ``results_dir`` (``results/<experiment>``),
    its job logs under ``logs_dir`` (``logs/<experiment>``; None: no log is read).

    ``expected``: the (model, seed) pairs the workflow trains, in that order (the config's models
    times its seeds); those without files are "waiting", and other directories are left out.
    None: every run directory and training log found, sorted by model and seed. ``now`` (aware;
    default: the current time) is what staleness is measured against.

    Raises RunsError when ``expected`` is None and ``results_dir`` does not exist.
    """
    results_dir = Path(results_dir)
    logs_dir = Path(logs_dir) if logs_dir is not None else None
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.astimezone()
    if expected is None:
        if not results_dir.is_dir():
            raise RunsError(
                f"{results_dir}: no such directory; no run of this experiment has started "
                "(or give the results directory of another experiment, e.g. results/demo)"
            )
        expected = _found_runs(results_dir, logs_dir)
    runs = []
    for model, seed in expected:
        log_file = logs_dir / "train_model" / model / f"seed{seed}.log" if logs_dir is not None else None
        runs.append(_status(model, int(seed), results_dir / "models" / model / f"seed{seed}", log_file, now))
    return runs


def finished(statuses: Iterable[RunStatus]) -> bool:
    """True when every run is done or failed (nothing left to watch)."""
    return all(status.state in (DONE, FAILED) for status in statuses)


# ---- output ---------------------------------------------------------------------------------


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.0f}d"


def format_eta(seconds: float | None) -> str:
    """h:mm, rounded up to the minute ("0:01" for 10 s); "-" when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    minutes = math.ceil(seconds / 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


def summary_line(statuses: Sequence[RunStatus]) -> str:
    """The counts: "3 done, 1 training, 2 waiting, 0 failed", plus stalled and unreadable runs when there are any."""
    counts = {state: sum(status.state == state for status in statuses) for state in STATES}
    always = (DONE, TRAINING, WAITING, FAILED)
    return ", ".join(f"{counts[state]} {state}" for state in STATES if state in always or counts[state])


def _of(done: int | None, total: int | None) -> str:
    return f"{'-' if done is None else done}/{'-' if total is None else total}"


def format_runs(statuses: Sequence[RunStatus], now: datetime | None = None) -> str:
    """An aligned text table, one row per run, then the notes (why a run failed, stalled or is
    unreadable) and the summary line."""
    now = now or datetime.now(UTC)
    header = ("MODEL", "SEED", "STATE", "EPOCH", "STEP", "STEPS/S", "ETA", "BEST nSDR", "UPDATED", "LOG")
    rows = []
    for run in statuses:
        rows.append(
            (
                run.model,
                str(run.seed),
                run.state,
                _of(run.epoch, run.epochs),
                _of(run.step, run.total_steps),
                f"{run.steps_per_second:.2f}" if run.steps_per_second is not None else "-",
                format_eta(run.eta_seconds),
                f"{run.best_valid_nsdr:.2f}" if run.best_valid_nsdr is not None else "-",
                f"{_age((now - run.updated).total_seconds())} ago" if run.updated is not None else "-",
                str(run.log) if run.log is not None else "-",
            )
        )
    if not rows:
        return f"no training runs yet\n{summary_line(statuses)}\n"
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    right = {1, 3, 4, 5, 6, 7}  # numbers align right
    lines = [
        "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
        for row in (header, *rows)
    ]
    notes = [f"{run.model} seed{run.seed} ({run.state}): {run.note}" for run in statuses if run.note]
    return "\n".join([*lines, *([""] + notes if notes else []), "", summary_line(statuses)]) + "\n"


def runs_to_json(statuses: Sequence[RunStatus], now: datetime | None = None, indent: int | None = 2) -> str:
    """``{"time", "summary": {state: count}, "runs": [RunStatus.to_dict(), ...]}`` as JSON."""
    now = now or datetime.now(UTC)
    document = {
        "time": now.isoformat(),
        "summary": {state: sum(status.state == state for status in statuses) for state in STATES},
        "runs": [status.to_dict() for status in statuses],
    }
    return json.dumps(document, indent=indent, allow_nan=False)
