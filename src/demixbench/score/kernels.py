"""Compiled inner loops of the exact BSS Eval v4 scorer (demixbench.score.bss_eval).

The scorer's FFTs are numpy's (pocketfft). What it does per frequency bin between them are many
tiny operations (for 4 stereo sources, 100 products of channel pairs per bin in pass 1; an 8 x 8
complex map and five energies per bin in pass 2): numpy needed a small GEMM or einsum per bin or
tile of bins, with about a microsecond of call overhead each and temporaries for every step.
Here they are loops over the spectra in C (``_kernels.c``, built by ``pip install``), which read
the spectra as numpy's rfft writes them into contiguous memory and release the GIL, so the
scorer's worker threads run them side by side. The loops take LANES adjacent bins at once, one
per SIMD lane (the filters are packed for pass 2 once per track, pack_filters), and are compiled
for AVX-512, AVX2 and baseline x86-64, the best picked at load time; nothing to load at run time
(numba, tried first, took 1.15 s per process to import and load its cached machine code). The
framing of the input (frame_rows) and the frames' time-domain energies (frame_power) are here too.

Floating-point semantics: IEEE double, no fast-math and no fused multiply-add (GCC vector
extensions and ``-ffp-contract=off``), so every sum is taken in the order the loops state,
whatever the number of frames per call, of threads, or the vector width: over the bins (or
samples) in order within each lane, then the lanes in a fixed tree.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

try:
    from demixbench.score._kernels import LANES
    from demixbench.score._kernels import cross_spectra as _cross_spectra
    from demixbench.score._kernels import frame_energies as _frame_energies
    from demixbench.score._kernels import frame_power as _frame_power
    from demixbench.score._kernels import frame_rows as _frame_rows
    from demixbench.score._kernels import pack_spectra as _pack_spectra
    from demixbench.score._kernels import unpack_cross_spectra as _unpack_cross_spectra
except ImportError as error:  # an install without its build step (a copied source tree)
    raise ImportError(
        "demixbench.score._kernels is not built: reinstall the package, which compiles it: "
        "`pip install -e .` (needs a C compiler and Python's headers; Debian: apt-get install "
        "build-essential python3-dev)"
    ) from error

__all__ = [
    "LANES",
    "cross_spectra",
    "frame_energies",
    "frame_power",
    "frame_rows",
    "framed_dtype",
    "n_tiles",
    "pack_filters",
    "unpack_cross_spectra",
]


def framed_dtype(x: np.ndarray) -> bool:
    """Whether frame_rows reads x directly: native float32 or float64 (other dtypes go through numpy)."""
    return x.dtype in (np.float32, np.float64) and x.dtype.isnative


def frame_rows(x: np.ndarray, start: int, n: int, rows: np.ndarray) -> None:
    """rows[j*C + c, :n] = x[j, start : start + n, c] as float64, rows[:, n:] = 0.

    x: (J, N, C), framed_dtype, any strides (read in place); rows: (J*C, W) float64, C-contiguous.
    """
    _frame_rows(x, start, n, rows)


def frame_power(frame: np.ndarray, n: int, out: np.ndarray) -> None:
    """Time-domain energies of a frame: out[0, r] = sum of s^2, out[1, r] = sum of (s_hat - s)^2
    over the first n samples of row r, with s = frame[0, r], s_hat = frame[1, r].

    frame: (2, R, W) float64, C-contiguous; out: (2, R) float64. Sample i adds to partial sum
    i % LANES, and the partial sums are added in a fixed tree, as in frame_energies.
    """
    _frame_power(frame, n, out)


def n_tiles(n_bins: int) -> int:
    """Tiles of LANES bins that cover n_bins bins (the last one padded)."""
    return -(-n_bins // LANES)


def cross_spectra(spectra: np.ndarray, n_frames: int, acc: np.ndarray, tiles: range) -> None:
    """Pass 1's accumulation: acc += the sums over the first n_frames frames of conj(X_p) X_q.

    spectra: (K, 2M, F) complex128 as in frame_energies (M references, then M estimates).
    acc: (T, M, 2M, 2, LANES) float64, T = n_tiles(F): per tile of LANES bins, reference p and
    channel q, the real parts of the tile's bins, then their imaginary parts. Only the tiles in
    `tiles` (a range of tile indices, so that threads can share the work) and only q >= p are
    updated: where both are references the sums are Hermitian, and the caller derives the other
    half (bss_eval mirrors its lags).
    Each bin's sum is over the frames in order, one call after another: the same numbers whatever
    the split into calls or tiles.
    """
    _cross_spectra(spectra, n_frames, acc, tiles.start, tiles.stop)


def unpack_cross_spectra(acc: np.ndarray, out: np.ndarray, rows: range) -> None:
    """cross_spectra's accumulator -> out (M, 2M, F) complex128, C-contiguous: out[p, q, f] = the
    sum of conj(X_p(f)) X_q(f), for the references p in `rows`. The Hermitian half of the
    reference block (q < p < M) is not computed by cross_spectra: it holds zeros here, and the
    caller derives it."""
    _unpack_cross_spectra(acc, out, rows.start, rows.stop)


def pack_filters(
    h: np.ndarray, g: np.ndarray, weights: np.ndarray, take: Callable[[tuple[int, ...]], np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The filter spectra and Parseval weights in the loop's layout: tiles of LANES adjacent
    bins, the real parts of a tile's bins, then their imaginary parts, so that the loop reads
    whole SIMD vectors. Bins past the last (up to a whole tile) get zero filters and weights.

    h: (M, M, F) complex, g: (C, M, F) complex (C-contiguous: as rfft writes them), weights:
    (F,), as frame_energies takes them. Returns (h, g, weights) packed: (T, M, M, 2, LANES),
    (T, C, M, 2, LANES), (T, LANES) float64, T = n_tiles(F). take(shape) allocates a float64
    array (default np.empty).
    """
    take = take or (lambda shape: np.empty(shape))
    n_bins = h.shape[-1]
    packed = []
    for x in (h, g):
        packed.append(take((n_tiles(n_bins), *x.shape[:2], 2, LANES)))
        _pack_spectra(x, packed[-1])
    packed_weights = take((n_tiles(n_bins), LANES))
    packed_weights.reshape(-1)[:n_bins] = weights  # a contiguous array: reshape is a view
    packed_weights.reshape(-1)[n_bins:] = 0.0
    return packed[0], packed[1], packed_weights


def frame_energies(spectra, n_frames, h, g, weights, out) -> None:
    """Parseval energies of the projections of a chunk of frames (all arrays C-contiguous).

    spectra: (K, 2M, F) complex128, frame k's spectra [S | S_hat], M = J*C reference channels
    p = j*C + c, then the M estimate channels; only the first n_frames frames are read.
    h, g, weights: pack_filters of the filters to all references, h[p, o, f] from reference
    channel p to estimate channel o = j*C + c; the own-source filters, g[a, o, f] from channel a
    of o's own reference j; and the Parseval weight of each bin: 1 where the bin appears once in
    the full spectrum (DC, and Nyquist for an even length), else 2 (the caller divides by the
    length).
    out: (K, 5, M) float64, overwritten for the first n_frames frames: per estimate channel o,
    the sums over bins of weight * |.|^2 of P_all, P_own, S_hat - P_all (artefacts),
    P_all - P_own (interference) and P_own - S (spatial distortion). Bin f adds to partial sum
    f % LANES, and the LANES partial sums are added in a fixed tree: the same numbers on every
    CPU, whatever its vector width.
    """
    _frame_energies(spectra, n_frames, h, g, weights, out)
