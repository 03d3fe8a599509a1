"""Tests for the deterministic synthetic MUSDB18 generator (demixbench.data.synthetic)."""

from __future__ import annotations

import filecmp
from pathlib import Path

import musdb
import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from demixbench import SAMPLE_RATE, TARGETS
from demixbench.data.synthetic import render, writer
from demixbench.data.synthetic.frame import make_song
from demixbench.data.synthetic.render import generate_track
from demixbench.data.synthetic.spec import SyntheticSpec, track_names
from demixbench.data.synthetic.writer import write_dataset

SMALL = SyntheticSpec(n_train=2, n_test=1, duration=3.0, seed=7)
STEMS = ("mixture", *TARGETS)


@pytest.fixture(scope="module")
def wav_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "musdb18hq"
    write_dataset(SMALL, root)
    return root


def _centroid(x: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    f, p = signal.welch(x.mean(axis=1), sr, nperseg=4096)
    return float((f * p).sum() / p.sum())


def _longest_silence(x: np.ndarray, sr: int = SAMPLE_RATE, frame: float = 0.01) -> float:
    """Longest run (seconds) of frames whose peak is 60 dB below the signal's peak."""
    hop = int(frame * sr)
    frames = np.abs(x).max(axis=1)[: len(x) // hop * hop].reshape(-1, hop).max(axis=1)
    quiet = frames < 1e-3 * np.abs(x).max()
    best = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        best = max(best, run)
    return best * frame


# --- spec and names -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_train": 0}, "n_train"),
        ({"n_test": 0}, "n_test"),
        ({"duration": 0.0}, "duration"),
        ({"duration": -1.0}, "duration"),
        ({"format": "flac"}, "format"),
    ],
)
def test_spec_validation_names_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SyntheticSpec(**kwargs)


def test_spec_format_error_lists_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"wav.*stem\.mp4"):
        SyntheticSpec(format="mp3")


def test_track_names_look_like_musdb_and_are_unique() -> None:
    spec = SyntheticSpec(n_train=6, n_test=3)
    names = track_names(spec)
    assert set(names) == {"train", "test"}
    assert len(names["train"]) == 6 and len(names["test"]) == 3
    everything = names["train"] + names["test"]
    assert len(set(everything)) == len(everything)
    assert all(" - " in n and "/" not in n and n == n.strip() for n in everything)
    assert any("'" in n for n in everything)
    assert track_names(spec) == names
    assert track_names(SyntheticSpec(n_train=6, n_test=3, seed=1)) != names


# --- generate_track -------------------------------------------------------------------


def test_generate_track_shapes_levels_and_exact_sum() -> None:
    stems = generate_track(SMALL, "train", 0)
    assert set(stems) == set(STEMS)
    n = int(SMALL.duration * SMALL.sample_rate)
    for name, x in stems.items():
        assert x.shape == (n, 2), name
        assert x.dtype == np.float32, name
        assert np.all(np.isfinite(x)), name
        assert np.abs(x).max() <= 0.9, name
    total = ((stems["drums"] + stems["bass"]) + stems["other"]) + stems["vocals"]
    np.testing.assert_array_equal(stems["mixture"], total)


def test_generate_track_is_deterministic() -> None:
    a = generate_track(SMALL, "test", 0)
    b = generate_track(SMALL, "test", 0)
    for name in STEMS:
        np.testing.assert_array_equal(a[name], b[name])


def test_track_does_not_depend_on_dataset_size() -> None:
    three = SyntheticSpec(n_train=3, n_test=2, duration=2.0, seed=3)
    two = SyntheticSpec(n_train=2, n_test=1, duration=2.0, seed=3)
    for split, index in [("train", 0), ("train", 1), ("test", 0)]:
        a, b = generate_track(three, split, index), generate_track(two, split, index)
        for name in STEMS:
            np.testing.assert_array_equal(a[name], b[name])


