"""Shared fixtures: a small synthetic MUSDB18 written once per session and its decoded cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from demixbench.data.decode import decode_track
from demixbench.data.layout import list_tracks
from demixbench.data.synthetic import SyntheticSpec, track_names
from demixbench.data.synthetic.writer import write_dataset

REPO = Path(__file__).resolve().parents[1]

#: 3 train tracks (1 held out for validation) and 2 test tracks of 3 s.
SMALL_SPEC = SyntheticSpec(n_train=3, n_test=2, duration=3.0, seed=7)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "synthetic"
    write_dataset(SMALL_SPEC, root)
    return root


@pytest.fixture(scope="session")
def small_splits(small_dataset):
    names = track_names(SMALL_SPEC)
    return list_tracks("synthetic", small_dataset, validation=names["train"][-1:])


@pytest.fixture(scope="session")
def decoded(small_dataset, small_splits, tmp_path_factory) -> dict[str, Path]:
    """track name -> decoded cache directory, for every track of the small dataset."""
    cache = tmp_path_factory.mktemp("decoded")
    dirs = {}
    for track in (*small_splits.train, *small_splits.valid, *small_splits.test):
        dirs[track] = cache / track
        decode_track("synthetic", small_dataset, small_splits.subset_of(track), track, dirs[track])
    return dirs
