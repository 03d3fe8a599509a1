"""Tests of ``demixbench score`` (demixbench.score.batch and its command line)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from demixbench import TARGETS
from demixbench.cli import main
from demixbench.score.batch import detect_references, load_references
from demixbench.score.track import score_track
from demixbench.separate.estimates import read_estimates, write_estimates
from demixbench.table.runs import read_run

RATE = 44100


def _tracks(decoded: dict[str, Path]) -> list[str]:
    return sorted(
        track for track, folder in decoded.items() if json.loads((folder / "meta.json").read_text())["subset"] == "test"
    )


@pytest.fixture(scope="module")
def estimates(decoded, tmp_path_factory) -> Path:
    """DIR/<track>/<target>.wav for the test tracks: the references, damped, with cross-talk and noise."""
    root = tmp_path_factory.mktemp("estimates")
    rng = np.random.default_rng(3)
    for track in _tracks(decoded):
        references = np.stack([np.load(decoded[track] / f"{target}.npy") for target in TARGETS])
        mixed = 0.8 * references + 0.1 * np.roll(references, 1, axis=0)
        noisy = mixed + rng.normal(0, 0.01, size=references.shape)
        write_estimates(root / track, noisy.astype(np.float32), TARGETS, RATE)
    return root


@pytest.fixture(scope="module")
def pipeline_scores(decoded, estimates, tmp_path_factory) -> dict[str, bytes]:
    """track -> the bytes the pipeline's rule score_track writes (score_track on the decoded cache)."""
    out = tmp_path_factory.mktemp("pipeline_scores")
    files = {}
    for track in _tracks(decoded):
        score_track(decoded[track], estimates / track, out / f"{track}.json.gz")
        files[track] = (out / f"{track}.json.gz").read_bytes()
    return files


def _score(*args: object) -> int:
    return main(["score", *(str(arg) for arg in args)])


def _frames(path: Path) -> dict[str, list[dict]]:
    document = json.loads(gzip.decompress(path.read_bytes()))
    return {entry["name"]: entry["frames"] for entry in document["targets"]}


def test_wav_references_decode_to_the_arrays_of_the_cache(small_dataset, decoded):
    references = detect_references(small_dataset)
    assert references.layout == "musdb18hq"
    assert list(references.tracks) == _tracks(decoded)
    for track in references.tracks:
        cached = np.stack([np.load(decoded[track] / f"{target}.npy") for target in TARGETS])
        loaded = load_references(references, track)
        assert loaded.dtype == np.float32 and loaded.flags.c_contiguous
        np.testing.assert_array_equal(loaded, cached)


def test_scores_are_byte_identical_to_the_pipelines(
    small_dataset, decoded, estimates, pipeline_scores, tmp_path, caplog, capsys
):
    cache = next(iter(decoded.values())).parent
    for name, references in (("wav", small_dataset), ("decoded", cache)):
        out = tmp_path / name
        with caplog.at_level("INFO"):
            assert _score("--references", references, "--estimates", estimates, "--out", out, "--jobs", 2) == 0
        assert sorted(p.name for p in out.iterdir()) == [f"{track}.json.gz" for track in sorted(pipeline_scores)]
        for track, expected in pipeline_scores.items():
            assert (out / f"{track}.json.gz").read_bytes() == expected, (name, track)
        assert "scored 2, skipped 0 (already scored), failed 0" in capsys.readouterr().out
    assert "MUSDB18-HQ (wav) at" in caplog.text
    assert "the pipeline's decoded cache (.npy) at" in caplog.text


def test_museval_estimates_layout_is_accepted(small_dataset, estimates, pipeline_scores, tmp_path, caplog):
    museval_layout = tmp_path / "estimates"
    shutil.copytree(estimates, museval_layout / "test")
    out = tmp_path / "out"
    with caplog.at_level("INFO"):
        assert _score("--references", small_dataset, "--estimates", museval_layout, "--out", out, "--jobs", 1) == 0
    assert "museval's layout" in caplog.text
    for track, expected in pipeline_scores.items():
        assert (out / f"{track}.json.gz").read_bytes() == expected


