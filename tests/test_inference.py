"""Full-track inference: streaming overlap-add, test-time shifts, Wiener filtering, flat memory."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from demixbench import TARGETS
from demixbench.audio import STFT, STFTConfig
from demixbench.data.cache import NpyReader
from demixbench.models import build_model
from demixbench.models.checkpoint import save_checkpoint
from demixbench.separate.apply import iter_separate, separate
from demixbench.separate.estimates import read_estimates
from demixbench.separate.track import SeparationConfig, separate_track
from demixbench.separate.wiener import multichannel_wiener

UNET_ARGS = {"n_fft": 512, "hop_length": 128, "max_bins": 256, "channels": [4, 8, 16, 32]}


def _unet() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("unet", UNET_ARGS)
    model.set_input_stats(torch.full((257,), 0.05), torch.full((257,), 0.1))
    return model.eval()


class _Gain(torch.nn.Module):
    """Pointwise, so shift-invariant: target k is k * mixture."""

    def forward(self, mixture):
        return torch.stack([k * mixture for k in range(4)], dim=1)


@pytest.fixture(scope="module")
def mixture() -> np.ndarray:
    return np.random.default_rng(0).uniform(-0.5, 0.5, (2, 30000)).astype(np.float32)


def test_streamed_blocks_equal_the_whole_track(mixture):
    model = _unet()
    blocks = list(iter_separate(model, mixture, segment=8000, overlap=0.25))
    assert len(blocks) > 3 and sum(b.shape[-1] for b in blocks) == mixture.shape[-1]
    np.testing.assert_array_equal(np.concatenate(blocks, axis=-1), separate(model, mixture, segment=8000, overlap=0.25))


def test_separate_track_streams_what_separate_computes(mixture, tmp_path):
    model = _unet()
    save_checkpoint(model, tmp_path / "model.safetensors", arch="unet", args=UNET_ARGS, config={})
    np.save(tmp_path / "mixture.npy", mixture)
    separate_track(
        tmp_path / "model.safetensors",
        tmp_path / "mixture.npy",
        tmp_path / "out",
        SeparationConfig(segment_seconds=8000 / 44100, device="cpu"),
    )
    written = read_estimates(tmp_path / "out", TARGETS)
    expected = separate(model, mixture, segment=int(8000 / 44100 * 44100))
    np.testing.assert_array_equal(written, expected)
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left


def test_shifts_are_exact_for_a_shift_invariant_model_and_deterministic(mixture):
    plain = separate(_Gain(), mixture, segment=8000)
    shifted = separate(_Gain(), mixture, segment=8000, shifts=3, max_shift=500)
    np.testing.assert_allclose(shifted, plain, rtol=1e-5, atol=1e-6)
    model = _unet()
    a = separate(model, mixture, segment=8000, shifts=2, max_shift=700, seed=1)
    b = separate(model, mixture, segment=8000, shifts=2, max_shift=700, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, separate(model, mixture, segment=8000))


def _panned_sources(length: int = 44100) -> np.ndarray:
    """Four different noises panned to different positions: (4, 2, length)."""
    rng = np.random.default_rng(3)
    sources = []
    for k, pan in enumerate([0.1, 0.4, 0.7, 0.95]):
        mono = rng.standard_normal(length) * np.sin(np.linspace(0, (k + 1) * np.pi, length)) ** 2
        sources.append(np.stack([np.sqrt(1 - pan) * mono, np.sqrt(pan) * mono]))
    return np.stack(sources).astype(np.float32)


def test_wiener_estimates_sum_to_the_mixture_and_improve_on_the_mixture_phase():
    sources = _panned_sources()
    mixture = sources.sum(axis=0)
    transform = STFT(STFTConfig(n_fft=1024, hop_length=256))
    mix_spec = transform.forward(torch.from_numpy(mixture))
    magnitudes = transform.forward(torch.from_numpy(sources)).abs()
    plain = transform.inverse(multichannel_wiener(magnitudes, mix_spec, iterations=0), mixture.shape[-1]).numpy()
    filtered = transform.inverse(multichannel_wiener(magnitudes, mix_spec, iterations=2), mixture.shape[-1]).numpy()
    np.testing.assert_allclose(filtered.sum(axis=0), mixture, atol=1e-4)
    assert np.sum((filtered - sources) ** 2) < np.sum((plain - sources) ** 2)


def test_wiener_filtering_runs_on_a_spectrogram_model_and_is_refused_for_others(mixture):
    # mask_extension="ones": the model estimates every bin (with "zeros" the Nyquist bin is dropped)
    model = build_model("unet", {**UNET_ARGS, "mask_extension": "ones"}).eval()
    estimates = separate(model, mixture, segment=8000, wiener_iterations=1)
    assert estimates.shape == (4, 2, mixture.shape[-1]) and np.isfinite(estimates).all()
    np.testing.assert_allclose(estimates.sum(axis=0), mixture, atol=1e-4)  # Wiener gains sum to one
    with pytest.raises(ValueError, match="wiener_iterations needs a spectrogram model"):
        separate(_Gain(), mixture, segment=8000, wiener_iterations=1)


def test_npy_reader_windows(tmp_path, mixture):
    np.save(tmp_path / "m.npy", mixture)
    reader = NpyReader(tmp_path / "m.npy")
    assert reader.shape == mixture.shape
    np.testing.assert_array_equal(reader[:, 123:4567], mixture[:, 123:4567])
    np.testing.assert_array_equal(reader[:, 29000:40000], mixture[:, 29000:])
    with pytest.raises(IndexError):
        reader[0, 1:2]


PEAK_MEMORY = """
import sys, numpy as np, torch
from pathlib import Path
from demixbench.models.checkpoint import save_checkpoint
from demixbench.models import build_model
from demixbench.separate.track import SeparationConfig, separate_track
seconds, folder = float(sys.argv[1]), Path(sys.argv[2])
torch.manual_seed(0)
model = build_model("unet", {"n_fft": 512, "hop_length": 128, "max_bins": 256, "channels": [4, 8, 16, 32]})
save_checkpoint(model, folder / "model.safetensors", arch="unet", \
args={"n_fft": 512, "hop_length": 128, "max_bins": 256, "channels": [4, 8, 16, 32]}, config={})
n = int(seconds * 44100)
with open(folder / "mixture.npy", "wb") as f:  # written in pieces: the test must not hold the track either
    np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (2, n)})
    rng = np.random.default_rng(0)
    for channel in range(2):
        for start in range(0, n, 441000):
            rng.uniform(-0.5, 0.5, min(441000, n - start)).astype("<f4").tofile(f)
separate_track(folder / "model.safetensors", folder / "mixture.npy", folder / "out", \
SeparationConfig(segment_seconds=5.0, device="cpu"))
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")))
"""


@pytest.mark.slow
def test_separation_memory_does_not_grow_with_track_length(tmp_path):
    peaks = {}
    for seconds in (20, 200):
        folder = tmp_path / str(seconds)
        folder.mkdir()
        result = subprocess.run(
            [sys.executable, "-c", PEAK_MEMORY, str(seconds), str(folder)], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr
        peaks[seconds] = int(result.stdout.split()[-1])  # kB
    # A 10x longer track: the whole output alone would be 4 targets x 2 x 8.8M float32 = 282 MB more.
    assert peaks[200] < 1.15 * peaks[20], peaks
