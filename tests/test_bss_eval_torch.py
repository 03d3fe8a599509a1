"""The torch backend of the exact scorer (demixbench.score.bss_eval_torch) against the numpy
scorer, on torch's CPU device: the code path a GPU runs, without needing one. Tolerance 1e-9 dB
on every metric, identical NaN / inf patterns. Also scoring.device's dispatch and validation,
and the light imports of the default (numpy) path."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.signal import lfilter

torch = pytest.importorskip("torch")

from demixbench.score import bss_eval, bss_eval_torch  # noqa: E402
from demixbench.score.bss_eval import bss_eval_v4  # noqa: E402
from demixbench.score.bss_eval_torch import bss_eval_v4_torch  # noqa: E402
from demixbench.score.track import ScoringConfig, score_arrays, torch_device  # noqa: E402

WIN = 8000


def _mix(rng, references, leak=0.2, noise=0.1):
    """Own source through random filters, leakage of the others, noise, a mild nonlinearity."""
    estimates = lfilter(rng.standard_normal(8) / 3, [1.0], references, axis=1)
    estimates += leak * np.roll(references, 1, axis=0) + noise * rng.standard_normal(references.shape)
    return np.tanh(estimates)


def _assert_same(expected, got, tol=1e-9):
    for name, a, b in zip(("SDR", "ISR", "SIR", "SAR"), expected, got):
        if a is None:
            assert b is None
            continue
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        np.testing.assert_array_equal(np.isinf(a), np.isinf(b), err_msg=name)
        finite = np.isfinite(a)
        assert np.max(np.abs(a[finite] - b[finite]), initial=0.0) <= tol, name


def test_stereo_odd_length_shorter_estimates_and_silent_frames():
    rng = np.random.default_rng(0)
    n = 5 * WIN + 3217
    references = rng.standard_normal((4, n, 2))
    references[2] = lfilter([1.0], [1.0, -0.9], references[2], axis=0)
    estimates = _mix(rng, references)[:, : n - 2000]
    references[0, WIN : 2 * WIN] = 0.0  # silent reference frame
    estimates[3, 3 * WIN : 4 * WIN] = 0.0  # silent estimate frame
    expected = bss_eval_v4(references, estimates, win=WIN, hop=WIN)
    _assert_same(expected, bss_eval_v4_torch(references, estimates, win=WIN, hop=WIN, device="cpu"))
    assert np.isnan(expected[0][:, [1, 3]]).all()
    sdr_only = bss_eval_v4_torch(references, estimates, win=WIN, hop=WIN, device="cpu", sdr_only=True)
    _assert_same(bss_eval_v4(references, estimates, win=WIN, hop=WIN, sdr_only=True), sdr_only)


def test_mono_float32_longer_estimates_overlapping_and_long_windows():
    rng = np.random.default_rng(1)
    n = 3 * WIN + 999
    references = rng.standard_normal((3, n, 1)).astype(np.float32)
    estimates = np.einsum("ij,jnc->inc", np.eye(3) + 0.4 * rng.standard_normal((3, 3)), references)
    estimates += 0.05 * rng.standard_normal(estimates.shape)  # else SAR (~150 dB) is rounding noise
    estimates = np.concatenate([estimates, rng.standard_normal((3, 1500, 1))], axis=1).astype(np.float32)
    for win, hop in ((WIN, WIN), (WIN, WIN // 2), (4 * WIN, 4 * WIN)):
        _assert_same(
            bss_eval_v4(references, estimates, win=win, hop=hop),
            bss_eval_v4_torch(references, estimates, win=win, hop=hop, device="cpu"),
        )


def test_many_blocks_chunks_and_boundaries(monkeypatch):
    """Small pass-1 blocks and device chunks: many chunks and block boundaries."""
    rng = np.random.default_rng(2)
    n = 9 * WIN + 777
    references = rng.standard_normal((2, n, 2))
    estimates = _mix(rng, references)
    expected = bss_eval_v4(references, estimates, win=WIN, hop=WIN)
    monkeypatch.setattr(bss_eval, "STATS_NFFT", 4096)
    monkeypatch.setattr(bss_eval_torch, "DEVICE_CHUNK", 3)
    _assert_same(expected, bss_eval_v4_torch(references, estimates, win=WIN, hop=WIN, device="cpu"))


def test_estimate_equal_to_reference_keeps_the_inf_pattern():
    rng = np.random.default_rng(8)
    references = rng.standard_normal((3, 3 * WIN + 100, 2))
    estimates = references + 0.1 * rng.standard_normal(references.shape)
    estimates[1] = references[1]  # identical throughout: SDR +inf
    estimates[0, WIN : 2 * WIN] = references[0, WIN : 2 * WIN]  # rounding residue in frame 1
    expected = bss_eval_v4(references, estimates, win=WIN, hop=WIN)
    got = bss_eval_v4_torch(references, estimates, win=WIN, hop=WIN, device="cpu")
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(np.isinf(a), np.isinf(b))
    mask = np.ones(expected[0].shape, dtype=bool)
    mask[1] = mask[0, 1] = False  # values set by rounding
    for a, b in zip(expected, got):
        np.testing.assert_allclose(b[mask], a[mask], rtol=0, atol=1e-9)


def test_silent_source_is_refused():
    references = np.ones((2, 3 * WIN, 1))
    estimates = np.ones((2, 3 * WIN, 1))
    estimates[1] = 0.0
    with pytest.raises(ValueError, match="non-silent"):
        bss_eval_v4_torch(references, estimates, win=WIN, hop=WIN, device="cpu")


def test_scoring_device_dispatch(monkeypatch):
    rng = np.random.default_rng(5)
    references = rng.standard_normal((4, 2, 2 * 8000)).astype(np.float32)  # (targets, channels, samples)
    estimates = references + 0.3 * rng.standard_normal(references.shape).astype(np.float32)
    cpu = score_arrays(references, estimates, config=ScoringConfig(sample_rate=8000))
    # "auto" without a GPU is the numpy scorer: the same bytes
    monkeypatch.setattr(bss_eval_torch, "cuda_available", lambda: False)
    assert torch_device("cpu") is None and torch_device("auto") is None
    assert score_arrays(references, estimates, config=ScoringConfig(sample_rate=8000, device="auto")) == cpu
    with pytest.raises(RuntimeError, match="no CUDA device"):
        torch_device("cuda")
    monkeypatch.setattr(bss_eval_torch, "cuda_available", lambda: True)
    assert torch_device("auto") == "cuda" and torch_device("cuda") == "cuda"


def test_scoring_device_is_validated():
    assert ScoringConfig().device == "cpu"
    with pytest.raises(ValueError, match="unknown scoring device 'tpu'; allowed: auto, cpu, cuda"):
        ScoringConfig(device="tpu")
    with pytest.raises(ValueError, match="needs scoring.backend 'fast'"):
        ScoringConfig(backend="museval", device="cuda")


def test_the_default_scoring_path_does_not_import_torch():
    code = (
        "import sys, numpy as np; from demixbench.score.track import ScoringConfig, score_arrays; "
        "x = np.random.default_rng(0).standard_normal((2, 2, 3 * 8000)); "
        "score_arrays(x, x + 0.1, ('a', 'b'), ScoringConfig(sample_rate=8000)); print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
