"""Agreement check: the exact scorer (demixbench.score.bss_eval) against museval on a pipeline's own
estimates, next to museval against itself, and optionally both against an extended-precision
reference.

For every track of the given runs, the largest absolute difference per metric (SDR, ISR, SIR, SAR,
over targets and frames):

* ``fast - museval``: the fast scorer against ``museval.evaluate(mode="v4")``;
* ``museval spread``: how far museval moves from itself when only rounding changes: the same call
  with the four sources listed in reverse order (the same mathematics), and with one BLAS thread
  instead of the default (a subprocess with ``OPENBLAS_NUM_THREADS=1``); the larger of the two;
* with ``--exact``, ``fast - exact`` and ``museval - exact``: the distance of each to the exact
  value. The exact value is computed from the exact lag statistics (the references are 16-bit
  samples, integers times 2^-15, and the estimates are cut at 2^-56, so every correlation is a sum
  of integers below 2^53 and float64 GEMMs give it without rounding), the filters solved with
  iterative refinement on extended-precision (long double) residuals, and the frame projections
  convolved with the filters split into a float64 head and tail. About 2 minutes per 12-s track
  on 2 cores (longer tracks: proportionally more for the statistics).

A track is "OK" when SDR agrees to 1e-9 dB and every other metric to max(1e-6, 2 x museval's
spread). On ill-conditioned input (band-limited stems: cond(G) of 1e10 and more) the filters are
decided to about cond(G) * 2.2e-16 in relative terms by any float64 solve, and museval's own
ISR/SIR/SAR sit up to ~1e-6 dB from the exact value there (see docs/benchmarks.md).

Usage (museval takes about 20 s per 12-s demo track and run here):
  .venv/bin/python bench/museval_agreement.py results/demo unet/seed1 MIX/oracle [--exact]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from demixbench import TARGETS
from demixbench.score.bss_eval import EPS, FILTERS_LEN, bss_eval_v4
from demixbench.separate.estimates import read_estimates

METRICS = ("SDR", "ISR", "SIR", "SAR")
RATE = 44100


def load(experiment: Path, run: str, track: str) -> tuple[np.ndarray, np.ndarray]:
    """(references, estimates), each (sources, samples, channels) float64."""
    decoded = experiment / "decoded" / track
    references = np.stack([np.load(decoded / f"{target}.npy").T for target in TARGETS]).astype(np.float64)
    estimates = read_estimates(experiment / "separated" / run / track, TARGETS).transpose(0, 2, 1)
    return references, estimates.astype(np.float64)


def museval_scores(references: np.ndarray, estimates: np.ndarray) -> np.ndarray:
    """museval v4, (4 metrics, sources, frames)."""
    import museval  # needs ffmpeg on PATH; imported here so --help works without it

    return np.stack(museval.evaluate(references, estimates, win=RATE, hop=RATE, mode="v4", padding=True))


def museval_one_thread(experiment: Path, run: str, track: str) -> np.ndarray:
    """museval in a subprocess whose BLAS has one thread (set before numpy loads)."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "scores.npy"
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        command = [sys.executable, __file__, "--one-thread-worker", str(out), str(experiment), run, track]
        subprocess.run(command, check=True, env=env)
        return np.load(out)


