"""Input statistics: per-frequency-bin mean and standard deviation of the training mixtures' STFT
magnitude, which spectrogram models use to normalise their input (as open-unmix does)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from demixbench.audio import STFT, STFTConfig
from demixbench.fileio import atomic_path

log = logging.getLogger(__name__)


def compute_input_stats(
    mixtures: Sequence[Path], stft: STFTConfig, chunk_seconds: float = 30.0, sample_rate: int = 44100
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (bins,) of |STFT| over all frames and both channels of the given decoded mixtures.

    `mixtures` are cache files holding float32 (channels, samples). Tracks are read in chunks so
    memory stays bounded for full-length songs; sums are accumulated in float64.
    """
    transform = STFT(stft)
    total = np.zeros(stft.n_bins)
    total_sq = np.zeros(stft.n_bins)
    count = 0
    chunk = int(chunk_seconds * sample_rate) // stft.hop_length * stft.hop_length
    for path in tqdm(mixtures, desc="input stats", unit="track"):
        audio = np.load(path, mmap_mode="r")
        for start in range(0, audio.shape[-1], chunk):
            mag = transform.forward(torch.from_numpy(np.array(audio[:, start : start + chunk]))).abs().double()
            mag = mag.permute(1, 0, 2).reshape(stft.n_bins, -1)  # (bins, channels * frames)
            total += mag.sum(dim=1).numpy()
            total_sq += (mag**2).sum(dim=1).numpy()
            count += mag.shape[1]
    if count == 0:
        raise ValueError("no training mixtures given for the input statistics")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    log.info("input statistics over %d tracks, %d frames", len(mixtures), count)
    return mean.astype(np.float32), std.astype(np.float32)


def save_input_stats(path: Path, mean: np.ndarray, std: np.ndarray, stft: STFTConfig) -> None:
    """Write the statistics with the STFT they belong to (npz, atomically)."""
    with atomic_path(path, suffix=".npz") as temporary:
        np.savez(temporary, mean=mean, std=std, n_fft=stft.n_fft, hop_length=stft.hop_length)


def load_input_stats(path: Path, stft: STFTConfig) -> tuple[np.ndarray, np.ndarray]:
    """Read statistics written by save_input_stats, refusing ones computed with another STFT."""
    with np.load(path) as data:
        if (int(data["n_fft"]), int(data["hop_length"])) != (stft.n_fft, stft.hop_length):
            raise ValueError(
                f"{path}: statistics computed with n_fft={int(data['n_fft'])}, hop={int(data['hop_length'])}, "
                f"but the model uses n_fft={stft.n_fft}, hop={stft.hop_length}; recompute them"
            )
        return data["mean"], data["std"]
