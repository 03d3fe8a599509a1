"""Tests of demixbench.score.scorefile (reading museval / SiSEC score files) and
demixbench.table.runs (per-track medians over frames)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from demixbench import TARGETS
from demixbench.score.scorefile import load_track_scores
from demixbench.table.build import build_table
from demixbench.table.model import MethodRuns
from demixbench.table.runs import track_frame_medians
from table_helpers import SISEC18, write_track


def test_load_track_scores_real_file_has_extra_target() -> None:
    path = SISEC18 / "IRM2" / "AM Contra - Heart Peripheral.json.gz"
    scores = load_track_scores(path)
    assert set(TARGETS) <= set(scores)
    assert "accompaniment" in scores  # extra targets are read but ignored by the table
    assert scores["drums"][0] == pytest.approx(1.17433)
    medians = track_frame_medians(SISEC18 / "IRM2")
    assert list(medians.columns) == list(TARGETS)
    assert len(medians) == 50 and "AM Contra - Heart Peripheral" in medians.index


# --------------------------------------------------------------------------------------------------
# Reading and per-track medians
# --------------------------------------------------------------------------------------------------


def test_load_track_scores_json_and_gz_keep_nan(tmp_path: Path) -> None:
    frames = {"drums": [1.0, math.nan, 3.0], "bass": [2.0]}
    for gz in (False, True):
        path = write_track(tmp_path / str(gz), "t", frames, gz=gz)
        scores = load_track_scores(path)
        assert set(scores) == {"drums", "bass"}
        np.testing.assert_array_equal(scores["drums"], [1.0, math.nan, 3.0])


def test_load_track_scores_other_metric(tmp_path: Path) -> None:
    path = write_track(tmp_path, "t", {"drums": [1.0, 2.0]})
    np.testing.assert_array_equal(load_track_scores(path, metric="SIR")["drums"], [0.0, 0.0])
    with pytest.raises(ValueError, match="no metric 'ISR'"):
        load_track_scores(path, metric="ISR")


def test_track_frame_medians_skips_nan_frames(tmp_path: Path) -> None:
    write_track(tmp_path, "one", {t: [1.0, math.nan, 2.0, 10.0, math.nan] for t in TARGETS}, gz=True)
    write_track(tmp_path, "two", {**{t: [5.0] for t in TARGETS}, "accompaniment": [9.0]})
    (tmp_path / "notes.txt").write_text("ignored")
    medians = track_frame_medians(tmp_path)
    assert list(medians.index) == ["one", "two"]
    assert list(medians.columns) == list(TARGETS)
    assert medians.loc["one", "drums"] == 2.0
    assert medians.loc["two", "vocals"] == 5.0


def test_track_frame_medians_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        track_frame_medians(empty)
    partial = tmp_path / "partial"
    write_track(partial, "Lonely Track", {"drums": [1.0], "bass": [1.0], "other": [1.0]})
    with pytest.raises(ValueError, match=r"Lonely Track\.json.*vocals"):
        track_frame_medians(partial)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"scores": []}', "no 'targets'"),
        ("[1, 2]", "expected a JSON object"),
        ('{"targets": [{"name": "drums"}]}', "no 'frames'"),
        ('{"targets": [{"name": "drums", "frames": [{"time": 0}]}]}', "no 'metrics'"),
        ('{"targets": [{"name": "drums", "frames": [{"metrics": {"SDR": "high"}}]}]}', "not a number"),
    ],
)
def test_malformed_file_names_file(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "Broken Song.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="Broken Song.json") as error:
        load_track_scores(path)
    assert problem in str(error.value)
    with pytest.raises(ValueError, match="Broken Song.json"):
        track_frame_medians(tmp_path)


def test_corrupt_gzip_names_file(tmp_path: Path) -> None:
    path = tmp_path / "Zipped.json.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(ValueError, match="Zipped.json.gz"):
        load_track_scores(path)


def test_malformed_nsdr_names_file(tmp_path: Path) -> None:
    path = write_track(tmp_path, "Odd Song", {t: [1.0] for t in TARGETS})
    document = json.loads(path.read_text())
    document["nsdr"] = {"drums": "loud"}
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"Odd Song\.json.*not a number"):
        build_table([MethodRuns("m", (tmp_path,))])
    document["nsdr"] = [1.0]
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"Odd Song\.json.*'nsdr' must be an object"):
        build_table([MethodRuns("m", (tmp_path,))])
