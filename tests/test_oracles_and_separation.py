import numpy as np
import pytest
import soundfile as sf
import torch

from demixbench import TARGETS
from demixbench.audio import STFTConfig
from demixbench.data.cache import NpyReader, load_decoded
from demixbench.models import build_model
from demixbench.score.track import nsdr, score_track
from demixbench.separate.apply import separate
from demixbench.separate.estimates import read_estimates, write_estimates
from demixbench.separate.oracles import (
    ORACLES,
    binary_mask_oracle,
    ideal_binary_masks,
    ideal_ratio_masks,
    mwf_oracle,
    oracle_estimates,
    separate_oracle,
)

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


@pytest.mark.parametrize("oracle", ["IRM1", "IRM2"])
def test_irm_estimates_sum_to_the_mixture_and_beat_mix(decoded, small_splits, oracle):
    mixture, sources = _track(decoded, small_splits.test[0])
    estimates = oracle_estimates(oracle, mixture, sources, STFT)
    np.testing.assert_allclose(estimates.sum(axis=0), mixture, atol=1e-4)
    error_irm = np.sum((estimates - sources) ** 2)
    error_mix = np.sum((mixture[None] - sources) ** 2)
    assert error_irm < 0.1 * error_mix


def test_unknown_oracle():
    with pytest.raises(ValueError, match="allowed: MIX, IRM1, IRM2, IBM1, IBM2, MWF$"):
        oracle_estimates("IBM9", np.zeros((2, 10)), np.zeros((4, 2, 10)), STFT)


def test_registry_holds_the_sigsep_oracles():
    assert list(ORACLES) == ["MIX", "IRM1", "IRM2", "IBM1", "IBM2", "MWF"]


@pytest.fixture(scope="module")
def fixture_estimates(decoded, small_splits):
    """(mixture, sources, {oracle: estimates}) of every oracle on the first synthetic test track."""
    mixture, sources = _track(decoded, small_splits.test[0])
    return mixture, sources, {name: oracle_estimates(name, mixture, sources, STFT) for name in ORACLES}


@pytest.mark.parametrize("oracle", ["MIX", "IRM1", "IRM2", "IBM1", "IBM2", "MWF"])
def test_oracle_estimates_have_the_shape_of_the_sources(fixture_estimates, oracle):
    _, sources, estimates = fixture_estimates
    assert estimates[oracle].shape == sources.shape
    assert estimates[oracle].dtype == np.float32
    assert np.isfinite(estimates[oracle]).all()


@pytest.mark.parametrize("oracle", ["IRM1", "IRM2", "IBM1", "IBM2", "MWF"])
def test_oracles_beat_mix_on_the_synthetic_track(fixture_estimates, oracle):
    _, sources, estimates = fixture_estimates
    for target, source in enumerate(sources):
        assert nsdr(source, estimates[oracle][target]) > nsdr(source, estimates["MIX"][target]) + 5


def test_mwf_estimates_sum_to_the_mixture(fixture_estimates):
    mixture, _, estimates = fixture_estimates
    np.testing.assert_allclose(estimates["MWF"].sum(axis=0), mixture, atol=1e-4)


def _complex_specs(shape, seed):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).to(torch.complex64)


def test_ratio_masks_sum_to_one():
    specs = _complex_specs((3, 2, 33, 20), seed=2)
    for alpha in (1.0, 2.0):
        masks = ideal_ratio_masks(specs, alpha)
        assert ((masks >= 0) & (masks <= 1)).all()
        torch.testing.assert_close(masks.sum(dim=0), torch.ones(specs.shape[1:]))


