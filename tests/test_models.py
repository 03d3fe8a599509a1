import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from demixbench import TARGETS
from demixbench.models import ARCHITECTURES, DISCRIMINATORS, build_discriminator, build_model
from demixbench.models.base import Separator
from demixbench.models.demucs import track_statistics
from demixbench.models.losses import discriminator_loss, feature_matching_loss, generator_adversarial_loss

SMALL_UNET = dict(n_fft=512, hop_length=128, max_bins=256, channels=[4, 8, 16, 32])


@pytest.mark.parametrize("per_target", [False, True])
@pytest.mark.parametrize("length", [22050, 22050 + 333])
def test_unet_output_shapes(per_target, length):
    model = build_model("unet", {**SMALL_UNET, "per_target": per_target}).eval()
    mixture = torch.randn(2, 2, length)
    with torch.no_grad():
        estimates = model(mixture)
    assert estimates.shape == (2, len(TARGETS), 2, length)
    masks = model.masks(model.stft.forward(mixture).abs())
    assert masks.shape == (2, 4, 2, 257, model.stft.n_frames(length))
    assert masks.min() >= 0 and masks.max() <= 1
    assert torch.all(masks[:, :, :, 256:] == 0)  # mask_extension="zeros" above max_bins


def test_unet_loss_and_gradients():
    model = build_model("unet", SMALL_UNET)
    mixture, sources = torch.randn(2, 2, 8000), torch.randn(2, 4, 2, 8000)
    loss, estimate, reference = model.separation_loss(mixture, sources)
    assert estimate.shape == reference.shape == (2, 4, 2, 257, model.stft.n_frames(8000))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_unet_input_statistics_are_buffers_in_the_state_dict():
    model = build_model("unet", SMALL_UNET)
    model.set_input_stats(torch.arange(257.0), torch.full((257,), 2.0))
    state = model.state_dict()
    assert torch.equal(state["input_mean"], torch.arange(256.0))
    assert torch.equal(state["input_std"], torch.full((256,), 2.0))


def test_paper_scale_unet_forward_backward_on_cpu_at_batch_1():
    model = build_model("unet", {})  # paper defaults: STFT 4096/1024, 1024 bins, 16..512 channels
    mixture = torch.randn(1, 2, 1024 * 63)  # 64 frames
    loss, _, _ = model.separation_loss(mixture, torch.randn(1, 4, 2, 1024 * 63))
    loss.backward()
    assert sum(p.numel() for p in model.parameters()) > 9_000_000


def test_patchgan_shapes():
    model = build_model("unet", SMALL_UNET)
    discriminator = build_discriminator("patchgan", {"in_channels": 10, "channels": [8, 16]})
    mixture = torch.randn(2, 2, 8000)
    _, estimate, _ = model.separation_loss(mixture, torch.randn(2, 4, 2, 8000))
    logits, features = discriminator(estimate, model.condition(mixture))
    assert isinstance(logits, list) and len(logits) == 1
    assert logits[0].shape[:2] == (2, 1) and logits[0].ndim == 4
    assert len(features) == 2


def test_registry_errors_name_the_allowed_values():
    with pytest.raises(ValueError, match="unknown architecture 'nope'; allowed: demucs_v1, unet"):
        build_model("nope", {})
    with pytest.raises(ValueError, match="bad arguments for architecture 'unet'"):
        build_model("unet", {"not_an_argument": 1})
    with pytest.raises(ValueError, match="bad arguments for architecture 'demucs_v1'"):
        build_model("demucs_v1", {"not_an_argument": 1})
    with pytest.raises(ValueError, match="max_bins"):
        build_model("unet", {**SMALL_UNET, "max_bins": 100})
    with pytest.raises(ValueError, match="unknown discriminator 'nope'; allowed: multiperiod, multiscale, patchgan"):
        build_discriminator("nope", {})
    with pytest.raises(ValueError, match="bad arguments for discriminator 'multiscale'"):
        build_discriminator("multiscale", {"not_an_argument": 1})
    assert sorted(ARCHITECTURES) == ["demucs_v1", "unet"]
    assert sorted(DISCRIMINATORS) == ["multiperiod", "multiscale", "patchgan"]
    assert {cls.domain for cls in ARCHITECTURES.values()} == {"spectrogram", "waveform"}
    assert {cls.domain for cls in DISCRIMINATORS.values()} == {"spectrogram", "waveform"}


