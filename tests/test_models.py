import pytest
import torch

from demixbench import TARGETS
from demixbench.models import ARCHITECTURES, build_discriminator, build_model

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
    assert logits.shape[:2] == (2, 1) and logits.ndim == 4
    assert len(features) == 2


def test_registry_errors_name_the_allowed_values():
    with pytest.raises(ValueError, match="unknown architecture 'nope'; allowed: unet"):
        build_model("nope", {})
    with pytest.raises(ValueError, match="bad arguments for architecture 'unet'"):
        build_model("unet", {"not_an_argument": 1})
    with pytest.raises(ValueError, match="max_bins"):
        build_model("unet", {**SMALL_UNET, "max_bins": 100})
    assert "unet" in ARCHITECTURES
