"""Oracle separators computed from the true stems (as in sigsep-mus-oracle), scored like any model.

Every oracle takes the mixture (channels, samples) and the true sources (targets, channels,
samples) and returns estimates (targets, channels, samples) float32. All of them work on the
project's STFT (:class:`demixbench.audio.STFT` with the run's :class:`STFTConfig`), the grid the
spectrogram models use, so an oracle bounds what a model on that same grid could reach. Below,
X is the mixture STFT, S_j the STFT of source j (both per channel), eps the float64 machine epsilon
(the reference code's ``np.finfo(float).eps``) and every operation is per time-frequency bin.

MIX
    Every estimate is the mixture. The floor a trained model must beat.
IBM1, IBM2 (ideal binary mask, sigsep-mus-oracle ``IBM.py``, alpha = 1 resp. 2, theta = 0.5)
    M_j = 1 if |S_j|^alpha / (eps + |X|^alpha) >= theta else 0, estimate M_j X, each channel on its
    own. As in the reference the ratio is taken against the *mixture* magnitude |X|, not against
    sum_k |S_k|^alpha, so with phase cancellation one bin can go to several sources (or, for
    alpha = 2, to none) and the estimates need not sum to the mixture. ``reference="sources"`` of
    :func:`binary_mask_oracle` gives the other variant (with theta = 0.5 and two sources, every bin
    then goes to exactly one source). Reference for hard-decision masking with the mixture phase
    (mask classification / clustering models).
IRM1, IRM2 (ideal ratio mask, ``IRM.py``, alpha = 1 resp. 2)
    M_j = |S_j|^alpha / (eps + sum_k |S_k|^alpha), estimate M_j X, each channel on its own. The masks
    sum to one, so the estimates sum to the mixture up to the STFT round trip. IRM2 is what a
    single-channel soft-mask spectrogram model with the mixture phase could reach at best.
MWF (multichannel Wiener filter, ``MWF.py``)
    Local Gaussian model with a time-invariant spatial covariance per source and frequency:
    S_j(f, t) ~ N_c(0, v_j(f, t) R_j(f)), the channels of one bin modelled jointly. From the true
    stem, with C channels and T frames:

    1. v_j(f, t) = mean_c |S_jc(f, t)|^2 (first PSD estimate);
    2. R_j(f) = (1/T) sum_t S_j S_j^H / (eps + v_j), then normalised to trace C and loaded:
       R_j <- C R_j / (eps + tr R_j) + delta I;
    3. v_j(f, t) = (1/C) Re(S_j^H R_j^{-1} S_j) (PSD refined under the spatial model);
    4. C_xx(f, t) = sum_k v_k R_k + eps I and the estimate v_j R_j C_xx^{-1} X.

    Reference for linear multichannel filtering with ideal PSDs and spatial images, e.g. a
    spectrogram model followed by multichannel Wiener post-processing (Open-Unmix/norbert). It
    uses the stereo image, so it can separate overlapping sources with different panning, which no
    per-channel mask can; with one channel it reduces to IRM2.

None of these is a hard bound on every method (models that estimate phase, time-domain models or
other transforms can exceed them); each is the ideal member of its family on this STFT.

Differences to the reference code, all on purpose: the reference's ``np.trace`` on the (F, C, C)
array of step 2 sums over the first two axes (frequency and channel), not per frequency; here the
trace is per frequency, which is what its comment says. The reference loads R_j with eps and adds
eps to the 2 x 2 determinant; here R_j is loaded with delta = :data:`SPATIAL_LOADING` (1e-8 of its
trace, far below any recorded noise floor) so that R_j^{-1} in step 3 stays accurate when a stem
is exactly rank one (a mono stem panned by constant gains, identical channels), and C_xx is loaded
with eps I, which works for any channel count.

Memory (a 10-minute stereo track has 4 x 2 spectrograms of ~53 M bins at n_fft = 4096): audio
is transformed one source at a time into complex64 spectrograms; masks are computed one source at
a time (a source's STFT is recomputed rather than keeping all of them); MWF keeps the mixture
spectrogram, the float32 PSDs of all sources and one output spectrogram, and does its float64
linear algebra in blocks of frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from demixbench import TARGETS
from demixbench.audio import STFT, STFTConfig
from demixbench.data.cache import load_decoded
from demixbench.separate.estimates import write_estimates

#: Floor of every denominator and loading of the mixture covariance (the reference's eps).
EPS: float = float(np.finfo(np.float64).eps)

#: Diagonal loading of each trace-normalised spatial covariance matrix of MWF (trace = channels).
SPATIAL_LOADING: float = 1e-8

#: Time-frequency bins per block of MWF's float64 linear algebra (frames per block = this // bins).
BLOCK_BINS: int = 1 << 19

Oracle = Callable[[np.ndarray, np.ndarray, STFTConfig], np.ndarray]


def _spectrogram(transform: STFT, audio: np.ndarray) -> torch.Tensor:
    """(..., samples) audio -> (..., bins, frames) complex64, computed from a float32 copy."""
    return transform.forward(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)))


def _magnitude_power(spec: torch.Tensor, alpha: float) -> torch.Tensor:
    """|spec|^alpha, float32, same shape as spec."""
    magnitude = spec.abs()
    if alpha == 1:
        return magnitude
    if alpha == 2:
        return magnitude.square_()
    return magnitude.pow_(alpha)


def _sum_of_powers(source_specs: Iterable[torch.Tensor], alpha: float) -> torch.Tensor:
    """eps + sum_k |S_k|^alpha over an iterable of (channels, bins, frames) spectrograms."""
    total = None
    for spec in source_specs:
        power = _magnitude_power(spec, alpha)
        total = power if total is None else total.add_(power)
    if total is None:
        raise ValueError("need at least one source")
    return total.add_(EPS)


def _binary_denominator(
    mixture_spec: torch.Tensor, source_specs: Iterable[torch.Tensor], alpha: float, reference: str
) -> torch.Tensor:
    """eps + |X|^alpha (reference "mixture", as sigsep-mus-oracle) or eps + sum_k |S_k|^alpha ("sources")."""
    if reference == "mixture":
        return _magnitude_power(mixture_spec, alpha).add_(EPS)
    if reference == "sources":
        return _sum_of_powers(source_specs, alpha)
    raise ValueError(f"reference must be 'mixture' or 'sources', got {reference!r}")


def ideal_ratio_masks(source_specs: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Ratio masks |S_j|^alpha / (eps + sum_k |S_k|^alpha).

    source_specs (targets, channels, bins, frames) complex -> masks of the same shape, float32.
    Materialises all masks: for analysis and tests; :func:`ratio_mask_oracle` streams over sources.
    """
    targets, channels, bins, frames = source_specs.shape
    total = _sum_of_powers(source_specs, alpha)
    return torch.stack([_magnitude_power(spec, alpha).div_(total) for spec in source_specs])