@pytest.mark.parametrize("reference", ["mixture", "sources"])
@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_binary_masks_are_binary(reference, alpha):
    specs = _complex_specs((4, 2, 33, 20), seed=3)
    masks = ideal_binary_masks(specs.sum(dim=0), specs, alpha, theta=0.5, reference=reference)
    assert masks.shape == specs.shape
    assert set(masks.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_binary_masks_against_the_sources_give_each_bin_to_one_of_two_sources(alpha):
    specs = _complex_specs((2, 2, 33, 20), seed=4)
    masks = ideal_binary_masks(specs.sum(dim=0), specs, alpha, theta=0.5, reference="sources")
    assert (masks.sum(dim=0) == 1).all()


def test_binary_masks_against_the_mixture_follow_sigsep():
    """sigsep-mus-oracle's IBM compares |S_j|^alpha with |X|^alpha: with alpha = 1 and two sources every
    bin goes to at least one source (|X| <= |S_1| + |S_2|), under phase cancellation to both."""
    specs = _complex_specs((2, 2, 33, 20), seed=5)
    masks = ideal_binary_masks(specs.sum(dim=0), specs, alpha=1.0, theta=0.5, reference="mixture")
    assert (masks.sum(dim=0) >= 1).all()
    assert (masks.sum(dim=0) == 2).any()
    # one bin, S = (3, -1), X = 2: against |X| both ratios (1.5, 0.5) reach theta; against |S_1| + |S_2| only 3/4 does
    spec = torch.tensor([3.0, -1.0], dtype=torch.complex64).reshape(2, 1, 1, 1)
    assert ideal_binary_masks(spec.sum(dim=0), spec, 1.0, 0.5, "mixture").flatten().tolist() == [1.0, 1.0]
    assert ideal_binary_masks(spec.sum(dim=0), spec, 1.0, 0.5, "sources").flatten().tolist() == [1.0, 0.0]


def test_binary_mask_oracle_applies_the_masks_to_the_mixture():
    from demixbench.audio import STFT as Transform

    rng = np.random.default_rng(6)
    sources = rng.standard_normal((3, 2, 4000)).astype(np.float32)
    mixture = sources.sum(axis=0)
    transform = Transform(STFT)
    mixture_spec = transform.forward(torch.from_numpy(mixture))
    masks = ideal_binary_masks(mixture_spec, transform.forward(torch.from_numpy(sources)), alpha=2.0, theta=0.5)
    expected = transform.inverse(masks * mixture_spec, mixture.shape[-1]).numpy()
    np.testing.assert_allclose(binary_mask_oracle(mixture, sources, STFT, alpha=2.0), expected, atol=1e-5)
    np.testing.assert_allclose(oracle_estimates("IBM2", mixture, sources, STFT), expected, atol=1e-5)


def _band_noise(rng, low, high, n, rate=44100):
    spectrum = np.fft.rfft(rng.standard_normal(n))
    frequencies = np.fft.rfftfreq(n, 1 / rate)
    spectrum[(frequencies < low) | (frequencies > high)] = 0
    return np.fft.irfft(spectrum, n)


def _panned(signals, gains):
    """signals (sources, samples), gains (sources, 2) -> (sources, 2, samples) float32: one fixed panning each."""
    return (np.asarray(gains)[:, :, None] * np.asarray(signals)[:, None, :]).astype(np.float32)


def test_mwf_separates_panned_sources_disjoint_in_time_frequency():
    """Each source is one signal with fixed stereo gains (one with identical channels: a rank-one
    spatial covariance), in its own frequency band: MWF (and the masks) separate them almost perfectly."""
    rng = np.random.default_rng(7)
    bands = [(100, 700), (1500, 3000), (4500, 7000), (9000, 14000)]
    signals = [_band_noise(rng, low, high, 44100) for low, high in bands]
    sources = _panned(signals, [(0.9, 0.2), (0.7, 0.7), (0.1, 0.95), (0.5, 0.8)]) * 0.1
    mixture = sources.sum(axis=0)
    estimates = oracle_estimates("MWF", mixture, sources, STFT)
    assert estimates.shape == sources.shape and estimates.dtype == np.float32
    for source, estimate in zip(sources, estimates):
        assert nsdr(source, estimate) > 45
    for oracle in ("IRM2", "IBM1"):
        for source, estimate in zip(sources, oracle_estimates(oracle, mixture, sources, STFT)):
            assert nsdr(source, estimate) > 35


def test_mwf_separates_overlapping_sources_with_different_panning():
    """Two white noises at the same time and frequencies, panned differently: no per-channel mask can
    separate them, the multichannel Wiener filter inverts the mixing."""
    rng = np.random.default_rng(8)
    sources = _panned(rng.standard_normal((2, 22050)), [(0.9, 0.2), (0.3, 0.8)]) * 0.1
    mixture = sources.sum(axis=0)
    mwf = oracle_estimates("MWF", mixture, sources, STFT)
    irm = oracle_estimates("IRM2", mixture, sources, STFT)
    for target, source in enumerate(sources):
        assert nsdr(source, mwf[target]) > 60
        assert nsdr(source, irm[target]) < 20


def test_mwf_on_one_channel_is_the_power_ratio_mask():
    rng = np.random.default_rng(9)
    sources = (0.1 * rng.standard_normal((3, 1, 6000))).astype(np.float32)
    mixture = sources.sum(axis=0)
    np.testing.assert_allclose(
        mwf_oracle(mixture, sources, STFT), oracle_estimates("IRM2", mixture, sources, STFT), atol=1e-6
    )


def test_mwf_with_three_channels_and_a_silent_source():
    """The general (linalg.solve) path; a silent stem (tracks without vocals) gives a silent estimate."""
    rng = np.random.default_rng(10)
    sources = (0.1 * rng.standard_normal((3, 3, 6000))).astype(np.float32)
    sources[2] = 0
    mixture = sources.sum(axis=0)
    estimates = mwf_oracle(mixture, sources, STFT)
    assert estimates.shape == sources.shape and np.isfinite(estimates).all()
    np.testing.assert_array_equal(estimates[2], 0)
    np.testing.assert_allclose(estimates.sum(axis=0), mixture, atol=1e-5)


class _Gain(torch.nn.Module):
    """(batch, channels, time) -> (batch, 4, channels, time): target k is k * mixture."""

    def forward(self, mixture):
        return torch.stack([k * mixture for k in range(4)], dim=1)


@pytest.mark.parametrize(
    "length,segment,overlap", [(10000, 3000, 0.25), (10000, 3000, 0.0), (2000, 3000, 0.5), (9001, 1000, 0.75)]
)
def test_overlap_add_of_a_pointwise_model_is_exact(length, segment, overlap):
    mixture = np.random.default_rng(0).standard_normal((2, length)).astype(np.float32)
    estimates = separate(_Gain(), mixture, segment=segment, overlap=overlap)
    assert estimates.shape == (4, 2, length)
    for k in range(4):
        np.testing.assert_allclose(estimates[k], k * mixture, rtol=1e-5, atol=1e-6)


class _Unnormalised(torch.nn.Module):
    """A model's forward alone, without its `normalize` attribute: separation applies it as it is."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, mixture):
        return self.model(mixture)


@pytest.mark.parametrize("shifts", [0, 2])
def test_track_normalisation_is_that_of_the_whole_track(tmp_path, shifts):
    """A normalize="track" model separates as the authors' evaluation did: the whole track
    normalised by its mono mixture's mean and std, the model applied, the estimates de-normalised;
    the statistics are read from an on-disk mixture, and the padding is zeros of the normalised track."""
    torch.manual_seed(0)
    model = build_model("demucs_v1", {"channels": 4, "depth": 2, "lstm_layers": 1, "normalize": "track"})
    rng = np.random.default_rng(3)
    mixture = (0.2 * rng.standard_normal((2, 9001)) + 0.03).astype(np.float32)
    np.save(tmp_path / "mixture.npy", mixture)
    options = {"segment": 3000, "overlap": 0.25, "shifts": shifts, "max_shift": 100, "seed": 5}
    estimates = separate(model, NpyReader(tmp_path / "mixture.npy"), **options)

    reference = torch.from_numpy(mixture).mean(dim=0)  # the authors' test.py, in torch
    mean, std = reference.mean().item(), reference.std().item()
    normalised = ((mixture - np.float32(mean)) / np.float32(std)).astype(np.float32)
    expected = separate(_Unnormalised(model), normalised, **options) * np.float32(std) + np.float32(mean)
    np.testing.assert_allclose(estimates, expected, rtol=1e-4, atol=1e-5)
    assert np.abs(estimates).max() > 0


def test_segment_normalisation_is_left_to_the_model():
    """normalize="segment" (and models without the attribute): separation passes the audio as it is."""
    torch.manual_seed(0)
    model = build_model("demucs_v1", {"channels": 4, "depth": 2, "lstm_layers": 1})
    mixture = (0.2 * np.random.default_rng(4).standard_normal((2, 7001)) + 0.03).astype(np.float32)
    np.testing.assert_array_equal(
        separate(model, mixture, segment=3000), separate(_Unnormalised(model), mixture, segment=3000)
    )


def test_estimates_round_trip_as_float_wav(tmp_path):
    estimates = np.random.default_rng(1).uniform(-1, 1, (4, 2, 500)).astype(np.float32)
    paths = write_estimates(tmp_path, estimates, TARGETS, 44100)
    assert [p.name for p in paths] == [f"{t}.wav" for t in TARGETS]
    assert sf.info(paths[0]).subtype == "FLOAT"
    np.testing.assert_array_equal(read_estimates(tmp_path, TARGETS), estimates)


def test_oracle_files_score_and_rank_as_expected(decoded, small_splits, tmp_path):
    """File-level path of the workflow: oracle estimates -> wav files -> museval JSON -> table reader."""
    from demixbench.score.scorefile import load_track_scores

    track = small_splits.test[0]
    medians = {}
    for oracle in ("MIX", "IRM2"):
        separate_oracle(oracle, decoded[track], tmp_path / oracle, STFT)
        out = tmp_path / "scores" / oracle / f"{track}.json.gz"
        score_track(decoded[track], tmp_path / oracle, out)
        medians[oracle] = {t: np.nanmedian(v) for t, v in load_track_scores(out).items()}
    for target in TARGETS:
        assert medians["IRM2"][target] > medians["MIX"][target] + 3