def test_every_architecture_is_a_separator():
    """UNet and DemucsV1 provide what demixbench.models.base.Separator states (without inheriting from it)."""
    models = [build_model("unet", SMALL_UNET), build_model("demucs_v1", {"channels": 4, "depth": 3, "lstm_layers": 1})]
    assert {type(model) for model in models} == set(ARCHITECTURES.values())
    for model in models:
        assert isinstance(model, Separator) and Separator not in type(model).__mro__
        assert model.targets == TARGETS and model.domain in {"spectrogram", "waveform"}
    assert not isinstance(build_discriminator("patchgan", {}), Separator)  # no targets, no separation_loss


# --- Demucs v1 -----------------------------------------------------------------------------------

TINY_DEMUCS = dict(channels=8, depth=3, lstm_layers=1)


def _demucs_repo_valid_length(model, length):
    """Demucs.valid_length of the facebookresearch/demucs repository (v1/v2 model.py, resample=False)."""
    for _ in range(model.depth):
        length = math.ceil((length - model.kernel_size) / model.stride) + 1
        length = max(1, length)
        length += model.context - 1
    for _ in range(model.depth):
        length = (length - 1) * model.stride + model.kernel_size
    return int(length)


@pytest.mark.parametrize("length", [1, 2, 7, 1001, 4411, 22050 + 333])
def test_demucs_output_shape_equals_input_shape(length):
    model = build_model("demucs_v1", TINY_DEMUCS).eval()
    mixture = torch.randn(2, 2, length)
    with torch.no_grad():
        estimates = model(mixture)
    assert estimates.shape == (2, len(TARGETS), 2, length)
    assert torch.isfinite(estimates).all()


@pytest.mark.parametrize(
    "args", [TINY_DEMUCS, dict(channels=4, depth=4, lstm_layers=0, context=1, stride=2, kernel_size=5), {}]
)
def test_demucs_valid_length_is_the_smallest_that_covers_the_input(args):
    # Paper-scale lengths only need the arithmetic, not the weights: build the small version of the same chain.
    model = build_model("demucs_v1", {**args, "channels": 2, "lstm_layers": 0})
    for length in [*range(1, 600), 4410, 44100, 44101, 10 * 44100]:
        valid = model.valid_length(length)
        assert valid >= length
        assert model.output_length(valid) >= length
        assert valid == length or model.output_length(valid - 1) < length  # smallest
        assert valid == max(length, _demucs_repo_valid_length(model, length))
    x = torch.zeros(1, 2, model.valid_length(1001))
    assert model._core(x).shape[-1] == model.output_length(x.shape[-1])


