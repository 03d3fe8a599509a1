"""Spectrogram U-Net separator (Jansson et al. 2017, "Singing voice separation with deep U-Net
convolutional networks"), extended to the four MUSDB18 targets as Spleeter did.

The network sees the magnitude STFT of the stereo mixture, normalised per frequency bin with the
training-set statistics, and predicts one sigmoid mask per target and channel. Estimates are the
masked mixture magnitude with the mixture phase. The training loss is L1 between the masked and the
true target magnitudes, as in the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from demixbench import TARGETS
from demixbench.audio import STFT, STFTConfig
from demixbench.constraints import check_unet


class _EncoderBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel_size: int, slope: float) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel_size, stride=2, padding=kernel_size // 2),
            nn.BatchNorm2d(c_out),
            nn.LeakyReLU(slope),
        )


class _DecoderBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel_size: int, dropout: float) -> None:
        super().__init__(
            # output_padding=1 makes every transposed conv exactly double the size (stride 2, "same" padding).
            nn.ConvTranspose2d(c_in, c_out, kernel_size, stride=2, padding=kernel_size // 2, output_padding=1),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
        )


class UNetMasker(nn.Module):
    """One U-Net: (batch, in_channels, bins, frames) -> (batch, out_channels, bins, frames) masks in [0, 1].

    `bins` and `frames` must be multiples of 2 ** len(channels).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: tuple[int, ...],
        kernel_size: int,
        dropout: float,
        n_dropout_layers: int,
        leaky_slope: float,
    ) -> None:
        super().__init__()
        widths = [in_channels, *channels]
        self.encoder = nn.ModuleList(
            _EncoderBlock(widths[i], widths[i + 1], kernel_size, leaky_slope) for i in range(len(channels))
        )
        self.decoder = nn.ModuleList()
        depth = len(channels)
        for i in range(depth - 1, 0, -1):
            # Deeper decoder blocks take the concatenation [upsampled, skip], except the first.
            c_in = channels[i] if i == depth - 1 else 2 * channels[i]
            layer_index = depth - 1 - i
            self.decoder.append(
                _DecoderBlock(c_in, channels[i - 1], kernel_size, dropout if layer_index < n_dropout_layers else 0.0)
            )
        first_in = channels[0] if depth == 1 else 2 * channels[0]
        self.head = nn.ConvTranspose2d(
            first_in, out_channels, kernel_size, stride=2, padding=kernel_size // 2, output_padding=1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck is the decoder's input, not a skip
        for block in self.decoder:
            x = block(x)
            x = torch.cat([x, skips.pop()], dim=1)
        return torch.sigmoid(self.head(x))


class UNet(nn.Module):
    """Mask-based spectrogram U-Net separator.

    forward: mixture waveform (batch, channels, time) -> estimates (batch, targets, channels, time).

    Args:
        n_fft, hop_length: the STFT (paper: 4096 / 1024).
        max_bins: number of low-frequency bins the network sees (paper: 1024); the mask of the
            bins above is `mask_extension` ("zeros" as Spleeter's default, or "ones").
        channels: encoder widths, one entry per layer (paper: 16, 32, 64, 128, 256, 512).
        kernel_size: conv kernel (paper: 5).
        dropout, n_dropout_layers: dropout on the first decoder layers (paper: 0.5 on 3).
        leaky_slope: LeakyReLU slope in the encoder (paper: 0.2).
        per_target: one network per target (Spleeter) instead of one joint network with
            targets x channels output masks.
        audio_channels: 2 for stereo.
    """

    domain = "spectrogram"

    def __init__(
        self,
        n_fft: int = 4096,
        hop_length: int = 1024,
        max_bins: int = 1024,
        channels: tuple[int, ...] = (16, 32, 64, 128, 256, 512),
        kernel_size: int = 5,
        dropout: float = 0.5,
        n_dropout_layers: int = 3,
        leaky_slope: float = 0.2,
        per_target: bool = False,
        mask_extension: str = "zeros",
        audio_channels: int = 2,
        targets: tuple[str, ...] = TARGETS,
    ) -> None:
        super().__init__()
        check_unet(n_fft, hop_length, max_bins, channels, kernel_size, mask_extension)
        self.stft = STFT(STFTConfig(n_fft=n_fft, hop_length=hop_length))
        self.stride = 2 ** len(channels)
        self.max_bins = max_bins
        self.mask_extension = mask_extension
        self.targets = tuple(targets)
        self.audio_channels = audio_channels
        n_targets = len(self.targets)
        unet_args = dict(
            channels=tuple(channels),
            kernel_size=kernel_size,
            dropout=dropout,
            n_dropout_layers=n_dropout_layers,
            leaky_slope=leaky_slope,
        )
        if per_target:
            self.maskers = nn.ModuleList(
                UNetMasker(audio_channels, audio_channels, **unet_args) for _ in range(n_targets)
            )
        else:
            self.maskers = nn.ModuleList([UNetMasker(audio_channels, n_targets * audio_channels, **unet_args)])
        # Per-bin input statistics of the training mixtures' magnitude; set by set_input_stats()
        # and saved in the state_dict so a checkpoint is self-contained.
        self.register_buffer("input_mean", torch.zeros(max_bins))
        self.register_buffer("input_std", torch.ones(max_bins))

    def set_input_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-bin mean/std (n_bins,) of the training mixtures' magnitude; only the first max_bins are used."""
        self.input_mean.copy_(torch.as_tensor(mean)[: self.max_bins])
        self.input_std.copy_(torch.as_tensor(std)[: self.max_bins].clamp_min(1e-5))

    def masks(self, mix_mag: torch.Tensor) -> torch.Tensor:
        """(batch, channels, bins, frames) magnitude -> (batch, targets, channels, bins, frames) masks."""
        batch, channels, bins, frames = mix_mag.shape
        x = mix_mag[:, :, : self.max_bins]
        x = (x - self.input_mean[:, None]) / self.input_std[:, None]
        pad = -frames % self.stride
        x = F.pad(x, (0, pad))
        out = torch.cat([masker(x) for masker in self.maskers], dim=1)[..., :frames]
        out = out.reshape(batch, len(self.targets), channels, self.max_bins, frames)
        fill = 0.0 if self.mask_extension == "zeros" else 1.0
        rest = out.new_full((batch, len(self.targets), channels, bins - self.max_bins, frames), fill)
        return torch.cat([out, rest], dim=3)

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        spec = self.stft.forward(mixture)
        masks = self.masks(spec.abs())
        estimates = masks * spec.unsqueeze(1)  # mixture phase
        return self.stft.inverse(estimates, mixture.shape[-1])

    def separation_loss(
        self, mixture: torch.Tensor, sources: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """L1 on magnitudes, as in the paper.

        mixture (batch, channels, time), sources (batch, targets, channels, time) ->
        (loss, estimated magnitudes, true magnitudes), both (batch, targets, channels, bins, frames):
        the two representations a GAN discriminator compares.
        """
        mix_mag = self.stft.forward(mixture).abs()
        est = self.masks(mix_mag) * mix_mag.unsqueeze(1)
        ref = self.stft.forward(sources).abs()
        return F.l1_loss(est, ref), est, ref

    def condition(self, mixture: torch.Tensor) -> torch.Tensor:
        """What a conditional discriminator sees besides the sources: the mixture magnitude
        (batch, channels, bins, frames)."""
        return self.stft.forward(mixture).abs()
