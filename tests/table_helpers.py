"""Helpers of the table tests (test_table*.py, test_scorefile.py, test_cli.py): synthetic score
directories in the museval format, and the SiSEC 2018 fixture directory."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from demixbench import TARGETS
from demixbench.table.model import Leaderboard

SISEC18 = Path(__file__).parent / "data" / "sisec18"


def write_track(
    directory: Path,
    track: str,
    frames: Mapping[str, Sequence[float]],
    *,
    gz: bool = False,
    metric: str = "SDR",
    nsdr: Mapping[str, float] | None = None,
    hop: float = 1.0,
) -> Path:
    """Write one museval-style score file (1 s frames every ``hop`` s); NaN is written as the JSON
    NaN literal, like museval. ``nsdr`` adds the project's top-level ``"nsdr"`` object."""
    directory.mkdir(parents=True, exist_ok=True)
    document: dict = {
        "targets": [
            {
                "name": name,
                "frames": [
                    {"time": i * hop, "duration": 1.0, "metrics": {metric: value, "SIR": 0.0}}
                    for i, value in enumerate(values)
                ],
            }
            for name, values in frames.items()
        ]
    }
    if nsdr is not None:
        document["nsdr"] = dict(nsdr)
    text = json.dumps(document)  # allow_nan=True: writes NaN
    if gz:
        path = directory / f"{track}.json.gz"
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path = directory / f"{track}.json"
        path.write_text(text, encoding="utf-8")
    return path


def frames_with_median(value: float) -> list[float]:
    """Frames whose NaN-skipping median is ``value`` (a NaN frame included; np.median would give NaN)."""
    return [value - 3.0, math.nan, value, value + 1.0, math.nan]


def write_run(directory: Path, track_values: Mapping[str, Mapping[str, float]], *, gz: bool = False) -> Path:
    """A score directory: track -> target -> wanted per-track median over frames."""
    for track, per_target in track_values.items():
        write_track(directory, track, {t: frames_with_median(v) for t, v in per_target.items()}, gz=gz)
    return directory


def uniform_run(
    directory: Path, medians: Mapping[str, Sequence[float]], tracks: Sequence[str] = ("a", "b", "c")
) -> Path:
    """A score directory whose per-track medians for target t are ``medians[t][i]`` on track i."""
    per_track = {track: {t: medians[t][i] for t in medians} for i, track in enumerate(tracks)}
    return write_run(directory, per_track)


def write_values(
    directory: Path,
    values: np.ndarray,
    *,
    targets: Sequence[str] = TARGETS,
    nsdr: np.ndarray | None = None,
    metric: str = "SDR",
) -> Path:
    """A score directory whose per-track medians over frames are ``values[track, target]`` (tracks
    t00, t01, ...), optionally with per-track nSDR ``nsdr[track, target]``."""
    for index, row in enumerate(np.asarray(values, dtype=float)):
        extra = None if nsdr is None else dict(zip(targets, map(float, nsdr[index]), strict=True))
        frames = {target: frames_with_median(float(value)) for target, value in zip(targets, row, strict=True)}
        write_track(directory, f"t{index:02d}", frames, metric=metric, nsdr=extra)
    return directory


def seeded_runs(root: Path, name: str, values: np.ndarray, *, nsdr: np.ndarray | None = None) -> tuple[Path, ...]:
    """One score directory per seed: values[seed, track, target] (and nsdr[seed, track, target])."""
    return tuple(
        write_values(root / name / f"seed{s}", values[s], nsdr=None if nsdr is None else nsdr[s])
        for s in range(values.shape[0])
    )


def cell(table: Leaderboard, row: str, target: str, aggregation: str = "median") -> pd.Series:
    """The tidy-data row for (row, target) of one aggregation's table."""
    frame = table.results[aggregation]
    selected = frame[(frame["row"] == row) & (frame["target"] == target)]
    assert len(selected) == 1, selected
    return selected.iloc[0]


# Per-track medians (tracks a, b, c) -> median over tracks is the middle value.
SEED0 = {
    "drums": [0.0, 2.0, 9.0],
    "bass": [1.0, 1.0, 1.0],
    "other": [-5.0, 3.0, 4.0],
    "vocals": [6.0, 7.0, 8.0],
}
SEED1 = {
    "drums": [4.0, 4.0, 4.0],
    "bass": [0.0, 2.0, 3.0],
    "other": [1.0, 2.0, 3.0],
    "vocals": [5.0, 6.0, 7.0],
}
# Medians over tracks per seed: seed0 drums 2, bass 1, other 3, vocals 7 (All 3.25);
#                               seed1 drums 4, bass 2, other 2, vocals 6 (All 3.5).
