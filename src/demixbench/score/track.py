"""Scoring separated tracks: BSS Eval v4 (museval) per 1 s frame, and the MDX nSDR per track.

Scores are written per track in the museval / SiSEC JSON format, gzipped:
``{"targets": [{"name": "drums", "frames": [{"time": 0.0, "duration": 1.0,
"metrics": {"SDR": .., "SIR": .., "ISR": .., "SAR": ..}}, ...]}, ...], "nsdr": {"drums": .., ...}}``
so results of published systems (SiSEC 2018) and of this project are read by the same table code
(the format: :mod:`demixbench.score.scorefile`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from demixbench import TARGETS
from demixbench.data.cache import load_decoded
from demixbench.devices import DEVICES
from demixbench.score.bss_eval import bss_eval_v4
from demixbench.score.scorefile import METRICS, write_scores
from demixbench.separate.estimates import non_finite, read_estimates

log = logging.getLogger(__name__)

# A frame's "metrics" object lists METRICS (museval's order: SDR, ISR, SIR, SAR) with SIR before
# ISR, as every score file of this project has so far; keeping that order keeps re-scored files
# byte-identical.
_FRAME_METRICS: tuple[str, ...] = (METRICS[0], METRICS[2], METRICS[1], METRICS[3])  # SDR, SIR, ISR, SAR


class NonFiniteAudio(ValueError):
    """References or estimates with NaN or infinite samples: they have no scores (museval's would
    be NaN, and a table's medians would quietly leave them out). ``problems`` says which."""

    @dataclass(frozen=True)
    class Problem:
        target: int  # index into the targets
        which: str  # "reference" or "estimate"
        description: str  # non_finite's: how many samples, the first where

    def __init__(self, targets: Sequence[str], problems: Sequence[NonFiniteAudio.Problem]) -> None:
        self.targets, self.problems = tuple(targets), list(problems)
        super().__init__("; ".join(f"{self.targets[p.target]} {p.which}: {p.description}" for p in self.problems))


def nsdr(reference: np.ndarray, estimate: np.ndarray, eps: float = 1e-7) -> float:
    """MDX-style "new SDR" over a whole signal, all channels together:
    10 log10((sum s^2 + eps) / (sum (s - s_hat)^2 + eps)). Any matching shapes."""
    reference = np.asarray(reference, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # NaN or inf samples: a NaN or -inf, told apart by callers
        return float(10 * np.log10((np.sum(reference**2) + eps) / (np.sum((reference - estimate) ** 2) + eps)))


def bss_eval_museval(
    references: np.ndarray, estimates: np.ndarray, win: int = 44100, hop: int = 44100, device: str = "cpu"
) -> dict[str, np.ndarray]:
    """museval.evaluate in v4 mode (all sources jointly).

    references, estimates: (sources, samples, channels) -> {"SDR", "ISR", "SIR", "SAR"}: (sources, frames).
    museval runs on the CPU whatever `device` says.
    """
    # Imported on use: museval imports musdb and stempeg, which refuse to import without ffmpeg
    # on PATH and take seconds; the fast backend (the default) needs none of them.
    import museval

    sdr, isr, sir, sar = museval.evaluate(references, estimates, win=win, hop=hop, mode="v4", padding=True)
    return {"SDR": sdr, "ISR": isr, "SIR": sir, "SAR": sar}


def torch_device(device: str) -> str | None:
    """The torch device the fast scorer uses for scoring.device, None for the numpy scorer:
    "cpu" -> None; "auto" -> "cuda" when torch sees a GPU, else None; "cuda" -> "cuda", and an
    error when there is none."""
    if device == "cpu":
        return None
    # Imported on use, not at the top: torch costs seconds and ~0.5 GB to import, and the default
    # (device "cpu") scores with numpy; score jobs are many and short, so their imports stay light.
    from demixbench.score.bss_eval_torch import cuda_available

    if cuda_available():
        return "cuda"
    if device == "cuda":
        raise RuntimeError("scoring.device is 'cuda' but torch finds no CUDA device (use 'auto' or 'cpu')")
    return None


def bss_eval_fast(
    references: np.ndarray, estimates: np.ndarray, win: int = 44100, hop: int = 44100, device: str = "cpu"
) -> dict[str, np.ndarray]:
    """Exact fast re-implementation of museval.evaluate in v4 mode (demixbench.score.bss_eval), on
    the CPU with numpy or, for device "cuda" (or "auto" with a GPU), with torch on the GPU
    (demixbench.score.bss_eval_torch; the same numbers to ~1e-12 dB).

    references, estimates: (sources, samples, channels) -> {"SDR", "ISR", "SIR", "SAR"}: (sources, frames).
    """
    on = torch_device(device)
    if on is None:
        sdr, isr, sir, sar = bss_eval_v4(references, estimates, win=win, hop=hop)
    else:
        from demixbench.score.bss_eval_torch import bss_eval_v4_torch  # lazy: see torch_device

        sdr, isr, sir, sar = bss_eval_v4_torch(references, estimates, win=win, hop=hop, device=on)
    return {"SDR": sdr, "ISR": isr, "SIR": sir, "SAR": sar}


BACKENDS = {"museval": bss_eval_museval, "fast": bss_eval_fast}
# scoring.device, one of DEVICES: "cpu" the numpy scorer, "cuda" the torch scorer on a GPU (an
# error without one), "auto" the GPU when torch sees one, else numpy (see torch_device). Only the
# fast backend uses a GPU.


@dataclass(frozen=True)
class ScoringConfig:
    """How tracks are scored: BSS Eval v4 implementation, its frames (museval: 1 s, 1 s) and the
    device of the fast backend (see DEVICES)."""

    backend: str = "fast"
    win_seconds: float = 1.0
    hop_seconds: float = 1.0
    sample_rate: int = 44100
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown scoring backend {self.backend!r}; allowed: {', '.join(BACKENDS)}")
        if self.device not in DEVICES:
            raise ValueError(f"unknown scoring device {self.device!r}; allowed: {', '.join(DEVICES)}")
        if self.backend == "museval" and self.device == "cuda":
            raise ValueError("scoring.device 'cuda' needs scoring.backend 'fast' (museval runs on the CPU)")


def score_arrays(
    references: np.ndarray,
    estimates: np.ndarray,
    targets: Sequence[str] = TARGETS,
    config: ScoringConfig = ScoringConfig(),
    *,
    sdr_only: bool = False,
) -> dict:
    """Score one track; returns the museval-format dict (see module docstring).

    references, estimates: (targets, channels, samples), in the order of `targets`. A target
    whose reference is silent over the whole track gets NaN in every frame and NaN nSDR; the
    others are scored as usual. ValueError when every reference is silent; NonFiniteAudio (a
    ValueError) when a scored target's reference or estimate has NaN or infinite samples, before
    any scoring. ``sdr_only``: the fast scorer's SDR-only path (CPU), frames holding {"SDR": ...}
    only.
    """
    if sdr_only and config.backend != "fast":
        raise ValueError("the SDR-only path is the fast backend's (scoring backend 'fast')")
    if references.shape != estimates.shape:
        raise ValueError(f"references {references.shape} and estimates {estimates.shape} differ in shape")
    sample_rate = config.sample_rate
    win, hop = int(config.win_seconds * sample_rate), int(config.hop_seconds * sample_rate)
    # A reference silent over the whole track has no energy to measure against: its target is
    # undefined (NaN), as museval makes a silent frame, and the others are scored without it. A
    # zero reference adds nothing to the span the others are projected on, so leaving it out
    # changes none of their numbers; both backends would refuse the whole track with it.
    silent = [index for index in range(len(targets)) if not np.any(references[index])]
    scored = [index for index in range(len(targets)) if index not in silent]
    if not scored:
        raise ValueError(f"every reference ({', '.join(targets)}) is silent over the whole track: nothing to score")
    if silent:
        log.warning(
            "%s: reference silent over the whole track; scored as undefined (NaN), the other targets as usual",
            ", ".join(targets[index] for index in silent),
        )
    # Computed before the scores: finite audio always has a finite nSDR (float64 sums, eps > 0), so
    # a non-finite one flags NaN or inf samples, which would make scores NaN without a word
    nsdrs = [
        math.nan if index in silent else nsdr(references[index], estimates[index]) for index in range(len(targets))
    ]
    problems = [
        NonFiniteAudio.Problem(index, which, problem)
        for index in scored
        if not math.isfinite(nsdrs[index])
        for which, audio in (("reference", references[index]), ("estimate", estimates[index]))
        if (problem := non_finite(audio, sample_rate)) is not None
    ]
    if problems:
        raise NonFiniteAudio(targets, problems)
    # museval wants (sources, samples, channels)
    scored_references, scored_estimates = references[scored].transpose(0, 2, 1), estimates[scored].transpose(0, 2, 1)
    if sdr_only:
        scored_metrics = {"SDR": bss_eval_v4(scored_references, scored_estimates, win=win, hop=hop, sdr_only=True)[0]}
    else:
        scored_metrics = BACKENDS[config.backend](
            scored_references, scored_estimates, win=win, hop=hop, device=config.device
        )
    n_frames = scored_metrics["SDR"].shape[1]
    metrics = {name: np.full((len(targets), n_frames), np.nan) for name in scored_metrics}
    for name, values in scored_metrics.items():
        metrics[name][scored] = values
    result = {"targets": [], "nsdr": {}}
    for index, target in enumerate(targets):
        frames = [
            {
                "time": k * hop / sample_rate,
                "duration": win / sample_rate,
                "metrics": {name: float(metrics[name][index, k]) for name in _FRAME_METRICS if name in metrics},
            }
            for k in range(n_frames)
        ]
        result["targets"].append({"name": target, "frames": frames})
        result["nsdr"][target] = nsdrs[index]
    return result


def score_track(
    track_dir: Path,
    estimates_dir: Path,
    out: Path,
    targets: Sequence[str] = TARGETS,
    config: ScoringConfig = ScoringConfig(),
) -> dict:
    """Score the estimates in estimates_dir/<target>.wav against a decoded track's stems and write
    the museval-format scores to `out` (see score_arrays and write_scores). NaN or infinite
    samples: ValueError naming each such file, the samples and the fix, and nothing written."""
    track = load_decoded(track_dir, stems=targets, mmap=False)
    references = np.stack([track[target] for target in targets])
    window = int(config.win_seconds * config.sample_rate)
    if references.shape[-1] < window:  # accepted, but never silently: one zero-padded frame
        log.warning(
            "%s: %d samples, shorter than the scoring window (scoring.win_seconds = %g s); it is scored "
            "on one zero-padded frame",
            Path(track_dir).name,
            references.shape[-1],
            config.win_seconds,
        )
    try:
        scores = score_arrays(references, read_estimates(estimates_dir, targets), targets, config)
    except NonFiniteAudio as error:
        lines = []
        for problem in error.problems:
            target = targets[problem.target]
            if problem.which == "reference":
                fix = "a corrupt decoded reference: delete it and rerun, which decodes the track again"
                path = Path(track_dir) / f"{target}.npy"
            else:
                fix = "re-create the estimates (a separator whose training diverged? see its run's training log)"
                path = Path(estimates_dir) / f"{target}.wav"
            lines.append(f"{path}: {problem.description}; {fix}")
        raise ValueError("\n".join(lines)) from None
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