def test_demucs_loss_returns_waveforms_and_backpropagates():
    model = build_model("demucs_v1", TINY_DEMUCS)
    mixture, sources = torch.randn(2, 2, 3001), torch.randn(2, 4, 2, 3001)
    loss, estimate, reference = model.separation_loss(mixture, sources)
    assert estimate.shape == reference.shape == (2, 4, 2, 3001)
    assert reference is sources
    assert torch.allclose(loss, (estimate - sources).abs().mean())
    assert torch.equal(model.condition(mixture), mixture)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_demucs_initial_weight_rescaling():
    torch.manual_seed(0)
    plain = build_model("demucs_v1", {**TINY_DEMUCS, "rescale": 0})  # rescaling disabled, same init otherwise
    torch.manual_seed(0)
    rescaled = build_model("demucs_v1", {**TINY_DEMUCS, "rescale": 0.1})
    n_convs = 0
    for (name, module), (_, reference) in zip(rescaled.named_modules(), plain.named_modules(), strict=True):
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
            n_convs += 1
            scale = (reference.weight.std() / 0.1) ** 0.5
            assert torch.allclose(module.weight, reference.weight / scale), name
            assert torch.allclose(module.bias, reference.bias / scale), name
            # The std becomes sqrt(std * 0.1): PyTorch's default init is pulled towards 0.1.
            assert module.weight.std().item() == pytest.approx((reference.weight.std().item() * 0.1) ** 0.5, rel=1e-4)
            assert not torch.allclose(module.weight, reference.weight)
    assert n_convs == 4 * TINY_DEMUCS["depth"]
    # The LSTM and its Linear are not rescaled.
    for (name, p), (_, q) in zip(rescaled.lstm.named_parameters(), plain.lstm.named_parameters(), strict=True):
        assert torch.equal(p, q), name


def test_demucs_normalisation_makes_it_affine_equivariant():
    """mean/std normalisation by the mixture's own statistics: f(a x + b) = a f(x) + b for a > 0,
    up to the 1e-5 epsilon in the std, although the network itself is not equivariant."""
    torch.manual_seed(0)
    model = build_model("demucs_v1", TINY_DEMUCS).eval()
    mixture = 0.3 * torch.randn(2, 2, 3001) + 0.05
    with torch.no_grad():
        estimates = model(mixture)
        for a, b in [(3.0, 0.25), (0.5, -0.1)]:
            assert torch.allclose(model(a * mixture + b), a * estimates + b, atol=1e-5 * a, rtol=1e-4)
        # The un-normalised network is far from equivariant, so the property above comes from the normalisation.
        x = mixture[..., : model.valid_length(1000)]
        assert not torch.allclose(model._core(3 * x), 3 * model._core(x), atol=1e-2)
    assert estimates.abs().max() > 0


def test_demucs_track_normalisation_leaves_the_input_to_the_caller():
    """normalize="track": forward is the network alone (pad, core, trim); normalize="segment" with the
    same weights is that network applied to the segment normalised by its own statistics."""
    torch.manual_seed(0)
    segment_model = build_model("demucs_v1", TINY_DEMUCS).eval()
    track_model = build_model("demucs_v1", {**TINY_DEMUCS, "normalize": "track"}).eval()
    track_model.load_state_dict(segment_model.state_dict())
    assert segment_model.normalize == "segment" and track_model.normalize == "track"
    mixture = 0.3 * torch.randn(2, 2, 3001) + 0.05
    mono = mixture.mean(dim=1, keepdim=True)
    mean, std = mono.mean(dim=-1, keepdim=True), mono.std(dim=-1, keepdim=True)
    with torch.no_grad():
        manual = track_model((mixture - mean) / (1e-5 + std)) * std[:, None] + mean[:, None]
        torch.testing.assert_close(segment_model(mixture), manual, rtol=1e-5, atol=1e-6)
        # without normalisation the scale of the input matters
        assert not torch.allclose(track_model(3 * mixture), 3 * track_model(mixture), atol=1e-2)


def test_demucs_normalize_must_be_segment_or_track():
    with pytest.raises(ValueError, match="normalize must be one of 'segment', 'track', got 'song'"):
        build_model("demucs_v1", {**TINY_DEMUCS, "normalize": "song"})


@pytest.mark.parametrize("block", [1, 7, 1000, 1 << 18])
def test_track_statistics_stream_the_track_and_match_torch(block):
    """The mono mixture's mean and (unbiased) std, as the authors' test.py computed them, combined
    exactly over blocks of any size; a constant track gets std 1 (normalising only shifts it)."""
    mixture = (0.2 * np.random.default_rng(0).standard_normal((2, 4001)) + 0.01).astype(np.float32)
    mean, std = track_statistics(mixture, block=block)
    reference = torch.from_numpy(mixture).double().mean(dim=0)
    assert mean == pytest.approx(reference.mean().item(), rel=1e-9, abs=1e-12)
    assert std == pytest.approx(reference.std().item(), rel=1e-9)
    assert track_statistics(np.full((2, 50), 0.5, dtype=np.float32), block=block) == (0.5, 1.0)
    assert track_statistics(np.zeros((2, 1), dtype=np.float32)) == (0.0, 1.0)


