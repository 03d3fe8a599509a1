"""Short-time Fourier transform used by every spectrogram model, oracle and statistic.

One :class:`STFT` object is shared by the input statistics, the U-Net, the oracles and separation,
so all of them see exactly the same time-frequency grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from demixbench.constraints import check_stft


@dataclass(frozen=True)
class STFTConfig:
    """Parameters of the time-frequency transform.

    n_fft: window and FFT length in samples (the paper U-Net uses 4096).
    hop_length: hop between frames in samples (paper: 1024).
    """

    n_fft: int = 4096
    hop_length: int = 1024

    def __post_init__(self) -> None:
        check_stft(self.n_fft, self.hop_length)

    @property
    def n_bins(self) -> int:
        """Number of non-negative frequency bins, n_fft // 2 + 1."""
        return self.n_fft // 2 + 1


class STFT:
    """Complex STFT and its inverse with a periodic Hann window and centred frames."""

    def __init__(self, config: STFTConfig) -> None:
        self.config = config
        self._windows: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def _window(self, like: torch.Tensor) -> torch.Tensor:
        dtype = like.real.dtype if like.is_complex() else like.dtype
        key = (like.device, dtype)
        if key not in self._windows:
            self._windows[key] = torch.hann_window(self.config.n_fft, device=like.device, dtype=dtype)
        return self._windows[key]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(..., time) real -> (..., bins, frames) complex, bins = n_fft // 2 + 1.

        Half-precision input (from a mixed-precision forward pass) is transformed in float32:
        cuFFT has no bf16 and only power-of-two fp16 transforms, and the spectra feed losses.
        """
        shape = audio.shape
        if audio.dtype in (torch.float16, torch.bfloat16):
            audio = audio.float()
        spec = torch.stft(
            audio.reshape(-1, shape[-1]),
            n_fft=self.config.n_fft,
            hop_length=self.config.hop_length,
            window=self._window(audio),
            center=True,
            pad_mode="constant",  # zero padding keeps the transform linear, so STFT(sum) = sum(STFT)
            return_complex=True,
        )
        return spec.reshape(*shape[:-1], *spec.shape[-2:])

    def inverse(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """(..., bins, frames) complex -> (..., length) real (complex32 is computed in complex64)."""
        shape = spec.shape
        if spec.dtype == torch.complex32:
            spec = spec.to(torch.complex64)
        audio = torch.istft(
            spec.reshape(-1, *shape[-2:]),
            n_fft=self.config.n_fft,
            hop_length=self.config.hop_length,
            window=self._window(spec),
            center=True,
            length=length,
        )
        return audio.reshape(*shape[:-2], length)

    def n_frames(self, length: int) -> int:
        """Number of frames that :meth:`forward` produces for `length` samples."""
        return length // self.config.hop_length + 1
