import json
import logging

import numpy as np
import pytest
import torch

from demixbench import TARGETS
from demixbench.models import ModelSpec
from demixbench.models.checkpoint import load_checkpoint, load_weights
from demixbench.train.config import GANConfig, TrainConfig
from demixbench.train.loop import train
from demixbench.train.sampler import ChunkSampler

SPEC = ModelSpec("unet", {"n_fft": 512, "hop_length": 128, "max_bins": 256, "channels": [4, 8, 16, 32]})
CONFIG = TrainConfig(seed=3, epochs=2, steps_per_epoch=3, batch_size=2, segment_seconds=0.5, valid_segment_seconds=3.0)
GAN = GANConfig(discriminator_args={"in_channels": 10, "channels": [4, 8]}, warmup_steps=2, feature_match_weight=1.0)


def _run(tmp_path, decoded, splits, name, config=CONFIG, gan=None, spec=SPEC, **options):
    """Train `spec` on the small dataset into tmp_path/name (input statistics for the U-Net's 257
    bins; a model without input normalisation ignores them); options go to train (run_dir,
    tracking, ...). Returns (directory, history). The tiny training of every training test."""
    out = tmp_path / name
    stats = (np.full(257, 0.1, dtype=np.float32), np.full(257, 0.2, dtype=np.float32))
    history = train(
        spec,
        config,
        [decoded[t] for t in splits.train],
        [decoded[t] for t in splits.valid],
        out / "model.safetensors",
        out / "history.csv",
        input_stats=stats,
        gan=gan,
        record={"model_name": name},
        **options,
    )
    return out, history


