import numpy as np
import pytest
import soundfile as sf
import torch

from demixbench import TARGETS
from demixbench.audio import STFTConfig
from demixbench.data import load_decoded
from demixbench.oracles import oracle_estimates
from demixbench.separate import read_estimates, separate, write_estimates

STFT = STFTConfig(n_fft=1024, hop_length=256)


def _track(decoded, name):
    arrays = load_decoded(decoded[name], mmap=False)
    return arrays["mixture"], np.stack([arrays[t] for t in TARGETS])


def test_mix_oracle_repeats_the_mixture(decoded, small_splits):
    mixture, sources = _track(decoded, small_splits.test[0])
    estimates = oracle_estimates("MIX", mixture, sources, STFT)
    assert estimates.shape == sources.shape
    for estimate in estimates:
        np.testing.assert_array_equal(estimate, mixture)


def test_irm_estimates_sum_to_the_mixture_and_beat_mix(decoded, small_splits):
    mixture, sources = _track(decoded, small_splits.test[0])
    estimates = oracle_estimates("IRM2", mixture, sources, STFT)
    np.testing.assert_allclose(estimates.sum(axis=0), mixture, atol=1e-4)
    error_irm = np.sum((estimates - sources) ** 2)
    error_mix = np.sum((mixture[None] - sources) ** 2)
    assert error_irm < 0.1 * error_mix


def test_unknown_oracle():
    with pytest.raises(ValueError, match="allowed: MIX, IRM1, IRM2"):
        oracle_estimates("IBM9", np.zeros((2, 10)), np.zeros((4, 2, 10)), STFT)


class _Gain(torch.nn.Module):
    """(batch, channels, time) -> (batch, 4, channels, time): target k is k * mixture."""

    def forward(self, mixture):
        return torch.stack([k * mixture for k in range(4)], dim=1)


@pytest.mark.parametrize("length,segment,overlap", [(10000, 3000, 0.25), (10000, 3000, 0.0), (2000, 3000, 0.5), (9001, 1000, 0.75)])
def test_overlap_add_of_a_pointwise_model_is_exact(length, segment, overlap):
    mixture = np.random.default_rng(0).standard_normal((2, length)).astype(np.float32)
    estimates = separate(_Gain(), mixture, segment=segment, overlap=overlap)
    assert estimates.shape == (4, 2, length)
    for k in range(4):
        np.testing.assert_allclose(estimates[k], k * mixture, rtol=1e-5, atol=1e-6)


def test_estimates_round_trip_as_float_wav(tmp_path):
    estimates = np.random.default_rng(1).uniform(-1, 1, (4, 2, 500)).astype(np.float32)
    paths = write_estimates(tmp_path, estimates, TARGETS, 44100)
    assert [p.name for p in paths] == [f"{t}.wav" for t in TARGETS]
    assert sf.info(paths[0]).subtype == "FLOAT"
    np.testing.assert_array_equal(read_estimates(tmp_path, TARGETS), estimates)


def test_oracle_files_score_and_rank_as_expected(decoded, small_splits, tmp_path):
    """File-level path of the workflow: oracle estimates -> wav files -> museval JSON -> table reader."""
    from demixbench.oracles import oracle_track_file
    from demixbench.scoring import score_track_files
    from demixbench.table import load_track_scores

    track = small_splits.test[0]
    medians = {}
    for oracle in ("MIX", "IRM2"):
        oracle_track_file(oracle, decoded[track], tmp_path / oracle, STFT)
        out = tmp_path / "scores" / oracle / f"{track}.json.gz"
        score_track_files(decoded[track], tmp_path / oracle, out)
        medians[oracle] = {t: np.nanmedian(v) for t, v in load_track_scores(out).items()}
    for target in TARGETS:
        assert medians["IRM2"][target] > medians["MIX"][target] + 3
