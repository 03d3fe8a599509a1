"""Discriminators for the GAN variants.

A GAN variant keeps its generator's reconstruction loss (L1) and adds
``adv_weight * adversarial + feature_match_weight * feature matching``. The discriminator compares
the representation the generator's loss is computed on (magnitude spectrograms for the U-Net,
waveforms for Demucs), conditioned on the mixture, as in pix2pix.

Every discriminator's forward(sources, condition) returns ``(logits, features)``: a list of logit
maps, one per sub-discriminator (scale, period or patch map), and a flat list of intermediate
feature maps (the logit maps excluded) for feature matching. The losses of
:mod:`demixbench.models.losses` take those lists.
Each discriminator class names the generator representation it expects in ``domain``
("spectrogram" or "waveform"), matching the generators' ``domain``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def _conditional_input(sources: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
    """sources (batch, targets, channels, *rest), condition (batch, c, *rest) ->
    (batch, targets * channels + c, *rest)."""
    batch, targets, channels = sources.shape[:3]
    return torch.cat([sources.reshape(batch, targets * channels, *sources.shape[3:]), condition], dim=1)


class PatchGANDiscriminator(nn.Module):
    """Conditional spectrogram PatchGAN (Isola et al. 2017, pix2pix).

    forward(sources, condition):
        sources: (batch, targets, channels, bins, frames) magnitudes (true or estimated)
        condition: (batch, channels, bins, frames) mixture magnitude
        -> ([patch logits (batch, 1, bins', frames')], list of intermediate feature maps)

    Magnitudes are log-compressed (log1p) first so that loud and quiet bins both matter.

    Args:
        in_channels: targets * channels + channels (4 stereo targets + stereo mixture: 10).
        channels: widths of the strided conv layers.
        kernel_size: conv kernel.
    """

    domain = "spectrogram"

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

    def forward(self, sources: torch.Tensor, condition: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        x = torch.log1p(_conditional_input(sources, condition))
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return [self.head(x)], features


class _MelGANScaleDiscriminator(nn.Module):
    """One MelGAN waveform discriminator: (batch, in_channels, time) -> (logits (batch, 1, time'), features).

    Conv1d(k15, reflect-padded) -> one grouped strided Conv1d(kernel 10 d + 1, stride d) per entry d
    of `downsampling`, widths multiplied by d up to `max_channels`, groups = in_width / 4 ->
    Conv1d(k5) at min(2 width, max_channels) -> Conv1d(k3) to 1 channel. LeakyReLU(0.2) after every
    layer but the last, weight norm on all.
    """

    def __init__(self, in_channels: int, channels: int, max_channels: int, downsampling: Sequence[int]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [
                nn.Sequential(
                    nn.ReflectionPad1d(7),
                    weight_norm(nn.Conv1d(in_channels, channels, kernel_size=15)),
                    nn.LeakyReLU(0.2),
                )
            ]
        )
        width = channels
        for factor in downsampling:
            previous, width = width, min(width * factor, max_channels)
            # MelGAN's groups = in_width // 4, kept a divisor of both widths for small configurations.
            groups = math.gcd(max(previous // 4, 1), width)
            self.layers.append(
                nn.Sequential(
                    weight_norm(
                        nn.Conv1d(
                            previous,
                            width,
                            kernel_size=10 * factor + 1,
                            stride=factor,
                            padding=5 * factor,
                            groups=groups,
                        )
                    ),
                    nn.LeakyReLU(0.2),
                )
            )
        previous, width = width, min(2 * width, max_channels)
        self.layers.append(
            nn.Sequential(weight_norm(nn.Conv1d(previous, width, kernel_size=5, padding=2)), nn.LeakyReLU(0.2))
        )
        self.head = weight_norm(nn.Conv1d(width, 1, kernel_size=3, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return self.head(x), features


class MultiScaleDiscriminator(nn.Module):
    """Conditional multi-scale waveform discriminator of MelGAN (Kumar et al. 2019).

    `n_scales` identical (but separately weighted) sub-discriminators see the input, then the input
    average-pooled by 2, by 4, ... (AvgPool1d(4, stride 2, padding 1), as in MelGAN).

    forward(sources, condition):
        sources: (batch, targets, channels, time) waveforms (true or estimated)
        condition: (batch, channels, time) mixture waveform
        -> (list of n_scales logit maps (batch, 1, time_i), flat list of the feature maps of all scales)

    Args:
        in_channels: targets * channels + channels (4 stereo targets + stereo mixture: 10).
        n_scales: number of sub-discriminators (paper: 3).
        channels: width of the first conv (paper: 16).
        max_channels: width cap (paper: 1024).
        downsampling: stride of each grouped strided conv (paper: 4, 4, 4, 4).
    """

    domain = "waveform"

    def __init__(
        self,
        in_channels: int = 10,
        n_scales: int = 3,
        channels: int = 16,
        max_channels: int = 1024,
        downsampling: tuple[int, ...] = (4, 4, 4, 4),
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            _MelGANScaleDiscriminator(in_channels, channels, max_channels, tuple(downsampling)) for _ in range(n_scales)
        )
        self.pool = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    def forward(self, sources: torch.Tensor, condition: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        x = _conditional_input(sources, condition)
        logits, features = [], []
        for index, discriminator in enumerate(self.discriminators):
            if index > 0:
                x = self.pool(x)
            scale_logits, scale_features = discriminator(x)
            logits.append(scale_logits)
            features.extend(scale_features)
        return logits, features


class _HiFiGANPeriodDiscriminator(nn.Module):
    """One HiFi-GAN period discriminator: (batch, in_channels, time) reshaped to
    (batch, in_channels, ceil(time / period), period) -> (logits (batch, 1, frames', period), features).

    Conv2d(kernel (5, 1), stride (3, 1)) layers (the last of `channels` with stride 1), LeakyReLU(0.1),
    then Conv2d(kernel (3, 1)) to 1 channel; weight norm on all.
    """

    def __init__(self, period: int, in_channels: int, channels: Sequence[int], kernel_size: int, stride: int) -> None:
        super().__init__()
        self.period = period
        widths = [in_channels, *channels]
        self.convs = nn.ModuleList(
            weight_norm(
                nn.Conv2d(
                    widths[i],
                    widths[i + 1],
                    (kernel_size, 1),
                    (stride if i < len(channels) - 1 else 1, 1),
                    padding=((kernel_size - 1) // 2, 0),
                )
            )
            for i in range(len(channels))
        )
        self.head = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch, channels, time = x.shape
        pad = -time % self.period
        if pad:
            # Reflect padding needs pad < time; longer pads (tiny inputs) fall back to replicate.
            x = F.pad(x, (0, pad), "reflect" if pad < time else "replicate")
        x = x.reshape(batch, channels, -1, self.period)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            features.append(x)
        return self.head(x), features


class MultiPeriodDiscriminator(nn.Module):
    """Conditional multi-period waveform discriminator of HiFi-GAN (Kong et al. 2020).

    One sub-discriminator per period p sees the waveform folded into (time / p, p) (reflect-padded
    to a multiple of p), so it compares samples p apart.

    forward(sources, condition):
        sources: (batch, targets, channels, time) waveforms (true or estimated)
        condition: (batch, channels, time) mixture waveform
        -> (list of len(periods) logit maps (batch, 1, frames_p, p), flat list of the feature maps of all periods)

    Args:
        in_channels: targets * channels + channels (4 stereo targets + stereo mixture: 10).
        periods: the periods (paper: 2, 3, 5, 7, 11).
        channels: widths of the Conv2d layers (paper: 32, 128, 512, 1024, 1024); all but the last strided.
        kernel_size, stride: along time (paper: 5, 3).
    """

    domain = "waveform"

    def __init__(
        self,
        in_channels: int = 10,
        periods: tuple[int, ...] = (2, 3, 5, 7, 11),
        channels: tuple[int, ...] = (32, 128, 512, 1024, 1024),
        kernel_size: int = 5,
        stride: int = 3,
    ) -> None:
        super().__init__()
        self.periods = tuple(periods)
        self.discriminators = nn.ModuleList(
            _HiFiGANPeriodDiscriminator(p, in_channels, tuple(channels), kernel_size, stride) for p in self.periods
        )

    def forward(self, sources: torch.Tensor, condition: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        x = _conditional_input(sources, condition)
        logits, features = [], []
        for discriminator in self.discriminators:
            period_logits, period_features = discriminator(x)
            logits.append(period_logits)
            features.extend(period_features)
        return logits, features


DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "multiperiod": MultiPeriodDiscriminator,
    "multiscale": MultiScaleDiscriminator,
    "patchgan": PatchGANDiscriminator,
}