@pytest.mark.slow  # museval takes about 30 s for one 3-s track here, and runs twice
def test_museval_backend_agrees_with_the_fast_one(small_dataset, decoded, estimates, pipeline_scores, tmp_path):
    """SDR (and nSDR) within 1e-9 dB. ISR, SIR and SAR come from the joint projection on every
    source's shifted copies, which on these band-limited synthetic stems is ill-conditioned: there
    museval's own values move with rounding. How far is measured here, by running museval again
    with the sources listed in reverse order (the same mathematics): the fast scorer must be as
    close to museval as museval is to itself, or within 1e-6 dB (demixbench.score.bss_eval,
    "Accuracy")."""
    museval = pytest.importorskip("museval")
    track = sorted(pipeline_scores)[0]
    out = tmp_path / "museval"
    args = ("--references", small_dataset, "--estimates", estimates, "--out", out, "--jobs", 1, "--tracks", track)
    assert _score(*args, "--backend", "museval") == 0
    fast = json.loads(gzip.decompress(pipeline_scores[track]))
    slow = json.loads(gzip.decompress((out / f"{track}.json.gz").read_bytes()))
    assert slow["nsdr"] == fast["nsdr"]
    differences: dict[str, list[float]] = {}
    for fast_target, slow_target in zip(fast["targets"], slow["targets"], strict=True):
        assert fast_target["name"] == slow_target["name"]
        for fast_frame, slow_frame in zip(fast_target["frames"], slow_target["frames"], strict=True):
            assert list(slow_frame["metrics"]) == list(fast_frame["metrics"])
            for metric, value in fast_frame["metrics"].items():
                differences.setdefault(metric, []).append(abs(slow_frame["metrics"][metric] - value))
    largest = {metric: max(values) for metric, values in differences.items()}
    assert all(len(values) == 4 * 3 for values in differences.values())  # targets x frames of a 3-s track
    assert largest["SDR"] <= 1e-9, largest
    # museval against itself, sources reversed
    references = np.stack([np.load(decoded[track] / f"{target}.npy").T for target in TARGETS])
    estimated = read_estimates(estimates / track, TARGETS).transpose(0, 2, 1)
    forward = museval.evaluate(references, estimated, win=RATE, hop=RATE, mode="v4", padding=True)
    backward = museval.evaluate(references[::-1], estimated[::-1], win=RATE, hop=RATE, mode="v4", padding=True)
    spread = {
        metric: float(np.nanmax(np.abs(a - b[::-1])))
        for metric, a, b in zip(("SDR", "ISR", "SIR", "SAR"), forward, backward, strict=True)
    }
    for metric in ("ISR", "SIR", "SAR"):
        assert largest[metric] <= max(1e-6, 2 * spread[metric]), (metric, largest, spread)


def test_an_interrupted_run_scores_only_what_is_missing(small_dataset, estimates, pipeline_scores, tmp_path, capsys):
    out = tmp_path / "out"
    args = ("--references", small_dataset, "--estimates", estimates, "--out", out, "--jobs", 1)
    assert _score(*args) == 0
    first, second = sorted(pipeline_scores)
    os.utime(out / f"{first}.json.gz", ns=(1_000_000_000, 1_000_000_000))  # a recognisable mtime
    (out / f"{second}.json.gz").unlink()
    (out / f".{second}.json.gz.abc123.tmp").write_bytes(b"half a file")  # left by a killed run
    capsys.readouterr()
    assert _score(*args) == 0
    assert "scored 1, skipped 1 (already scored), failed 0" in capsys.readouterr().out
    assert (out / f"{first}.json.gz").stat().st_mtime_ns == 1_000_000_000  # not rewritten
    assert (out / f"{second}.json.gz").read_bytes() == pipeline_scores[second]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{track}.json.gz" for track in pipeline_scores)
    assert _score(*args) == 0
    assert "scored 0, skipped 2 (already scored), failed 0" in capsys.readouterr().out


def test_sdr_only_files_hold_the_sdr_and_the_table_reads_them(small_dataset, estimates, pipeline_scores, tmp_path):
    out = tmp_path / "sdr"
    assert _score("--references", small_dataset, "--estimates", estimates, "--out", out, "--metrics", "sdr-only") == 0
    for track, expected in pipeline_scores.items():
        full = json.loads(gzip.decompress(expected))
        only = json.loads(gzip.decompress((out / f"{track}.json.gz").read_bytes()))
        assert only["nsdr"] == full["nsdr"]
        for full_target, target in zip(full["targets"], only["targets"], strict=True):
            for full_frame, frame in zip(full_target["frames"], target["frames"], strict=True):
                assert list(frame["metrics"]) == ["SDR"]
                assert frame["metrics"]["SDR"] == pytest.approx(full_frame["metrics"]["SDR"], abs=1e-9)
                assert (frame["time"], frame["duration"]) == (full_frame["time"], full_frame["duration"])
    run = read_run(out, TARGETS, "SDR")
    assert sorted(run.medians.index) == sorted(pipeline_scores)
    assert np.isfinite(run.medians.to_numpy()).all()
    assert run.nsdr is not None
    with pytest.raises(ValueError, match="has no metric 'SIR'"):
        read_run(out, TARGETS, "SIR")


