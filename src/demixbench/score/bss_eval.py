"""Exact, fast re-implementation of museval's BSS Eval v4 (``museval.evaluate(mode="v4")``).

What museval computes
---------------------
With J sources of C channels, the M = J*C reference channels x_p (p = j*C + c), the estimate
channels y_q, L = 512 filter taps and frames of `win` samples every `hop` samples, museval v4

* computes, once per track, time-invariant distortion filters by least squares: the projection
  of every estimate channel on all M delayed reference channels (delays 0..L-1), and on the C
  delayed channels of its own reference only. The normal equations have the Gram matrix
  G[(p, l), (q, m)] = r_pq(l - m), r_pq(tau) = sum_n x_p(n) x_q(n + tau), (M*L)^2 = 4096^2 for
  MUSDB18, plus museval's regulariser eps*I (eps = 2.2e-16), and right-hand sides
  D[(p, l), q] = sum_n x_p(n) y_q(n + l). museval solves them with LU (np.linalg.solve), once
  per estimate, and falls back to lstsq on LinAlgError;
* per frame and source j, passes the frame-truncated references through those filters
  (output W + L - 1 samples long: the frame plus a 511-sample tail), giving P_all (all sources)
  and P_own (own source), and reports SDR = |s|^2 / |s_hat - s|^2, ISR = |s|^2 / |P_own - s|^2,
  SIR = |P_own|^2 / |P_all - P_own|^2, SAR = |P_all|^2 / |s_hat - P_all|^2 in dB (sums over
  both channels; a zero denominator gives +inf). A frame in which any reference or any estimate
  is silent (channel sum 0 at every sample) is NaN for all sources. The trailing partial frame
  enters the filters but is not scored. Estimates are zero-padded or cut to the references'
  length.

How it is computed here
-----------------------
The same quantities in float64 with the same eps, NaN/inf rules, framing and padding; only the
order of the floating-point operations differs.

1. Lag statistics, pass 1 over the signal. The whole-signal correlations are additive over any
   partition of the time axis, so the signal is cut into blocks of B = 44489 samples. Per block,
   the 2M channels are zero-padded to NF = B + L - 1 = 45000 points (so circular correlation
   equals linear correlation for |tau| < L) and transformed by real FFTs. The cross spectra
   sum_blocks conj(X_p(f)) X_q(f), p a reference, q any channel (the Hermitian reference block
   only once), are accumulated over the blocks of a chunk by one compiled loop over the spectra
   (demixbench.score.kernels, in C); one inverse FFT per channel pair at the end gives the lags. The
   products that straddle a block boundary involve only the L - 1 samples on each side and are
   added with 1536-point FFTs. This is exact and replaces museval's ~140 FFTs of 2^24 points.
2. Filters. G is symmetric block-Toeplitz (M x M blocks R(k), R(-k) = R(k)^T), so all M
   right-hand sides are solved at once by the block Levinson (Whittle/Wiggins-Robinson)
   recursion in O(L^2 M^3) instead of a dense O((ML)^3) factorisation; the J own-source
   systems (C x C blocks) run as one batched recursion. Block Levinson is only weakly stable
   (its residual grows like cond(G) * eps, and the metrics depend on the fitted values, i.e. on
   the residual), so it is followed by iterative refinement with residuals computed by FFT
   until the relative residual is at the level of a backward-stable solve. Where that does not
   happen within a few steps, or the innovation matrices of the recursion show a near-singular
   G (they are Schur complements, so their smallest eigenvalue bounds cond(G) from below), the
   dense solve museval uses (LU of G + eps*I, lstsq if singular) takes over: on such inputs the
   filters are partly decided by rounding, and museval's own algorithm stays closest to museval
   (within museval's 1-vs-2-BLAS-thread spread on a nearly singular G, where the recursion
   breaks down or is off by dB).
3. Frame energies, pass 2 over the frames. Per frame, the 2M channels are zero-padded to
   NF' >= W + L - 1 points and transformed again (pass-1 spectra are not kept, see memory
   below). Because NF' covers the whole linear convolution, S(f) H(f) is exactly the spectrum
   of museval's frame-truncated projection, tail included; per bin, the filter spectra map the
   M reference spectra to P_all (all M) and P_own (the C channels of the own source), and
   e_artif = S_hat - P_all, e_interf = P_all - P_own, e_spat = P_own - S. The five energies come
   out by Parseval (weights 1/NF' at DC and Nyquist, 2/NF' elsewhere), all in one compiled loop
   over the spectra (demixbench.score.kernels, in C); |s|^2 and |s_hat - s|^2 are summed in
   the time domain, as museval does.
4. SDR needs no filters (e_spat + e_interf + e_artif = s_hat - s): `sdr_only=True` skips steps
   1-3 and makes a single pass over the input.

Engineering: pass 1 splits each chunk over threads (blocks for the FFTs, tiles of bins for the
cross spectra); in pass 2 each thread takes whole chunks of frames from the time domain to the
energies. numpy and the compiled loops release the GIL there. The FFTs are numpy's pocketfft
into contiguous memory, read there by both compiled loops (torch's MKL FFT was used before:
about as fast on Intel, slower on AMD, and it made every scoring job import torch); the framing
(float32/float64 input to padded float64 rows) and the frames' time-domain energies are
compiled too. A torch version of the whole computation for GPUs is
demixbench.score.bss_eval_torch. BLAS only serves the filter solve (block Levinson's small
products, and the dense fallback in the calling thread with all BLAS threads).
FFT inputs are padded in place in each thread's framing buffer. The spectra of both passes, the
framing buffers and the block boundaries' scratch are carved from two arenas, asked for
transparent huge pages and reused step after step: fresh memory is expensive to first-touch
(4 KB pages cost up to 50 us each on the development VM).

Memory is bounded by the chunks, independently of the track length: with 1-s frames at 44.1 kHz
and 4 stereo sources, 92 MB of pass-1 chunk spectra and 6 MB of framing buffer per thread, whose
memory then holds the block boundaries' scratch (16 MB per thread) and then pass 2's chunks with
their framing buffers (52 MB per thread: 104 MB with two threads, 415 MB with eight); a 46 MB
pass-1 accumulator, whose memory then holds the correlations, the boundaries' partial sums and
then the filter spectra with their packed copy (58 MB); and a few MB more: 169 MB measured on top
of the inputs with two threads for a 4-minute track, for a 30-s or a 10-min track alike (plus
0.3 GB for the Gram matrix and its LU copy on the dense fallback). The inputs are read in place;
estimates shorter than the references are zero-padded virtually, not copied. Keeping all pass-1
spectra for pass 2 would save one FFT per channel and frame but needs 5.8 MB per second of audio
(1.4 GB for 4 minutes); on the machine this was developed on, first-touching that much fresh
memory took 0.1-6 s.

Accuracy and known differences
------------------------------
SDR agrees with museval to ~1e-13 dB (it does not depend on the filters). ISR/SIR/SAR agree to
< 1e-6 dB on well-conditioned inputs. On ill-conditioned inputs (a nearly-mono stem, references
band-limited like MUSDB18's AAC stems) any float64 solve decides the filters only to about
cond(G) * eps in relative terms, and museval's own ISR/SIR/SAR change with rounding (e.g. with
the BLAS thread count). On the demo's band-limited stems (cond(G) ~ 3e10) museval's values are
up to 2.3e-6 dB from the exact ones (an extended-precision reference:
``bench/museval_agreement.py --exact``) and this module's up to 2.5e-6 dB, with errors of either
sign, so the two differ by a few 1e-6 dB there (up to 6.9e-6 dB); on nearly singular G (a mono stem in an AAC
file) both move by dB in the frames that excite its near-null space.

When an estimate equals its reference exactly in a frame, museval's SDR denominator is the
rounding residue of its decomposition e_spat + e_interf + e_artif: exactly 0 (SDR +inf) when
the filters are identities to within rounding (estimate identical throughout), a
rounding-determined value around 300-400 dB otherwise. In such frames the full computation
evaluates museval's residue expression, in museval's operation order, on its own time-domain
projections, which reproduces museval's inf/finite outcome but not its finite value.
`sdr_only=True` has no projections and returns +inf there.
"""