@pytest.mark.slow  # ~15-25 s on 2 CPU cores: 650M parameters
def test_paper_scale_demucs_forward_backward_on_cpu_at_batch_1():
    model = build_model("demucs_v1", {})  # paper defaults: 100 channels, depth 6, 2-layer BiLSTM
    # Computed from the architecture (not a number quoted from the paper); 430M of it is the BiLSTM.
    assert sum(p.numel() for p in model.parameters()) == 648_548_208
    # The architecture of the paper (and of the demucs code).
    widths = [block[0].out_channels for block in model.encoder]
    assert widths == [100, 200, 400, 800, 1600, 3200]
    first = model.encoder[0]
    assert (first[0].kernel_size, first[0].stride, first[2].kernel_size, first[2].out_channels) == (
        (8,),
        (4,),
        (1,),
        200,
    )
    assert isinstance(first[3], nn.GLU)
    assert model.lstm.lstm.num_layers == 2 and model.lstm.lstm.bidirectional and model.lstm.lstm.hidden_size == 3200
    assert (model.lstm.linear.in_features, model.lstm.linear.out_features) == (6400, 3200)
    # Decoder, innermost first: context conv to 2x + GLU, transposed conv, ReLU except on the last block.
    assert [block[2].out_channels for block in model.decoder] == [1600, 800, 400, 200, 100, 8]
    assert all(
        block[0].kernel_size == (3,) and block[0].out_channels == 2 * block[0].in_channels for block in model.decoder
    )
    assert all(isinstance(block[-1], nn.ReLU) for block in model.decoder[:-1])
    assert isinstance(model.decoder[-1][-1], nn.ConvTranspose1d)
    mixture = torch.randn(1, 2, 44100)  # 1 s
    loss, estimate, _ = model.separation_loss(mixture, torch.randn(1, 4, 2, 44100))
    assert estimate.shape == (1, 4, 2, 44100)
    loss.backward()
    assert model.encoder[0][0].weight.grad is not None and model.lstm.lstm.weight_hh_l1_reverse.grad is not None


# --- discriminators ------------------------------------------------------------------------------

TINY_MULTISCALE = dict(channels=4, max_channels=16, downsampling=[4, 4])
TINY_MULTIPERIOD = dict(channels=[4, 8, 8])


def _waveform_pair(batch=2, length=2001):
    model = build_model("demucs_v1", TINY_DEMUCS)
    mixture, sources = torch.randn(batch, 2, length), torch.randn(batch, 4, 2, length)
    _, estimate, reference = model.separation_loss(mixture, sources)
    return model, estimate, reference, model.condition(mixture)


def _spectrogram_pair():
    model = build_model("unet", SMALL_UNET)
    mixture, sources = torch.randn(2, 2, 8000), torch.randn(2, 4, 2, 8000)
    _, estimate, reference = model.separation_loss(mixture, sources)
    return model, estimate, reference, model.condition(mixture)


DISCRIMINATOR_CASES = {
    # kind: (args, inputs, number of logit maps, number of feature maps)
    "patchgan": ({"channels": [8, 16]}, _spectrogram_pair, 1, 2),
    "multiscale": (TINY_MULTISCALE, _waveform_pair, 3, 3 * (2 + 2)),
    "multiperiod": (TINY_MULTIPERIOD, _waveform_pair, 5, 5 * 3),
}


