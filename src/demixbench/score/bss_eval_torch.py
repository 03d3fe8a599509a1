"""The exact BSS Eval v4 scorer of :mod:`demixbench.score.bss_eval` written with torch, for a GPU.

The same computation as the numpy module (see its docstring), in float64 throughout, with the
same framing, padding, eps, NaN/inf rules and silence test:

1. Lag statistics on the device: the signal in blocks of B samples (B + L - 1 = NF points, so
   circular = linear correlation for |tau| < L), real FFTs of a chunk of blocks at once, the
   cross spectra summed over blocks by one batched product per chunk, one inverse FFT at the
   end; the products across block boundaries from 1536-point FFTs of all boundaries at once.
2. The filters on the host with the numpy module's own solver (block Levinson with refinement,
   museval's dense LU where the Gram matrix is ill-conditioned): the statistics are small
   (M x 2M x 2L lags), the solve is O(L^2 M^3), and sharing it keeps the behaviour on
   ill-conditioned inputs identical to the CPU scorer. The filter spectra go back to the device.
3. Frame energies on the device: real FFTs of a chunk of frames (NF' >= W + L - 1), [P_all |
   P_own] = S H per bin, the energies by Parseval, |s|^2 and |s_hat - s|^2 in the time domain.

torch is imported inside the functions: scoring jobs import demixbench.score.track, and the
default CPU path must not pay torch's import (seconds, ~0.5 GB) for a backend it does not use.
On a machine without CUDA the same code runs on torch's CPU device (that is how the tests check
it); it is not meant to be faster there than the numpy scorer.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.fft

from demixbench.score import bss_eval as core

log = logging.getLogger(__name__)

#: Blocks (pass 1) or frames (pass 2) transformed together: with 4 stereo sources and 1-s frames,
#: 32 x 16 channels x 45000 points, about 0.2 GB of float64 signals and spectra per chunk.
DEVICE_CHUNK = 32


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (imports torch)."""
    import torch  # lazy: see the module docstring

    return bool(torch.cuda.is_available())


def _lags(circ, lags: int):
    """(..., nf) circular correlations -> (..., 2 lags - 1), lags -lags+1 .. lags-1 (torch)."""
    import torch

    return torch.cat([circ[..., circ.shape[-1] - lags + 1 :], circ[..., :lags]], dim=-1)


class _DeviceSignals:
    """References and estimates on the device in their own dtype, cut to float64 segments.

    sig: the host view (core._Signals); segments are (2, M, n) float64, [0] the reference
    channels p = j*C + c, [1] the estimate's, zero outside the signal (and beyond the estimate).
    """

    def __init__(self, sig: core._Signals, device):
        import torch

        self.sig, self.device = sig, device
        self.refs = torch.as_tensor(np.ascontiguousarray(sig.refs), device=device)
        self.ests = torch.as_tensor(np.ascontiguousarray(sig.ests), device=device)

    def fill(self, out, start: int, stop: int) -> int:
        """Write samples [start, stop) into out (2, M, >= stop - start) float64, zeros elsewhere."""
        import torch

        sig = self.sig
        out.zero_()
        for index, (x, n_x) in enumerate(((self.refs, sig.n_samples), (self.ests, sig.n_est))):
            lo, hi = max(start, 0), min(stop, n_x)
            if hi > lo:
                segment = x[:, lo:hi].to(torch.float64).permute(0, 2, 1).reshape(sig.m, hi - lo)
                out[index, :, lo - start : hi - start] = segment
        return max(0, min(stop, sig.n_samples) - start)


