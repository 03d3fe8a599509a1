"""Training a separator (optionally with a discriminator) from the decoded cache: ``train()``.

Examples are random segments read from memory-mapped per-track arrays, with the usual MUSDB18
augmentations (sources remixed across tracks, channel swap, sign flip; see
demixbench.train.sampler). Every epoch the model is validated on the validation split (never the
test split) with its loss and the MDX nSDR (demixbench.train.validate), and the best-on-validation
weights become the checkpoint.

Everything random is seeded from `TrainConfig.seed`: on CPU, the same seed and config give
bit-identical weights.

Under torchrun (WORLD_SIZE > 1; see demixbench.train.distributed.launch) the same training runs data
parallel with DistributedDataParallel: `TrainConfig.batch_size` stays the global batch, split evenly
over the processes, and every process draws the random choices of the whole global batch from the
same generator, so the data are those of a 1-process run and the weights agree with it to float
rounding (the gradient all-reduce sums in another order). BatchNorm statistics are synchronised
over the processes (SyncBatchNorm, CUDA only). Rank 0 logs and writes all files.

Mixed precision (`TrainConfig.precision`): "bf16" or "fp16" run the forward passes and losses
under torch.autocast (weights, optimiser states and STFTs stay float32); "fp16" also scales the
losses with a GradScaler per optimiser, because fp16's narrow exponent range underflows small
gradients. "fp32" (the default) runs exactly the code path without autocast.

``train()`` reads top to bottom: ``build_parts`` builds what trains and is checkpointed (a
``Parts``, demixbench.train.parts), the rolling state is resumed (demixbench.train.state), ``wrap_ddp`` wraps the
modules for a multi-process run, and every epoch is ``_train_epoch`` (each step:
``_discriminator_step``, ``_generator_loss``, ``_optimizer_step``), ``validate`` and ``_end_epoch``.
While it trains, a ``Telemetry`` (demixbench.train.telemetry) logs scalars to the run's tracker
and keeps progress.json up to date.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from demixbench.devices import resolve_device
from demixbench.models import ModelSpec
from demixbench.models.checkpoint import save_checkpoint
from demixbench.models.losses import discriminator_loss, feature_matching_loss, generator_adversarial_loss
from demixbench.train import distributed
from demixbench.train.config import GANConfig, TrainConfig
from demixbench.train.history import write_history
from demixbench.train.parts import Parts, build_parts, wrap_ddp
from demixbench.train.sampler import BatchLoader, ChunkSampler
from demixbench.train.state import TrainingInterrupted, _Progress, _StopSignals
from demixbench.train.telemetry import Telemetry, discriminator_scalars
from demixbench.train.tracking import TrackingConfig
from demixbench.train.validate import validate

log = logging.getLogger(__name__)


def train(
    model_spec: ModelSpec,
    config: TrainConfig,
    train_dirs: Sequence[Path],
    valid_dirs: Sequence[Path],
    checkpoint: Path,
    history_csv: Path,
    input_stats: tuple[np.ndarray, np.ndarray] | None = None,
    gan: GANConfig | None = None,
    record: dict[str, Any] | None = None,
    work_dir: Path | None = None,
    provenance: dict[str, Any] | None = None,
    run_dir: Path | None = None,
    tracking: TrackingConfig | None = None,
) -> list[dict[str, float]]:
    """Train, validate every epoch, and write the best-on-validation checkpoint and the history.

    Args:
        model_spec: architecture and constructor arguments.
        config: optimisation and data settings, including the seed.
        train_dirs, valid_dirs: decoded track directories (see demixbench.data.decode.decode_track).
        checkpoint: path of model.safetensors; model.json is written beside it.
        history_csv: per-epoch learning curves (history.json and history.png are written beside it).
        input_stats: (mean, std) per frequency bin, for models that normalise their input.
        gan: adversarial training settings, or None for the plain baseline.
        record: the resolved configuration to store in the checkpoint metadata.
        provenance: added to the checkpoint's provenance (e.g. ``{"dataset_fingerprint": ...}``,
            see demixbench.data.verify.dataset_summary).
        work_dir: where the rolling state (model, optimisers, schedulers, RNG states, step) is kept,
            written atomically after every epoch, every `checkpoint_every_steps` steps and on
            SIGTERM/SIGUSR1. A run started with the same settings resumes from it and ends with
            the same weights as an uninterrupted run (on CPU). Removed after success.
        run_dir: the run's directory, where progress.json and the tracker's files (e.g.
            dvclive/) are written while it trains; None: neither is written.
        tracking: which tracker logs the run's scalars (demixbench.train.tracking); None: the
            defaults of TrackingConfig. A resumed run continues the same logs.

    Under torchrun (WORLD_SIZE > 1) every process calls train() with the same arguments; it joins
    the process group (see demixbench.train.distributed.init_process_group) and trains data parallel,
    `config.batch_size` being the global batch and `config.threads` the threads of all processes.
    Rank 0 writes the files; every rank returns the history.
    Returns:
        The history, one dict per epoch.
    Raises:
        TrainingInterrupted after SIGTERM/SIGUSR1, once the rolling state is saved.
    """
    device = distributed.worker_device(resolve_device(config.device))
    multi = distributed.init_process_group(device)  # nothing outside torchrun
    rank, world = distributed.rank(), distributed.world_size()
    distributed.local_batch_size(config.batch_size, world)  # fail before any work when it does not split
    torch.set_num_threads(max(1, config.threads // world))  # config.threads is for the whole job
    torch.manual_seed(config.seed)
    rng = np.random.default_rng([config.seed, 0x5EED])  # the same on every rank: they draw the global batch
    parts = build_parts(model_spec, config, gan, input_stats, device, multi, work_dir)
    if multi:  # the same initial weights everywhere, but each rank its own stream (dropout masks)
        torch.manual_seed(int(np.random.SeedSequence([config.seed, rank]).generate_state(1)[0]))
    sampler = ChunkSampler(
        train_dirs,
        config.segment,
        config.remix,
        config.channel_swap,
        config.sign_flip,
        parts.targets,
        normalize=getattr(parts.model, "normalize", "segment"),  # "track": examples normalised per track
    )
    progress = parts.resume(rng)
    if multi:
        wrap_ddp(parts)
    log.info(
        "training %s (%d parameters%s) seed %d on %s (%s), %d tracks, validating on %d%s",
        model_spec.arch,
        sum(p.numel() for p in parts.model.parameters()),
        f", GAN with {gan.discriminator}" if gan else "",
        config.seed,
        f"{world} processes ({device.type}), batch {config.batch_size // world} each" if multi else device,
        config.precision,
        len(train_dirs),
        len(valid_dirs),
        f"; resumed at step {progress.step}" if progress.step else "",
    )
    settings = {"model": asdict(model_spec), "train": asdict(config), "gan": asdict(gan) if gan else None}
    telemetry = Telemetry(
        tracking,
        run_dir,
        config.log_every_steps,
        config.batch_size,
        config.epochs * config.steps_per_epoch,
        config.epochs,
        progress,
        parts.targets,
        device,
        {**settings, **(record or {})},
        valid_dirs,
        config.sample_rate,
        int(config.valid_segment_seconds * config.sample_rate),
    )
    loader = BatchLoader(sampler, rng, config.batch_size, rank, world, config.loader_workers, config.prefetch_batches)
    try:
        with _StopSignals() as stop, closing(loader):
            while progress.epoch < config.epochs and not progress.stopped_early:
                epoch = progress.epoch + 1
                started = time.perf_counter()
                _train_epoch(parts, loader, progress, stop, config, gan, epoch, telemetry)
                lr = parts.optimizer.param_groups[0]["lr"]  # after the epoch's last step (the same after a resume)
                validation = validate(parts.model, valid_dirs, config, parts.targets, device)
                seconds = time.perf_counter() - started
                _end_epoch(progress, epoch, config, parts.scheduler, parts.model, lr, validation, seconds)
                telemetry.epoch(epoch, progress.step, progress.history[-1], parts.targets, seconds)
                telemetry.snapshot(epoch, progress.step, parts.model)  # every K epochs, rank 0
                parts.save(progress, loader)
    except BaseException:  # progress.json says "failed" (a stop signal's rerun resumes all the same)
        telemetry.finish(progress.step, progress.epoch, failed=True)
        raise

    parts.model.load_state_dict(progress.best_state)
    if rank == 0:
        write_history(history_csv, progress.history)
        save_checkpoint(
            parts.model,
            checkpoint,
            arch=model_spec.arch,
            args=model_spec.args,
            config={**settings, **(record or {})},
            extra={
                "best_epoch": progress.best_epoch,
                "best_valid_loss": progress.best_loss,
                "steps": progress.step,
                "stopped_early": progress.stopped_early,
            },
            provenance_extra=provenance,
        )
        if parts.state_file is not None:
            parts.state_file.unlink(missing_ok=True)  # a finished run must not be "resumed" by a later, different one
        log.info("best epoch %d (valid loss %.4f) saved to %s", progress.best_epoch, progress.best_loss, checkpoint)
    telemetry.finish(progress.step, progress.epoch)
    distributed.barrier()  # every rank returns once the files are written
    return progress.history


def _train_epoch(
    parts: Parts,
    loader: BatchLoader,
    progress: _Progress,
    stop: _StopSignals,
    config: TrainConfig,
    gan: GANConfig | None,
    epoch: int,
    telemetry: Telemetry,
) -> None:
    """The steps of epoch `epoch` from progress.step on (> the epoch's first after a resume), each
    one generator update (after a discriminator update in a GAN variant past its warm-up), adding
    the losses to `progress` and the step's scalars to `telemetry`. Saves the rolling state every
    `checkpoint_every_steps` steps; after SIGTERM/SIGUSR1 saves it and raises TrainingInterrupted."""
    parts.generator.train()
    first = progress.step - progress.epoch * config.steps_per_epoch  # > 0 when resumed mid-epoch
    bar = tqdm(
        range(first, config.steps_per_epoch),
        desc=f"epoch {epoch}/{config.epochs}",
        unit="step",
        leave=False,
        disable=distributed.rank() != 0,
    )
    for _ in bar:
        mixture, sources = (x.to(parts.device, non_blocking=True) for x in loader.next())
        with parts.amp.autocast():
            loss, estimate, reference = parts.generator(mixture, sources)
        total = loss
        adversarial = parts.discriminator is not None and progress.step >= gan.warmup_steps
        adv_value = d_value = 0.0
        scalars: dict[str, torch.Tensor | None] = {"train/reconstruction": loss}
        if adversarial:
            condition, real_features, d_loss, d_scalars = _discriminator_step(parts, gan, mixture, estimate, reference)
            total, adv, matching = _generator_loss(parts, gan, loss, estimate, condition, real_features)
            adv_value, d_value = adv.item(), d_loss.item()
            scalars.update(d_scalars)
            scalars.update(_generator_scalars(gan, loss, adv, matching))
        log_step = telemetry.log_step(progress.step + 1)
        scalars["train/loss"] = total
        scalars["train/grad_norm"] = _optimizer_step(parts, config, total, measure_norm=log_step)
        telemetry.add(scalars)
        # Losses of the global batch (the mean of the ranks' equal shares), the same on every rank.
        loss_value, adv_value, d_value = distributed.all_reduce_mean([loss.item(), adv_value, d_value])
        if adversarial:
            progress.sums["train_adv"] += adv_value
            progress.sums["train_d"] += d_value
        progress.sums["train_loss"] += loss_value
        progress.step += 1
        bar.set_postfix(loss=f"{loss_value:.4f}")
        telemetry.step(progress.step, progress.epoch, parts.optimizer.param_groups[0]["lr"], _loss_scalers(parts))
        received = distributed.all_reduce_max(stop.received or 0)  # every rank stops at the same step
        if received:
            parts.save(progress, loader)
            distributed.barrier()  # the state is written before any rank exits
            name = signal.Signals(received).name
            raise TrainingInterrupted(
                f"{name} received: state saved at step {progress.step} in {parts.state_file}; rerun to resume"
            )
        if config.checkpoint_every_steps and progress.step % config.checkpoint_every_steps == 0:
            parts.save(progress, loader)


def _discriminator_step(
    parts: Parts, gan: GANConfig, mixture: torch.Tensor, estimate: torch.Tensor, reference: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
    """One discriminator update: true sources against the generator's estimate, both conditioned
    on the mixture, in the representation the generator's loss compares (`reference`, `estimate`:
    (batch, targets, channels, ...)). Returns (condition, real features, discriminator loss, its
    scalars: see demixbench.train.telemetry.discriminator_scalars)."""
    with parts.amp.autocast():
        condition = parts.model.condition(mixture)
        real_logits, real_features = parts.critic(reference, condition)
        # Detached: the discriminator's loss must not reach the generator's weights, and the
        # generator's graph stays intact for its own backward pass (see _generator_loss).
        fake_logits, _ = parts.critic(estimate.detach(), condition)
        d_loss = discriminator_loss(real_logits, fake_logits, gan.loss)
    parts.opt_d.zero_grad(set_to_none=True)
    # Under DDP this backward all-reduces the discriminator's gradients (averaged over the ranks),
    # so every rank takes the same step and the copies of the discriminator stay equal.
    parts.scaler_d.scale(d_loss).backward()
    parts.scaler_d.step(parts.opt_d)
    parts.scaler_d.update()
    return condition, real_features, d_loss, discriminator_scalars(real_logits, fake_logits, gan.loss)


def _generator_loss(
    parts: Parts,
    gan: GANConfig,
    loss: torch.Tensor,
    estimate: torch.Tensor,
    condition: torch.Tensor,
    real_features: list[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The generator's total loss: reconstruction `loss` + adv_weight * adversarial term
    (+ feature_match_weight * feature matching). Returns (total, adversarial term, feature
    matching term or None without it), the terms unweighted."""
    with parts.amp.autocast():
        # The estimate again, now attached, through the just-updated discriminator: this term's
        # gradients flow into the generator. (The discriminator's own gradients from it are
        # discarded: opt_d.zero_grad clears them before the next discriminator step.)
        fake_logits, fake_features = parts.critic(estimate, condition)
        adv = generator_adversarial_loss(fake_logits, gan.loss)
        # A small adv_weight keeps the reconstruction loss in charge (the GAN variant only refines).
        total = loss + gan.adv_weight * adv
        matching = None
        if gan.feature_match_weight > 0:
            # Real features from before the discriminator update, detached (as MelGAN does).
            matching = feature_matching_loss(real_features, fake_features)
            total = total + gan.feature_match_weight * matching
    return total, adv, matching