def ideal_binary_masks(
    mixture_spec: torch.Tensor,
    source_specs: torch.Tensor,
    alpha: float = 1.0,
    theta: float = 0.5,
    reference: str = "mixture",
) -> torch.Tensor:
    """Binary masks 1[|S_j|^alpha / denominator >= theta], denominator as in :func:`binary_mask_oracle`.

    mixture_spec (channels, bins, frames) and source_specs (targets, channels, bins, frames)
    complex -> masks (targets, channels, bins, frames) float32 of zeros and ones.
    """
    targets, channels, bins, frames = source_specs.shape
    denominator = _binary_denominator(mixture_spec, source_specs, alpha, reference)
    return torch.stack([_magnitude_power(spec, alpha).div_(denominator).ge_(theta) for spec in source_specs])


def mix_oracle(mixture: np.ndarray, sources: np.ndarray, stft: STFTConfig) -> np.ndarray:
    """Every target's estimate is the mixture.

    mixture (channels, samples), sources (targets, channels, samples) -> (targets, channels, samples) float32.
    """
    channels, samples = mixture.shape
    return np.broadcast_to(mixture, sources.shape).astype(np.float32)


def ratio_mask_oracle(mixture: np.ndarray, sources: np.ndarray, stft: STFTConfig, alpha: float = 2.0) -> np.ndarray:
    """Ideal ratio mask: |S_j|^alpha / (eps + sum_k |S_k|^alpha) applied to the mixture STFT (mixture phase).

    mixture (channels, samples), sources (targets, channels, samples) -> (targets, channels, samples) float32.
    """
    channels, samples = mixture.shape
    transform = STFT(stft)
    mixture_spec = _spectrogram(transform, mixture)
    total = _sum_of_powers((_spectrogram(transform, source) for source in sources), alpha)
    estimates = np.empty(sources.shape, dtype=np.float32)
    for j, source in enumerate(sources):
        mask = _magnitude_power(_spectrogram(transform, source), alpha).div_(total)
        estimates[j] = transform.inverse(mixture_spec * mask, samples).numpy()
    return estimates