def _lag_statistics(dev: _DeviceSignals, filters_len: int) -> tuple[np.ndarray, np.ndarray]:
    """As core.lag_statistics, on the device. Returns (rr (M, M, 2L-1), re (M, M, L)) on the host."""
    import torch

    sig, device, L = dev.sig, dev.device, filters_len
    m = sig.m
    block, nf, _ = core._stats_layout(sig.n_samples, L)
    starts = list(range(0, sig.n_samples, block))
    acc = torch.zeros((m, 2 * m, nf // 2 + 1), dtype=torch.complex128, device=device)
    buf = torch.zeros((DEVICE_CHUNK, 2, m, nf), dtype=torch.float64, device=device)
    for first in range(0, len(starts), DEVICE_CHUNK):
        these = starts[first : first + DEVICE_CHUNK]
        for k, start in enumerate(these):
            dev.fill(buf[k], start, start + block)
        spectra = torch.fft.rfft(buf[: len(these)].reshape(len(these), 2 * m, nf), dim=-1)
        acc += torch.einsum("kpf,kqf->pqf", spectra[:, :m].conj(), spectra)
    corr = _lags(torch.fft.irfft(acc, n=nf, dim=-1), L)
    if len(starts) > 1 and L > 1:
        # products straddling a block boundary: tail u at [0, L-1), head v at [L-1, 2L-2)
        half = L - 1
        nf_b = scipy.fft.next_fast_len(3 * half + 1, real=True)
        bounds = starts[1:]
        seg = torch.zeros((len(bounds), 2, 2, m, nf_b), dtype=torch.float64, device=device)
        for k, pos in enumerate(bounds):
            dev.fill(seg[k, 0], pos - half, pos)
            dev.fill(seg[k, 1, :, :, half:], pos, pos + half)
        u, v = torch.fft.rfft(seg.reshape(len(bounds), 2, 2 * m, nf_b), dim=-1).unbind(1)
        cross = torch.einsum("kpf,kqf->pqf", u[:, :m].conj(), v) + torch.einsum("kpf,kqf->pqf", v[:, :m].conj(), u)
        corr += _lags(torch.fft.irfft(cross, n=nf_b, dim=-1), L)
    corr = corr.cpu().numpy()
    return corr[:, :m], corr[:, m:, L - 1 :].copy()


def _frame_energies(
    dev: _DeviceSignals, spans: list[tuple[int, int]], filters: tuple[np.ndarray, np.ndarray] | None, nf: int
) -> tuple[np.ndarray, np.ndarray]:
    """As core._frame_energies, on the device: (energies (7, J, T), silent (T,) bool).
    filters: (h, g) from core._filter_spectra."""
    import torch

    sig, device = dev.sig, dev.device
    m, n_src, n_chan = sig.m, sig.n_src, sig.n_chan
    n_frames, n_bins = len(spans), nf // 2 + 1
    energies = np.full((7, n_src, n_frames), np.nan)
    silent = np.array([sig.silent_in_place(start, stop) for start, stop in spans], dtype=bool)
    if filters is not None:
        # (M, 2M, F): from reference channel p to [P_all | P_own] output channel
        h, g = filters
        maps = np.zeros((m, 2 * m, n_bins), dtype=complex)
        maps[:, :m] = h
        for j in range(n_src):
            own = slice(j * n_chan, (j + 1) * n_chan)
            maps[own, m + j * n_chan : m + (j + 1) * n_chan] = g[:, own]
        maps = torch.as_tensor(maps, device=device)
        weight = torch.full((n_bins,), 2.0 / nf, dtype=torch.float64, device=device)
        weight[0] = 1.0 / nf
        if nf % 2 == 0:
            weight[-1] = 1.0 / nf
    buf = torch.zeros((DEVICE_CHUNK, 2, m, nf), dtype=torch.float64, device=device)

    def per_source(x):  # (k, M) -> (J, k)
        return x.reshape(-1, n_src, n_chan).sum(-1).T.cpu().numpy()

    for first in range(0, n_frames, DEVICE_CHUNK):
        these = range(first, min(first + DEVICE_CHUNK, n_frames))
        k_n = len(these)
        lengths = [dev.fill(buf[k], *spans[t]) for k, t in enumerate(these)]
        x = buf[:k_n]
        n = max(lengths)
        if min(lengths) == n:  # equal frames (all but a window longer than the signal)
            ref, est = x[:, 0, :, :n], x[:, 1, :, :n]
            energies[0, :, first : first + k_n] = per_source(torch.sum(ref * ref, dim=-1))
            err = est - ref
            energies[1, :, first : first + k_n] = per_source(torch.sum(err * err, dim=-1))
        else:
            for k, length in enumerate(lengths):
                ref, est = x[k, 0, :, :length], x[k, 1, :, :length]
                energies[0, :, first + k] = per_source(torch.sum(ref * ref, dim=-1)[None])[:, 0]
                energies[1, :, first + k] = per_source(torch.sum((est - ref) ** 2, dim=-1)[None])[:, 0]
        if filters is None:
            continue
        spectra = torch.fft.rfft(x.reshape(k_n, 2 * m, nf), dim=-1)
        s, s_hat = spectra[:, :m], spectra[:, m:]
        proj = torch.einsum("kpf,pof->kof", s, maps)
        p_all, p_own = proj[:, :m], proj[:, m:]
        parts = (p_all, p_own, p_own - s, p_all - p_own, s_hat - p_all)
        for index, part in enumerate(parts, start=2):
            power = part.real**2 + part.imag**2
            energies[index, :, first : first + k_n] = per_source(power @ weight)
        for k, t in enumerate(these):
            for j in np.flatnonzero(energies[1, :, t] == 0):
                if not silent[t]:
                    spectrum = s[k].cpu().numpy()
                    energies[1, j, t] = core._museval_residual(sig, *spans[t], j, spectrum, filters, nf)
    return energies, silent


def bss_eval_v4_torch(
    references: np.ndarray,
    estimates: np.ndarray,
    win: int = 44100,
    hop: int = 44100,
    *,
    device: str = "cuda",
    sdr_only: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """core.bss_eval_v4 computed with torch on `device` ("cuda", "cpu", "cuda:1", ...).

    references: (sources, samples, channels); estimates: (sources, samples', channels), padded or
    truncated to `samples`. Returns (sdr, isr, sir, sar) as numpy (sources, frames) float64, the
    same numbers as core.bss_eval_v4 up to rounding (~1e-12 dB).
    """
    import torch  # lazy: see the module docstring

    t0 = time.perf_counter()
    sig = core._Signals(references, estimates)
    sig.validate()
    device = torch.device(device)
    spans = core.frames(sig.n_samples, win, hop)
    width = max(stop - start for start, stop in spans)
    nf = scipy.fft.next_fast_len(width + core.FILTERS_LEN - 1, real=True)
    dev = _DeviceSignals(sig, device)
    filters = None
    t1 = t2 = time.perf_counter()
    if not sdr_only:
        rr, re = _lag_statistics(dev, core.FILTERS_LEN)
        t1 = time.perf_counter()
        c_all, c_own = core.distortion_filters(rr, re, sig.n_src, sig.n_chan)
        filters = core._filter_spectra(c_all, c_own, nf)
        t2 = time.perf_counter()
    energies, silent = _frame_energies(dev, spans, filters, nf)
    log.debug(
        "bss_eval_v4_torch on %s: %d frames: statistics %.2fs, filters %.2fs, frames %.2fs",
        device,
        len(spans),
        t1 - t0,
        t2 - t1,
        time.perf_counter() - t2,
    )
    s, err, full, own, spat, interf, artif = energies
    metrics = [core._safe_db(s, err)]
    if not sdr_only:
        metrics += [core._safe_db(s, spat), core._safe_db(own, interf), core._safe_db(full, artif)]
    for metric in metrics:
        metric[:, silent] = np.nan
    if sdr_only:
        return metrics[0], None, None, None
    return tuple(metrics)
