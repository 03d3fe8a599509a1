"""decode_track: resampling, mono, refusal of damaged tracks (named), the mixture check, names."""

import io
import json
import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import stempeg

from demixbench import TARGETS
from demixbench.data.cache import load_decoded, save_channel_major, to_float32
from demixbench.data.decode import DecodeOptions, decode_track, mixture_residual
from demixbench.data.layout import STEMS, DatasetError
from demixbench.data.synthetic.spec import SyntheticSpec
from demixbench.data.synthetic.writer import write_dataset

MP4_SPEC = SyntheticSpec(n_train=2, n_test=1, duration=1.0, seed=5, format="stem.mp4")


def write_track(root, name, stems, rate=44100, subset="train", subtype="PCM_16"):
    """Write one MUSDB18-HQ-layout track from stem -> (samples, channels) arrays; returns its dir."""
    folder = root / subset / name
    folder.mkdir(parents=True)
    (root / ("test" if subset == "train" else "train")).mkdir(exist_ok=True)
    for stem, audio in stems.items():
        sf.write(folder / f"{stem}.wav", audio, rate, subtype=subtype)
    return folder


def tone_stems(samples=44100, channels=2, seed=0):
    """Stems on the 16-bit grid whose float32 sum is exact, plus their mixture."""
    rng = np.random.default_rng(seed)
    stems = {t: np.round(rng.uniform(-0.2, 0.2, (samples, channels)) * 32768) / 32768 for t in TARGETS}
    stems = {t: a.astype(np.float32) for t, a in stems.items()}
    stems["mixture"] = sum(stems[t] for t in TARGETS)
    return {s: stems[s] for s in STEMS}


@pytest.fixture(scope="module")
def mp4_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp4") / "musdb18"
    names = write_dataset(MP4_SPEC, root)
    return root, names


def test_48khz_track_is_resampled_with_a_log_line(tmp_path, caplog):
    write_track(tmp_path, "High Rate - Track", tone_stems(samples=48000), rate=48000)
    with caplog.at_level(logging.INFO, logger="demixbench.data.decode"):
        meta = decode_track("musdb18hq", tmp_path, "train", "High Rate - Track", tmp_path / "out")
    arrays = load_decoded(tmp_path / "out")
    assert arrays["mixture"].shape == (2, 44100)
    assert meta["native_sample_rate"] == 48000 and meta["sample_rate"] == 44100 and meta["samples"] == 44100
    assert "resampling 48000 Hz -> 44100 Hz" in caplog.text and "High Rate - Track" in caplog.text


def test_mono_track_is_duplicated_with_a_warning(tmp_path, caplog):
    stems = tone_stems(channels=1)
    write_track(tmp_path, "Mono - Song", stems)
    with caplog.at_level(logging.WARNING, logger="demixbench.data.decode"):
        meta = decode_track("musdb18hq", tmp_path, "train", "Mono - Song", tmp_path / "out")
    arrays = load_decoded(tmp_path / "out")
    assert arrays["vocals"].shape == (2, 44100)
    np.testing.assert_array_equal(arrays["vocals"][0], arrays["vocals"][1])
    np.testing.assert_array_equal(arrays["vocals"][0], stems["vocals"][:, 0])
    assert any(r.levelno == logging.WARNING and "mono" in r.getMessage() for r in caplog.records)
    assert meta["mono_stems"] == list(STEMS)


def test_nan_samples_are_refused_naming_the_file(tmp_path):
    stems = tone_stems()
    stems["bass"] = stems["bass"].copy()
    stems["bass"][100, 0] = np.nan
    folder = write_track(tmp_path, "Broken - NaN", stems, subtype="FLOAT")
    with pytest.raises(DatasetError, match="NaN or Inf") as err:
        decode_track("musdb18hq", tmp_path, "train", "Broken - NaN", tmp_path / "out")
    assert str(folder / "bass.wav") in str(err.value)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.npy"))


