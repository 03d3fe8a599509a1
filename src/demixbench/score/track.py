"""Scoring separated tracks: BSS Eval v4 (museval) per 1 s frame, and the MDX nSDR per track.

Scores are written per track in the museval / SiSEC JSON format, gzipped:
``{"targets": [{"name": "drums", "frames": [{"time": 0.0, "duration": 1.0,
"metrics": {"SDR": .., "SIR": .., "ISR": .., "SAR": ..}}, ...]}, ...], "nsdr": {"drums": .., ...}}``
so results of published systems (SiSEC 2018) and of this project are read by the same table code
(the format: :mod:`demixbench.score.scorefile`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from demixbench import TARGETS
from demixbench.data.cache import load_decoded
from demixbench.score.bss_eval import bss_eval_v4
from demixbench.score.scorefile import METRICS, write_scores
from demixbench.separate.estimates import read_estimates

log = logging.getLogger(__name__)

# A frame's "metrics" object lists METRICS (museval's order: SDR, ISR, SIR, SAR) with SIR before
# ISR, as every score file of this project has so far; keeping that order keeps re-scored files
# byte-identical.
_FRAME_METRICS: tuple[str, ...] = (METRICS[0], METRICS[2], METRICS[1], METRICS[3])  # SDR, SIR, ISR, SAR


def nsdr(reference: np.ndarray, estimate: np.ndarray, eps: float = 1e-7) -> float:
    """MDX-style "new SDR" over a whole signal, all channels together:
    10 log10((sum s^2 + eps) / (sum (s - s_hat)^2 + eps)). Any matching shapes."""
    reference = np.asarray(reference, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    return float(10 * np.log10((np.sum(reference**2) + eps) / (np.sum((reference - estimate) ** 2) + eps)))


def bss_eval_museval(
    references: np.ndarray, estimates: np.ndarray, win: int = 44100, hop: int = 44100
) -> dict[str, np.ndarray]:
    """museval.evaluate in v4 mode (all sources jointly).

    references, estimates: (sources, samples, channels) -> {"SDR", "ISR", "SIR", "SAR"}: (sources, frames).
    """
    # Imported on use: museval imports musdb and stempeg, which refuse to import without ffmpeg
    # on PATH and take seconds; the fast backend (the default) needs none of them.
    import museval

    sdr, isr, sir, sar = museval.evaluate(references, estimates, win=win, hop=hop, mode="v4", padding=True)
    return {"SDR": sdr, "ISR": isr, "SIR": sir, "SAR": sar}


def bss_eval_fast(
    references: np.ndarray, estimates: np.ndarray, win: int = 44100, hop: int = 44100
) -> dict[str, np.ndarray]:
    """Exact fast re-implementation of museval.evaluate in v4 mode (demixbench.score.bss_eval).

    references, estimates: (sources, samples, channels) -> {"SDR", "ISR", "SIR", "SAR"}: (sources, frames).
    """
    sdr, isr, sir, sar = bss_eval_v4(references, estimates, win=win, hop=hop)
    return {"SDR": sdr, "ISR": isr, "SIR": sir, "SAR": sar}


BACKENDS = {"museval": bss_eval_museval, "fast": bss_eval_fast}


@dataclass(frozen=True)
class ScoringConfig:
    """How tracks are scored: BSS Eval v4 implementation and its frames (museval: 1 s, 1 s)."""

    backend: str = "fast"
    win_seconds: float = 1.0
    hop_seconds: float = 1.0
    sample_rate: int = 44100

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown scoring backend {self.backend!r}; allowed: {', '.join(BACKENDS)}")


def score_arrays(
    references: np.ndarray,
    estimates: np.ndarray,
    targets: Sequence[str] = TARGETS,
    config: ScoringConfig = ScoringConfig(),
) -> dict:
    """Score one track; returns the museval-format dict (see module docstring).

    references, estimates: (targets, channels, samples), in the order of `targets`.
    """
    if references.shape != estimates.shape:
        raise ValueError(f"references {references.shape} and estimates {estimates.shape} differ in shape")
    sample_rate = config.sample_rate
    win, hop = int(config.win_seconds * sample_rate), int(config.hop_seconds * sample_rate)
    # museval wants (sources, samples, channels)
    metrics = BACKENDS[config.backend](references.transpose(0, 2, 1), estimates.transpose(0, 2, 1), win=win, hop=hop)
    n_frames = metrics["SDR"].shape[1]
    result = {"targets": [], "nsdr": {}}
    for index, target in enumerate(targets):
        frames = [
            {
                "time": k * hop / sample_rate,
                "duration": win / sample_rate,
                "metrics": {name: float(metrics[name][index, k]) for name in _FRAME_METRICS},
            }
            for k in range(n_frames)
        ]
        result["targets"].append({"name": target, "frames": frames})
        result["nsdr"][target] = nsdr(references[index], estimates[index])
    return result


def score_track(
    track_dir: Path,
    estimates_dir: Path,
    out: Path,
    targets: Sequence[str] = TARGETS,
    config: ScoringConfig = ScoringConfig(),
) -> dict:
    """Score the estimates in estimates_dir/<target>.wav against a decoded track's stems and write
    the museval-format scores to `out` (see score_arrays and write_scores)."""
    track = load_decoded(track_dir, stems=targets, mmap=False)
    references = np.stack([track[target] for target in targets])
    scores = score_arrays(references, read_estimates(estimates_dir, targets), targets, config)
    write_scores(out, scores)
    log.info(
        "%s: median SDR %s",
        out.name,
        {
            t["name"]: round(float(np.nanmedian([f["metrics"]["SDR"] for f in t["frames"]])), 2)
            for t in scores["targets"]
        },
    )
    return scores
