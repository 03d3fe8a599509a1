"""Multichannel Wiener filtering of spectrogram estimates (Nugraha, Liutkus and Vincent 2016), as
open-unmix applies it after its networks.

Each source j is modelled as a zero-mean complex Gaussian with a time-frequency power v_j(f, t)
and a frequency-dependent spatial covariance R_j(f) (channels x channels). Given the mixture STFT
x(f, t), the Wiener estimate is  y_j = v_j R_j (sum_k v_k R_k)^-1 x,  and a few EM iterations
re-estimate v_j and R_j from the current estimates. The gains of all sources sum to the identity,
so the estimates sum to the mixture (up to the regularisation).
"""

from __future__ import annotations

import torch


def _spatial_covariance(y: torch.Tensor, power: torch.Tensor, eps: float) -> torch.Tensor:
    """y (sources, channels, bins, frames) complex, power (sources, bins, frames) ->
    R (sources, bins, channels, channels): sum_t y y^H / sum_t v."""
    outer = torch.einsum("scft,sdft->sfcd", y, y.conj())
    return outer / (power.sum(dim=-1)[..., None, None] + eps)


def multichannel_wiener(magnitudes: torch.Tensor, mixture: torch.Tensor, iterations: int = 1, eps: float = 1e-10) -> torch.Tensor:
    """Wiener-filter source magnitude estimates against the mixture STFT.

    Args:
        magnitudes: (sources, channels, bins, frames) non-negative estimates |S_j|.
        mixture: (channels, bins, frames) complex mixture STFT.
        iterations: EM iterations (0 returns the magnitudes with the mixture phase).
        eps: regularisation of the mixture covariance (relative to the mixture's scale).
    Returns:
        (sources, channels, bins, frames) complex source estimates.
    """
    # Work on a normalised scale so eps means the same for quiet and loud tracks.
    scale = mixture.abs().max().clamp_min(1e-8)
    x = mixture / scale
    y = magnitudes.to(x.real.dtype) / scale * torch.exp(1j * torch.angle(x))[None]
    channels = x.shape[0]
    eye = torch.eye(channels, dtype=x.dtype, device=x.device)
    for _ in range(iterations):
        power = (y.abs() ** 2).mean(dim=1)  # (sources, bins, frames)
        covariance = _spatial_covariance(y, power, eps)  # (sources, bins, c, c)
        weighted = power[..., None, None] * covariance[:, :, None]  # (sources, bins, frames, c, c)
        mix_cov = weighted.sum(dim=0) + eps * eye  # (bins, frames, c, c)
        inverse = torch.linalg.inv(mix_cov)
        gains = weighted @ inverse[None]  # (sources, bins, frames, c, c)
        y = torch.einsum("sftcd,dft->scft", gains, x)
    return y * scale