def binary_mask_oracle(
    mixture: np.ndarray,
    sources: np.ndarray,
    stft: STFTConfig,
    alpha: float = 1.0,
    theta: float = 0.5,
    reference: str = "mixture",
) -> np.ndarray:
    """Ideal binary mask: 1[|S_j|^alpha / (eps + |X|^alpha) >= theta] applied to the mixture STFT X.

    reference "mixture" is sigsep-mus-oracle's IBM; "sources" puts eps + sum_k |S_k|^alpha in the
    denominator instead. mixture (channels, samples), sources (targets, channels, samples) ->
    (targets, channels, samples) float32.
    """
    channels, samples = mixture.shape
    transform = STFT(stft)
    mixture_spec = _spectrogram(transform, mixture)
    denominator = _binary_denominator(
        mixture_spec, (_spectrogram(transform, source) for source in sources), alpha, reference
    )
    estimates = np.empty(sources.shape, dtype=np.float32)
    for j, source in enumerate(sources):
        mask = _magnitude_power(_spectrogram(transform, source), alpha).div_(denominator).ge_(theta)
        estimates[j] = transform.inverse(mixture_spec * mask, samples).numpy()
    return estimates


def _frame_blocks(bins: int, frames: int, block_bins: int = BLOCK_BINS) -> list[slice]:
    """Slices of the frame axis holding about block_bins time-frequency bins each."""
    step = max(1, block_bins // bins)
    return [slice(start, min(start + step, frames)) for start in range(0, frames, step)]


def _solve(matrices: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Batched solve of A z = x, channels first: matrices (C, C, ...), vectors (C, ...) -> z (C, ...).

    Closed form for C <= 2 (torch's batched LU is slow for millions of tiny systems)."""
    channels = vectors.shape[0]
    if channels == 1:
        return vectors / matrices[0]
    if channels == 2:
        (a, b), (c, d) = matrices
        x0, x1 = vectors
        det = a * d - b * c
        return torch.stack([(d * x0 - b * x1) / det, (a * x1 - c * x0) / det])
    moved = torch.linalg.solve(matrices.movedim((0, 1), (-2, -1)), vectors.movedim(0, -1))
    return moved.movedim(-1, 0)


def _apply(matrices: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Per-frequency matrix times vector: matrices (bins, C, C), vectors (C, bins, frames) -> (C, bins, frames)."""
    channels = vectors.shape[0]
    return torch.stack([sum(matrices[:, a, b, None] * vectors[b] for b in range(channels)) for a in range(channels)])


def _local_gaussian_parameters(
    spec: torch.Tensor, blocks: list[slice], loading: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial covariance and PSD of one source under the local Gaussian model (MWF steps 1-3).

    spec (channels, bins, frames) complex64 -> R (bins, channels, channels) complex128 with trace
    channels * (1 + loading), v (bins, frames) float32.
    """
    channels, bins, frames = spec.shape
    naive_psd = spec.abs().square_().mean(dim=0)  # (bins, frames)
    covariance = torch.zeros((bins, channels, channels), dtype=torch.complex128)
    for block in blocks:
        y = spec[:, :, block].to(torch.complex128)
        weighted = y / (EPS + naive_psd[:, block].to(torch.float64))
        for a in range(channels):
            for b in range(channels):
                covariance[:, a, b] += (weighted[a] * y[b].conj()).sum(dim=-1)
    del naive_psd
    covariance /= frames
    trace = covariance.diagonal(dim1=-2, dim2=-1).real.sum(dim=-1)
    covariance *= (channels / (EPS + trace))[:, None, None]
    covariance += loading * torch.eye(channels, dtype=torch.complex128)
    inverse = torch.linalg.inv(covariance)
    psd = torch.empty((bins, frames), dtype=torch.float32)
    for block in blocks:
        y = spec[:, :, block].to(torch.complex128)
        quadratic = (y.conj() * _apply(inverse, y)).real.sum(dim=0)  # S^H R^{-1} S
        psd[:, block] = quadratic.div_(channels).clamp_(min=0)
    return covariance, psd


def mwf_oracle(
    mixture: np.ndarray, sources: np.ndarray, stft: STFTConfig, loading: float = SPATIAL_LOADING
) -> np.ndarray:
    """Multichannel Wiener filter v_j R_j (sum_k v_k R_k + eps I)^{-1} X with ideal PSDs v_j and
    spatial covariances R_j (local Gaussian model, see the module docstring).

    mixture (channels, samples), sources (targets, channels, samples) -> (targets, channels, samples) float32.
    """
    channels, samples = mixture.shape
    targets = len(sources)
    transform = STFT(stft)
    mixture_spec = _spectrogram(transform, mixture)
    _, bins, frames = mixture_spec.shape  # (channels, bins, frames)
    blocks = _frame_blocks(bins, frames)
    covariances = torch.empty((targets, bins, channels, channels), dtype=torch.complex128)
    psds = torch.empty((targets, bins, frames), dtype=torch.float32)
    for j, source in enumerate(sources):
        covariances[j], psds[j] = _local_gaussian_parameters(_spectrogram(transform, source), blocks, loading)

    estimates = np.empty(sources.shape, dtype=np.float32)
    estimate_spec = torch.empty_like(mixture_spec)
    # One source at a time, recomputing C_xx^{-1} X per block: memory for one output spectrogram only.
    for j in range(targets):
        for block in blocks:
            psd = psds[:, :, block].to(torch.float64)  # (targets, bins, block)
            mixture_covariance = torch.zeros((channels, channels, bins, psd.shape[-1]), dtype=torch.complex128)
            for a in range(channels):
                for b in range(channels):
                    entry = mixture_covariance[a, b]
                    for k in range(targets):
                        entry += psd[k] * covariances[k, :, a, b, None]
                    if a == b:
                        entry += EPS
            z = _solve(mixture_covariance, mixture_spec[:, :, block].to(torch.complex128))
            estimate_spec[:, :, block] = _apply(covariances[j], z).mul_(psd[j]).to(torch.complex64)
        estimates[j] = transform.inverse(estimate_spec, samples).numpy()
    return estimates


ORACLES: dict[str, Oracle] = {
    "MIX": mix_oracle,
    "IRM1": lambda mixture, sources, stft: ratio_mask_oracle(mixture, sources, stft, alpha=1.0),
    "IRM2": lambda mixture, sources, stft: ratio_mask_oracle(mixture, sources, stft, alpha=2.0),
    "IBM1": lambda mixture, sources, stft: binary_mask_oracle(mixture, sources, stft, alpha=1.0, theta=0.5),
    "IBM2": lambda mixture, sources, stft: binary_mask_oracle(mixture, sources, stft, alpha=2.0, theta=0.5),
    "MWF": mwf_oracle,
}


def oracle_estimates(name: str, mixture: np.ndarray, sources: np.ndarray, stft: STFTConfig) -> np.ndarray:
    """Estimates (targets, channels, samples) of the oracle `name` (one of ORACLES), from the mixture
    (channels, samples) and the sources (targets, channels, samples)."""
    channels, samples = mixture.shape
    targets, _, _ = sources.shape
    if name not in ORACLES:
        raise ValueError(f"unknown oracle {name!r}; allowed: {', '.join(ORACLES)}")
    return ORACLES[name](mixture, sources, stft)


def separate_oracle(
    name: str, track_dir: Path, out_dir: Path, stft: STFTConfig, sample_rate: int = 44100
) -> list[Path]:
    """Oracle estimates of a decoded track (see demixbench.data.decode.decode_track) as out_dir/<target>.wav."""
    track = load_decoded(track_dir, mmap=False)
    sources = np.stack([track[target] for target in TARGETS])
    return write_estimates(out_dir, oracle_estimates(name, track["mixture"], sources, stft), TARGETS, sample_rate)