def largest(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Largest absolute difference per metric, NaN frames (silent sources) left out."""
    with np.errstate(invalid="ignore"):
        return [float(np.nanmax(np.abs(x - y))) for x, y in zip(a, b, strict=True)]


# ---- the extended-precision reference ------------------------------------------------------------


def _exact_correlations(x: np.ndarray, y: np.ndarray, lags: int) -> np.ndarray:
    """Exact sum_n x_p(n) y_q(n + d), d = 0..lags-1, for integer-valued float64 x (|x| <= 2^15) and
    y (|y| < 2^16) with fewer than 2^21 samples: every partial sum is an integer below 2^53, so the
    float64 GEMM is exact whatever its summation order. (P, n), (Q, n) -> (lags, P, Q)."""
    n = x.shape[1]
    assert np.abs(x).max() <= 2**15 and np.abs(y).max() < 2**16 and n < 2**21
    return np.stack([x[:, : n - d] @ y[:, d:].T for d in range(lags)])


def _refined_solve(gram: np.ndarray, rhs: np.ndarray, steps: int = 8) -> np.ndarray:
    """gram x = rhs (long double rhs) by LU in float64 plus iterative refinement with long-double
    residuals: converges to the solution of the exactly stored system while cond(gram) * 2.2e-16 < 1,
    to about cond(gram) * 1e-19 in relative terms."""
    import scipy.linalg

    factors = scipy.linalg.lu_factor(gram)
    gram_ld = gram.astype(np.longdouble)
    x = scipy.linalg.lu_solve(factors, rhs.astype(np.float64)).astype(np.longdouble)
    for _ in range(steps):
        residual = rhs - gram_ld @ x
        x = x + scipy.linalg.lu_solve(factors, residual.astype(np.float64))
    return x


def _project(x: np.ndarray, filters: np.ndarray, start: int, win: int) -> np.ndarray:
    """The frame [start, start + win) of the reference channels x (P, n) through filters
    (P * L, C) long double: (win + L - 1, C). The filters are split into a float64 head and tail,
    so their long-double precision reaches the convolution."""
    taps = FILTERS_LEN
    out = np.zeros((win + taps - 1, filters.shape[1]))
    for p in range(x.shape[0]):
        frame = x[p, start : start + win]
        for c in range(filters.shape[1]):
            f = filters[p * taps : (p + 1) * taps, c]
            head = f.astype(np.float64)
            out[:, c] += np.convolve(frame, head) + np.convolve(frame, (f - head).astype(np.float64))
    return out


def exact_scores(references: np.ndarray, estimates: np.ndarray, win: int = RATE) -> np.ndarray:
    """ISR, SIR, SAR of museval v4 in extended precision: (3, sources, frames), NaN where museval
    gives NaN (a silent source in the frame). references: 16-bit samples as floats."""
    n_src, n, n_chan = references.shape
    taps = FILTERS_LEN
    estimates = np.pad(estimates, ((0, 0), (0, max(0, n - estimates.shape[1])), (0, 0)))[:, :n]
    x_int = (references * 32768).transpose(0, 2, 1).reshape(n_src * n_chan, n)
    if not np.array_equal(x_int, np.round(x_int)):
        raise ValueError("--exact needs 16-bit references (samples that are integers / 32768)")
    # estimates cut at 2^-56 (far below float64's resolution of their correlations) and split into
    # four 14-bit digits, so every product and partial sum stays an exact integer
    digits, rest = [], np.round(estimates * 2.0**56).astype(np.int64).transpose(0, 2, 1).reshape(n_src * n_chan, n)
    for k in range(4):
        digit = rest if k == 3 else np.mod(rest, 2**14)
        digits.append(digit.astype(np.float64))
        rest = (rest - digit) // 2**14
    corr = _exact_correlations(x_int, np.concatenate([x_int, *digits]), taps)
    m = n_src * n_chan
    refs = corr[:, :, :m]  # refs[d, p, q] = sum_k x_p(k) x_q(k + d)
    cross = sum(
        corr[:, :, m * (k + 1) : m * (k + 2)].astype(np.longdouble) * np.longdouble(2.0 ** (14 * k)) for k in range(4)
    )
    lag = np.arange(taps)[:, None] - np.arange(taps)[None, :]
    gram = np.empty((m, taps, m, taps))
    for p in range(m):
        for q in range(m):
            gram[p, :, q, :] = np.where(lag >= 0, refs[np.abs(lag), p, q], refs[np.abs(lag), q, p])
    gram = gram.reshape(m * taps, m * taps) * 2.0**-30 + EPS * np.eye(m * taps)
    rhs = (cross * np.longdouble(2.0**-71)).transpose(1, 0, 2).reshape(m * taps, m)
    filters_all = _refined_solve(gram, rhs)
    x = x_int / 32768.0
    scores = np.full((3, n_src, n // win), np.nan)
    own = []
    for j in range(n_src):
        rows = slice(j * n_chan * taps, (j + 1) * n_chan * taps)
        own.append(_refined_solve(gram[rows, rows], rhs[rows, j * n_chan : (j + 1) * n_chan]))
    for t in range(n // win):
        start = t * win
        # museval's silence rule: any reference or estimate whose channel sum is 0 throughout
        if any(not np.any(s[start : start + win].sum(-1)) for s in (*references, *estimates)):
            continue
        for j in range(n_src):
            s = np.zeros((win + taps - 1, n_chan))
            s[:win] = references[j, start : start + win]
            s_hat = np.zeros_like(s)
            s_hat[:win] = estimates[j, start : start + win]
            p_all = _project(x, filters_all[:, j * n_chan : (j + 1) * n_chan], start, win)
            p_own = _project(x[j * n_chan : (j + 1) * n_chan], own[j], start, win)
            with np.errstate(divide="ignore"):
                scores[0, j, t] = 10 * np.log10(np.sum(s**2) / np.sum((p_own - s) ** 2))
                scores[1, j, t] = 10 * np.log10(np.sum(p_own**2) / np.sum((p_all - p_own) ** 2))
                scores[2, j, t] = 10 * np.log10(np.sum(p_all**2) / np.sum((s_hat - p_all) ** 2))
    return scores


# ---- the report ---------------------------------------------------------------------------------------


def _row(values: list[float]) -> str:
    return " ".join(f"{v:.1e}" for v in values)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--one-thread-worker":  # museval_one_thread's subprocess
        out, experiment, run, track = argv[1:]
        np.save(out, museval_scores(*load(Path(experiment), run, track)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", type=Path, help="an experiment's results tree, e.g. results/demo")
    parser.add_argument("runs", nargs="+", help="runs under separated/, e.g. unet/seed1 MIX/oracle")
    parser.add_argument("--exact", action="store_true", help="also compare both with the extended-precision reference")
    args = parser.parse_args(argv)
    failures = 0
    header = f"{'run':<22} {'track':<12} {'fast - museval':<31} {'museval spread':<31}"
    if args.exact:
        header += f" {'fast - exact (ISR SIR SAR)':<23} museval - exact"
    print(header + "\n" + " " * 36 + "(SDR ISR SIR SAR)")
    for run in args.runs:
        for folder in sorted((args.experiment / "separated" / run).iterdir()):
            references, estimates = load(args.experiment, run, folder.name)
            fast = np.stack(bss_eval_v4(references, estimates, win=RATE, hop=RATE))
            slow = museval_scores(references, estimates)
            reversed_order = museval_scores(references[::-1], estimates[::-1])[:, ::-1]
            one_thread = museval_one_thread(args.experiment, run, folder.name)
            difference = largest(fast, slow)
            spread = [max(a, b) for a, b in zip(largest(slow, reversed_order), largest(slow, one_thread), strict=True)]
            ok = difference[0] <= 1e-9 and all(d <= max(1e-6, 2 * s) for d, s in zip(difference[1:], spread[1:]))
            failures += not ok
            line = f"{run:<22} {folder.name[:12]:<12} {_row(difference):<31} {_row(spread):<31}"
            if args.exact:
                exact = exact_scores(references, estimates)
                line += f" {_row(largest(fast[1:], exact)):<23} {_row(largest(slow[1:], exact))}"
            print(f"{line}  {'OK' if ok else 'beyond'}", flush=True)
    print(f"{failures} track(s) beyond max(1e-6 dB, 2 x museval's own spread)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
