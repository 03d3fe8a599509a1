"""Audio snapshots while a model trains: every `tracking.snapshot_every_epochs` epochs, fixed
validation excerpts are separated with the current weights, and each target's estimate goes to the
tracker as audio and as a spectrogram image (:class:`Snapshots`).

The excerpts are the same in every epoch, seed and model of an experiment, so runs compare by ear
and by eye: the first `snapshot_tracks` validation tracks (in the split's order),
`snapshot_seconds` long from `snapshot_offset_seconds` (earlier when the track is shorter). Their
mixture and true sources are logged once, at step 0 of a fresh run (``snapshots/<track>/reference/
<mixture|target>``); the estimates at the step that ends each snapshot epoch
(``snapshots/<track>/estimate/<target>``). The images (:func:`spectrogram_image`) share one fixed
dB scale (dB relative to a full-scale sine), so a source that grows louder looks brighter.

Each excerpt is separated alone by demixbench.separate.apply (for a model normalised per track, by
the excerpt's own statistics). Only rank 0 snapshots; it needs no other rank, draws no random
numbers (the model is in eval mode) and runs after the epoch's validation, so the weights and the
rest of the training are those of a run without snapshots. A resumed run's tracker drops
snapshots logged after its saved state, and the epoch is snapshotted again when it ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from demixbench.audio import STFT, STFTConfig
from demixbench.constraints import samples
from demixbench.data.cache import load_decoded
from demixbench.separate.apply import separate
from demixbench.train.tracking import Tracker, TrackingConfig

log = logging.getLogger(__name__)

#: The images' time-frequency grid, and their dB range (0 dB: a full-scale sine).
_STFT = STFT(STFTConfig(n_fft=2048, hop_length=512))
_DB_RANGE = (-100.0, 0.0)


def spectrogram_image(audio: np.ndarray, sample_rate: int, title: str) -> np.ndarray:
    """The log-magnitude spectrogram of `audio` (channels, samples; its mono down-mix) as an RGB
    image (height, width, 3) uint8, drawn with matplotlib's Agg renderer (no pyplot)."""
    mono = torch.from_numpy(np.asarray(audio, dtype=np.float32).mean(axis=0))
    magnitude = _STFT.forward(mono).abs().numpy()
    # A full-scale sine gives a peak of n_fft / 4 with a Hann window (its sum is n_fft / 2).
    db = 20 * np.log10(np.maximum(magnitude / (_STFT.config.n_fft / 4), 1e-10))
    figure = Figure(figsize=(6, 3), dpi=80)
    canvas = FigureCanvasAgg(figure)
    axes = figure.subplots()
    extent = (0, audio.shape[-1] / sample_rate, 0, sample_rate / 2000)
    shown = axes.imshow(db, origin="lower", aspect="auto", extent=extent, vmin=_DB_RANGE[0], vmax=_DB_RANGE[1])
    axes.set(xlabel="time (s)", ylabel="frequency (kHz)", title=title)
    figure.colorbar(shown, ax=axes, label="dB")
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class Snapshots:
    """The snapshot excerpts of a run and their logging.

    Args:
        config: the tracking settings (snapshot_every_epochs, _tracks, _offset_seconds, _seconds).
        valid_dirs: the decoded validation tracks, in the split's order.
        targets: the model's targets.
        sample_rate: of the decoded tracks.
        segment: the separation segment in samples (the validation's; longer than an excerpt is fine).
        device: where the model is.
    """

    def __init__(
        self,
        config: TrackingConfig,
        valid_dirs: Sequence[Path],
        targets: Sequence[str],
        sample_rate: int,
        segment: int,
        device: torch.device,
    ) -> None:
        self.every, self.targets, self.sample_rate = config.snapshot_every_epochs, tuple(targets), sample_rate
        self.segment, self.device = segment, device
        length = samples(config.snapshot_seconds, sample_rate)
        offset = int(config.snapshot_offset_seconds * sample_rate)
        #: (track name, mixture (channels, samples), references (targets, channels, samples))
        self.excerpts: list[tuple[str, np.ndarray, np.ndarray]] = []
        for track_dir in list(valid_dirs)[: config.snapshot_tracks]:
            track = load_decoded(track_dir, stems=("mixture", *self.targets))
            start = max(0, min(offset, track["mixture"].shape[-1] - length))
            mixture = np.array(track["mixture"][:, start : start + length], dtype=np.float32)
            references = np.stack([np.array(track[t][:, start : start + length], dtype=np.float32) for t in targets])
            self.excerpts.append((Path(track_dir).name, mixture, references))

    def due(self, epoch: int) -> bool:
        """Whether epoch `epoch` (1-based, completed) ends with a snapshot."""
        return self.every > 0 and epoch % self.every == 0

    def _log(self, tracker: Tracker, name: str, step: int, audio: np.ndarray, title: str) -> None:
        tracker.log_audio(name, step, audio, self.sample_rate)
        tracker.log_image(name, step, spectrogram_image(audio, self.sample_rate, title))

    def log_references(self, tracker: Tracker) -> None:
        """The excerpts' mixtures and true sources, at step 0."""
        for track, mixture, references in self.excerpts:
            self._log(tracker, f"snapshots/{track}/reference/mixture", 0, mixture, f"{track}: mixture")
            for target, reference in zip(self.targets, references):
                self._log(tracker, f"snapshots/{track}/reference/{target}", 0, reference, f"{track}: {target}")

    def log(self, tracker: Tracker, model: nn.Module, epoch: int, step: int) -> None:
        """The estimates of `model` after epoch `epoch` (ended at step `step`)."""
        started = time.perf_counter()
        for track, mixture, _ in self.excerpts:
            estimates = separate(model, mixture, segment=min(self.segment, mixture.shape[-1]), device=self.device)
            for target, estimate in zip(self.targets, estimates):
                title = f"{track}: {target}, epoch {epoch}"
                self._log(tracker, f"snapshots/{track}/estimate/{target}", step, estimate, title)
        seconds = time.perf_counter() - started
        log.info("epoch %d: audio snapshots of %d excerpts in %.2f s", epoch, len(self.excerpts), seconds)
