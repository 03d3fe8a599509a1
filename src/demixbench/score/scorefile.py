"""The museval / SiSEC JSON score files: the one definition of their format, written by the
scoring stage and read by the table stage.

A score file holds one track's framewise metrics in the museval JSON format, optionally gzipped
(``<track name>.json`` or ``<track name>.json.gz``)::

    {"targets": [{"name": "drums",
                  "frames": [{"time": 0.0, "duration": 1.0,
                              "metrics": {"SDR": 1.2, "SIR": ..., "SAR": ..., "ISR": ...}}, ...]},
                 ...],
     "nsdr": {"drums": 5.1, ...}}

``"nsdr"`` (the MDX challenge's "new SDR" over the whole track, see
:func:`demixbench.score.track.nsdr`) is written by this project's scoring; imported SiSEC 2018 files
lack it. One directory of score files is one run (one seed) of a method. Results of published
systems (SiSEC 2018) and of this project are read by the same code.

This module is light (json, gzip, numpy): the ``demixbench`` command line imports :data:`METRICS`
from it.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from demixbench.fileio import atomic_write_bytes

__all__ = ["METRICS", "find_score_files", "load_track_scores", "parse_score_file", "write_scores"]

#: The museval metrics, in museval's order (``museval.evaluate`` returns SDR, ISR, SIR, SAR): the
#: metrics a table can aggregate and ``demixbench table --metric`` accepts.
METRICS: tuple[str, ...] = ("SDR", "ISR", "SIR", "SAR")

#: Score file suffixes, longest first so that ``.json.gz`` is not read as ``.json``.
_SUFFIXES: tuple[str, ...] = (".json.gz", ".json")


# --------------------------------------------------------------------------------------------------
# Writing score files
# --------------------------------------------------------------------------------------------------


def write_scores(path: Path, scores: dict) -> None:
    """Write museval-format scores as JSON (gzipped when `path` ends in .gz), atomically.

    NaN is written as the JSON literal NaN, as museval and the SiSEC 2018 submissions do.
    """
    path = Path(path)
    text = json.dumps(scores, indent=1, allow_nan=True).encode()
    if path.suffix == ".gz":
        # No name and mtime=0 in the gzip header: identical scores give byte-identical files.
        text = gzip.compress(text, mtime=0)
    atomic_write_bytes(path, text)


# --------------------------------------------------------------------------------------------------
# Reading score files
# --------------------------------------------------------------------------------------------------


def _track_name(path: Path) -> str | None:
    """Track name of a score file (file name without ``.json``/``.json.gz``), None for other files."""
    name = path.name
    if name.startswith("."):  # hidden and temporary files
        return None
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def find_score_files(scores_dir: Path) -> dict[str, Path]:
    """Map track name -> score file for every ``*.json``/``*.json.gz`` file in ``scores_dir``.

    Raises ValueError when ``scores_dir`` is not a directory, holds no score files, or holds two
    files for one track (``x.json`` and ``x.json.gz``).
    """
    scores_dir = Path(scores_dir)
    if not scores_dir.is_dir():
        raise ValueError(f"score directory {scores_dir} does not exist or is not a directory")
    files: dict[str, Path] = {}
    for path in sorted(scores_dir.iterdir()):
        track = _track_name(path)
        if track is None or not path.is_file():
            continue
        if track in files:
            raise ValueError(f"{scores_dir}: track {track!r} has two score files: {files[track].name}, {path.name}")
        files[track] = path
    if not files:
        raise ValueError(f"{scores_dir}: no score files (*.json or *.json.gz) found")
    return files


def _read_json(path: Path) -> Any:
    """Parse a .json or .json.gz file; any decoding problem becomes a ValueError naming the file."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                return json.load(handle)
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    except (gzip.BadGzipFile, EOFError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot be decoded ({type(error).__name__}: {error})") from error
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error})") from error


def _as_float(value: Any, where: str) -> float:
    """A metric value as float; JSON null (some writers' NaN) -> NaN."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: value {value!r} is not a number")
    return float(value)


def parse_score_file(
    path: Path, metric: str
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, float] | None]:
    """(target -> (metric values, frame durations), nsdr target -> value or None when absent) of one
    score file, validating its structure."""
    document = _read_json(path)
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a JSON object with a 'targets' list, got {type(document).__name__}")
    if "targets" not in document:
        raise ValueError(f"{path}: no 'targets' key (keys: {sorted(document)})")
    entries = document["targets"]
    if not isinstance(entries, list):
        raise ValueError(f"{path}: 'targets' must be a list, got {type(entries).__name__}")

    parsed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError(f"{path}: targets[{index}] has no 'name' string")
        name = entry["name"]
        if name in parsed:
            raise ValueError(f"{path}: target {name!r} appears twice")
        frames = entry.get("frames")
        if not isinstance(frames, list):
            raise ValueError(f"{path}: target {name!r} has no 'frames' list")
        values = np.empty(len(frames), dtype=np.float64)
        durations = np.full(len(frames), np.nan, dtype=np.float64)
        for position, frame in enumerate(frames):
            where = f"{path}: target {name!r} frame {position}"
            metrics = frame.get("metrics") if isinstance(frame, dict) else None
            if not isinstance(metrics, dict):
                raise ValueError(f"{where} has no 'metrics' object")
            if metric not in metrics:
                raise ValueError(f"{where} has no metric {metric!r} (has: {sorted(metrics)})")
            values[position] = _as_float(metrics[metric], f"{where} metric {metric!r}")
            if isinstance(frame.get("duration"), (int, float)) and not isinstance(frame["duration"], bool):
                durations[position] = float(frame["duration"])
        parsed[name] = (values, durations)

    nsdr: dict[str, float] | None = None
    if "nsdr" in document:
        raw = document["nsdr"]
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: 'nsdr' must be an object target -> number, got {type(raw).__name__}")
        nsdr = {str(name): _as_float(value, f"{path}: nsdr of {name!r}") for name, value in raw.items()}
    return parsed, nsdr


def load_track_scores(path: Path, metric: str = "SDR") -> dict[str, np.ndarray]:
    """Per-frame values of ``metric`` for every target in one score file (NaN frames kept).

    Reads ``.json`` and ``.json.gz``. A malformed file (not JSON, no ``"targets"``, a frame without
    the metric, ...) raises ValueError naming the file and the problem.
    """
    parsed, _ = parse_score_file(Path(path), metric)
    return {name: values for name, (values, _) in parsed.items()}
