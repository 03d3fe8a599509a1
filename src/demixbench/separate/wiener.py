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


def multichannel_wiener(
    magnitudes: torch.Tensor, mixture: torch.Tensor, iterations: int = 1, eps: float = 1e-10
) -> torch.Tensor:
    """Wiener-filter source magnitude estimates against the mixture STFT.

    The method turns non-negative magnitude estimates of the sources (usually a spectrogram
    model's masks times the mixture magnitude) into complex source STFTs that use the stereo image:

    1. Normalise: the mixture and the magnitudes are divided by the mixture's largest magnitude,
       so that `eps` means the same for quiet and loud tracks.
    2. Initial estimate: y_j = |S_j| with the mixture phase, channel by channel.
    3. Each of the `iterations` EM iterations (Nugraha et al. [1], as open-unmix's filtering [3]):

       a. power spectral densities v_j(f, t) = mean over channels of |y_j(f, t)|^2;
       b. spatial covariances R_j(f) = sum_t y_j y_j^H / (eps + sum_t v_j) (full rank, [2]);
       c. mixture covariance C_x(f, t) = sum_k v_k R_k + eps I;
       d. new estimates y_j = v_j R_j C_x^-1 x.

    4. Undo the normalisation of step 1.

    References:
        [1] A. A. Nugraha, A. Liutkus and E. Vincent, "Multichannel audio source separation with
            deep neural networks", IEEE/ACM Transactions on Audio, Speech, and Language Processing
            24(9), 1652-1664, 2016.
        [2] N. Q. K. Duong, E. Vincent and R. Gribonval, "Under-determined reverberant audio source
            separation using a full-rank spatial covariance model", IEEE Transactions on Audio,
            Speech, and Language Processing 18(7), 1830-1840, 2010.
        [3] F.-R. Stöter, S. Uhlich, A. Liutkus and Y. Mitsufuji, "Open-Unmix - A Reference
            Implementation for Music Source Separation", Journal of Open Source Software 4(41), 1667,
            2019 (``openunmix.filtering.wiener``, after sigsep's norbert).

    Args:
        magnitudes: [shape=(sources, channels, bins, frames)] non-negative estimates |S_j|, real.
        mixture: [shape=(channels, bins, frames)] complex mixture STFT.
        iterations: [scalar] EM iterations (0 returns the magnitudes with the mixture phase).
        eps: [scalar] regularisation of the mixture covariance (relative to the mixture's scale).
    Returns:
        [shape=(sources, channels, bins, frames)] complex source estimates, in the mixture's dtype.

    Notes:
        * `magnitudes` must be magnitude estimates, not masks: multiply masks by |mixture| first.
        * With one or more iterations the gains v_j R_j C_x^-1 of all sources sum to the identity
          (up to the eps I in C_x), so the estimates sum to the mixture; with 0 iterations they do
          not.
        * Memory grows with sources x bins x frames x channels^2 (the weighted covariances), so
          :mod:`demixbench.separate.apply` filters one segment at a time.
        * The arithmetic runs in the mixture's precision (complex64 during separation).
    """
    sources, channels, bins, frames = magnitudes.shape
    # Work on a normalised scale so eps means the same for quiet and loud tracks.
    scale = mixture.abs().max().clamp_min(1e-8)
    x = mixture / scale
    y = magnitudes.to(x.real.dtype) / scale * torch.exp(1j * torch.angle(x))[None]
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