def test_sdr_only_needs_the_fast_backend(small_dataset, estimates, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        args = ("--references", small_dataset, "--estimates", estimates, "--out", tmp_path)
        _score(*args, "--metrics", "sdr-only", "--backend", "museval")
    assert exit_info.value.code == 2


def test_every_input_problem_is_listed_before_anything_is_scored(small_dataset, estimates, tmp_path, capsys):
    broken = tmp_path / "estimates"
    shutil.copytree(estimates, broken)
    first, second = sorted(p.name for p in broken.iterdir())
    shutil.rmtree(broken / second)  # a track without estimates
    folder = broken / first
    (folder / "vocals.wav").unlink()  # a missing target
    audio, _ = soundfile.read(folder / "bass.wav", dtype="float32", always_2d=True)
    soundfile.write(folder / "bass.wav", audio, 22050, subtype="FLOAT")  # a wrong sample rate
    soundfile.write(folder / "drums.wav", audio[:-100], RATE, subtype="FLOAT")  # 100 samples short
    soundfile.write(folder / "other.wav", audio[:, :1], RATE, subtype="FLOAT")  # mono
    out = tmp_path / "out"
    assert _score("--references", small_dataset, "--estimates", broken, "--out", out) == 1
    errors = capsys.readouterr().err
    assert f"track {second!r}: no estimates (expected a folder {broken / second}" in errors
    assert f"track {first!r}: missing estimate {folder / 'vocals.wav'}" in errors
    assert f"track {first!r}: {folder / 'bass.wav'}: sample rate 22050 Hz, the references are scored at 44100" in errors
    n = audio.shape[0]
    assert (
        f"track {first!r}: {folder / 'drums.wav'}: {n - 100} samples, 100 fewer than the reference ({n} samples)"
        in errors
    )
    assert f"track {first!r}: {folder / 'other.wav'}: 1 channel(s), the reference has 2" in errors
    assert "5 problem(s); nothing was scored" in errors
    assert not out.exists()


def test_a_longer_estimate_is_named_with_the_excess(decoded, estimates, tmp_path, capsys):
    broken = tmp_path / "estimates"
    shutil.copytree(estimates, broken)
    track = _tracks(decoded)[0]
    path = broken / track / "vocals.wav"
    audio, _ = soundfile.read(path, dtype="float32", always_2d=True)
    soundfile.write(path, np.concatenate([audio, audio[:7]]), RATE, subtype="FLOAT")
    cache = decoded[track].parent
    assert _score("--references", cache, "--estimates", broken, "--out", tmp_path / "out", "--tracks", track) == 1
    assert f"{path}: {audio.shape[0] + 7} samples, 7 more than the reference" in capsys.readouterr().err


def test_references_of_no_known_layout_and_unknown_tracks_are_refused(small_dataset, estimates, tmp_path, capsys):
    junk = tmp_path / "junk"
    (junk / "some folder").mkdir(parents=True)
    (junk / "notes.txt").write_text("not a dataset")
    assert _score("--references", junk, "--estimates", estimates, "--out", tmp_path / "out") == 1
    assert f"references {junk}: none of the known layouts" in capsys.readouterr().err
    assert _score("--references", tmp_path / "absent", "--estimates", estimates, "--out", tmp_path / "out") == 1
    assert "not a directory" in capsys.readouterr().err
    assert _score("--references", small_dataset, "--estimates", tmp_path / "none", "--out", tmp_path / "out") == 1
    assert f"estimates {tmp_path / 'none'}: not a directory" in capsys.readouterr().err
    args = ("--references", small_dataset, "--estimates", estimates, "--out", tmp_path / "out")
    assert _score(*args, "--tracks", "No Such - Track") == 1
    assert "track 'No Such - Track': not among the references' test tracks" in capsys.readouterr().err


def test_a_musdb18_root_is_detected_from_its_stem_files(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "A - B.stem.mp4").write_bytes(b"")
    references = detect_references(tmp_path)
    assert (references.layout, references.tracks) == ("musdb18", ("A - B",))
    assert references.location("A - B") == tmp_path / "test" / "A - B.stem.mp4"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to write and decode .stem.mp4")
def test_musdb18_stem_mp4_references_score_as_their_decoded_cache(tmp_path, capsys):
    from demixbench.data.decode import decode_track
    from demixbench.data.synthetic import SyntheticSpec
    from demixbench.data.synthetic.writer import write_dataset

    root = tmp_path / "musdb18"
    write_dataset(SyntheticSpec(n_train=1, n_test=1, duration=2.0, seed=5, format="stem.mp4"), root)
    (track,) = detect_references(root).tracks
    cache = tmp_path / "decoded" / track
    decode_track("synthetic", root, "test", track, cache)
    references = np.stack([np.load(cache / f"{target}.npy") for target in TARGETS])
    estimates = tmp_path / "estimates"
    write_estimates(estimates / track, (0.7 * references + 0.1 * np.roll(references, 1, axis=0)), TARGETS, RATE)
    expected = score_track(cache, estimates / track, tmp_path / "expected.json.gz")
    assert _score("--references", root, "--estimates", estimates, "--out", tmp_path / "out", "--jobs", 1) == 0
    assert (tmp_path / "out" / f"{track}.json.gz").read_bytes() == (tmp_path / "expected.json.gz").read_bytes()
    assert expected["nsdr"]
    # A stem.mp4's decoded length is known only once decoded: a wrong length fails the track then.
    write_estimates(estimates / track, references[..., :-10], TARGETS, RATE)
    capsys.readouterr()
    assert _score("--references", root, "--estimates", estimates, "--out", tmp_path / "short", "--jobs", 1) == 1
    captured = capsys.readouterr()
    assert f"{references.shape[-1] - 10} samples, 10 fewer than the reference" in captured.err
    assert "scored 0, skipped 0 (already scored), failed 1" in captured.out