@pytest.mark.parametrize("kind", sorted(DISCRIMINATOR_CASES))
def test_discriminators_return_lists_of_logits_and_features(kind):
    args, inputs, n_logits, n_features = DISCRIMINATOR_CASES[kind]
    discriminator = build_discriminator(kind, args)
    model, estimate, _, condition = inputs()
    assert discriminator.domain == model.domain
    logits, features = discriminator(estimate, condition)
    assert isinstance(logits, list) and len(logits) == n_logits
    assert isinstance(features, list) and len(features) == n_features
    assert all(x.shape[:2] == (2, 1) and torch.isfinite(x).all() for x in logits)
    assert all(f.shape[0] == 2 for f in features)


def test_multiscale_discriminator_scales_and_weight_norm():
    discriminator = build_discriminator("multiscale", TINY_MULTISCALE)
    _, estimate, _, condition = _waveform_pair(length=4096)
    logits, _ = discriminator(estimate, condition)
    # Each scale halves the time axis (AvgPool1d(4, 2, 1)), then the strided convs divide it by 16.
    assert [x.shape[-1] for x in logits] == [4096 // 16, 2048 // 16, 1024 // 16]
    assert discriminator.discriminators[0].layers[0][1].in_channels == 10
    convs = [m for m in discriminator.modules() if isinstance(m, nn.Conv1d)]
    assert len(convs) == 3 * 5 and all(parametrize.is_parametrized(m, "weight") for m in convs)
    assert [m.groups for m in convs[:5]] == [1, 1, 4, 1, 1]  # in_width // 4 for the strided layers
    assert convs[1].kernel_size == (41,) and convs[1].stride == (4,)
    # The sub-discriminators are separate networks.
    assert (
        discriminator.discriminators[0].head.weight.data_ptr() != discriminator.discriminators[1].head.weight.data_ptr()
    )


@pytest.mark.parametrize("length", [2001, 2310])  # 2310 = 2 * 3 * 5 * 7 * 11: no padding
def test_multiperiod_discriminator_folds_by_period(length):
    discriminator = build_discriminator("multiperiod", TINY_MULTIPERIOD)
    _, estimate, _, condition = _waveform_pair(length=length)
    logits, features = discriminator(estimate, condition)
    assert [x.shape[-1] for x in logits] == [2, 3, 5, 7, 11]
    for period, x, first in zip((2, 3, 5, 7, 11), logits, features[::3], strict=True):
        frames = math.ceil(length / period)
        assert first.shape == (2, 4, math.ceil(frames / 3), period)  # first conv: stride 3 along time
        assert x.shape[-2] == math.ceil(math.ceil(frames / 3) / 3)  # last conv has stride 1
    convs = [m for m in discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 * 4 and all(parametrize.is_parametrized(m, "weight") for m in convs)
    assert convs[0].kernel_size == (5, 1) and convs[0].stride == (3, 1)


def test_paper_scale_waveform_discriminators_run_at_batch_1():
    _, estimate, reference, condition = _waveform_pair(batch=1, length=4096)
    estimate, reference = estimate.detach().requires_grad_(True), reference.detach()
    for kind, n_params in [("multiscale", 16_930_566), ("multiperiod", 41_112_970)]:
        discriminator = build_discriminator(kind, {})  # paper widths, conditional (10 input channels)
        assert sum(p.numel() for p in discriminator.parameters()) == n_params
        logits, features = discriminator(estimate, condition)
        loss = generator_adversarial_loss(logits, "lsgan") + feature_matching_loss(
            discriminator(reference, condition)[1], features
        )
        loss.backward()


@pytest.mark.parametrize("loss_kind", ["lsgan", "hinge"])
@pytest.mark.parametrize("kind", sorted(DISCRIMINATOR_CASES))
def test_adversarial_losses_on_lists(kind, loss_kind):
    args, inputs, _, _ = DISCRIMINATOR_CASES[kind]
    discriminator = build_discriminator(kind, args)
    _, estimate, reference, condition = inputs()
    fake = estimate.detach().requires_grad_(True)
    real_logits, real_features = discriminator(reference, condition)
    fake_logits, fake_features = discriminator(fake, condition)
    d_loss = discriminator_loss(real_logits, [x.detach() for x in fake_logits], loss_kind)
    g_loss = generator_adversarial_loss(fake_logits, loss_kind)
    fm_loss = feature_matching_loss(real_features, fake_features)
    for loss in (d_loss, g_loss, fm_loss):
        assert loss.ndim == 0 and torch.isfinite(loss)
    (grad,) = torch.autograd.grad(g_loss + fm_loss, fake)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    d_loss.backward()
    assert all(p.grad is not None for p in discriminator.parameters())


def test_losses_average_over_logit_maps():
    real = [torch.full((2, 1, 5), 0.5), torch.full((2, 1, 3, 2), 2.0)]
    fake = [torch.full((2, 1, 5), -0.5), torch.full((2, 1, 3, 2), 0.5)]
    # lsgan: ((0.5 - 1)^2 + 0.5^2 + (2 - 1)^2 + 0.5^2) / 2; hinge: (0.5 + 0.5 + 0 + 1.5) / 2
    assert discriminator_loss(real, fake, "lsgan").item() == pytest.approx((0.25 + 0.25 + 1 + 0.25) / 2)
    assert discriminator_loss(real, fake, "hinge").item() == pytest.approx((0.5 + 0.5 + 0 + 1.5) / 2)
    assert generator_adversarial_loss(fake, "lsgan").item() == pytest.approx((1.5**2 + 0.5**2) / 2)
    assert generator_adversarial_loss(fake, "hinge").item() == pytest.approx((0.5 - 0.5) / 2)
    # A bare tensor is one logit map, not a list of batch rows.
    assert torch.equal(generator_adversarial_loss(fake[1], "lsgan"), generator_adversarial_loss(fake[1:], "lsgan"))
    with pytest.raises(ValueError, match="allowed: lsgan, hinge"):
        discriminator_loss(real, fake, "wgan")
    with pytest.raises(ValueError, match="2 real but 1 fake"):
        discriminator_loss(real, fake[:1], "lsgan")
    with pytest.raises(ValueError):
        feature_matching_loss(real, fake[:1])


def test_waveform_gan_step_as_in_training():
    """One generator/discriminator step the way demixbench.train.loop does it, Demucs + each waveform discriminator."""
    for kind, args in [("multiscale", TINY_MULTISCALE), ("multiperiod", TINY_MULTIPERIOD)]:
        model = build_model("demucs_v1", TINY_DEMUCS)
        discriminator = build_discriminator(kind, args)
        mixture, sources = torch.randn(2, 2, 3000), torch.randn(2, 4, 2, 3000)
        loss, estimate, reference = model.separation_loss(mixture, sources)
        condition = model.condition(mixture)
        real_logits, real_features = discriminator(reference, condition)
        fake_logits, _ = discriminator(estimate.detach(), condition)
        discriminator_loss(real_logits, fake_logits, "hinge").backward()
        fake_logits, fake_features = discriminator(estimate, condition)
        total = (
            loss
            + 0.01 * generator_adversarial_loss(fake_logits, "hinge")
            + feature_matching_loss(real_features, fake_features)
        )
        model.zero_grad()
        total.backward()
        assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("kind", sorted(DISCRIMINATOR_CASES))
def test_discriminators_draw_no_random_numbers_in_forward(kind):
    """Training gives the discriminator a random stream of its own for its initialisation only
    (demixbench.train.parts): a forward pass that drew from torch's generator would shift the
    generator's dropout masks away from its baseline's at the same seed."""
    args, inputs, _, _ = DISCRIMINATOR_CASES[kind]
    discriminator = build_discriminator(kind, args).train()
    model, estimate, _, condition = inputs()
    before = torch.get_rng_state()
    discriminator(estimate, condition)
    assert torch.equal(torch.get_rng_state(), before)
