"""``progress.json`` in a run's directory: where a training stands, for ``demixbench runs`` and for
anyone looking at a run directory while it trains.

The file is rewritten atomically (rank 0 only) when the run starts, at every log step, after every
epoch and when the run ends::

    {"state": "training" | "done" | "failed", "step": 1200, "total_steps": 5000,
     "epoch": 3, "epochs": 10, "steps_per_second": 4.1, "best_valid_nsdr": 5.2,
     "valid_nsdr": {"drums": 5.0, ...}, "started": "2025-01-01T12:00:00+00:00",
     "updated": "2025-01-01T12:05:00+00:00", "host": "node12", "pid": 4242}

``epoch`` counts completed epochs; ``steps_per_second`` is the average since the previous update
(null until measured); ``best_valid_nsdr`` is the highest mean validation nSDR so far and
``valid_nsdr`` the last epoch's per target (null before the first epoch). ``started`` is when the
run first started: a resumed run keeps the time of the run it continues. "failed" is written when
training stops with an exception (including a SIGTERM/SIGUSR1 stop, after which a rerun resumes).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from demixbench.fileio import atomic_write_text

log = logging.getLogger(__name__)

#: The values of "state".
STATES = ("training", "done", "failed")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ProgressWriter:
    """Writes `path` (progress.json) for one run of `total_steps` steps in `epochs` epochs."""

    def __init__(self, path: Path, total_steps: int, epochs: int, resumed: bool) -> None:
        self.path = Path(path)
        self.total_steps, self.epochs = total_steps, epochs
        self.started = (self._previous_start() if resumed else None) or _now()

    def _previous_start(self) -> str | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8")).get("started")
        except (OSError, ValueError, AttributeError):
            return None

    def write(
        self,
        state: str,
        step: int,
        epoch: int,
        steps_per_second: float | None = None,
        best_valid_nsdr: float | None = None,
        valid_nsdr: dict[str, float] | None = None,
    ) -> None:
        if state not in STATES:
            raise ValueError(f"unknown run state {state!r}; allowed: {', '.join(STATES)}")
        record: dict[str, Any] = {
            "state": state,
            "step": int(step),
            "total_steps": self.total_steps,
            "epoch": int(epoch),
            "epochs": self.epochs,
            "steps_per_second": _finite(steps_per_second),
            "best_valid_nsdr": _finite(best_valid_nsdr),
            "valid_nsdr": {t: _finite(v) for t, v in valid_nsdr.items()} if valid_nsdr is not None else None,
            "started": self.started,
            "updated": _now(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        atomic_write_text(self.path, json.dumps(record, indent=1) + "\n")


def _finite(value: float | None) -> float | None:
    """JSON has no NaN: a value that is not finite is written as null."""
    if value is None:
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None