def test_seed_and_split_change_the_audio() -> None:
    base = generate_track(SMALL, "train", 0)["mixture"]
    reseeded = SyntheticSpec(n_train=2, n_test=1, duration=3.0, seed=8)
    other_seed = generate_track(reseeded, "train", 0)["mixture"]
    other_split = generate_track(SMALL, "test", 0)["mixture"]
    assert not np.array_equal(base, other_seed)
    assert not np.array_equal(base, other_split)


def test_stems_are_musically_structured() -> None:
    spec = SyntheticSpec(n_train=4, n_test=1, duration=10.0, seed=0)
    mixtures = []
    for index in range(4):
        stems = generate_track(spec, "train", index)
        for name in TARGETS:
            assert np.mean(stems[name].astype(np.float64) ** 2) > 1e-6, (index, name)
        # Vocals sing in phrases: some >= 0.3 s pause, but active a good part of the time.
        assert _longest_silence(stems["vocals"]) >= 0.3, index
        active = np.abs(stems["vocals"]).max(axis=1) > 1e-3 * np.abs(stems["vocals"]).max()
        assert active.mean() > 0.3, index
        assert _centroid(stems["bass"]) < 300.0 < _centroid(stems["other"]), index
        # Stereo: the pad/pluck placement makes the channels of "other" differ.
        assert not np.array_equal(stems["other"][:, 0], stems["other"][:, 1]), index
        mixtures.append(stems["mixture"])
    for i in range(len(mixtures)):
        for j in range(i + 1, len(mixtures)):
            assert not np.allclose(mixtures[i], mixtures[j], atol=1e-3)


def test_tracks_vary_in_tempo_and_key() -> None:
    rngs = [np.random.default_rng([0, 0, i, render._STREAM_SONG]) for i in range(12)]  # train tracks 0..11
    songs = [make_song(rng, SAMPLE_RATE, SAMPLE_RATE) for rng in rngs]
    tempos = [s.bpm for s in songs]
    assert all(80.0 <= t <= 150.0 for t in tempos)
    assert max(tempos) - min(tempos) > 20.0
    assert len({s.tonic for s in songs}) > 3
    assert len({s.chords for s in songs}) > 3


# --- write_dataset (wav) --------------------------------------------------------------


def test_written_mixture_is_exact_sum_of_written_stems(wav_root: Path) -> None:
    names = track_names(SMALL)
    for split in ("train", "test"):
        for index, name in enumerate(names[split]):
            track_dir = wav_root / split / name
            audio = {}
            for stem in STEMS:
                x, sr = sf.read(track_dir / f"{stem}.wav", dtype="float32")
                assert sr == SAMPLE_RATE
                assert sf.info(track_dir / f"{stem}.wav").subtype == "PCM_16"  # as MUSDB18-HQ
                audio[stem] = x
            total = ((audio["drums"] + audio["bass"]) + audio["other"]) + audio["vocals"]
            np.testing.assert_array_equal(audio["mixture"], total)
            expected = generate_track(SMALL, split, index)
            for stem in STEMS:
                np.testing.assert_array_equal(audio[stem], expected[stem])


@pytest.mark.parametrize("subset", ["train", "test"])
def test_musdb_reads_wav_dataset(wav_root: Path, subset: str) -> None:
    names = track_names(SMALL)
    db = musdb.DB(root=str(wav_root), is_wav=True, subsets=subset)
    assert [t.name for t in db] == names[subset]
    n = int(SMALL.duration * SAMPLE_RATE)
    for index, track in enumerate(db):
        assert track.rate == SAMPLE_RATE
        assert track.audio.shape == (n, 2)
        # musdb decodes through ffmpeg as 16-bit PCM; the stems are on that grid, so what musdb
        # returns is exactly what was generated, and the mixture exactly the sum of the stems.
        expected = generate_track(SMALL, subset, index)
        for stem in TARGETS:
            np.testing.assert_array_equal(track.sources[stem].audio, expected[stem])
        np.testing.assert_array_equal(track.audio, expected["mixture"])
        decoded_sum = sum(track.sources[stem].audio for stem in TARGETS)
        np.testing.assert_array_equal(track.audio, decoded_sum)