def _generator_scalars(
    gan: GANConfig, loss: torch.Tensor, adv: torch.Tensor, matching: torch.Tensor | None
) -> dict[str, torch.Tensor | None]:
    """The generator's adversarial terms and their weighted share of the reconstruction `loss`."""
    with torch.no_grad():
        loss = loss.detach().float()
        return {
            "gan/g_adv": adv,
            "gan/adv_to_reconstruction": gan.adv_weight * adv.detach().float() / loss,
            "gan/g_feature_matching": matching,
            "gan/fm_to_reconstruction": (
                gan.feature_match_weight * matching.detach().float() / loss if matching is not None else None
            ),
        }


def _loss_scalers(parts: Parts) -> dict[str, torch.amp.GradScaler]:
    """The loss scalers by the name their scale is logged under (only enabled ones are logged)."""
    scalers = {"train/loss_scale": parts.scaler}
    if parts.scaler_d is not None:
        scalers["gan/d_loss_scale"] = parts.scaler_d
    return scalers


def _optimizer_step(
    parts: Parts, config: TrainConfig, total: torch.Tensor, measure_norm: bool = False
) -> torch.Tensor | None:
    """Backward of the generator's total loss, gradient clipping, the Adam step, and the LR step
    of the per-step schedules (cosine, step). Returns the global gradient norm before clipping
    (a 0-d tensor, not synchronised) when clipping, or when `measure_norm`; else None."""
    parts.optimizer.zero_grad(set_to_none=True)
    # The loss is rescaled (fp16 only; the scale is 1 otherwise) so that small gradients do not
    # underflow in fp16; under DDP this backward also all-reduces the generator's gradients.
    parts.scaler.scale(total).backward()
    norm = None
    if config.grad_clip is not None:  # gradients are already averaged over the ranks here
        parts.scaler.unscale_(parts.optimizer)  # clip the true gradients, not the scaled ones
        norm = torch.nn.utils.clip_grad_norm_(parts.model.parameters(), config.grad_clip)
    elif measure_norm:
        parts.scaler.unscale_(parts.optimizer)  # what step() would do: the same update
        norm = torch.nn.utils.get_total_norm([p.grad for p in parts.model.parameters() if p.grad is not None])
    parts.scaler.step(parts.optimizer)  # skipped by the fp16 scaler when a gradient is inf/NaN
    parts.scaler.update()
    if parts.scheduler is not None and config.lr_schedule != "plateau":
        parts.scheduler.step()
    return norm


