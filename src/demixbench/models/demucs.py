"""Demucs v1 waveform separator (Défossez, Usunier, Bottou and Bach 2019, "Music Source Separation
in the Waveform Domain", arXiv:1911.13254), following the structure of the original demucs code.

A U-Net on the raw waveform: an encoder of strided 1-d convolutions, a bidirectional LSTM at the
bottleneck and a decoder of transposed convolutions, with additive skip connections. The training
loss is L1 on the waveforms.

The input is normalised by the mean and std of the mono mixture (the mean of the channels), and
the outputs de-normalised with the same statistics. Where is the model's ``normalize`` argument:

- ``"segment"`` (the default): ``forward`` normalises each input by its own statistics, so the model
  takes and returns audio at its natural scale, whatever length it is given.
- ``"track"`` (the paper's): ``forward`` does not normalise; the caller normalises by the statistics
  of the whole track (:func:`track_statistics`). The authors normalised every training track
  (mixture and sources) once, when building their dataset, and each test track before
  separating it (their ``raw.py`` and ``test.py``); their released weights expect this.
  :func:`demixbench.separate.apply.iter_separate` and the training sampler do it for such a model.

No padding is used inside the network, so the output is shorter than the input; `forward` pads the
mixture to `valid_length` and centre-trims the estimates, so any input length works.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from demixbench import TARGETS
from demixbench.constraints import check_demucs

#: Samples per channel read at a time by track_statistics.
_STATS_BLOCK = 1 << 18


def track_statistics(mixture, block: int = _STATS_BLOCK) -> tuple[float, float]:
    """The statistics a ``normalize="track"`` model's input is normalised by: (mean, std) of the
    whole track's mono mixture (the mean over channels), the std unbiased as torch's ``std``.

    mixture: (channels, samples), an array or anything supporting ``mixture[:, a:b]`` and ``.shape``
    (e.g. :class:`demixbench.data.cache.NpyReader`), read `block` samples at a time: memory stays
    that of one block whatever the track's length. The blocks' means and sums of squared
    deviations are combined exactly in float64 (Chan et al.), so the result does not drift with
    length. A constant (e.g. silent) track, or one of a single sample, has std 0, which would make
    the normalisation undefined: 1.0 is returned instead (the track is then only shifted).
    """
    length = int(mixture.shape[-1])
    if length < 1:
        raise ValueError("track_statistics needs at least one sample")
    count, mean, squares = 0, 0.0, 0.0
    for start in range(0, length, block):
        mono = np.asarray(mixture[:, start : start + block], dtype=np.float64).mean(axis=0)
        n, block_mean = mono.shape[-1], float(mono.mean())
        block_squares = float(np.square(mono - block_mean).sum())
        delta, total = block_mean - mean, count + n
        mean += delta * n / total
        squares += block_squares + delta * delta * count * n / total
        count = total
    std = (squares / (count - 1)) ** 0.5 if count > 1 else 0.0
    return mean, std if std > 0 else 1.0


def center_trim(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """Trim the last dimension of `tensor` to `length`, removing as much on both sides
    (one more sample at the end when the difference is odd)."""
    delta = tensor.shape[-1] - length
    if delta < 0:
        raise ValueError(f"cannot trim a tensor of length {tensor.shape[-1]} to {length}")
    if delta:
        tensor = tensor[..., delta // 2 : tensor.shape[-1] - (delta - delta // 2)]
    return tensor


class _BLSTM(nn.Module):
    """Bidirectional LSTM over time followed by a Linear back to `dim`:
    (batch, dim, frames) -> (batch, dim, frames)."""

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size=dim, hidden_size=dim, num_layers=layers, bidirectional=True)
        self.linear = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(2, 0, 1)  # (frames, batch, dim)
        x = self.linear(self.lstm(x)[0])
        return x.permute(1, 2, 0)


def rescale_module(module: nn.Module, reference: float) -> None:
    """The demucs initial weight rescaling: every Conv1d / ConvTranspose1d has its weight and bias
    divided by sqrt(weight.std() / reference), so the weight std becomes sqrt(std * reference)."""
    for sub in module.modules():
        if isinstance(sub, (nn.Conv1d, nn.ConvTranspose1d)):
            with torch.no_grad():
                scale = (sub.weight.std() / reference) ** 0.5
                sub.weight.div_(scale)
                if sub.bias is not None:
                    sub.bias.div_(scale)


class DemucsV1(nn.Module):
    """Demucs v1: waveform U-Net with a BiLSTM bottleneck.

    forward: mixture waveform (batch, audio_channels, time) -> estimates (batch, targets, audio_channels, time),
    for any `time` >= 1.

    Args:
        audio_channels: 2 for stereo.
        channels: output width of the first encoder block (paper: 100); block i has
            channels * growth ** i.
        depth: number of encoder (and decoder) blocks (paper: 6).
        kernel_size, stride: of the strided encoder convs and the decoder transposed convs (paper: 8, 4).
        context: kernel of the decoder's first conv (paper: 3).
        growth: width multiplier from one block to the next (paper: 2).
        lstm_layers: BiLSTM layers at the bottleneck (paper: 2); 0 replaces the LSTM by the identity.
        rescale: reference std of the initial weight rescaling (paper: 0.1); 0 disables it.
        targets: names of the sources, in output order.
        normalize: "segment" (forward normalises each input by its own mono-mixture mean and std)
            or "track" (the paper's: forward takes and returns audio normalised by the caller with
            the whole track's statistics, see track_statistics). Exposed as ``self.normalize``.
    """

    domain = "waveform"

    def __init__(
        self,
        audio_channels: int = 2,
        channels: int = 100,
        depth: int = 6,
        kernel_size: int = 8,
        stride: int = 4,
        context: int = 3,
        growth: float = 2.0,
        lstm_layers: int = 2,
        rescale: float = 0.1,
        targets: tuple[str, ...] = TARGETS,
        normalize: str = "segment",
    ) -> None:
        super().__init__()
        check_demucs(depth, kernel_size, stride, context, normalize)
        self.targets = tuple(targets)
        self.normalize = normalize
        self.audio_channels = audio_channels
        self.depth = depth
        self.kernel_size = kernel_size
        self.stride = stride
        self.context = context

        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()  # innermost block first
        in_channels = audio_channels
        width = channels
        for index in range(depth):
            self.encoder.append(
                nn.Sequential(
                    nn.Conv1d(in_channels, width, kernel_size, stride),
                    nn.ReLU(),
                    nn.Conv1d(width, 2 * width, 1),
                    nn.GLU(dim=1),
                )
            )
            out_channels = in_channels if index > 0 else len(self.targets) * audio_channels
            decode: list[nn.Module] = [
                nn.Conv1d(width, 2 * width, context),
                nn.GLU(dim=1),
                nn.ConvTranspose1d(width, out_channels, kernel_size, stride),
            ]
            if index > 0:
                decode.append(nn.ReLU())
            self.decoder.insert(0, nn.Sequential(*decode))
            in_channels = width
            width = int(growth * width)
        self.lstm = _BLSTM(in_channels, lstm_layers) if lstm_layers else nn.Identity()
        if rescale:
            rescale_module(self, reference=rescale)

    def output_length(self, length: int) -> int:
        """Length of the network's raw output (before trimming) for an input of `length` samples;
        0 when the input is too short to produce anything."""
        for _ in range(self.depth):
            if length < self.kernel_size:
                return 0
            length = (length - self.kernel_size) // self.stride + 1
        for _ in range(self.depth):
            length -= self.context - 1
            if length < 1:
                return 0
            length = (length - 1) * self.stride + self.kernel_size
        return length

    def valid_length(self, length: int) -> int:
        """Smallest input length >= `length` whose raw output has at least `length` samples.

        Inverts the chain exactly: each decoder block needs ceil((n - kernel) / stride) + 1 frames
        after its context conv, plus context - 1 frames before it; each encoder block needs
        (n - 1) * stride + kernel input samples for n output frames.
        """
        needed = max(int(length), 1)
        for _ in range(self.depth):
            frames = max(-(-(needed - self.kernel_size) // self.stride) + 1, 1)
            needed = frames + self.context - 1
        for _ in range(self.depth):
            needed = (needed - 1) * self.stride + self.kernel_size
        return max(needed, int(length))

    def _core(self, x: torch.Tensor) -> torch.Tensor:
        """The un-normalised network: (batch, audio_channels, L) ->
        (batch, targets * audio_channels, output_length(L))."""
        saved = []
        for encode in self.encoder:
            x = encode(x)
            saved.append(x)
        x = self.lstm(x)
        for decode in self.decoder:
            x = x + center_trim(saved.pop(), x.shape[-1])
            x = decode(x)
        return x

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """mixture (batch, audio_channels, time) -> estimates (batch, targets, audio_channels, time).

        With normalize="segment" each input is normalised by its own mono-mixture mean and std and
        the estimates de-normalised; with "track" the mixture is taken as given (normalised by the
        caller) and the estimates are returned at that scale."""
        batch, channels, length = mixture.shape
        delta = self.valid_length(length) - length
        if self.normalize == "track":
            x = F.pad(mixture, (delta // 2, delta - delta // 2))
            x = center_trim(self._core(x), length)
            return x.reshape(batch, len(self.targets), channels, length)
        mono = mixture.mean(dim=1, keepdim=True)
        mean = mono.mean(dim=-1, keepdim=True)  # (batch, 1, 1)
        std = mono.std(dim=-1, keepdim=True) if length > 1 else torch.zeros_like(mean)
        x = (mixture - mean) / (1e-5 + std)
        x = F.pad(x, (delta // 2, delta - delta // 2))
        x = center_trim(self._core(x), length)
        x = x * std + mean
        return x.reshape(batch, len(self.targets), channels, length)

    def separation_loss(
        self, mixture: torch.Tensor, sources: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """L1 on waveforms, as in the paper (with normalize="track", on the normalised waveforms
        the training sampler gives: the loss is then in units of the tracks' std, as the authors').

        mixture (batch, channels, time), sources (batch, targets, channels, time) ->
        (loss, estimated waveforms, true waveforms), both (batch, targets, channels, time):
        the two representations a GAN discriminator compares.
        """
        estimate = self.forward(mixture)
        return F.l1_loss(estimate, sources), estimate, sources

    def condition(self, mixture: torch.Tensor) -> torch.Tensor:
        """What a conditional discriminator sees besides the sources: the mixture waveform (batch, channels, time)."""
        return mixture