from __future__ import annotations

import logging
import mmap
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np

from demixbench.devices import available_cpus
from demixbench.score import kernels

log = logging.getLogger(__name__)

#: Filter length of museval v4 (``filters_len``).
FILTERS_LEN = 512
#: museval's regulariser added to the Gram matrix diagonal (absolute).
EPS = np.finfo(float).eps
#: FFT length of the pass-1 blocks (block = STATS_NFFT - FILTERS_LEN + 1 samples); any block
#: length >= FILTERS_LEN - 1 gives the same statistics, 45000 = 2^3 3^2 5^4 is a fast FFT size.
STATS_NFFT = 45000
#: Blocks of a pass-1 chunk: they set pass 1's memory (CHUNK_FRAMES * 2M * (NF/2 + 1) complex
#: values); the threads transform a chunk's blocks, then share its bins for the cross spectra.
CHUNK_FRAMES = 16
#: Frames of a pass-2 chunk (each thread holds one): the compiled loop reads each bin's filters
#: once per chunk. A constant, so the work is split the same way whatever the number of threads.
FRAME_CHUNK = 8
#: Above this lower bound on cond(G + eps*I), the dense LU solve replaces block Levinson outright.
COND_LIMIT = 1e10
#: Relative residual |b - G x| / |b| that block Levinson plus refinement must reach (a dense
#: backward-stable solve reaches 1e-15 to 1e-13 on these systems), else the dense solve is used.
REFINE_TOL = 1e-10
#: Iterative refinement steps after block Levinson, at most (each costs one more recursion, about
#: 1/20 of the dense solve); refinement also stops when a step gains less than a factor 10.
REFINE_STEPS = 6
#: Block boundaries per group in pass 1's cross-boundary products (groups are summed in order, so
#: the statistics do not depend on the number of threads).
BOUNDARY_GROUP = 32
#: Samples per block in the whole-signal silence check (museval's validation).
_SILENCE_BLOCK = 1 << 16
#: Scratch arrays from this size on are asked for transparent huge pages (_huge_page_array).
_HUGE_PAGE_MIN = 16 << 20


