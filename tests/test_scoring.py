import json

import numpy as np
import pytest
import soundfile as sf

from demixbench.score.scorefile import load_track_scores, write_scores
from demixbench.score.track import ScoringConfig, nsdr, score_arrays


def test_nsdr_matches_definition():
    reference = np.ones((2, 100))
    assert nsdr(reference, reference) == pytest.approx(10 * np.log10((200 + 1e-7) / 1e-7))
    assert nsdr(reference, 0.5 * reference) == pytest.approx(10 * np.log10((200 + 1e-7) / (50 + 1e-7)))


@pytest.fixture(scope="module")
def scores():
    rng = np.random.default_rng(0)
    references = rng.standard_normal((4, 2, 3 * 8000)).astype(np.float32)
    references[3, :, :8000] = 0  # a silent first second of "vocals"
    estimates = references + 0.3 * rng.standard_normal(references.shape).astype(np.float32)
    return references, estimates, score_arrays(references, estimates, config=ScoringConfig(sample_rate=8000))


def test_score_track_in_museval_format(scores):
    references, estimates, result = scores
    assert [t["name"] for t in result["targets"]] == ["drums", "bass", "other", "vocals"]
    frames = result["targets"][0]["frames"]
    assert len(frames) == 3
    assert frames[1]["time"] == 1.0 and frames[1]["duration"] == 1.0
    assert set(frames[0]["metrics"]) == {"SDR", "SIR", "ISR", "SAR"}
    # v4 SDR of estimate = reference + noise at -10.5 dB is about 10.5 dB per frame
    assert 8 < frames[1]["metrics"]["SDR"] < 13
    # museval gives NaN for every target in a frame where any reference is silent
    for target in result["targets"]:
        assert np.isnan(target["frames"][0]["metrics"]["SDR"])
        assert np.isfinite(target["frames"][2]["metrics"]["SDR"])
    assert result["nsdr"]["drums"] == pytest.approx(nsdr(references[0], estimates[0]))


def test_scores_round_trip_through_the_table_reader(scores, tmp_path):
    _, _, result = scores
    path = tmp_path / "Track A.json.gz"
    write_scores(path, result)
    values = load_track_scores(path)
    assert np.isnan(values["vocals"][0])
    assert values["drums"][1] == pytest.approx(result["targets"][0]["frames"][1]["metrics"]["SDR"])
    plain = tmp_path / "Track A.json"
    write_scores(plain, result)
    assert json.loads(plain.read_text().replace("NaN", "null"))["targets"][0]["name"] == "drums"
    write_scores(tmp_path / "again.json.gz", result)
    assert (tmp_path / "again.json.gz").read_bytes() == path.read_bytes()  # deterministic bytes


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        score_arrays(np.zeros((4, 2, 100)), np.zeros((4, 2, 99)))


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown scoring backend 'bsseval3'; allowed: museval, fast"):
        ScoringConfig(backend="bsseval3")


@pytest.mark.parametrize("backend", ["fast", "museval"])
def test_a_target_silent_over_the_whole_track_is_undefined_and_the_others_are_scored(backend, caplog):
    """Issue 17: a silent test stem (e.g. an instrumental's vocals) no longer stops the pipeline."""
    rng = np.random.default_rng(0)
    references = rng.normal(0, 0.1, size=(4, 2, 3 * 8000))
    references[3] = 0.0  # vocals silent throughout
    estimates = references + rng.normal(0, 0.02, size=references.shape)
    config = ScoringConfig(backend=backend, sample_rate=8000)
    with caplog.at_level("WARNING"):
        scores = score_arrays(references, estimates, config=config)
    assert "vocals: reference silent over the whole track" in caplog.text
    vocals = scores["targets"][3]
    assert vocals["name"] == "vocals" and len(vocals["frames"]) == 3
    assert all(np.isnan(value) for frame in vocals["frames"] for value in frame["metrics"].values())
    assert np.isnan(scores["nsdr"]["vocals"])
    # The others equal scoring them without the silent target (a zero reference spans nothing).
    alone = score_arrays(references[:3], estimates[:3], targets=("drums", "bass", "other"), config=config)
    for index in range(3):
        assert scores["targets"][index]["frames"] == alone["targets"][index]["frames"]
        assert np.isfinite(scores["nsdr"][alone["targets"][index]["name"]])
    silent = np.zeros_like(references)
    with pytest.raises(ValueError, match="every reference .* is silent"):
        score_arrays(silent, estimates, config=config)