def _end_epoch(
    progress: _Progress,
    epoch: int,
    config: TrainConfig,
    scheduler: Any,
    model: nn.Module,
    lr: float,
    validation: dict[str, float],
    seconds: float,
) -> None:
    """Record an epoch: history row, best weights, LR on plateau, early stopping, one log line."""
    row = {"epoch": epoch, "step": progress.step, **{k: v / config.steps_per_epoch for k, v in progress.sums.items()}}
    row.update(validation)
    row["lr"] = lr
    row["seconds"] = seconds
    progress.history.append(row)
    improved = row["valid_loss"] < progress.best_loss
    if improved:
        progress.best_loss, progress.best_epoch, progress.stale_epochs = row["valid_loss"], epoch, 0
        progress.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    else:
        progress.stale_epochs += 1
    if config.lr_schedule == "plateau":
        scheduler.step(row["valid_loss"])
    patience = config.early_stopping_patience
    progress.stopped_early = patience is not None and progress.stale_epochs >= patience and epoch < config.epochs
    progress.epoch = epoch
    progress.sums = {k: 0.0 for k in progress.sums}
    log.info(
        "epoch %d/%d  train %.4f  valid %.4f  nSDR %.2f dB  lr %.2e%s  %.1f s%s",
        epoch,
        config.epochs,
        row["train_loss"],
        row["valid_loss"],
        row["valid_nsdr"],
        lr,
        "  (best)" if improved else "",
        seconds,
        f"\nstopping early: no improvement for {patience} epochs" if progress.stopped_early else "",
    )