def test_same_seed_gives_bit_identical_weights(tmp_path, decoded, small_splits):
    first, history = _run(tmp_path, decoded, small_splits, "a")
    second, _ = _run(tmp_path, decoded, small_splits, "b")
    third, _ = _run(tmp_path, decoded, small_splits, "c", config=TrainConfig(**{**CONFIG.__dict__, "seed": 4}))
    a, b, c = (load_weights(d / "model.safetensors") for d in (first, second, third))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    # The same weights, the same bytes: DVC stores one copy and a hash tells "same weights".
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert len(history) == 2 and all(np.isfinite(row["valid_nsdr"]) for row in history)
    header = (first / "history.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "train_loss", "valid_loss", "valid_nsdr", "valid_nsdr_vocals"} <= set(header)
    assert "valid_nsdr_tracks" not in header
    per_track = json.loads((first / "history.json").read_text())[-1]["valid_nsdr_tracks"]
    assert list(per_track) == list(small_splits.valid) and set(per_track[small_splits.valid[0]]) == set(TARGETS)
    mean_vocals = np.mean([scores["vocals"] for scores in per_track.values()])
    assert mean_vocals == pytest.approx(history[-1]["valid_nsdr_vocals"])


def test_checkpoint_describes_itself(tmp_path, decoded, small_splits):
    out, _ = _run(tmp_path, decoded, small_splits, "described")
    meta = json.loads((out / "model.json").read_text())
    assert meta["arch"] == "unet" and meta["args"] == SPEC.args
    assert meta["config"]["train"]["seed"] == 3 and meta["config"]["model_name"] == "described"
    assert {"git", "packages", "python", "host"} <= set(meta["provenance"])
    assert meta["provenance"]["packages"]["torch"].startswith("2.11")
    model, _ = load_checkpoint(out / "model.safetensors", expected_arch="unet")
    assert torch.allclose(model.input_mean, torch.full((256,), 0.1))
    assert not model.training


def test_gan_variant_trains_and_logs_adversarial_losses(tmp_path, decoded, small_splits):
    _, history = _run(tmp_path, decoded, small_splits, "gan", gan=GAN)
    assert history[0]["train_adv"] > 0 and history[1]["train_d"] > 0  # after the 2 warm-up steps


def test_checkpoint_mismatches_fail_clearly(tmp_path, decoded, small_splits):
    out, _ = _run(tmp_path, decoded, small_splits, "mismatch")
    with pytest.raises(ValueError, match="is a 'unet' model, but 'demucs_v1' was requested"):
        load_checkpoint(out / "model.safetensors", expected_arch="demucs_v1")
    meta = json.loads((out / "model.json").read_text())
    meta["args"]["channels"] = [4, 8, 16, 64]
    (out / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="weights do not match"):
        load_checkpoint(out / "model.safetensors")
    (out / "model.json").unlink()
    with pytest.raises(ValueError, match="checkpoint metadata missing"):
        load_checkpoint(out / "model.safetensors")


def test_sampler_mixture_is_sum_of_augmented_sources(decoded, small_splits):
    sampler = ChunkSampler(
        [decoded[t] for t in small_splits.train], 4410, remix=True, channel_swap=True, sign_flip=True
    )
    mixture, sources = sampler.batch(np.random.default_rng(0), 3)
    assert mixture.shape == (3, 2, 4410) and sources.shape == (3, 4, 2, 4410)
    torch.testing.assert_close(mixture, sources.sum(dim=1))


def test_sampler_normalises_each_source_by_its_own_tracks_statistics(decoded, small_splits):
    """normalize="track" (the authors' training): each source segment normalised by the mean and std
    of its track's whole mono mixture, then augmented; the mixture is the sum of those sources."""
    dirs = [decoded[t] for t in small_splits.train]
    plain = ChunkSampler(dirs, 4410, remix=True, channel_swap=True, sign_flip=True)
    sampler = ChunkSampler(dirs, 4410, remix=True, channel_swap=True, sign_flip=True, normalize="track")
    assert plain.stats is None and len(sampler.stats) == len(dirs)
    for directory, (mean, std) in zip(dirs, sampler.stats, strict=True):
        mono = torch.from_numpy(np.load(directory / "mixture.npy")).double().mean(dim=0)
        assert mean == pytest.approx(mono.mean().item(), abs=1e-9) and std == pytest.approx(mono.std().item())
    choices = sampler.choices(np.random.default_rng(0), 3)
    mixture, sources = sampler.read(choices)
    _, raw = plain.read(choices)
    for b, example in enumerate(choices):
        for s, (track, _, _, flip) in enumerate(example):
            mean, std = sampler.stats[track]
            shift = -mean / std if flip else mean / std  # the mean is removed before the sign flip
            torch.testing.assert_close(sources[b, s], raw[b, s] / std - shift, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mixture, sources.sum(dim=1))
    with pytest.raises(ValueError, match="normalize must be 'segment' or 'track'"):
        ChunkSampler(dirs, 4410, remix=True, channel_swap=True, sign_flip=True, normalize="song")


def test_demucs_with_track_normalisation_trains_and_validates(tmp_path, decoded, small_splits):
    spec = ModelSpec("demucs_v1", {"channels": 4, "depth": 3, "lstm_layers": 1, "normalize": "track"})
    out, history = _run(tmp_path, decoded, small_splits, "track", config=CONFIG, spec=spec)
    assert all(np.isfinite(h["valid_loss"]) and np.isfinite(h["valid_nsdr"]) for h in history)
    model, meta = load_checkpoint(out / "model.safetensors", expected_arch="demucs_v1")
    assert model.normalize == "track" and meta["args"]["normalize"] == "track"


def test_gan_with_a_discriminator_of_the_other_domain_is_refused(tmp_path, decoded, small_splits):
    waveform_gan = GANConfig(discriminator="multiscale", discriminator_args={"channels": 4, "max_channels": 8})
    with pytest.raises(
        ValueError,
        match="'multiscale' compares waveform representations, but 'unet' is a spectrogram model; use one of: patchgan",
    ):
        _run(tmp_path, decoded, small_splits, "mismatch", gan=waveform_gan)


def test_demucs_with_a_waveform_gan_trains(tmp_path, decoded, small_splits):
    out = tmp_path / "demucs"
    spec = ModelSpec("demucs_v1", {"channels": 4, "depth": 3, "lstm_layers": 1})
    gan = GANConfig(
        discriminator="multiscale",
        discriminator_args={"channels": 4, "max_channels": 16, "n_scales": 2},
        warmup_steps=1,
    )
    history = train(
        spec,
        CONFIG,
        [decoded[t] for t in small_splits.train],
        [decoded[t] for t in small_splits.valid],
        out / "model.safetensors",
        out / "history.csv",
        gan=gan,
    )
    assert history[-1]["train_adv"] > 0 and np.isfinite(history[-1]["valid_nsdr"])
    model, meta = load_checkpoint(out / "model.safetensors", expected_arch="demucs_v1")
    assert meta["config"]["gan"]["discriminator"] == "multiscale"


@pytest.mark.parametrize("workers,prefetch", [(0, 0), (0, 2), (1, 1), (2, 3)])
def test_loader_gives_the_sampler_batches_and_the_state_to_resume_from(decoded, small_splits, workers, prefetch):
    from demixbench.train.sampler import BatchLoader

    sampler = ChunkSampler(
        [decoded[t] for t in small_splits.train], 2205, remix=True, channel_swap=True, sign_flip=True
    )
    reference_rng = np.random.default_rng(9)
    expected, states = [], []
    for _ in range(4):
        expected.append(sampler.batch(reference_rng, 3))
        states.append(reference_rng.bit_generator.state)
    loader = BatchLoader(sampler, np.random.default_rng(9), 3, workers=workers, prefetch=prefetch)
    try:
        for (mixture, sources), state in zip(expected, states):
            got_mixture, got_sources = loader.next()
            assert torch.equal(got_mixture, mixture) and torch.equal(got_sources, sources)
            assert loader.rng_state() == state  # what a resumed run restores
    finally:
        loader.close()


def test_loader_workers_do_not_change_the_weights(tmp_path, decoded, small_splits):
    plain, _ = _run(tmp_path, decoded, small_splits, "plain")
    threaded, _ = _run(
        tmp_path,
        decoded,
        small_splits,
        "threaded",
        config=TrainConfig(**{**CONFIG.__dict__, "loader_workers": 2, "prefetch_batches": 2}),
    )
    a, b = (load_weights(d / "model.safetensors") for d in (plain, threaded))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_gan_config_takes_betas_as_a_list_from_config_files():
    assert GANConfig(betas=[0.5, 0.99]).betas == (0.5, 0.99)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_a_gan_with_float32_master_weights(tmp_path, decoded, small_splits, precision):
    """The autocast/GradScaler path (what CUDA runs) exercised on CPU, whose autocast supports both
    half types: finite losses, float32 weights in the checkpoint, and weights that differ from fp32."""
    config = TrainConfig(**{**CONFIG.__dict__, "precision": precision, "checkpoint_every_steps": 1})
    out, history = _run(tmp_path, decoded, small_splits, precision, config=config, gan=GAN)
    assert all(np.isfinite(row["train_loss"]) and np.isfinite(row["valid_nsdr"]) for row in history)
    assert history[1]["train_adv"] > 0
    weights = load_weights(out / "model.safetensors")
    assert all(tensor.dtype in (torch.float32, torch.int64) for tensor in weights.values())
    reference, _ = _run(tmp_path, decoded, small_splits, f"{precision}-fp32-reference", gan=GAN)
    fp32 = load_weights(reference / "model.safetensors")
    assert not all(torch.equal(weights[k], fp32[k]) for k in weights)


# ---- common random numbers: a GAN variant against its baseline at the same seed ---------------------

FAMILIES = {
    # generator spec, discriminator and its arguments
    "unet": (SPEC, "patchgan", {"in_channels": 10, "channels": [4, 8]}),
    "demucs_v1": (
        ModelSpec("demucs_v1", {"channels": 4, "depth": 3, "lstm_layers": 1}),
        "multiscale",
        {"channels": 4, "max_channels": 16, "downsampling": [4, 4]},
    ),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_gan_variant_that_never_changes_the_generator_ends_with_the_baselines_weights(
    tmp_path, decoded, small_splits, family
):
    """Common random numbers: a variant draws the baseline's initialisation, data and dropout masks
    at the same seed; only the discriminator has a stream of its own. So a variant whose adversarial
    term is switched off (weight 0, or a warm-up longer than the training) ends bit-identical to the
    baseline, and "variant - baseline" at one seed measures the GAN and nothing else."""
    spec, discriminator, args = FAMILIES[family]
    total_steps = CONFIG.epochs * CONFIG.steps_per_epoch

    def generator_weights(name, gan):
        out, _ = _run(tmp_path, decoded, small_splits, name, gan=gan, spec=spec)
        return load_weights(out / "model.safetensors")

    baseline = generator_weights("baseline", None)
    silent = generator_weights("weight0", GANConfig(discriminator, args, adv_weight=0.0, warmup_steps=0))
    late = generator_weights("warmup", GANConfig(discriminator, args, warmup_steps=total_steps + 1))
    active = generator_weights("active", GANConfig(discriminator, args, adv_weight=1.0, warmup_steps=0))
    for variant in (silent, late):
        assert variant.keys() == baseline.keys()
        assert all(torch.equal(variant[key], baseline[key]) for key in baseline)
    assert not all(torch.equal(active[key], baseline[key]) for key in baseline)  # the GAN does act


def test_tracks_shorter_than_the_training_segment_are_named_in_a_warning(decoded, small_splits, caplog):
    track = small_splits.train[0]
    length = np.load(decoded[track] / "mixture.npy", mmap_mode="r").shape[-1]
    with caplog.at_level(logging.WARNING, logger="demixbench.train.sampler"):
        ChunkSampler([decoded[track]], segment=length - 1, remix=False, channel_swap=False, sign_flip=False)
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="demixbench.train.sampler"):
        sampler = ChunkSampler([decoded[track]], segment=length + 10, remix=False, channel_swap=False, sign_flip=False)
    assert len(caplog.records) == 1
    assert track in caplog.text and "shorter than the training segment" in caplog.text
    mixture, _ = sampler.batch(np.random.default_rng(0), 1)
    assert mixture.shape[-1] == length + 10 and not mixture[..., length:].any()  # still zero padded