def test_write_dataset_is_byte_identical(tmp_path: Path, wav_root: Path) -> None:
    again = tmp_path / "again"
    assert write_dataset(SMALL, again) == track_names(SMALL)
    files = sorted(p.relative_to(wav_root) for p in wav_root.rglob("*") if p.is_file())
    assert len(files) == 3 * len(STEMS)
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert filecmp.cmp(wav_root / rel, again / rel, shallow=False), rel


def test_write_dataset_refuses_existing_root(tmp_path: Path) -> None:
    root = tmp_path / "exists"
    root.mkdir()
    with pytest.raises(FileExistsError, match="exists"):
        write_dataset(SMALL, root)
    assert list(root.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists"]


def test_write_dataset_leaves_no_temporary_directory(tmp_path: Path) -> None:
    spec = SyntheticSpec(n_train=1, n_test=1, duration=0.5)
    write_dataset(spec, tmp_path / "data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["test", "train"]


def test_write_dataset_removes_leftovers_of_killed_runs(tmp_path: Path) -> None:
    (tmp_path / ".data.partial-1" / "train").mkdir(parents=True)  # SIGKILL runs no cleanup
    write_dataset(SyntheticSpec(n_train=1, n_test=1, duration=0.5), tmp_path / "data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = writer._write_track

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(writer, "_write_track", failing)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(SyntheticSpec(n_train=2, n_test=1, duration=0.5), tmp_path / "data")
    assert list(tmp_path.iterdir()) == []


# --- write_dataset (stem.mp4) ---------------------------------------------------------


def test_stem_mp4_dataset_is_read_by_musdb(tmp_path: Path) -> None:
    spec = SyntheticSpec(n_train=1, n_test=1, duration=2.0, format="stem.mp4")
    root = tmp_path / "musdb18"
    names = write_dataset(spec, root)
    assert sorted(p.name for p in (root / "test").iterdir()) == [f"{names['test'][0]}.stem.mp4"]
    db = musdb.DB(root=str(root), is_wav=False, subsets="test")
    assert [t.name for t in db] == names["test"]
    track = db[0]
    n = int(spec.duration * SAMPLE_RATE)
    assert track.rate == SAMPLE_RATE
    assert track.audio.ndim == 2 and track.audio.shape[1] == 2
    # AAC pads to whole 1024-sample frames.
    assert n <= track.audio.shape[0] <= n + 2048
    vocals = track.targets["vocals"].audio
    assert vocals.shape == track.audio.shape
    expected = generate_track(spec, "test", 0)["vocals"].astype(np.float64)
    err = vocals[:n] - expected
    assert 10 * np.log10(np.sum(expected**2) / np.sum(err**2)) > 10.0  # lossy, but the same signal


def test_official_names_stand_in_for_musdb18(tmp_path):
    from demixbench.data.layout import musdb_validation_tracks
    from demixbench.data.musdb18 import MUSDB18_TRACKS

    assert len(MUSDB18_TRACKS["train"]) == 100 and len(MUSDB18_TRACKS["test"]) == 50
    assert not set(MUSDB18_TRACKS["train"]) & set(MUSDB18_TRACKS["test"])
    assert set(musdb_validation_tracks()) <= set(MUSDB18_TRACKS["train"])
    spec = SyntheticSpec(n_train=3, n_test=2, duration=0.5, names="musdb18")
    names = track_names(spec)
    assert names == {"train": list(MUSDB18_TRACKS["train"][:3]), "test": list(MUSDB18_TRACKS["test"][:2])}
    root = tmp_path / "musdb18hq"
    write_dataset(spec, root)
    assert sorted(p.name for p in (root / "test").iterdir()) == sorted(names["test"])
    with pytest.raises(ValueError, match="names='musdb18' has 50 test tracks"):
        SyntheticSpec(n_test=51, names="musdb18")
    with pytest.raises(ValueError, match="names must be one of"):
        SyntheticSpec(names="official")
