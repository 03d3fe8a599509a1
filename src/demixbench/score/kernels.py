"""Compiled inner loop of the exact BSS Eval v4 scorer (demixbench.score.bss_eval).

The scorer's FFTs and pass 1's per-bin GEMMs are numpy's (pocketfft, OpenBLAS). Pass 2's
projections and energies are many tiny operations per frequency bin (an 8 x 8 complex map per
bin for 4 stereo sources): numpy needed a batched GEMM, three subtractions and an energy sum per
tile of bins, with about a microsecond of call overhead per bin and temporaries for every step.
Here they are one loop over the spectra, in C (``_kernels.c``, built by ``pip install``), which
reads the spectra as numpy's rfft writes them into contiguous memory and releases the GIL, so
the scorer's worker threads run it side by side. About 2x faster than the numpy version on the
development VM, and nothing to load at run time (numba, tried first, took 1.15 s per process to
import and load its cached machine code, and 100 MB).

Floating-point semantics: IEEE double, no fast-math and no fused multiply-add contraction
(``-ffp-contract=off``), so every sum is taken in the order the loop states: each frame's
energies over the bins in order, whatever the number of frames per call or of threads.
"""

from __future__ import annotations

try:
    from demixbench.score._kernels import frame_energies as _frame_energies
except ImportError as error:  # an install without its build step (a copied source tree)
    raise ImportError(
        "demixbench.score._kernels is not built: reinstall the package, which compiles it: "
        "`pip install -e .` (needs a C compiler and Python's headers; Debian: apt-get install "
        "build-essential python3-dev)"
    ) from error

__all__ = ["frame_energies"]


def frame_energies(spectra, n_frames, h, g, weights, out) -> None:
    """Parseval energies of the projections of a chunk of frames (all arrays C-contiguous).

    spectra: (K, 2M, F) complex128, frame k's spectra [S | S_hat], M = J*C reference channels
    p = j*C + c, then the M estimate channels; only the first n_frames frames are read.
    h: (F, M, M) complex128, the filters to all references, [f, p, o] from reference channel p
    to estimate channel o = j*C + c; g: (F, C, M) complex128, the own-source filters, [f, a, o]
    from channel a of o's own reference j.
    weights: (F,) float64, Parseval weight of each bin: 1 where the bin appears once in the full
    spectrum (DC, and Nyquist for an even length), else 2; the caller divides by the length.
    out: (K, 5, M) float64, overwritten for the first n_frames frames: per estimate channel o,
    the sums over bins of weight * |.|^2 of P_all, P_own, S_hat - P_all (artefacts),
    P_all - P_own (interference) and P_own - S (spatial distortion).
    """
    _frame_energies(spectra, n_frames, h, g, weights, out)
