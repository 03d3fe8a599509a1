"""verify_dataset: counts, validation tracks, stems, lengths, truncation, fingerprints, names."""

import json
import logging
import shutil

import pytest

from demixbench.data.layout import DatasetError
from demixbench.data.synthetic.spec import SyntheticSpec, track_names
from demixbench.data.synthetic.writer import write_dataset
from demixbench.data.verify import VerifySpec, read_report, verify_dataset

#: 2 train + 1 test tracks of 1 s: enough for every check, fast on 2 cores.
TINY = SyntheticSpec(n_train=2, n_test=1, duration=1.0, seed=5)
TINY_COUNTS = {"train": 2, "test": 1}
NON_ASCII = "Sigur Rós & Beyoncé - Don't Stop (Ça Va)"


def tiny_spec(source="musdb18hq", **kwargs):
    return VerifySpec(
        source=source, counts=kwargs.pop("counts", TINY_COUNTS), validation=kwargs.pop("validation", ()), **kwargs
    )


@pytest.fixture(scope="module")
def tiny_wav(tmp_path_factory):
    root = tmp_path_factory.mktemp("wav") / "musdb18hq"
    write_dataset(TINY, root)
    return root


@pytest.fixture(scope="module")
def tiny_mp4(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp4") / "musdb18"
    write_dataset(SyntheticSpec(n_train=2, n_test=1, duration=1.0, seed=5, format="stem.mp4"), root)
    return root


@pytest.fixture
def copy_of(tmp_path):
    def copy(root):
        target = tmp_path / root.name
        shutil.copytree(root, target)
        return target

    return copy


def test_report_lists_tracks_and_fingerprints_them(tiny_wav, tmp_path):
    report = verify_dataset(tiny_wav, tiny_spec(), progress=False)
    names = track_names(TINY)
    assert report.subsets == {"train": names["train"], "test": names["test"]}
    assert report.n_files == 15 and report.layout == "wav" and report.sample_rates == [44100]
    assert report.tracks[f"train/{names['train'][0]}"] == {"sample_rate": 44100, "samples": 44100, "channels": 2}
    assert len(report.fingerprint) == 64 and report.content_hash == "full"
    path = report.write(tmp_path / "report.json")
    assert read_report(path)["fingerprint"] == report.fingerprint
    assert report.summary()["counts"] == TINY_COUNTS


def test_fingerprint_depends_on_content_not_location(tiny_wav, copy_of):
    first = verify_dataset(tiny_wav, tiny_spec(), progress=False)
    copy = copy_of(tiny_wav)
    assert verify_dataset(copy, tiny_spec(), progress=False).fingerprint == first.fingerprint
    sampled = verify_dataset(copy, tiny_spec(content_hash="sampled"), progress=False)
    assert sampled.fingerprint != first.fingerprint and sampled.listing_sha256 == first.listing_sha256
    # one flipped sample in the middle of a file changes the full fingerprint
    path = next((copy / "train").iterdir()) / "vocals.wav"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    assert verify_dataset(copy, tiny_spec(), progress=False).fingerprint != first.fingerprint


def test_official_counts_are_checked(tiny_wav):
    with pytest.raises(DatasetError, match=r"train: 2 tracks, expected 100 for source 'musdb18hq'"):
        verify_dataset(tiny_wav, VerifySpec(source="musdb18hq", validation=()), progress=False)


def test_official_validation_tracks_must_be_train_tracks(tiny_wav):
    with pytest.raises(DatasetError, match="validation track 'Actions - One Minute Smile' is missing"):
        verify_dataset(tiny_wav, VerifySpec(source="musdb18hq", counts=TINY_COUNTS), progress=False)
    test_track = track_names(TINY)["test"][0]
    with pytest.raises(DatasetError, match="is a test track"):
        verify_dataset(tiny_wav, tiny_spec(validation=[test_track]), progress=False)


def test_missing_stem_names_track_and_stem(tiny_wav, copy_of):
    copy = copy_of(tiny_wav)
    track = track_names(TINY)["train"][1]
    (copy / "train" / track / "bass.wav").unlink()
    with pytest.raises(DatasetError, match="missing stem file") as err:
        verify_dataset(copy, tiny_spec(), progress=False)
    assert f"track {track!r}" in str(err.value) and "stem 'bass'" in str(err.value)


def test_truncated_wav_is_named(tiny_wav, copy_of):
    copy = copy_of(tiny_wav)
    path = copy / "test" / track_names(TINY)["test"][0] / "other.wav"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DatasetError, match="truncated") as err:
        verify_dataset(copy, tiny_spec(), progress=False)
    assert str(path) in str(err.value)


def test_length_and_rate_mismatches_are_named(tiny_wav, copy_of):
    import soundfile as sf

    copy = copy_of(tiny_wav)
    folder = copy / "train" / track_names(TINY)["train"][0]
    audio, rate = sf.read(folder / "drums.wav")
    sf.write(folder / "drums.wav", audio[:-1], rate, subtype="PCM_16")
    with pytest.raises(DatasetError, match="equal lengths") as err:
        verify_dataset(copy, tiny_spec(), progress=False)
    assert str(folder / "drums.wav") in str(err.value)
    sf.write(folder / "drums.wav", audio, 48000, subtype="PCM_16")
    with pytest.raises(DatasetError, match="sample rate 48000 Hz"):
        verify_dataset(copy, tiny_spec(), progress=False)


def test_stem_mp4_dataset_and_its_truncation(tiny_mp4, copy_of):
    report = verify_dataset(tiny_mp4, tiny_spec(source="musdb18"), progress=False)
    assert report.layout == "stem.mp4" and report.n_files == 3
    copy = copy_of(tiny_mp4)
    path = copy / "train" / f"{track_names(TINY)['train'][0]}.stem.mp4"
    path.write_bytes(path.read_bytes()[:-4000])
    with pytest.raises(DatasetError, match="truncated") as err:
        verify_dataset(copy, tiny_spec(source="musdb18"), progress=False)
    assert str(path) in str(err.value)


def test_non_ascii_names_and_extras(tiny_wav, copy_of, caplog):
    copy = copy_of(tiny_wav)
    old = track_names(TINY)["test"][0]
    (copy / "test" / old).rename(copy / "test" / NON_ASCII)
    (copy / "test" / NON_ASCII / "notes.txt").write_text("not a stem")
    with caplog.at_level(logging.WARNING, logger="demixbench.data.verify"):
        report = verify_dataset(copy, tiny_spec(validation=[track_names(TINY)["train"][0]]), progress=False)
    assert report.subsets["test"] == [NON_ASCII]
    assert f"test/{NON_ASCII}/mixture.wav" in report.files
    assert report.extras == [f"test/{NON_ASCII}/notes.txt"] and "notes.txt" in caplog.text
    json.dumps(report.to_dict(), ensure_ascii=False)


def test_track_in_both_subsets_is_refused(tiny_wav, copy_of):
    copy = copy_of(tiny_wav)
    track = track_names(TINY)["train"][0]
    shutil.copytree(copy / "train" / track, copy / "test" / track)
    with pytest.raises(DatasetError, match="both train/ and test/"):
        verify_dataset(copy, tiny_spec(source="synthetic", counts=None), progress=False)
