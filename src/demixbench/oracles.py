"""Oracle separators computed from the true stems (as in sigsep-mus-oracle), scored like any model.

They bracket what the table can show: MIX (every estimate is the mixture) is the floor a trained
model must beat; IRM2 (ideal ratio mask on power spectrograms) is what a mask-based spectrogram
model with the mixture phase could reach at best.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from demixbench import TARGETS
from demixbench.audio import STFT, STFTConfig
from demixbench.data import load_decoded
from demixbench.separate import write_estimates


def mix_oracle(mixture: np.ndarray, sources: np.ndarray, stft: STFTConfig) -> np.ndarray:
    """Every target's estimate is the mixture. mixture (channels, samples), sources (targets, channels, samples)."""
    return np.broadcast_to(mixture, sources.shape).copy()


def ratio_mask_oracle(mixture: np.ndarray, sources: np.ndarray, stft: STFTConfig, alpha: float = 2.0) -> np.ndarray:
    """Ideal ratio mask: |S_j|^alpha / sum_k |S_k|^alpha applied to the mixture STFT (mixture phase).

    mixture (channels, samples), sources (targets, channels, samples) -> (targets, channels, samples).
    """
    transform = STFT(stft)
    mix_spec = transform.forward(torch.from_numpy(np.ascontiguousarray(mixture, dtype=np.float64)))
    power = transform.forward(torch.from_numpy(np.ascontiguousarray(sources, dtype=np.float64))).abs() ** alpha
    masks = power / (power.sum(dim=0, keepdim=True) + np.finfo(np.float64).eps)
    return transform.inverse(masks * mix_spec, mixture.shape[-1]).numpy().astype(np.float32)


ORACLES: dict[str, Callable[[np.ndarray, np.ndarray, STFTConfig], np.ndarray]] = {
    "MIX": mix_oracle,
    "IRM1": lambda mixture, sources, stft: ratio_mask_oracle(mixture, sources, stft, alpha=1.0),
    "IRM2": lambda mixture, sources, stft: ratio_mask_oracle(mixture, sources, stft, alpha=2.0),
}


def oracle_estimates(name: str, mixture: np.ndarray, sources: np.ndarray, stft: STFTConfig) -> np.ndarray:
    """Estimates (targets, channels, samples) of the oracle `name` (one of ORACLES)."""
    if name not in ORACLES:
        raise ValueError(f"unknown oracle {name!r}; allowed: {', '.join(ORACLES)}")
    return ORACLES[name](mixture, sources, stft)


def oracle_track_file(name: str, track_dir: Path, out_dir: Path, stft: STFTConfig, sample_rate: int = 44100) -> list[Path]:
    """Oracle estimates of a decoded track (see demixbench.data.decode_track) as out_dir/<target>.wav."""
    track = load_decoded(track_dir, mmap=False)
    sources = np.stack([track[target] for target in TARGETS])
    return write_estimates(out_dir, oracle_estimates(name, track["mixture"], sources, stft), TARGETS, sample_rate)
