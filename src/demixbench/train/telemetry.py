"""What a training run reports while it trains: scalars to its tracker (demixbench.train.tracking)
and progress.json (demixbench.train.runstatus), through one :class:`Telemetry` the loop calls.

Every `log_every_steps` steps (step scalars, averaged over the steps since the previous log step
and over the ranks):

- ``train/loss`` (the generator's total loss), ``train/reconstruction`` (the separation loss),
  ``train/lr``, ``train/grad_norm`` (the global gradient norm before clipping; the mean over the
  steps when ``grad_clip`` is set, which computes it anyway, else the log step's own),
  ``train/samples_per_second`` (global batch), ``train/loss_scale`` (fp16's GradScaler);
- for a GAN variant, over its adversarial steps: ``gan/d_loss_real`` and ``gan/d_loss_fake`` (the
  two halves of the discriminator loss), ``gan/d_real_mean`` and ``gan/d_fake_mean`` (its mean
  output on true and estimated sources), ``gan/g_adv`` and ``gan/g_feature_matching`` (the
  generator's terms, unweighted), ``gan/adv_to_reconstruction`` and ``gan/fm_to_reconstruction``
  (the weighted term over the reconstruction loss), ``gan/d_loss_scale`` (fp16);
- ``system/...`` (see demixbench.train.tracking.SystemMetrics) when system metrics are on.

After every epoch: ``valid/loss``, ``valid/nsdr/<target>``, ``valid/nsdr_mean``, ``valid/best_nsdr``
(the highest ``valid/nsdr_mean`` so far) and ``valid/epoch_seconds`` (training and validation).
Every `tracking.snapshot_every_epochs` epochs: audio and spectrograms of fixed validation excerpts
(demixbench.train.snapshots), after the epoch's scalars; ``valid/snapshot_seconds`` says what it took.

Cost: the step values stay on the device and are summed there; they reach the host once per log
step (one synchronisation, when the averages are read), so steps between log steps gain a few
small kernels and no synchronisation. No extra forward pass is run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from demixbench.models.losses import discriminator_loss_terms
from demixbench.train import distributed
from demixbench.train.runstatus import ProgressWriter
from demixbench.train.snapshots import Snapshots
from demixbench.train.state import _Progress
from demixbench.train.tracking import NullTracker, SystemMetrics, Tracker, TrackingConfig, make_tracker

log = logging.getLogger(__name__)


def discriminator_scalars(
    real_logits: Sequence[torch.Tensor] | torch.Tensor, fake_logits: Sequence[torch.Tensor] | torch.Tensor, kind: str
) -> dict[str, torch.Tensor]:
    """The discriminator loss of demixbench.models.losses.discriminator_loss split into its terms on
    true and on estimated sources (their sum is that loss), and the mean logits on each; 0-d
    tensors, detached. Logits: one map or a list of maps (one per sub-discriminator)."""
    real = [real_logits] if isinstance(real_logits, torch.Tensor) else list(real_logits)
    fake = [fake_logits] if isinstance(fake_logits, torch.Tensor) else list(fake_logits)
    with torch.no_grad():
        real, fake = [r.detach().float() for r in real], [f.detach().float() for f in fake]
        real_terms, fake_terms = discriminator_loss_terms(real, fake, kind)
        return {
            "gan/d_loss_real": torch.stack(real_terms).mean(),
            "gan/d_loss_fake": torch.stack(fake_terms).mean(),
            "gan/d_real_mean": torch.stack([r.mean() for r in real]).mean(),
            "gan/d_fake_mean": torch.stack([f.mean() for f in fake]).mean(),
        }


class Telemetry:
    """The reporting of one run. Every rank builds one and calls it at the same points (the step
    averages are reduced over the ranks); rank 0 writes, into `run_dir` (no files without one).

    Args:
        tracking: which tracker; None: the defaults of TrackingConfig.
        run_dir: the run's directory (progress.json, and the tracker's files).
        log_every_steps, batch_size, total_steps, epochs: from the TrainConfig.
        progress: where the run starts (step 0, or where a resumed run continues).
        targets: the separated targets (their validation nSDR is reported).
        device: the training device (for the system metrics).
        params: the run's settings, logged to the tracker.
        valid_dirs, sample_rate, segment: the validation tracks, their sample rate and the
            separation segment in samples (for the audio snapshots).
    """

    def __init__(
        self,
        tracking: TrackingConfig | None,
        run_dir: Path | None,
        log_every_steps: int,
        batch_size: int,
        total_steps: int,
        epochs: int,
        progress: _Progress,
        targets: Sequence[str],
        device: torch.device,
        params: Mapping[str, Any],
        valid_dirs: Sequence[Path] = (),
        sample_rate: int = 44100,
        segment: int = 0,
    ) -> None:
        tracking = tracking or TrackingConfig()
        writes = distributed.rank() == 0 and run_dir is not None
        self.every, self.batch_size = log_every_steps, batch_size
        self.tracker: Tracker = make_tracker(tracking.trackers, run_dir, progress.step) if writes else NullTracker()
        tracked = not isinstance(self.tracker, NullTracker)
        snapshots = tracked and tracking.snapshot_every_epochs > 0 and len(valid_dirs) > 0
        self.snapshots = Snapshots(tracking, valid_dirs, targets, sample_rate, segment, device) if snapshots else None
        status_file = Path(run_dir) / "progress.json" if writes else None
        self.status = ProgressWriter(status_file, total_steps, epochs, progress.step > 0) if status_file else None
        self.system = SystemMetrics(device) if tracked and tracking.system_metrics else None
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._clock, self._timed_steps = time.perf_counter(), 0
        self._steps_per_second: float | None = None
        self._best_nsdr: float | None = None
        self._valid_nsdr: dict[str, float] | None = None
        if progress.history:  # the epochs a resumed run already completed
            self._best_nsdr = max(float(row["valid_nsdr"]) for row in progress.history)
            self._valid_nsdr = {t: float(progress.history[-1][f"valid_nsdr_{t}"]) for t in targets}
        self.tracker.log_params(params)
        if self.snapshots is not None and progress.step == 0:
            self.snapshots.log_references(self.tracker)
        if self.status is not None:
            self.status.write("training", progress.step, progress.epoch, None, self._best_nsdr, self._valid_nsdr)

    def log_step(self, step: int) -> bool:
        """Whether step `step` (optimiser steps done after it) is a log step."""
        return step % self.every == 0

    def add(self, values: Mapping[str, torch.Tensor | None]) -> None:
        """Add one step's values (0-d tensors on any device; None: not measured this step)."""
        for name, value in values.items():
            if value is None:
                continue
            value = value.detach().float()
            self._sums[name] = self._sums[name] + value if name in self._sums else value
            self._counts[name] = self._counts.get(name, 0) + 1

    def step(self, step: int, epoch: int, lr: float, scales: Mapping[str, torch.amp.GradScaler]) -> None:
        """After optimiser step `step`: at a log step, reduce the averages over the ranks and log
        them with the learning rate `lr`, the throughput, the enabled loss scalers' scales (by
        scalar name) and the system metrics; then update progress.json (`epoch`: completed)."""
        self._timed_steps += 1
        if not self.log_step(step):
            return
        names = sorted(self._sums)
        means = torch.stack([self._sums[n] / self._counts[n] for n in names]).tolist() if names else []
        values = dict(zip(names, distributed.all_reduce_mean(means), strict=True))  # every rank takes part
        self._sums, self._counts = {}, {}
        now = time.perf_counter()
        self._steps_per_second = self._timed_steps / max(now - self._clock, 1e-9)
        self._clock, self._timed_steps = now, 0
        if self.status is None:
            return
        values["train/lr"] = lr
        values["train/samples_per_second"] = self._steps_per_second * self.batch_size
        values.update({name: scaler.get_scale() for name, scaler in scales.items() if scaler.is_enabled()})
        if self.system is not None:
            values.update(self.system.sample())
        self.tracker.log_scalars(step, values)
        self.status.write("training", step, epoch, self._steps_per_second, self._best_nsdr, self._valid_nsdr)

    def epoch(self, epoch: int, step: int, row: Mapping[str, Any], targets: Sequence[str], seconds: float) -> None:
        """After epoch `epoch`'s validation (`row`: its history row) ended at step `step`."""
        self._valid_nsdr = {t: float(row[f"valid_nsdr_{t}"]) for t in targets}
        nsdr = float(row["valid_nsdr"])
        if self._best_nsdr is None or nsdr > self._best_nsdr:
            self._best_nsdr = nsdr
        values = {"valid/loss": float(row["valid_loss"])}
        values.update({f"valid/nsdr/{t}": v for t, v in self._valid_nsdr.items()})
        values.update({"valid/nsdr_mean": nsdr, "valid/best_nsdr": self._best_nsdr, "valid/epoch_seconds": seconds})
        self.tracker.log_epoch(epoch, step, values)
        if self.status is not None:
            self.status.write("training", step, epoch, self._steps_per_second, self._best_nsdr, self._valid_nsdr)
        self._clock, self._timed_steps = time.perf_counter(), 0  # throughput: training steps, not validation

    def snapshot(self, epoch: int, step: int, model: torch.nn.Module) -> None:
        """After epoch `epoch` (ended at step `step`): the audio snapshots when one is due (rank 0;
        the other ranks return at once)."""
        if self.snapshots is None or not self.snapshots.due(epoch):
            return
        started = time.perf_counter()
        self.snapshots.log(self.tracker, model, epoch, step)
        self.tracker.log_epoch(epoch, step, {"valid/snapshot_seconds": time.perf_counter() - started})
        self._clock, self._timed_steps = time.perf_counter(), 0  # throughput: training steps only

    def finish(self, step: int, epoch: int, failed: bool = False) -> None:
        """The run ended ("done", or "failed" when it stops with an exception): close the tracker
        and write the final progress.json."""
        self.tracker.close()
        if self.status is not None:
            state = "failed" if failed else "done"
            self.status.write(state, step, epoch, self._steps_per_second, self._best_nsdr, self._valid_nsdr)
