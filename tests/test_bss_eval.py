"""demixbench.score.bss_eval.bss_eval_v4 against museval.evaluate(mode="v4") itself.

Short signals with small frames (win = hop = 8000 samples, i.e. 1 s at an 8 kHz "sample rate")
keep museval's run time down; the filters are still museval's 512 taps.
Tolerances: SDR 1e-9 dB always; ISR/SIR/SAR 1e-3 dB on well-conditioned inputs; identical
NaN / inf patterns. On ill-conditioned inputs, within museval's own spread across BLAS threads.
The internal block, chunk and tile sizes, the thread count and the block-Toeplitz solver are
checked against the plain computation (no museval needed there).
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from scipy.signal import lfilter

museval = pytest.importorskip("museval")

from demixbench.score import bss_eval  # noqa: E402
from demixbench.score.bss_eval import bss_eval_v4  # noqa: E402
from demixbench.score.track import BACKENDS, ScoringConfig, score_arrays  # noqa: E402

NAMES = ("SDR", "ISR", "SIR", "SAR")
WIN = 8000


def _museval(references, estimates, win=WIN, hop=WIN):
    return museval.evaluate(references, estimates, win=win, hop=hop, mode="v4", padding=True)


def _assert_agree(expected, got, tol_filters=1e-3, tol_sdr=1e-9):
    """Per-frame agreement; returns the max abs difference per metric (finite entries)."""
    diffs = {}
    for name, a, b in zip(NAMES, expected, got):
        assert a.shape == b.shape, name
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{name} NaN pattern")
        np.testing.assert_array_equal(np.isinf(a), np.isinf(b), err_msg=f"{name} inf pattern")
        np.testing.assert_array_equal(a[np.isinf(a)], b[np.isinf(b)], err_msg=f"{name} inf signs")
        finite = np.isfinite(a)
        diff = float(np.max(np.abs(a[finite] - b[finite]), initial=0.0))
        diffs[name] = diff
        assert diff <= (tol_sdr if name == "SDR" else tol_filters), (name, diff)
    return diffs


def _filtered_mix(rng, references, n_taps=16, leak=0.2, noise=0.1):
    """Estimates: own reference through random filters per channel pair, filtered leakage of the
    other sources, white noise and a mild nonlinearity (so all three filters matter)."""
    n_src, n_samples, n_chan = references.shape
    estimates = np.zeros_like(references, dtype=np.float64)
    for j in range(n_src):
        for c in range(n_chan):
            for a in range(n_chan):
                gain = 1.0 if a == c else 0.3
                estimates[j, :, c] += gain * lfilter(
                    rng.standard_normal(n_taps) / n_taps**0.5, [1.0], references[j, :, a]
                )
            for i in range(n_src):
                if i != j:
                    estimates[j, :, c] += leak * lfilter(rng.standard_normal(4) / 2, [1.0], references[i, :, c])
    estimates += noise * rng.standard_normal(estimates.shape)
    return np.tanh(estimates)


def test_random_and_filtered_stereo_odd_length_shorter_estimates():
    rng = np.random.default_rng(0)
    n = 4 * WIN + 3217  # trailing partial frame: used for the filters, not scored
    references = rng.standard_normal((4, n, 2))
    references[2] = lfilter([1.0], [1.0, -0.9], references[2], axis=0)  # a coloured source
    estimates = _filtered_mix(rng, references)[:, : n - 5000]  # shorter: zero-padded as museval
    diffs = _assert_agree(_museval(references, estimates), bss_eval_v4(references, estimates, win=WIN, hop=WIN))
    print("filtered, stereo:", diffs)
    # plain random estimates (no relation to the references)
    random_est = rng.standard_normal((4, n + 777, 2))  # longer: truncated
    diffs = _assert_agree(_museval(references, random_est), bss_eval_v4(references, random_est, win=WIN, hop=WIN))
    print("random, stereo:", diffs)


def test_mixed_mono_longer_estimates_float32():
    rng = np.random.default_rng(1)
    n = 3 * WIN + 999
    references = rng.standard_normal((3, n, 1)).astype(np.float32)
    mixing = np.eye(3) + 0.4 * rng.standard_normal((3, 3))
    estimates = np.einsum("ij,jnc->inc", mixing, references).astype(np.float32)
    estimates = np.concatenate([estimates, rng.standard_normal((3, 1500, 1)).astype(np.float32)], axis=1)
    diffs = _assert_agree(_museval(references, estimates), bss_eval_v4(references, estimates, win=WIN, hop=WIN))
    print("mixed, mono:", diffs)


def test_silent_frames_give_nan_for_every_target():
    rng = np.random.default_rng(2)
    n = 5 * WIN
    references = rng.standard_normal((3, n, 2))
    estimates = _filtered_mix(rng, references, n_taps=8)
    references[0, WIN : 2 * WIN] = 0.0  # silent reference frame
    estimates[2, 3 * WIN : 4 * WIN] = 0.0  # silent estimate frame
    references[1, 2 * WIN : 3 * WIN, 1] = -references[1, 2 * WIN : 3 * WIN, 0]  # anti-phase counts as silent
    expected = _museval(references, estimates)
    got = bss_eval_v4(references, estimates, win=WIN, hop=WIN)
    _assert_agree(expected, got)
    for metric in got:
        assert np.all(np.isnan(metric[:, 1:4])) and np.all(np.isfinite(metric[:, [0, 4]]))


def test_overlapping_frames_and_window_longer_than_signal():
    rng = np.random.default_rng(3)
    n = 3 * WIN + 100
    references = rng.standard_normal((2, n, 2))
    estimates = _filtered_mix(rng, references, n_taps=8, noise=0.3)
    _assert_agree(
        _museval(references, estimates, win=WIN, hop=WIN // 2),
        bss_eval_v4(references, estimates, win=WIN, hop=WIN // 2),
    )
    _assert_agree(
        _museval(references, estimates, win=4 * WIN, hop=4 * WIN),
        bss_eval_v4(references, estimates, win=4 * WIN, hop=4 * WIN),
    )


def test_single_source_has_infinite_sir():
    rng = np.random.default_rng(4)
    references = rng.standard_normal((1, 2 * WIN + 10, 1))
    estimates = _filtered_mix(rng, references, n_taps=8)
    expected = _museval(references, estimates)
    assert np.all(np.isposinf(expected[2]))
    _assert_agree(expected, bss_eval_v4(references, estimates, win=WIN, hop=WIN))


def test_silent_source_is_refused():
    references = np.ones((2, 3 * WIN, 1))
    estimates = np.ones((2, 3 * WIN, 1))
    estimates[1] = 0.0
    with pytest.raises(ValueError, match="non-silent"):
        bss_eval_v4(references, estimates, win=WIN, hop=WIN)


def test_fast_backend_in_score_track():
    rng = np.random.default_rng(5)
    references = rng.standard_normal((4, 2, 2 * 8000)).astype(np.float32)  # (targets, channels, samples)
    estimates = references + 0.3 * rng.standard_normal(references.shape).astype(np.float32)
    config = dict(sample_rate=8000)
    slow = score_arrays(references, estimates, config=ScoringConfig(backend="museval", **config))
    fast = score_arrays(references, estimates, config=ScoringConfig(backend="fast", **config))
    assert list(BACKENDS) == ["museval", "fast"]
    for a, b in zip(slow["targets"], fast["targets"]):
        for fa, fb in zip(a["frames"], b["frames"]):
            assert fa["metrics"]["SDR"] == pytest.approx(fb["metrics"]["SDR"], abs=1e-9)
            for name in ("ISR", "SIR", "SAR"):
                assert fa["metrics"][name] == pytest.approx(fb["metrics"][name], abs=1e-3)


def test_sdr_only_equals_the_full_sdr():
    rng = np.random.default_rng(7)
    n = 5 * WIN + 1234
    references = rng.standard_normal((3, n, 2))
    estimates = _filtered_mix(rng, references, n_taps=8)
    references[2, 2 * WIN : 3 * WIN] = 0.0  # a silent frame: NaN in both
    full = bss_eval_v4(references, estimates, win=WIN, hop=WIN)
    sdr, *rest = bss_eval_v4(references, estimates, win=WIN, hop=WIN, sdr_only=True)
    assert rest == [None, None, None]
    np.testing.assert_array_equal(sdr, full[0])
    assert np.isnan(sdr[:, 2]).all() and np.isfinite(np.delete(sdr, 2, axis=1)).all()


def test_estimate_equal_to_reference_has_musevals_inf_pattern():
    """Where s_hat == s exactly, museval's SDR denominator is the rounding residue of its
    decomposition: exactly 0 (+inf) when the filters are identities (estimate identical
    throughout), finite (~300-400 dB) otherwise. The finite values are rounding noise and not
    compared; everything else is."""
    rng = np.random.default_rng(8)
    references = rng.standard_normal((3, 3 * WIN + 100, 2))
    estimates = references + 0.1 * rng.standard_normal(references.shape)
    estimates[1] = references[1]  # identical throughout
    estimates[0, WIN : 2 * WIN] = references[0, WIN : 2 * WIN]  # identical in frame 1 only
    expected = _museval(references, estimates)
    got = bss_eval_v4(references, estimates, win=WIN, hop=WIN)
    assert np.isposinf(expected[0][1]).all() and np.isfinite(expected[0][0, 1])
    rounding = np.zeros_like(expected[0], dtype=bool)
    rounding[0, 1] = True  # SDR set by rounding
    for name, a, b in zip(NAMES, expected, got):
        np.testing.assert_array_equal(np.isinf(a), np.isinf(b), err_msg=name)
        mask = np.isfinite(a) & ~rounding & (np.arange(3)[:, None] != 1)  # source 1's ISR/SIR/SAR: rounding too
        np.testing.assert_allclose(b[mask], a[mask], rtol=0, atol=1e-9 if name == "SDR" else 1e-3, err_msg=name)
    assert got[0][0, 1] > 250 and (got[1][1] > 250).all()
    # without the filters there is no decomposition to take the residue of: +inf
    assert np.isposinf(bss_eval_v4(references, estimates, win=WIN, hop=WIN, sdr_only=True)[0][0, 1])


def test_sizes_threads_and_shorter_estimates_do_not_change_results(monkeypatch):
    """Many pass-1 blocks and chunks, several frame chunks, 1 and 3 threads: the same numbers as
    the default run up to rounding."""
    rng = np.random.default_rng(9)
    n = 21 * WIN + 777
    references = rng.standard_normal((2, n, 2))
    references[1] = lfilter([1.0], [1.0, -0.8], references[1], axis=0)
    estimates = _filtered_mix(rng, references, n_taps=8)[:, : n - 3000]
    default = np.stack(bss_eval_v4(references, estimates, win=WIN, hop=WIN))
    monkeypatch.setattr(bss_eval, "STATS_NFFT", 4096)  # 47 blocks of 3585 samples
    monkeypatch.setattr(bss_eval, "CHUNK_FRAMES", 6)  # 8 chunks of blocks
    monkeypatch.setattr(bss_eval, "FRAME_CHUNK", 3)  # 7 chunks of frames
    for workers in (1, 3):
        got = np.stack(bss_eval_v4(references, estimates, win=WIN, hop=WIN, workers=workers))
        np.testing.assert_array_equal(np.isnan(got), np.isnan(default))
        np.testing.assert_allclose(got, default, rtol=0, atol=1e-9)


def test_lag_statistics_equal_the_whole_signal_correlations(monkeypatch):
    """Pass 1 (blocks, their boundaries in groups, scratch carved from the arenas per worker)
    against the correlations of the whole signals by one long FFT: rr[p, q, L-1+tau] = sum_n
    x_p(n) x_q(n + tau) for |tau| < L, re[p, q, tau] = sum_n x_p(n) y_q(n + tau) for 0 <= tau < L."""
    rng = np.random.default_rng(11)
    n, lags = 70_001, 64
    references = rng.standard_normal((2, n, 2))
    estimates = (references + 0.5 * rng.standard_normal(references.shape))[:, : n - 999]  # zero-padded
    x = references.transpose(0, 2, 1).reshape(4, n)
    y = np.zeros((4, n))
    y[:, : n - 999] = estimates.transpose(0, 2, 1).reshape(4, n - 999)
    nf = 1 << (2 * n).bit_length()
    spectra = np.fft.rfft(np.concatenate([x, y]), n=nf)
    circ = np.fft.irfft(np.conj(spectra[:4, None]) * spectra[None], n=nf)  # [p, q, tau mod nf]
    rr = np.concatenate([circ[:, :4, nf - lags + 1 :], circ[:, :4, :lags]], axis=-1)
    re = circ[:, 4:, :lags]
    monkeypatch.setattr(bss_eval, "STATS_NFFT", 1024)  # 73 blocks of 961 samples: 72 boundaries
    monkeypatch.setattr(bss_eval, "BOUNDARY_GROUP", 32)  # in 3 groups
    monkeypatch.setattr(bss_eval, "CHUNK_FRAMES", 16)
    sig = bss_eval._Signals(references, estimates)
    results = []
    for workers, size in ((1, 1 << 20), (2, 1 << 20), (3, 1 << 20), (2, 5000)):  # 5000: mostly fresh arrays
        arenas = (bss_eval._Arena(size), bss_eval._Arena(size // 4))
        with ThreadPoolExecutor(workers) as pool:
            results.append(bss_eval.lag_statistics(sig, lags, arenas, pool, workers))
    results.append(bss_eval.lag_statistics(sig, lags))  # fresh arrays, no arenas, one thread
    scale = np.max(np.abs(rr))
    for got_rr, got_re in results:
        np.testing.assert_allclose(got_rr, rr, rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(got_re, re, rtol=0, atol=1e-12 * scale)
        np.testing.assert_array_equal(got_rr, results[0][0])  # bit for bit, whatever the threads
        np.testing.assert_array_equal(got_re, results[0][1])


def test_scores_do_not_depend_on_the_number_of_threads():
    """Bit for bit, on an ill-conditioned input (a nearly-mono stem: the filters there are decided
    to ~1e-6 in relative terms, so a different summation order moves ISR/SIR/SAR by ~1e-6 dB):
    a score file must not change with the machine's or the job's CPU count. Many pass-1 block
    boundaries (32 and more form several groups) and several frame chunks."""
    rng = np.random.default_rng(5)
    n = 40 * WIN + 123
    references = rng.standard_normal((3, n, 2))
    mono = lfilter([1.0], [1.0, -0.95], rng.standard_normal(n))
    references[1] = mono[:, None] + 1e-9 * rng.standard_normal((n, 2))
    estimates = references + 0.3 * rng.standard_normal(references.shape)
    one = np.stack(bss_eval_v4(references, estimates, win=WIN, hop=WIN, workers=1))
    for workers in (2, 3, 5):
        got = np.stack(bss_eval_v4(references, estimates, win=WIN, hop=WIN, workers=workers))
        np.testing.assert_array_equal(got, one, err_msg=f"{workers} threads")


def test_a_pool_worker_scores_with_its_share_of_the_cpus():
    """score_in_pool's workers: set_default_workers gives the calls without `workers` their
    thread count."""
    rng = np.random.default_rng(6)
    references = rng.standard_normal((2, 3 * WIN, 2))
    estimates = references + 0.1 * rng.standard_normal(references.shape)
    expected = np.stack(bss_eval_v4(references, estimates, win=WIN, hop=WIN, workers=2))
    try:
        bss_eval.set_default_workers(1)
        assert bss_eval._default_workers() == 1
        got = np.stack(bss_eval_v4(references, estimates, win=WIN, hop=WIN))
    finally:
        bss_eval.set_default_workers(None)
    np.testing.assert_array_equal(got, expected)
    assert bss_eval._default_workers() >= 1


def test_the_compiled_loop_checks_its_arguments():
    """kernels.frame_energies (C) refuses arrays of the wrong layout or shape with a message,
    instead of reading out of bounds."""
    from demixbench.score import kernels

    spectra = np.zeros((2, 4, 5), dtype=complex)
    h, g = np.zeros((2, 2, 5), dtype=complex), np.zeros((1, 2, 5), dtype=complex)
    packed = kernels.pack_filters(h, g, np.ones(5))
    out = np.full((2, 5, 2), np.nan)
    kernels.frame_energies(spectra, 2, *packed, out)
    assert np.all(out == 0.0)
    with pytest.raises(ValueError, match="C-contiguous"):  # numpy refuses to export the buffer
        kernels.frame_energies(spectra.transpose(0, 2, 1), 2, *packed, out)
    with pytest.raises(TypeError, match="format"):
        kernels.frame_energies(spectra.real.copy(), 2, *packed, out)
    with pytest.raises(ValueError, match="shapes"):
        kernels.frame_energies(spectra, 3, *packed, out)
    with pytest.raises(ValueError, match="shapes"):  # filters packed for another number of bins
        kernels.frame_energies(np.zeros((2, 4, 5 + kernels.LANES), dtype=complex), 2, *packed, out)
    with pytest.raises(TypeError, match="5-d"):  # not packed
        kernels.frame_energies(spectra, 2, h, g, np.ones(5), out)


@pytest.mark.parametrize("n_bins", [1, 7, 8, 9, 23])
def test_the_compiled_loop_matches_its_definition(n_bins):
    """kernels.frame_energies against the energies written out in numpy, for bin counts around
    the loop's tile of LANES bins (the last tile is partly padding)."""
    from demixbench.score import kernels

    rng = np.random.default_rng(n_bins)
    n_src, n_chan, k = 3, 2, 3
    m = n_src * n_chan

    def complex_normal(*shape):
        return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)

    spectra, h, g = complex_normal(k, 2 * m, n_bins), complex_normal(m, m, n_bins), complex_normal(n_chan, m, n_bins)
    weights = rng.uniform(1, 2, n_bins)
    out = np.full((k + 1, 5, m), np.nan)
    kernels.frame_energies(spectra, k, *kernels.pack_filters(h, g, weights), out)

    s, s_hat = spectra[:, :m], spectra[:, m:]
    p_all = np.einsum("kpf,pof->kof", s, h)
    own_refs = s.reshape(k, n_src, n_chan, n_bins)[:, np.arange(m) // n_chan]  # (k, o, a, f)
    p_own = np.einsum("koaf,aof->kof", own_refs, g)
    parts = (p_all, p_own, s_hat - p_all, p_all - p_own, p_own - s)
    expected = np.stack([np.abs(part) ** 2 @ weights for part in parts], axis=1)
    np.testing.assert_allclose(out[:k], expected, rtol=1e-12)
    assert np.isnan(out[k]).all()  # frames past n_frames are not touched


@pytest.mark.parametrize("n_bins", [1, 8, 9, 23])
def test_the_compiled_cross_spectra_match_their_definition(n_bins):
    """kernels.cross_spectra, called twice (two chunks of frames) and over two ranges of tiles as
    two threads would, then unpack_cross_spectra: the sums over frames of conj(X_p) X_q for the
    references p and all channels q, with q >= p in the reference block."""
    from demixbench.score import kernels

    rng = np.random.default_rng(n_bins)
    m, k = 3, 4
    spectra = rng.standard_normal((k, 2 * m, n_bins)) + 1j * rng.standard_normal((k, 2 * m, n_bins))
    tiles = kernels.n_tiles(n_bins)
    acc = np.zeros((tiles, m, 2 * m, 2, kernels.LANES))
    for chunk in (spectra[:3], spectra[3:]):
        chunk = np.ascontiguousarray(chunk)
        for part in (range(0, tiles // 2), range(tiles // 2, tiles)):
            kernels.cross_spectra(chunk, len(chunk), acc, part)
    out = np.full((m, 2 * m, n_bins), np.nan, dtype=complex)
    kernels.unpack_cross_spectra(acc, out[:, :, :], range(0, 1))
    kernels.unpack_cross_spectra(acc, out, range(1, m))
    expected = np.einsum("kpf,kqf->pqf", spectra[:, :m].conj(), spectra)
    upper = np.triu(np.ones((m, 2 * m), dtype=bool))
    np.testing.assert_allclose(out[upper], expected[upper], rtol=1e-12)
    with pytest.raises(ValueError, match="shapes"):
        kernels.cross_spectra(np.ascontiguousarray(spectra), k, acc, range(0, tiles + 1))


def _framing_input(layout: str, dtype: type) -> np.ndarray:
    """(sources, 40 samples, channels) in the layouts kernels.frame_rows has loops for."""
    rng = np.random.default_rng(3)
    if layout == "strided":  # (3, 40, 3), strided on every axis: the general loop
        return rng.standard_normal((3, 50, 5)).astype(dtype)[:, 5:45, ::2]
    if layout == "interleaved":  # stereo as decoded audio: x[j, i, c] at 2 i + c
        return rng.standard_normal((3, 40, 2)).astype(dtype)
    return rng.standard_normal((3, 2, 40)).astype(dtype).transpose(0, 2, 1)  # planar: contiguous channels


@pytest.mark.parametrize("layout", ["strided", "interleaved", "planar"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_compiled_framing_matches_numpy(dtype, layout):
    """kernels.frame_rows reads (sources, samples, channels) views in place, strided, interleaved
    or planar, and kernels.frame_power sums |s|^2 and |s_hat - s|^2 over the frame (lengths
    around its LANES)."""
    from demixbench.score import kernels

    x = _framing_input(layout, dtype)
    assert kernels.framed_dtype(x) and not kernels.framed_dtype(x.astype(np.int16))
    n_rows = x.shape[0] * x.shape[2]
    rows = np.full((2, n_rows, 24), np.nan)
    kernels.frame_rows(x, 7, 20, rows[0])
    kernels.frame_rows(x, 10, 13, rows[1])
    for r, (start, n) in zip(rows, [(7, 20), (10, 13)], strict=True):
        np.testing.assert_array_equal(r[:, :n], x[:, start : start + n].transpose(0, 2, 1).reshape(n_rows, n))
        assert np.all(r[:, n:] == 0.0)
    with pytest.raises(ValueError, match="shapes"):
        kernels.frame_rows(x, 30, 20, rows[0])  # past the end of x
    for n in (0, 5, 8, 13, 24):
        power = np.empty((2, n_rows))
        kernels.frame_power(rows, n, power)
        np.testing.assert_allclose(power[0], np.sum(rows[0, :, :n] ** 2, axis=1), rtol=1e-14)
        np.testing.assert_allclose(power[1], np.sum((rows[1, :, :n] - rows[0, :, :n]) ** 2, axis=1), rtol=1e-14)


def test_other_dtypes_are_framed_by_numpy():
    """int16 inputs (not framed in C) give the scores of the same samples as float64."""
    rng = np.random.default_rng(4)
    references = (rng.standard_normal((2, 3 * WIN, 2)) * 3000).astype(np.int16)
    estimates = (references + rng.standard_normal(references.shape) * 300).astype(np.int16)
    as_int = np.stack(bss_eval_v4(references, estimates, win=WIN, hop=WIN))
    as_float = np.stack(bss_eval_v4(references.astype(float), estimates.astype(float), win=WIN, hop=WIN))
    np.testing.assert_allclose(as_int, as_float, rtol=0, atol=1e-9)


def test_block_toeplitz_solver_matches_a_dense_solve():
    """Block Levinson with refinement against np.linalg.solve on random symmetric positive
    definite block-Toeplitz systems (3 systems, 4 x 4 blocks, 64 lags), and the fallback flag
    on a singular one."""
    rng = np.random.default_rng(10)
    n_lags, m = 64, 4
    x = rng.standard_normal((3, 20 * n_lags, m))
    x[2, :, 1] = x[2, :, 0]  # two identical channels: singular
    # blocks R[k][p, q] = sum_n x_p(n) x_q(n + k): a Gram matrix of delayed signals
    r = np.stack([np.einsum("snp,snq->spq", x[:, : x.shape[1] - k], x[:, k:]) for k in range(n_lags)], axis=1)
    b = rng.standard_normal((3, n_lags, m, 2))
    got, ok = bss_eval._solve_block_toeplitz(r, b, "test")
    assert ok.tolist() == [True, True, False]
    for s in range(2):
        gram = np.block([[r[s, i - k] if i >= k else r[s, k - i].T for k in range(n_lags)] for i in range(n_lags)])
        want = np.linalg.solve(gram, b[s].reshape(n_lags * m, 2)).reshape(n_lags, m, 2)
        np.testing.assert_allclose(got[s], want, rtol=1e-10, atol=1e-12)


_CHILD = """
import sys, numpy as np, museval
data = np.load(sys.argv[1])
scale = float(sys.argv[3])
out = museval.evaluate(data["references"] * scale, data["estimates"] * scale, \
win=int(data["win"]), hop=int(data["win"]), mode="v4")
np.save(sys.argv[2], np.stack(out))
"""


def _museval_in_subprocess(path, threads, out, scale=1.0):
    env = dict(
        os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads)
    )
    subprocess.run([sys.executable, "-c", _CHILD, str(path), str(out), repr(scale)], check=True, env=env)
    return np.load(out)


def test_ill_conditioned_within_musevals_own_spread(tmp_path):
    """A nearly-mono stem (L == R up to 1e-9 relative) makes the Gram matrix nearly singular: its
    entries along L - R are rounding noise (about 1e-10 against a true 6e-14, in museval's as in
    ours), so ISR/SIR/SAR depend on rounding. The rounding envelope per frame is the largest
    difference between runs that differ only in rounding: museval with 1 and 2 BLAS threads and
    with both inputs scaled by 1 + 1e-15 (the metrics are scale-invariant), and the same for the
    fast scorer (1 and 2 threads, scaled inputs). Which implementation moves more depends on the
    CPU's BLAS kernels (on an Intel Xeon with AVX-512: museval 7e-4 dB, the fast scorer 8e-3 dB in
    ISR; on an AMD EPYC museval moved more). Two results decided by rounding noise differ by up to
    the sum of their envelopes, so the check is |fast - museval| <= museval's envelope + the fast
    scorer's (the largest over the source's frames) + 1e-3 dB, and SDR to 1e-9 dB."""
    rng = np.random.default_rng(6)
    n = 4 * WIN + 300
    references = rng.standard_normal((3, n, 2))
    mono = lfilter([1.0], [1.0, -0.95], rng.standard_normal(n))
    references[1] = mono[:, None] + 1e-9 * rng.standard_normal((n, 2))  # nearly mono "bass"
    estimates = references + 0.3 * rng.standard_normal(references.shape)
    path = tmp_path / "inputs.npz"
    np.savez(path, references=references, estimates=estimates, win=WIN)
    scale = 1.0 + 1e-15
    runs = [
        _museval_in_subprocess(path, 2, tmp_path / "two.npy"),
        _museval_in_subprocess(path, 1, tmp_path / "one.npy"),
        _museval_in_subprocess(path, 2, tmp_path / "scaled.npy", scale=scale),
    ]
    two = runs[0]
    got = np.stack(bss_eval_v4(references, estimates, win=WIN, hop=WIN))
    own_runs = [
        got,
        np.stack(bss_eval_v4(references, estimates, win=WIN, hop=WIN, workers=1)),
        np.stack(bss_eval_v4(references * scale, estimates * scale, win=WIN, hop=WIN)),
    ]

    def envelope(results):
        return np.max([np.abs(a - b) for i, a in enumerate(results) for b in results[i + 1 :]], axis=0)

    spread, own_spread = envelope(runs), envelope(own_runs)
    for k, name in enumerate(NAMES):
        np.testing.assert_array_equal(np.isnan(got[k]), np.isnan(two[k]))
        diff = np.abs(got[k] - two[k])
        print(
            f"{name}: max |fast - museval| {np.nanmax(diff):.3g}, museval spread {np.nanmax(spread[k]):.3g}, "
            f"fast spread {np.nanmax(own_spread[k]):.3g}"
        )
        if name == "SDR":
            assert np.nanmax(diff) <= 1e-9
        else:
            # two draws of rounding noise differ by up to both envelopes; per source, over its frames
            # (a frame's envelope from three runs is a poor estimate of its noise's size)
            allowed = np.nanmax(spread[k] + own_spread[k], axis=1, keepdims=True) + 1e-3
            assert np.all((diff <= allowed) | np.isnan(diff)), (name, diff, spread[k], own_spread[k])
    assert np.nanmax(spread[1:]) > 1e-5  # the input is ill-conditioned enough for museval to disagree with itself
