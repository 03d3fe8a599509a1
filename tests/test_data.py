import json
import shutil

import musdb
import numpy as np
import pytest

from conftest import SMALL_SPEC
from demixbench import TARGETS
from demixbench.data.cache import load_decoded
from demixbench.data.decode import decode_track
from demixbench.data.layout import DatasetError, dataset_layout, list_tracks, musdb_validation_tracks
from demixbench.data.verify import VerifySpec, verify_dataset


def test_list_tracks_splits_the_synthetic_dataset(small_dataset, small_splits):
    assert len(small_splits.train) == 2 and len(small_splits.valid) == 1 and len(small_splits.test) == 2
    assert not set(small_splits.test) & (set(small_splits.train) | set(small_splits.valid))
    assert small_splits.subset_of(small_splits.valid[0]) == "train"
    assert small_splits.subset_of(small_splits.test[0]) == "test"


def test_musdb_validation_list_is_the_official_one():
    tracks = musdb_validation_tracks()
    assert len(tracks) == 14 and "Actions - One Minute Smile" in tracks


def test_decoded_cache_matches_musdb_and_mixture_is_sum_of_stems(small_dataset, small_splits, decoded):
    track = small_splits.test[0]
    arrays = load_decoded(decoded[track])
    mus_track = [t for t in musdb.DB(root=str(small_dataset), is_wav=True, subsets="test") if t.name == track][0]
    assert arrays["mixture"].dtype == np.float32
    assert arrays["mixture"].shape == (2, int(SMALL_SPEC.duration * 44100))
    np.testing.assert_array_equal(arrays["mixture"], mus_track.audio.T.astype(np.float32))
    np.testing.assert_array_equal(arrays["mixture"], sum(np.asarray(arrays[t], dtype=np.float64) for t in TARGETS))
    meta = json.loads((decoded[track] / "meta.json").read_text())
    assert meta["subset"] == "test" and meta["sample_rate"] == 44100


def test_missing_dataset_directory_names_it(tmp_path):
    with pytest.raises(DatasetError, match=f"{tmp_path / 'nowhere'}: dataset directory does not exist"):
        list_tracks("musdb18hq", tmp_path / "nowhere")


@pytest.mark.parametrize(("content", "what"), [(b"PK\x03\x04rest-of-a-zip", "a zip archive"), (b"x", "a file")])
def test_dataset_root_that_is_a_file_points_to_data_origin(tmp_path, content, what):
    archive = tmp_path / "musdb18hq.zip"
    archive.write_bytes(content)
    for check in (lambda: list_tracks("musdb18hq", archive), lambda: verify_dataset(archive, VerifySpec("musdb18hq"))):
        with pytest.raises(DatasetError) as error:
            check()
        message = str(error.value)
        assert message.startswith(f"{archive}: is {what}, not a dataset directory")
        assert f"data.origin: {archive}" in message and "does not exist" not in message


def test_missing_subset_directory_names_it(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetError, match=f"{tmp_path / 'test'}: missing 'test/' directory"):
        list_tracks("musdb18hq", tmp_path)


def test_missing_stem_file_names_the_file(small_dataset, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(small_dataset, broken)
    track_dir = next((broken / "test").iterdir())
    (track_dir / "bass.wav").unlink()
    with pytest.raises(DatasetError, match="bass.wav: missing stem file") as err:
        list_tracks("synthetic", broken, validation=[])
    assert str(track_dir / "bass.wav") in str(err.value)


def test_validation_track_in_test_set_is_refused(small_dataset, small_splits):
    with pytest.raises(DatasetError, match="is a test track"):
        list_tracks("synthetic", small_dataset, validation=[small_splits.test[0]])


def test_unknown_source_is_refused(small_dataset):
    with pytest.raises(ValueError, match="allowed: synthetic, musdb18hq, musdb18, musdb18-7s"):
        list_tracks("musdb19", small_dataset)


def test_layouts_of_the_sources(small_dataset, tmp_path):
    assert dataset_layout("musdb18hq") == "wav" and dataset_layout("synthetic", small_dataset) == "wav"
    assert dataset_layout("musdb18") == "stem.mp4" and dataset_layout("musdb18-7s") == "stem.mp4"
    for subset in ("train", "test"):
        (tmp_path / subset).mkdir()
        (tmp_path / subset / f"A {subset} - Track.stem.mp4").write_bytes(b"")
    assert dataset_layout("synthetic", tmp_path) == "stem.mp4"
    splits = list_tracks("musdb18-7s", tmp_path, validation=[])
    assert splits.train == ("A train - Track",) and splits.test == ("A test - Track",)


def test_decode_refuses_unknown_track(small_dataset, tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        decode_track("synthetic", small_dataset, "test", "No Such Track", tmp_path / "out")


def test_an_empty_stem_file_stops_the_listing_naming_it(tmp_path, small_dataset):
    """list_tracks runs when the workflow builds its DAG: an empty wav stops the run before any job."""
    root = tmp_path / "copy"
    shutil.copytree(small_dataset, root)
    track = sorted(p.name for p in (root / "test").iterdir())[0]
    (root / "test" / track / "bass.wav").write_bytes(b"")
    with pytest.raises(DatasetError, match="empty file") as error:
        list_tracks("musdb18hq", root, validation=[])
    assert str(root / "test" / track / "bass.wav") in str(error.value)
