"""Discriminators and adversarial losses for the GAN variants.

A GAN variant keeps its generator's reconstruction loss (L1) and adds
``adv_weight * adversarial + feature_match_weight * feature matching``. The discriminator compares
the representation the generator's loss is computed on (magnitude spectrograms for the U-Net),
conditioned on the mixture, as in pix2pix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchGANDiscriminator(nn.Module):
    """Conditional spectrogram PatchGAN (Isola et al. 2017, pix2pix).

    forward(sources, condition):
        sources: (batch, targets, channels, bins, frames) magnitudes (true or estimated)
        condition: (batch, channels, bins, frames) mixture magnitude
        -> (patch logits (batch, 1, bins', frames'), list of intermediate feature maps)

    Magnitudes are log-compressed (log1p) first so that loud and quiet bins both matter.

    Args:
        in_channels: targets * channels + channels (4 stereo targets + stereo mixture: 10).
        channels: widths of the strided conv layers.
        kernel_size: conv kernel.
    """

    def __init__(self, in_channels: int = 10, channels: tuple[int, ...] = (32, 64, 128), kernel_size: int = 4) -> None:
        super().__init__()
        widths = [in_channels, *channels]
        self.layers = nn.ModuleList()
        for i in range(len(channels)):
            self.layers.append(
                nn.Sequential(
                    nn.Conv2d(widths[i], widths[i + 1], kernel_size, stride=2, padding=kernel_size // 2),
                    # No normalisation on the first layer, as in pix2pix.
                    nn.GroupNorm(1, widths[i + 1]) if i > 0 else nn.Identity(),
                    nn.LeakyReLU(0.2),
                )
            )
        self.head = nn.Conv2d(widths[-1], 1, kernel_size=3, padding=1)

    def forward(self, sources: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch, targets, channels, bins, frames = sources.shape
        x = torch.cat([sources.reshape(batch, targets * channels, bins, frames), condition], dim=1)
        x = torch.log1p(x)
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return self.head(x), features


DISCRIMINATORS: dict[str, type[nn.Module]] = {"patchgan": PatchGANDiscriminator}


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Discriminator loss for `kind` "lsgan" (least squares, Mao et al. 2017) or "hinge"."""
    if kind == "lsgan":
        return F.mse_loss(real_logits, torch.ones_like(real_logits)) + F.mse_loss(fake_logits, torch.zeros_like(fake_logits))
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    raise ValueError(f"unknown GAN loss {kind!r}; allowed: lsgan, hinge")


def generator_adversarial_loss(fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """The generator's adversarial term for `kind` "lsgan" or "hinge"."""
    if kind == "lsgan":
        return F.mse_loss(fake_logits, torch.ones_like(fake_logits))
    if kind == "hinge":
        return -fake_logits.mean()
    raise ValueError(f"unknown GAN loss {kind!r}; allowed: lsgan, hinge")


def feature_matching_loss(real_features: list[torch.Tensor], fake_features: list[torch.Tensor]) -> torch.Tensor:
    """Mean L1 distance between the discriminator's feature maps on true and estimated sources."""
    losses = [F.l1_loss(fake, real.detach()) for real, fake in zip(real_features, fake_features, strict=True)]
    return torch.stack(losses).mean()
