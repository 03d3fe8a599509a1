import json

import numpy as np
import pytest

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