def test_a_track_shorter_than_the_scoring_window_is_named_in_a_warning(tmp_path, caplog):
    from demixbench.score.track import score_track
    from demixbench.separate.estimates import write_estimates

    rng = np.random.default_rng(1)
    track = tmp_path / "decoded" / "Short - Track"
    track.mkdir(parents=True)
    references = rng.normal(0, 0.1, size=(4, 2, 6000)).astype(np.float32)  # 0.75 s at 8 kHz
    for name, audio in zip(("drums", "bass", "other", "vocals"), references, strict=True):
        np.save(track / f"{name}.npy", audio)
    write_estimates(tmp_path / "est", references * 0.9, ("drums", "bass", "other", "vocals"), 8000)
    with caplog.at_level("WARNING"):
        scores = score_track(track, tmp_path / "est", tmp_path / "out.json.gz", config=ScoringConfig(sample_rate=8000))
    assert "Short - Track: 6000 samples, shorter than the scoring window" in caplog.text
    assert len(scores["targets"][0]["frames"]) == 1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_samples_are_refused_naming_the_file_and_where(tmp_path, bad):
    """A diverged model's NaN (or inf) estimate has no scores (museval's would all be NaN, and a
    table's medians would leave them out): refused before scoring, naming the file, the count,
    the first sample's time and channel, and the fix; nothing is written. A corrupt decoded
    reference is named too."""
    from demixbench.score.track import NonFiniteAudio, score_track
    from demixbench.separate.estimates import write_estimates

    rng = np.random.default_rng(2)
    track = tmp_path / "decoded" / "Some - Track"
    track.mkdir(parents=True)
    references = rng.normal(0, 0.1, size=(4, 2, 3 * 8000)).astype(np.float32)
    for name, audio in zip(("drums", "bass", "other", "vocals"), references, strict=True):
        np.save(track / f"{name}.npy", audio)
    estimates = references * 0.9
    write_estimates(tmp_path / "est", estimates, ("drums", "bass", "other", "vocals"), 8000)
    config = ScoringConfig(sample_rate=8000)

    broken = estimates.copy()
    broken[1, 1, 12000:12003] = bad  # bass, channel 1, at 1.5 s
    with pytest.raises(NonFiniteAudio, match=r"bass estimate: 3 samples are NaN or infinite, the first at 1\.500 s"):
        score_arrays(references, broken, config=config)
    sf.write(tmp_path / "est" / "bass.wav", broken[1].T, 8000, subtype="FLOAT")
    out = tmp_path / "out.json.gz"
    with pytest.raises(ValueError) as error:
        score_track(track, tmp_path / "est", out, config=config)
    message = str(error.value)
    assert (
        f"{tmp_path / 'est' / 'bass.wav'}: 3 samples are NaN or infinite, the first at 1.500 s (channel 1)" in message
    )
    assert "training diverged" in message and "drums" not in message
    assert not out.exists()

    np.save(track / "other.npy", np.where(np.arange(3 * 8000) == 100, bad, references[2]).astype(np.float32))
    with pytest.raises(ValueError, match=r"other\.npy: 2 samples are NaN or infinite, the first at 0\.013 s .*decode"):
        score_track(track, tmp_path / "est", out, config=config)


def test_a_separator_output_with_nan_is_not_written(tmp_path):
    """stream_estimates refuses a block with NaN (a diverged model) and leaves no file; the time
    counts the blocks before it."""
    from demixbench.separate.estimates import EstimatesError, stream_estimates

    targets = ("drums", "bass", "other", "vocals")
    good = np.zeros((4, 2, 8000), dtype=np.float32)
    bad = good.copy()
    bad[3, 0, 4000] = np.nan
    with pytest.raises(EstimatesError, match=r"vocals\.wav: 1 samples are NaN or infinite, the first at 1\.500 s"):
        stream_estimates(tmp_path / "est", iter([good, bad]), targets, 8000)
    assert not (tmp_path / "est").exists() or not any((tmp_path / "est").iterdir())