def test_truncated_wav_stem_is_refused_naming_the_file(tmp_path):
    folder = write_track(tmp_path, "Cut - Short", tone_stems())
    data = (folder / "drums.wav").read_bytes()
    (folder / "drums.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="truncated") as err:
        decode_track("musdb18hq", tmp_path, "train", "Cut - Short", tmp_path / "out")
    assert str(folder / "drums.wav") in str(err.value)


def test_stems_of_different_lengths_are_refused(tmp_path):
    stems = tone_stems()
    stems["other"] = stems["other"][:-10]
    folder = write_track(tmp_path, "Odd - Lengths", stems)
    with pytest.raises(DatasetError, match="equal lengths") as err:
        decode_track("musdb18hq", tmp_path, "train", "Odd - Lengths", tmp_path / "out")
    assert str(folder / "other.wav") in str(err.value)


def test_mixture_that_is_not_the_sum_is_refused_unless_warned(tmp_path, caplog):
    stems = tone_stems()
    stems["vocals"] = np.round(stems["vocals"] * 0.5 * 32768) / 32768  # a mis-scaled stem
    folder = write_track(tmp_path, "Wrong - Sum", stems)
    with pytest.raises(DatasetError, match="not the sum of the stems") as err:
        decode_track("musdb18hq", tmp_path, "train", "Wrong - Sum", tmp_path / "out")
    assert str(folder) in str(err.value)
    with caplog.at_level(logging.WARNING, logger="demixbench.data.decode"):
        meta = decode_track(
            "musdb18hq", tmp_path, "train", "Wrong - Sum", tmp_path / "out", options=DecodeOptions(mixture_check="warn")
        )
    assert meta["mixture_check"]["passed"] is False and "not the sum" in caplog.text


def test_known_erratum_only_warns(tmp_path, caplog):
    stems = tone_stems()
    stems["mixture"] = stems["mixture"].copy()
    stems["mixture"][:, 0] *= 0.5  # the left channel does not add up, as in the official erratum
    write_track(tmp_path, "PR - Oh No", stems, subset="test")
    with caplog.at_level(logging.WARNING, logger="demixbench.data.decode"):
        decode_track("musdb18hq", tmp_path, "test", "PR - Oh No", tmp_path / "out")
    assert "known erratum" in caplog.text


def test_silent_stems_and_lsb_rounding_are_allowed(tmp_path, caplog):
    stems = tone_stems()
    stems["vocals"] = np.zeros_like(stems["vocals"])
    stems["mixture"] = sum(stems[t] for t in TARGETS) + np.float32(2 / 32768)  # 2 LSB off: rounding noise
    write_track(tmp_path, "Quiet - Singer", stems, subset="test")
    with caplog.at_level(logging.WARNING):
        meta = decode_track("musdb18hq", tmp_path, "test", "Quiet - Singer", tmp_path / "out")
    assert meta["mixture_check"]["passed"] and meta["mixture_check"]["max_abs_error"] == pytest.approx(2 / 32768)
    assert meta["silent_stems"] == ["vocals"]
    warnings = [r.getMessage() for r in caplog.records if "silent over the whole track" in r.getMessage()]
    assert len(warnings) == 1 and "Quiet - Singer" in warnings[0] and "vocals" in warnings[0]
    assert "undefined (NaN)" in warnings[0]


def test_empty_wav_files_say_empty(tmp_path):
    folder = write_track(tmp_path, "Empty - Zero", tone_stems())
    (folder / "bass.wav").write_bytes(b"")
    with pytest.raises(DatasetError, match="empty file") as err:
        decode_track("musdb18hq", tmp_path, "train", "Empty - Zero", tmp_path / "out")
    assert str(folder / "bass.wav") in str(err.value) and "restore it" in str(err.value)
    # A header without samples: also "empty file", not a length mismatch.
    sf.write(folder / "bass.wav", np.zeros((0, 2), dtype=np.float32), 44100, subtype="PCM_16")
    with pytest.raises(DatasetError, match="empty file") as err:
        decode_track("musdb18hq", tmp_path, "train", "Empty - Zero", tmp_path / "out")
    assert str(folder / "bass.wav") in str(err.value)
    assert not (tmp_path / "out" / "meta.json").exists()


def test_names_with_spaces_apostrophes_and_non_ascii(tmp_path):
    name = "Sigur Rós & Beyoncé - Don't Stop (Ça Va)"
    write_track(tmp_path, name, tone_stems(), subset="test")
    meta = decode_track("musdb18hq", tmp_path, "test", name, tmp_path / "out" / name)
    assert meta["track"] == name and (tmp_path / "out" / name / "mixture.npy").is_file()


def test_stem_mp4_decodes_like_musdb_and_passes_the_codec_tolerance(mp4_dataset, tmp_path):
    root, names = mp4_dataset
    track = names["train"][0]
    meta = decode_track("musdb18", root, "train", track, tmp_path / "out")
    arrays = load_decoded(tmp_path / "out")
    reference, _ = stempeg.read_stems(
        str(root / "train" / f"{track}.stem.mp4"), dtype=np.float32, ffmpeg_format="s16le"
    )
    for k, stem in enumerate(STEMS):  # the arrays musdb (via stempeg) returns
        np.testing.assert_array_equal(arrays[stem], reference[k].T)
    check = meta["mixture_check"]
    assert check["passed"] and not check["lossless"]
    # Measured 17-25 dB on synthetic AAC tracks (see DecodeOptions); the threshold is 10 dB.
    assert check["snr_db"] > 15


def test_synthetic_stem_mp4_layout_is_detected(mp4_dataset, tmp_path):
    root, names = mp4_dataset
    meta = decode_track("synthetic", root, "test", names["test"][0], tmp_path / "out")
    assert meta["mixture_check"]["lossless"] is False


def test_codec_tolerance_catches_a_wrong_stem_order(mp4_dataset):
    root, names = mp4_dataset
    stems, _ = stempeg.read_stems(
        str(root / "train" / f"{names['train'][1]}.stem.mp4"), dtype=np.float32, ffmpeg_format="s16le"
    )
    arrays = dict(zip(STEMS, stems))
    assert mixture_residual(arrays)["snr_db"] >= DecodeOptions().lossy_min_snr_db
    # the mixture stream taken for a stem (e.g. a wrong stream order) is far outside the tolerance
    swapped = {**arrays, "vocals": arrays["mixture"], "mixture": arrays["vocals"]}
    assert mixture_residual(swapped)["snr_db"] < DecodeOptions().lossy_min_snr_db


def test_truncated_stem_mp4_is_refused_naming_the_file(mp4_dataset, tmp_path):
    root, names = mp4_dataset
    track = names["train"][0]
    for faststart in (False, True):
        copy = tmp_path / f"fs{faststart}"
        (copy / "train").mkdir(parents=True)
        (copy / "test").mkdir()
        path = copy / "train" / f"{track}.stem.mp4"
        source = root / "train" / f"{track}.stem.mp4"
        if faststart:  # index first: ffprobe still reads the header of the cut file
            subprocess.run(
                [
                    "ffmpeg",
                    "-v",
                    "error",
                    "-i",
                    str(source),
                    "-map",
                    "0",
                    "-c",
                    "copy",
                    "-movflags",
                    "+faststart",
                    str(path),
                ],
                check=True,
            )
        else:
            shutil.copy(source, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(DatasetError, match="truncated|damaged|unreadable") as err:
            decode_track("musdb18", copy, "train", track, tmp_path / "out")
        assert str(path) in str(err.value)


def test_failed_decode_leaves_no_partial_cache(tmp_path):
    stems = tone_stems()
    stems["vocals"] = stems["vocals"].copy()
    stems["vocals"][5, 1] = np.inf
    write_track(tmp_path, "Inf - Track", stems, subtype="FLOAT")
    out = tmp_path / "out"
    with pytest.raises(DatasetError):
        decode_track("musdb18hq", tmp_path, "train", "Inf - Track", out)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_cache_files_are_what_np_save_writes_byte_for_byte(tmp_path, dtype):
    # block-wise conversion from PCM: several blocks and a partial last one, per channel
    rng = np.random.default_rng(1)
    pcm = rng.integers(-32768, 32768, (10_001, 2), dtype=np.int16)
    audio = pcm if dtype == "int16" else to_float32(pcm)
    save_channel_major(tmp_path / "a.npy", audio, block=4096)
    expected = io.BytesIO()
    np.save(expected, np.ascontiguousarray((pcm / 32768.0).astype(np.float32).T))
    assert (tmp_path / "a.npy").read_bytes() == expected.getvalue()


def test_mixture_check_is_the_same_on_pcm_and_on_floats():
    rng = np.random.default_rng(2)
    pcm = {stem: rng.integers(-8000, 8000, (5000, 2), dtype=np.int16) for stem in TARGETS}
    pcm["mixture"] = (sum(pcm[t].astype(np.int32) for t in TARGETS) + rng.integers(-3, 4, (5000, 2))).astype(np.int16)
    floats = {stem: to_float32(a) for stem, a in pcm.items()}
    assert mixture_residual(pcm, block=999) == mixture_residual(floats, block=999)
    assert 0 < mixture_residual(pcm)["max_abs_error"] <= 3 / 32768


def test_meta_json_records_the_checks(tmp_path):
    write_track(tmp_path, "Meta - Data", tone_stems())
    decode_track("musdb18hq", tmp_path, "train", "Meta - Data", tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["mixture_check"] == {
        "checked": True,
        "passed": True,
        "lossless": True,
        "max_abs_error": 0.0,
        "snr_db": "inf",
    }
    assert not list((tmp_path / "out").glob(".*tmp*"))  # no temporary files left


_KILLED_MID_WRITE = """
import os, signal, sys
from pathlib import Path
import numpy as np
from demixbench.data import decode as data

real_save, saved = data.save_channel_major, []

def save_then_die(path, audio, *args, **kwargs):
    if len(saved) == 2:  # the third stem: half of it written, then SIGKILL, as from the OOM killer
        with open(path, "wb") as file:
            file.write(np.lib.format.magic(1, 0))
            file.write(b"\\0" * (audio.size * 2))
            file.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    saved.append(path)
    return real_save(path, audio, *args, **kwargs)

data.save_channel_major = save_then_die
data.decode_track("musdb18hq", Path(sys.argv[1]), "train", sys.argv[2], Path(sys.argv[3]))
"""


def test_decode_killed_mid_write_leaves_no_partial_array_and_a_rerun_finishes(tmp_path):
    write_track(tmp_path, "Killed - Midway", tone_stems(samples=88200))
    out = tmp_path / "out"
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_WRITE, str(tmp_path), "Killed - Midway", str(out)],
        capture_output=True,
        text=True,
    )
    assert child.returncode == -9, child.stderr
    finished = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert finished == ["drums.npy", "mixture.npy"]  # complete files only, under their final names
    assert [p.name for p in out.iterdir() if p.name.startswith(".")]  # the killed write's temporary
    meta = decode_track("musdb18hq", tmp_path, "train", "Killed - Midway", out)
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{stem}.npy" for stem in STEMS] + ["meta.json"])
    arrays = load_decoded(out)
    assert all(arrays[stem].shape == (2, meta["samples"]) for stem in STEMS)