def next_fast_len(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: ``scipy.fft.next_fast_len(n, real=True)``, pocketfft's fast
    length for real transforms, without importing scipy.fft (about 0.5 s, most of the imports of
    a scoring job)."""
    if n <= 6:
        return max(n, 1)
    best = 1 << (n - 1).bit_length()  # the power of two >= n
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            quotient = -(-n // p35)  # the smallest power of two times p35 that is >= n
            best = min(best, (1 << (quotient - 1).bit_length()) * p35)
            p35 *= 3
        p5 *= 5
    return best


#: Threads of a call without `workers`: None means the available CPUs (at most 8); a pool of
#: scoring processes gives each its share (set_default_workers).
_default_threads: int | None = None


def set_default_workers(threads: int | None) -> None:
    """Threads of the calls of this process that do not say (None: the available CPUs, at most 8).
    The scores do not depend on the number."""
    global _default_threads
    _default_threads = threads


def _default_workers() -> int:
    return max(1, _default_threads or min(available_cpus(), 8))


def frames(n_samples: int, win: float, hop: float) -> list[tuple[int, int]]:
    """museval's Framing: [(start, stop)] of the scored frames; the trailing partial frame is
    dropped, and a window >= the signal gives one frame over the whole signal."""
    n_win = int(np.floor((n_samples - win + hop) / hop)) if win < n_samples else 1
    return [(int(np.floor(t * hop)), int(np.floor(min(t * hop + win, n_samples)))) for t in range(n_win)]


def _silent_sources(x: np.ndarray) -> np.ndarray:
    """museval's silence test per source: channel sum == 0 at every sample, evaluated in the
    caller's dtype. x: (sources, samples, channels) -> (sources,) bool."""
    return np.all(np.sum(x, axis=2) == 0, axis=1)


class _Signals:
    """References and estimates as museval sees them after ``pad_or_truncate``, read in place.

    references: (J, N, C); estimates: (J, N', C), cut to N samples or zero-padded virtually.
    """

    def __init__(self, references: np.ndarray, estimates: np.ndarray):
        references = np.asarray(references)
        estimates = np.asarray(estimates)
        if references.ndim == 2:
            references = references[:, :, None]
        if estimates.ndim == 2:
            estimates = estimates[:, :, None]
        if references.ndim != 3 or estimates.ndim != 3:
            raise ValueError(
                f"expected (sources, samples, channels) arrays, got {references.ndim} and {estimates.ndim} dimensions"
            )
        if references.shape[0] != estimates.shape[0] or references.shape[2] != estimates.shape[2]:
            raise ValueError(
                f"references {references.shape} and estimates {estimates.shape} differ in sources or channels"
            )
        if references.size == 0 or estimates.size == 0:
            raise ValueError("empty references / estimates")
        self.refs = references
        self.ests = estimates[:, : references.shape[1]]
        self.n_src, self.n_samples, self.n_chan = references.shape
        self.n_est = self.ests.shape[1]  # estimate samples beyond this are zeros
        self.m = self.n_src * self.n_chan
        # For floats and at most 2 channels, "channel sum == 0" in the caller's dtype is exactly
        # "x0 == -x1", so the test can run on the float64 copies made for the FFTs.
        self.silence_from_copy = self.n_chan <= 2 and all(
            np.issubdtype(x.dtype, np.floating) for x in (references, estimates)
        )
        # float32 and float64 (what audio decodes to) are framed in C, other dtypes by numpy
        self.compiled = kernels.framed_dtype(references) and kernels.framed_dtype(estimates)

    def validate(self) -> None:
        """museval's validation: no source may be silent over the whole signal. Scans blocks and
        stops at the first non-silent one, so it costs nothing on ordinary inputs."""
        for what, x, n in (("reference", self.refs, self.n_samples), ("estimated", self.ests, self.n_est)):
            pending = np.ones(self.n_src, dtype=bool)
            for start in range(0, n, _SILENCE_BLOCK):
                pending &= _silent_sources(x[:, start : start + _SILENCE_BLOCK])
                if not pending.any():
                    break
            if pending.any():
                raise ValueError(f"All the {what} sources should be non-silent (not all-zeros)")

    def fill(self, out: np.ndarray, start: int, stop: int) -> int:
        """Write samples [start, stop) as float64 into out (2, M, NF): out[0, p] reference channel
        p = j*C + c, out[1, p] the estimate's, zeros after the signal. Returns the length."""
        n = max(0, min(stop, self.n_samples) - start)
        n_est = max(0, min(stop, self.n_est) - start)
        for rows, x, count in ((out[0], self.refs, n), (out[1], self.ests, n_est)):
            if self.compiled and rows.flags.c_contiguous:
                kernels.frame_rows(x, start if count else 0, count, rows)
            else:
                rows[:, :count].reshape(self.n_src, self.n_chan, count)[...] = x[:, start : start + count].transpose(
                    0, 2, 1
                )
                rows[:, count:] = 0.0
        return n

    def silent_in_place(self, start: int, stop: int) -> bool:
        """museval's frame test on the caller's arrays, in their dtype: any reference or estimate
        source silent in [start, stop)."""
        stop_est = min(stop, self.n_est)
        return (
            bool(_silent_sources(self.refs[:, start:stop]).any())
            or stop_est <= start
            or bool(_silent_sources(self.ests[:, start:stop_est]).any())
        )

    def silent(self, start: int, stop: int, filled: np.ndarray) -> bool:
        """museval's frame test: any reference or estimate source silent in [start, stop).
        filled: (2, M, NF) as written by fill(start, stop)."""
        n = stop - start
        if not self.silence_from_copy:
            return self.silent_in_place(start, stop)
        for x in filled[:, :, :n].reshape(2, self.n_src, self.n_chan, n):
            # almost always decided by the first samples: a non-zero channel sum in every source
            for head in (min(n, 256), n):
                total = x[:, 0, :head] if self.n_chan == 1 else x[:, 0, :head] + x[:, 1, :head]
                if total.any(axis=1).all():
                    break
            else:
                return True
        return False


def _parallel(pool: ThreadPoolExecutor | None, fn: Callable, items: Iterable) -> list:
    return list(pool.map(fn, items)) if pool is not None else [fn(item) for item in items]


def _split(n: int, parts: int, step: int = 1) -> list[range]:
    """[0, n) in up to `parts` contiguous ranges of whole multiples of `step` (the last may be short)."""
    bounds = [min(n, -(-n * i // parts // step) * step) for i in range(parts + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i] < bounds[i + 1]]


def _huge_page_array(n_complex: int) -> np.ndarray:
    """An uninitialised complex array, backed by transparent huge pages where the kernel offers
    them on request (THP "madvise" mode, common on servers): first-touching 400 MB of 2 MB pages
    took 0.3-0.5 s instead of 1.2-1.8 s with 4 KB pages on the development VM. Small arrays and
    systems without madvise get np.empty."""
    nbytes = n_complex * 16
    if nbytes < _HUGE_PAGE_MIN or not hasattr(mmap, "MADV_HUGEPAGE"):
        return np.empty(n_complex, dtype=complex)
    region = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        region.madvise(mmap.MADV_HUGEPAGE)
    except OSError:  # THP disabled ("never"): plain pages, as np.empty
        pass
    return np.frombuffer(region, dtype=complex, count=n_complex)


class _Arena:
    """Bump allocator over one flat buffer that consecutive steps of a call carve their large
    arrays from (fresh memory is slow to first-touch: 0.1-6 s per GB on the development
    machine). reset() when the previous step's arrays are dead; falls back to fresh arrays when
    the buffer is exhausted (or absent)."""

    def __init__(self, n_complex: int = 0):
        self.buffer = _huge_page_array(n_complex)
        self.used = 0

    def reset(self) -> _Arena:
        self.used = 0
        return self

    def take(self, shape: tuple[int, ...], dtype: type = complex) -> np.ndarray:
        count = int(np.prod(shape))
        n = -(-count * np.dtype(dtype).itemsize // 16)
        if self.used + n > self.buffer.size:
            return np.empty(shape, dtype=dtype)
        view = self.buffer[self.used : self.used + n].view(dtype)[:count].reshape(shape)
        self.used += n
        return view

    def carve(self, n_complex: int) -> _Arena:
        """An arena of its own over the next n_complex elements of this one: a worker's scratch."""
        part = _Arena()
        part.buffer = self.take((n_complex,))
        return part


def _circular_to_lags(circ: np.ndarray, lags: int, out: np.ndarray | None = None) -> np.ndarray:
    """(..., nf) circular correlations (lag tau at index tau mod nf) -> (..., 2 lags - 1), lags
    -lags+1 .. lags-1 (into `out` if given)."""
    return np.concatenate([circ[..., circ.shape[-1] - lags + 1 :], circ[..., :lags]], axis=-1, out=out)


def _products_to_lags(
    acc: np.ndarray,
    n_bins: int,
    nf: int,
    lags: int,
    arenas: tuple[_Arena, _Arena],
    pool: ThreadPoolExecutor | None,
    n_workers: int,
) -> np.ndarray:
    """Pass-1 accumulator -> whole-signal correlations within blocks.

    acc: kernels.cross_spectra's sums over blocks of conj(X_p(f)) X_q(f), p the M references, q
    all 2M channels, in tiles of bins. Returns (M, 2M, 2 lags - 1), [p, q, lags - 1 + tau] = the
    sum over blocks of sum_n x_p(n) x_q(n + tau) (exact: nf covers the linear lags). The cross
    spectra are unpacked into arenas[0], their inverse FFTs go to arenas[1] over the consumed
    accumulator (q >= p only where both are references: the other half is their mirror image).
    """
    m = acc.shape[1]
    cross = arenas[0].reset().take((m, 2 * m, n_bins))  # sum of conj(X_p) X_q
    rows = _split(m, n_workers)
    _parallel(pool, lambda r: kernels.unpack_cross_spectra(acc, cross, r), rows)
    circ = arenas[1].reset().take((m, 2 * m, nf), float)

    def inverse(r: range) -> None:
        for p in r:  # q >= p: the reference block's lower half is its mirror image
            np.fft.irfft(cross[p, p:], n=nf, axis=-1, out=circ[p, p:])

    _parallel(pool, inverse, rows)
    corr = _circular_to_lags(circ, lags)
    for p in range(1, m):
        corr[p, :p] = corr[:p, p, ::-1]  # sum_n x_p(n) x_q(n + tau) = sum_n x_q(n) x_p(n - tau)
    return corr


def _boundary_layout(m: int, lags: int, batch: int = BOUNDARY_GROUP) -> tuple[int, int]:
    """The FFT length of _boundary_products and the scratch one call takes (complex elements)."""
    half = lags - 1
    nf = next_fast_len(3 * half + 1)  # no circular aliasing for |tau| < lags
    n_bins = nf // 2 + 1
    # cross spectra, segments (2 x 2M real rows), the batch's spectra, the circular correlations
    return nf, n_bins * m * 2 * m + 2 * m * nf + 2 * n_bins * batch * 2 * m + nf * m * m


def _boundary_products(
    sig: _Signals,
    bounds: list[int],
    lags: int,
    out: np.ndarray,
    arena: _Arena | None = None,
    batch: int = BOUNDARY_GROUP,
) -> None:
    """The part of the whole-signal correlations that pass-1 blocks miss: products
    x_p(n) x_q(n + tau) with n and n + tau on the two sides of a block boundary.

    Only the lags - 1 samples on each side matter. Per boundary, the tail u (before) and head v
    (after) are laid out at [0, lags - 1) and [lags - 1, 2 lags - 2) of a 1536-point frame, so
    corr(u, v) + corr(v, u) at |tau| < lags is exactly the cross-boundary sum. Writes (M, 2M,
    2 lags - 1), as _products_to_lags returns, into `out`. arena: scratch of
    _boundary_layout's size (fresh arrays without).
    """
    m = sig.m
    half = lags - 1
    nf, _ = _boundary_layout(m, lags, batch)
    n_bins = nf // 2 + 1
    arena = (arena or _Arena()).reset()
    cross = arena.take((n_bins, m, 2 * m))
    cross[...] = 0.0
    seg = arena.take((2, 2, m, nf), float)  # [tail | head], [references | estimates]
    spectra = arena.take((2, n_bins, min(batch, len(bounds)), 2 * m))
    for first in range(0, len(bounds), batch):
        these = bounds[first : first + batch]
        spec = spectra[:, :, : len(these)]
        for k, pos in enumerate(these):
            sig.fill(seg[0], pos - half, pos)
            sig.fill(seg[1, :, :, half:], pos, pos + half)
            seg[1, :, :, :half] = 0.0
            np.fft.rfft(seg.reshape(2, 2 * m, nf), axis=-1, out=spec[:, :, k].transpose(0, 2, 1))
        u, v = spec
        cross += np.matmul(u[:, :, :m].conj().transpose(0, 2, 1), v)
        cross += np.matmul(v[:, :, :m].conj().transpose(0, 2, 1), u)
    circ = np.fft.irfft(cross, n=nf, axis=0, out=arena.take((nf, m, 2 * m), float))
    _circular_to_lags(circ.transpose(1, 2, 0), lags, out=out)


def _stats_layout(n_samples: int, filters_len: int) -> tuple[int, int, int]:
    """Pass-1 blocks: (block length, FFT length, blocks per chunk)."""
    block = max(1, min(n_samples, STATS_NFFT - filters_len + 1))
    nf = next_fast_len(block + filters_len - 1)
    return block, nf, min(CHUNK_FRAMES, -(-n_samples // block))


def lag_statistics(
    sig: _Signals,
    filters_len: int = FILTERS_LEN,
    arenas: tuple[_Arena, _Arena] | None = None,
    pool: ThreadPoolExecutor | None = None,
    n_workers: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact lagged correlations of the whole signals (zero outside [0, samples)), pass 1.

    arenas: optional scratch for the chunk of spectra and for the accumulator (see _Arena).
    Returns rr: (M, M, 2L-1), rr[p, q, L-1+tau] = sum_n x_p(n) x_q(n+tau), |tau| < L, and
    re: (M, M, L), re[p, q, tau] = sum_n x_p(n) y_q(n+tau), 0 <= tau < L (y: estimate channels).
    """
    chunk_arena, acc_arena = arenas or (_Arena(), _Arena())
    m, n_samples, L = sig.m, sig.n_samples, filters_len
    block, nf, k_max = _stats_layout(n_samples, L)
    n_bins = nf // 2 + 1
    starts = list(range(0, n_samples, block))
    # chunk[k] = [X_0 .. X_{M-1} | Y_0 .. Y_{M-1}] (2M, F) for block k, as rfft writes it
    chunk = chunk_arena.reset().take((k_max, 2 * m, n_bins))
    acc = acc_arena.reset().take((kernels.n_tiles(n_bins), m, 2 * m, 2, kernels.LANES), float)
    acc[...] = 0.0
    bufs = [chunk_arena.take((2, m, nf), float) for _ in range(n_workers)]  # sig.fill writes all of it
    tiles = _split(kernels.n_tiles(n_bins), n_workers)

    for first in range(0, len(starts), k_max):
        these = starts[first : first + k_max]
        k_n = len(these)

        def spectra(worker: int) -> None:
            for k in range(worker, k_n, n_workers):
                sig.fill(bufs[worker], these[k], these[k] + block)
                np.fft.rfft(bufs[worker].reshape(2 * m, nf), axis=-1, out=chunk[k])

        _parallel(pool, spectra, range(n_workers))
        _parallel(pool, lambda part: kernels.cross_spectra(chunk, k_n, acc, part), tiles)
    bufs = chunk = None  # pass 1's buffers are freed before pass 2 allocates its own
    corr = _products_to_lags(acc, n_bins, nf, L, (chunk_arena, acc_arena), pool, n_workers)
    if len(starts) > 1 and L > 1:
        # groups of a fixed size, summed in order: the result must not depend on the thread count
        bounds = starts[1:]
        groups = [bounds[i : i + BOUNDARY_GROUP] for i in range(0, len(bounds), BOUNDARY_GROUP)]
        parts = acc_arena.reset().take((len(groups), *corr.shape), float)
        # worker w takes groups w, w + n, ... in a scratch of its own, carved from memory pass 1
        # already touched (fresh 4 KB pages cost about 50 us each to first-touch on a VM)
        n_parts = min(n_workers, len(groups))
        chunk_arena.reset()
        scratch = [chunk_arena.carve(_boundary_layout(m, L)[1]) for _ in range(n_parts)]

        def boundaries(worker: int) -> None:
            for i in range(worker, len(groups), n_parts):
                _boundary_products(sig, groups[i], L, parts[i], scratch[worker])

        _parallel(pool, boundaries, range(n_parts))
        for part in parts:
            corr += part
    return corr[:, :m], corr[:, m:, L - 1 :].copy()


def _block_levinson(r: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve sum_m R[l - m] x[m] = b[l], l = 0..L-1, with R[-k] = R[k]^T (symmetric block
    Toeplitz), for S independent systems at once (Whittle / Wiggins-Robinson recursion).

    r: (S, L, M, M), the blocks R[0..L-1] (eps already on R[0]'s diagonal); b: (S, L, M, K).
    Returns x (S, L, M, K) and, per system, max diag(R[0]) / lambda_min, a lower bound of the
    condition number (inf if the recursion broke down).

    Order n keeps the forward predictor U = [I, U_1..U_n] with T_{n+1} U = [P; 0..0] and the
    backward predictor V = [V_0..V_{n-1}, I] with T_{n+1} V = [0..0; Q]. P_n and Q_n are Schur
    complements of the matrix, so lambda_min(P_n), lambda_min(Q_n) >= lambda_min(T), and they
    only decrease with n: the final ones give the bound. V is stored right-aligned in `back`
    (position i of order n at index L-1-n+i), so every update is a contiguous slice and one GEMM.
    """
    n_sys, L, M, _ = r.shape
    K = b.shape[-1]
    # row [R_{L-1} .. R_1] as an (M, (L-1)M) matrix: [R_n .. R_1] is its last n*M columns
    row = np.ascontiguousarray(r[:, :0:-1].transpose(0, 2, 1, 3)).reshape(n_sys, M, (L - 1) * M)
    fwd = np.zeros((n_sys, L, M, M))
    back = np.zeros((n_sys, L, M, M))
    x = np.zeros((n_sys, L, M, K))
    fwd[:, 0] = back[:, L - 1] = np.eye(M)
    pq = np.stack([r[:, 0], r[:, 0]])  # [P_n, Q_n]
    try:
        for n in range(L):
            inv = np.linalg.inv(pq)
            # x of order n: [x; 0] + V Q^-1 (b_n - [R_n .. R_1] x), the last term T [x; 0]'s new row
            resid = b[:, n] - row[:, :, (L - 1 - n) * M :] @ x[:, :n].reshape(n_sys, n * M, K) if n else b[:, 0]
            x[:, : n + 1] += (back[:, L - 1 - n :].reshape(n_sys, (n + 1) * M, M) @ (inv[1] @ resid)).reshape(
                n_sys, n + 1, M, K
            )
            if n == L - 1:
                break
            delta = row[:, :, (L - 2 - n) * M :] @ fwd[:, : n + 1].reshape(
                n_sys, (n + 1) * M, M
            )  # T [U; 0] = [P; 0..; delta]
            k_fwd = inv[1] @ delta
            k_back = inv[0] @ delta.transpose(0, 2, 1)  # T symmetric: T [0; V] = [delta^T; 0..; Q]
            t_fwd = back[:, L - 1 - n :].reshape(n_sys, (n + 1) * M, M) @ k_fwd
            t_back = fwd[:, : n + 1].reshape(n_sys, (n + 1) * M, M) @ k_back
            fwd[:, 1 : n + 2] -= t_fwd.reshape(n_sys, n + 1, M, M)
            back[:, L - 2 - n : L - 1] -= t_back.reshape(n_sys, n + 1, M, M)
            pq[0] -= delta.transpose(0, 2, 1) @ k_fwd
            pq[1] -= delta @ k_back
            pq = 0.5 * (pq + pq.transpose(0, 1, 3, 2))
        lam = np.min(np.linalg.eigvalsh(pq), axis=(0, 2))
    except np.linalg.LinAlgError:  # an exactly singular innovation matrix in one of the systems
        if n_sys == 1:
            return x, np.full(1, np.inf)
        parts = [_block_levinson(r[s : s + 1], b[s : s + 1]) for s in range(n_sys)]
        return np.concatenate([x for x, _ in parts]), np.concatenate([bound for _, bound in parts])
    scale = np.max(np.diagonal(r[:, 0], axis1=1, axis2=2), axis=1)
    ok = (lam > 0) & np.all(np.isfinite(x), axis=(1, 2, 3))
    return x, np.where(ok, scale / np.where(ok, lam, 1.0), np.inf)


def _fmt(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.1e}" for v in values) + "]"


def _block_toeplitz_matvec(r: np.ndarray, x: np.ndarray) -> np.ndarray:
    """y[l] = sum_m R[l - m] x[m] for the systems of _block_levinson, by FFT over the lags.
    r: (S, L, M, M) blocks R[0..L-1], R[-k] = R[k]^T; x: (S, L, M, K) -> (S, L, M, K)."""
    L = r.shape[1]
    lags = np.concatenate([r[:, :0:-1].transpose(0, 1, 3, 2), r], axis=1)  # R[-(L-1)] .. R[L-1]
    nf = next_fast_len(3 * L - 2)  # linear convolution, no wrap-around
    prod = np.fft.rfft(lags, n=nf, axis=1) @ np.fft.rfft(x, n=nf, axis=1)
    return np.fft.irfft(prod, n=nf, axis=1)[:, L - 1 : 2 * L - 1]


def _solve_block_toeplitz(r: np.ndarray, b: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Solve the systems of _block_levinson with iterative refinement; returns (x, ok) with ok
    (S,) False where the recursion cannot reach the accuracy of a dense solve.

    Block Levinson is only weakly stable: its residual grows like cond * eps, and the metrics
    depend on the fitted values (the residual), not on the taps themselves. Refinement steps
    with the residual computed by FFT bring the relative residual below REFINE_TOL, the level of
    a backward-stable dense solve (museval's LU), in one step for well-conditioned systems.
    Systems with a condition bound above COND_LIMIT, or still above REFINE_TOL after
    REFINE_STEPS, are left to the dense solve.
    """
    x, bound = _block_levinson(r, b)
    scale = np.sqrt(np.sum(b**2, axis=(1, 2, 3)))
    ok = bound <= COND_LIMIT
    error = np.full(len(x), np.inf)
    for step in range(REFINE_STEPS + 1):
        resid = b - _block_toeplitz_matvec(r, x)
        previous, error = error, np.sqrt(np.sum(resid**2, axis=(1, 2, 3))) / np.where(scale > 0, scale, 1.0)
        log.debug(
            "%s: block Levinson, cond >= %s, relative residual %s after %d refinement steps",
            what,
            _fmt(bound),
            _fmt(error),
            step,
        )
        pending = ok & (error > REFINE_TOL) & (error < 0.1 * previous)
        if not pending.any() or step == REFINE_STEPS:
            break
        x = x + _block_levinson(r, resid)[0]
    return x, ok & (error <= REFINE_TOL)


def gram_matrix(rr: np.ndarray) -> np.ndarray:
    """Block-Toeplitz Gram matrix of the delayed reference channels, exactly symmetric.

    rr: (M, M, 2L-1) from lag_statistics -> G: (M*L, M*L), G[(p, l), (q, k)] = rr[p, q, L-1+l-k].
    """
    m, _, n_lags = rr.shape
    L = (n_lags + 1) // 2
    gram = np.empty((m * L, m * L))
    for p in range(m):
        for q in range(m):
            # windows[i, k] = rev[i + k] with rev = rr[p, q, ::-1]; row l of the block is window L-1-l
            windows = np.lib.stride_tricks.sliding_window_view(rr[p, q, ::-1], L)
            gram[p * L : (p + 1) * L, q * L : (q + 1) * L] = windows[::-1]
    return gram


def _dense_solve(gram: np.ndarray, rhs: np.ndarray, what: str) -> np.ndarray:
    """museval's solve: LU of (gram + eps*I), lstsq(gram, rhs) if singular. (n, n), (n, k) -> (n, k)."""
    try:
        return np.linalg.solve(gram + EPS * np.eye(gram.shape[0]), rhs)
    except np.linalg.LinAlgError:
        log.warning("%s: singular Gram matrix; falling back to lstsq as museval does", what)
        return np.linalg.lstsq(gram, rhs, rcond=None)[0]


def distortion_filters(rr: np.ndarray, re: np.ndarray, n_src: int, n_chan: int) -> tuple[np.ndarray, np.ndarray]:
    """museval v4's time-invariant filters from the lag statistics (see lag_statistics).

    Returns (c_all, c_own): c_all (M, L, M) with c_all[p, l, j*C + c] the tap l from reference
    channel p to estimate j channel c (projection on all references); c_own (J, C, L, C) with
    c_own[j, a, l, c] the tap from reference j channel a (projection on reference j only).
    """
    m = n_src * n_chan
    L = re.shape[-1]
    rr = 0.5 * (rr + rr.transpose(1, 0, 2)[:, :, ::-1])  # r_pq(tau) and r_qp(-tau) are the same number
    blocks = rr[:, :, L - 1 :].transpose(2, 0, 1).copy()  # (L, M, M): R(k)[p, q] = r_pq(k)
    blocks[0] += EPS * np.eye(m)
    rhs = re.transpose(2, 0, 1)  # (L, M, M): b_l[p, q] = sum_n x_p(n) y_q(n + l)

    x, ok = _solve_block_toeplitz(blocks[None], rhs[None], "all sources")
    if ok[0]:
        c_all = x[0].transpose(1, 0, 2)
    else:
        log.info("all sources: Gram matrix too ill-conditioned for block Levinson; dense LU solve as museval")
        c_all = _dense_solve(gram_matrix(rr), re.transpose(0, 2, 1).reshape(m * L, m), "all sources").reshape(m, L, m)
    if n_src == 1:
        return c_all, c_all.reshape(1, n_chan, L, n_chan)

    own = [slice(j * n_chan, (j + 1) * n_chan) for j in range(n_src)]
    x, ok = _solve_block_toeplitz(
        np.stack([blocks[:, s, s] for s in own]), np.stack([rhs[:, s, s] for s in own]), "own sources"
    )
    c_own = x.transpose(0, 2, 1, 3).copy()
    for j in np.flatnonzero(~ok):
        log.info("source %d: Gram matrix too ill-conditioned for block Levinson; dense LU solve as museval", j)
        s = own[j]
        rhs_j = re[s, s].transpose(0, 2, 1).reshape(n_chan * L, n_chan)
        c_own[j] = _dense_solve(gram_matrix(rr[s, s]), rhs_j, f"source {j}").reshape(n_chan, L, n_chan)
    return c_all, c_own


def _filter_spectra(
    c_all: np.ndarray, c_own: np.ndarray, nf: int, arena: _Arena | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin maps from the M reference spectra to P_all and P_own (kernels.frame_energies).

    Returns (h, g), C-contiguous: h (M, M, F) complex, [p, j*C + c, f] from reference channel p
    to estimate j channel c (c_all's taps); g (C, M, F) complex, [a, j*C + c, f] from channel a of
    reference j to estimate j channel c (c_own's taps)."""
    arena = arena or _Arena()
    m, L, _ = c_all.shape
    n_src, n_chan = c_own.shape[:2]
    n_bins = nf // 2 + 1
    h = np.fft.rfft(c_all.transpose(0, 2, 1), n=nf, axis=-1, out=arena.take((m, m, n_bins)))
    g = arena.take((n_chan, m, n_bins))
    # c_own[j, a, l, c] -> taps [a, j, c, l]: rfft writes [a, (j, c), f] directly
    np.fft.rfft(c_own.transpose(1, 0, 3, 2), n=nf, axis=-1, out=g.reshape(n_chan, n_src, n_chan, n_bins))
    return h, g


def _museval_residual(
    sig: _Signals, start: int, stop: int, j: int, spectrum: np.ndarray, filters: tuple[np.ndarray, np.ndarray], nf: int
) -> float:
    """|e_spat + e_interf + e_artif|^2 of source j in one frame, in museval's operation order,
    from this module's projections (used where s_hat == s exactly, where it is rounding residue).
    spectrum: (M, F) the frame's reference spectra; filters: (h, g) from _filter_spectra."""
    c, L = sig.n_chan, FILTERS_LEN
    h, g = filters
    n = stop - start
    own = slice(j * c, (j + 1) * c)
    p_all = np.einsum("pf,pof->fo", spectrum, h[:, own])
    p_own = np.einsum("af,aof->fo", spectrum[own], g[:, own])
    proj = np.fft.irfft(np.concatenate([p_all, p_own], axis=1), n=nf, axis=0)[: n + L - 1]
    p_all, p_own = proj[:, :c], proj[:, c:]
    s_true = np.zeros((n + L - 1, c))
    s_true[:n] = sig.refs[j, start:stop]
    e_spat = p_own - s_true
    e_interf = p_all - s_true - e_spat
    e_artif = -s_true - e_spat - e_interf
    estimate = sig.ests[j, start:stop]  # shorter where the estimate is zero-padded
    e_artif[: len(estimate)] += estimate
    return float(np.sum((e_spat + e_interf + e_artif) ** 2))


def _frame_energies(
    sig: _Signals,
    spans: list[tuple[int, int]],
    filters: tuple[np.ndarray, np.ndarray] | None,
    nf: int,
    arena: _Arena | None = None,
    pool: ThreadPoolExecutor | None = None,
    n_workers: int = 1,
    filter_arena: _Arena | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame energies, pass 2. Returns (energies (7, J, T), silent (T,) bool) with energies
    |s|^2, |s_hat - s|^2, |P_all|^2, |P_own|^2, |P_own - s|^2, |P_all - P_own|^2, |s_hat - P_all|^2;
    the last five are NaN when filters is None (SDR only, no FFTs). filters: (h, g) from
    _filter_spectra. arena: optional scratch for the chunks of spectra; filter_arena: for the
    filters packed for the compiled loop (kernels.pack_filters).

    Frames are independent, so each worker takes whole chunks of frames (every n_workers-th
    chunk) from the time domain to the energies: its spectra stay in its own core's caches and
    no step waits for another worker's.
    """
    m, n_src, n_chan = sig.m, sig.n_src, sig.n_chan
    n_frames = len(spans)
    energies = np.full((7, n_src, n_frames), np.nan)
    silent = np.zeros(n_frames, dtype=bool)
    n_bins = nf // 2 + 1
    k_max = _frames_per_chunk(n_frames)
    starts = list(range(0, n_frames, k_max))
    n_workers = min(n_workers, len(starts))  # a worker per chunk at most
    arena = (arena or _Arena()).reset()
    if filters is not None:
        # chunks[w][k] = [S | S_hat] (2M, F) for frame k of worker w's chunk, as rfft writes them
        chunks = arena.take((n_workers, k_max, 2 * m, n_bins))
        # Parseval for a real signal of length nf from its rfft: weight 2/nf, but 1/nf for the
        # bins that appear once in the full spectrum (DC, and Nyquist for even nf)
        weights = np.full(n_bins, 2.0)
        weights[0] = 1.0
        if nf % 2 == 0:
            weights[-1] = 1.0
        take = (lambda shape: filter_arena.take(shape, float)) if filter_arena else None
        packed = kernels.pack_filters(*filters, weights, take)
    bufs = arena.take((n_workers, 2, m, nf), float)  # the workers' frames: sig.fill writes all of it

    def work(worker: int) -> None:
        buf, power = bufs[worker], np.empty((2, m))
        if filters is not None:
            chunk = chunks[worker]
            sums = np.empty((k_max, 5, m))
        for first in starts[worker::n_workers]:
            these = range(first, min(first + k_max, n_frames))
            k_n = len(these)
            for k, t in enumerate(these):
                start, stop = spans[t]
                n = sig.fill(buf, start, stop)
                silent[t] = sig.silent(start, stop, buf)
                kernels.frame_power(buf, n, power)  # |s|^2 and |s_hat - s|^2 per channel
                energies[:2, :, t] = power.reshape(2, n_src, n_chan).sum(axis=2)
                if filters is not None:
                    np.fft.rfft(buf.reshape(2 * m, nf), axis=-1, out=chunk[k])
            if filters is None:
                continue
            kernels.frame_energies(chunk, k_n, *packed, sums)
            # (K, [P_all, P_own, e_artif, e_interf, e_spat], J*C) -> (5, J, K) in `energies` order
            per_source = (sums[:k_n] / nf).reshape(k_n, 5, n_src, n_chan).sum(axis=3)[:, [0, 1, 4, 3, 2]]
            energies[2:, :, first : first + k_n] = per_source.transpose(1, 2, 0)
            for k, t in enumerate(these):
                for j in np.flatnonzero(energies[1, :, t] == 0):
                    if not silent[t]:
                        energies[1, j, t] = _museval_residual(sig, *spans[t], j, chunk[k, :m], filters, nf)

    _parallel(pool, work, range(n_workers))
    return energies, silent


def _frames_per_chunk(n_frames: int) -> int:
    """Frames per pass-2 chunk: FRAME_CHUNK, or all of a shorter track's. A function of the track
    alone, so that every frame is computed the same way whatever the number of threads."""
    return max(1, min(FRAME_CHUNK, n_frames))


def _arenas(sig: _Signals, n_frames: int, nf: int, n_workers: int) -> tuple[_Arena, _Arena]:
    """The two scratch buffers of a full computation, sized for what the steps carve from them
    in turn: [pass-1 chunk and framing buffers, then summed cross spectra, then the boundaries'
    scratch per worker; the workers' pass-2 chunks and framing buffers] and [pass-1 accumulator,
    then correlations, then the boundaries' partial sums; filter spectra and their packed copy
    (kept through pass 2)]. In complex elements."""
    m, n_chan = sig.m, sig.n_chan
    _, nf_stats, k_stats = _stats_layout(sig.n_samples, FILTERS_LEN)
    bins_stats, bins = nf_stats // 2 + 1, nf // 2 + 1
    frame_workers = min(n_workers, -(-n_frames // FRAME_CHUNK))
    boundaries = -(-sig.n_samples // (nf_stats - FILTERS_LEN + 1)) - 1
    spectra = max(
        k_stats * bins_stats * 2 * m + n_workers * m * nf_stats,  # chunk, framing buffers
        m * 2 * m * bins_stats,  # _products_to_lags
        min(n_workers, -(-boundaries // BOUNDARY_GROUP)) * _boundary_layout(m, FILTERS_LEN)[1],
        frame_workers * (_frames_per_chunk(n_frames) * bins * 2 * m + m * nf),  # chunks, framing buffers
    )
    packed = kernels.n_tiles(bins) * kernels.LANES * (m * m + n_chan * m + 1)  # kernels.pack_filters
    accumulator = max(
        kernels.n_tiles(bins_stats) * kernels.LANES * 2 * m * m,  # kernels.cross_spectra
        m * m * nf_stats,
        -(-boundaries // BOUNDARY_GROUP) * m * m * (2 * FILTERS_LEN - 1),  # _boundary_products' parts
        bins * (m * m + n_chan * m) + packed,  # _filter_spectra
    )
    return _Arena(spectra), _Arena(accumulator)


def _safe_db(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """10 log10(num / den), +inf where den == 0 (museval's _safe_db)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10 * np.log10(num / den)
    return np.where(den == 0, np.inf, out)


def bss_eval_v4(
    references: np.ndarray,
    estimates: np.ndarray,
    win: int = 44100,
    hop: int = 44100,
    *,
    sdr_only: bool = False,
    workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """BSS Eval v4 images, as ``museval.evaluate(references, estimates, win, hop, mode="v4", padding=True)``.

    references: (sources, samples, channels); estimates: (sources, samples', channels), padded
    with zeros or truncated to `samples` (2-D arrays are taken as one channel). Returns
    (sdr, isr, sir, sar), each (sources, frames) float64, frames as museval's (the trailing
    partial frame is not scored); all four metrics of all sources are NaN in a frame where any
    reference or estimate is silent. With sdr_only=True the distortion filters are not computed
    (SDR does not depend on them) and isr, sir, sar are None. workers: threads (default: the
    available CPUs, at most 8).
    """
    t0 = time.perf_counter()
    sig = _Signals(references, estimates)
    sig.validate()
    n_workers = workers or _default_workers()
    spans = frames(sig.n_samples, win, hop)
    width = max(stop - start for start, stop in spans)
    nf = next_fast_len(width + FILTERS_LEN - 1)
    with ThreadPoolExecutor(n_workers) if n_workers > 1 else nullcontext() as pool:
        if sdr_only:
            energies, silent = _frame_energies(sig, spans, None, nf, pool=pool, n_workers=n_workers)
            t1 = t2 = time.perf_counter()
        else:
            arenas = _arenas(sig, len(spans), nf, n_workers)
            rr, re = lag_statistics(sig, FILTERS_LEN, arenas, pool, n_workers)
            t1 = time.perf_counter()
            c_all, c_own = distortion_filters(rr, re, sig.n_src, sig.n_chan)
            filters = _filter_spectra(c_all, c_own, nf, arenas[1].reset())
            t2 = time.perf_counter()
            energies, silent = _frame_energies(sig, spans, filters, nf, arenas[0], pool, n_workers, arenas[1])
    s, err, full, own, spat, interf, artif = energies
    sdr = _safe_db(s, err)
    sdr[:, silent] = np.nan
    log.debug(
        "bss_eval_v4: %d sources x %d samples x %d channels, %d frames, %d threads: "
        "statistics %.2fs, filters %.2fs, frames %.2fs",
        sig.n_src,
        sig.n_samples,
        sig.n_chan,
        len(spans),
        n_workers,
        t1 - t0,
        t2 - t1,
        time.perf_counter() - t2,
    )
    if sdr_only:
        return sdr, None, None, None
    metrics = [sdr, _safe_db(s, spat), _safe_db(own, interf), _safe_db(full, artif)]
    for metric in metrics[1:]:
        metric[:, silent] = np.nan
    return tuple(metrics)
