"""Training a separator (optionally with a discriminator) from the decoded cache.

Examples are random segments read from memory-mapped per-track arrays, with the usual MUSDB18
augmentations (sources remixed across tracks, channel swap, sign flip). Every epoch the model is
validated on the validation split (never the test split) with its loss and the MDX nSDR, and the
best-on-validation weights become the checkpoint.

Everything random is seeded from `TrainConfig.seed`: on CPU, the same seed and config give
bit-identical weights.

Under torchrun (WORLD_SIZE > 1; see demixbench.distributed.launch) the same training runs data
parallel with DistributedDataParallel: `TrainConfig.batch_size` stays the global batch, split evenly
over the processes, and every process draws the random choices of the whole global batch from the
same generator, so the data are those of a 1-process run and the weights agree with it to float
rounding (the gradient all-reduce sums in another order). BatchNorm statistics are synchronised
over the processes (SyncBatchNorm, CUDA only). Rank 0 logs and writes all files.

Mixed precision (`TrainConfig.precision`): "bf16" or "fp16" run the forward passes and losses
under torch.autocast (weights, optimiser states and STFTs stay float32); "fp16" also scales the
losses with a GradScaler per optimiser, because fp16's narrow exponent range underflows small
gradients. "fp32" (the default) runs exactly the code path without autocast.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from demixbench import TARGETS, distributed
from demixbench.checkpoint import save_checkpoint
from demixbench.data import load_decoded
from demixbench.devices import resolve_device
from demixbench.fileio import atomic_path, atomic_write_text
from demixbench.models import DISCRIMINATORS, build_discriminator, build_model
from demixbench.models.discriminators import discriminator_loss, feature_matching_loss, generator_adversarial_loss
from demixbench.scoring import nsdr
from demixbench.separate import separate

log = logging.getLogger(__name__)


#: Training precisions: the autocast dtype of each (None: no autocast).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: architecture name and its constructor arguments."""

    arch: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    """How to train one model for one seed."""

    seed: int
    epochs: int = 10
    steps_per_epoch: int = 100
    batch_size: int = 8
    segment_seconds: float = 3.0
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = 5.0  # max global gradient norm; None disables clipping
    remix: bool = True  # draw each source from a different random track (Demucs/open-unmix augmentation)
    channel_swap: bool = True
    sign_flip: bool = False
    valid_segment_seconds: float = 10.0  # inference segment used for validation nSDR
    lr_schedule: str = "constant"  # constant | cosine (per step) | step (every lr_step_epochs) | plateau
    lr_gamma: float = 0.3  # LR factor for "step" and "plateau"
    lr_step_epochs: int = 30
    lr_plateau_patience: int = 5  # epochs without improvement before "plateau" lowers the LR
    early_stopping_patience: int | None = None  # stop after this many epochs without improvement
    checkpoint_every_steps: int = 0  # also save the rolling state every N steps (0: each epoch only)
    loader_workers: int = 0  # threads reading training examples ahead (0: read on demand)
    prefetch_batches: int = 2  # batches read ahead when loader_workers > 0
    threads: int = 1
    sample_rate: int = 44100
    device: str = "auto"  # "auto" (CUDA when available), "cpu" or "cuda"
    precision: str = "fp32"  # "fp32", or mixed precision "bf16" / "fp16" (see the module docstring)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; allowed: {', '.join(PRECISIONS)}")

    @property
    def segment(self) -> int:
        return int(self.segment_seconds * self.sample_rate)


@dataclass(frozen=True)
class GANConfig:
    """The adversarial part of a GAN variant; the generator keeps its reconstruction loss."""

    discriminator: str = "patchgan"
    discriminator_args: dict[str, Any] = field(default_factory=dict)
    loss: str = "lsgan"  # "lsgan" or "hinge"
    adv_weight: float = 0.01
    feature_match_weight: float = 0.0
    warmup_steps: int = 0  # reconstruction-only steps before the adversarial term starts
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)

    def __post_init__(self) -> None:
        # Configs and JSON give lists; a tuple keeps the dataclass hashable and comparable.
        object.__setattr__(self, "betas", tuple(self.betas))


class ChunkSampler:
    """Random training examples from decoded tracks.

    batch() -> mixture (batch, channels, segment), sources (batch, targets, channels, segment).
    The mixture is the sum of the (augmented) sources, so remixed examples stay consistent.
    """

    def __init__(self, track_dirs: Sequence[Path], segment: int, remix: bool, channel_swap: bool, sign_flip: bool, targets: Sequence[str] = TARGETS) -> None:
        if not track_dirs:
            raise ValueError("no training tracks")
        self.tracks = [load_decoded(d, stems=targets) for d in track_dirs]
        self.targets = tuple(targets)
        self.segment = segment
        self.remix, self.channel_swap, self.sign_flip = remix, channel_swap, sign_flip

    def _read(self, track: dict[str, np.ndarray], target: str, offset_fraction: float) -> np.ndarray:
        audio = track[target]
        length = audio.shape[-1]
        start = int(offset_fraction * max(length - self.segment, 0))
        chunk = np.array(audio[:, start : start + self.segment], dtype=np.float32)
        if chunk.shape[-1] < self.segment:  # tracks shorter than a segment are zero padded
            chunk = np.pad(chunk, ((0, 0), (0, self.segment - chunk.shape[-1])))
        return chunk

    def _draw(self, rng: np.random.Generator) -> list[tuple[int, float, bool, bool]]:
        """One example's random choices, per target: (track, offset fraction, swap channels, flip sign)."""
        same_track = int(rng.integers(len(self.tracks)))
        same_offset = float(rng.random())
        choices = []
        for _ in self.targets:
            if self.remix:
                track, offset = int(rng.integers(len(self.tracks))), float(rng.random())
            else:
                track, offset = same_track, same_offset
            swap = bool(self.channel_swap and rng.random() < 0.5)
            flip = bool(self.sign_flip and rng.random() < 0.5)
            choices.append((track, offset, swap, flip))
        return choices

    def batch(self, rng: np.random.Generator, batch_size: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of a global batch of `batch_size` examples.

        The random choices of all `batch_size` examples are drawn from `rng`, in the same order
        whatever `world_size` is, so every rank's generator stays in step and the ranks' shares,
        rank 0 first, make up the batch a 1-process run draws. Only the share of this rank, the
        contiguous examples [rank * batch_size / world_size, (rank + 1) * batch_size / world_size),
        is read and returned.
        """
        return self.read(self.choices(rng, batch_size, rank, world_size))

    def choices(self, rng: np.random.Generator, batch_size: int, rank: int = 0, world_size: int = 1) -> list[list[tuple[int, float, bool, bool]]]:
        """The random choices of this rank's share of a global batch (see batch); cheap, no I/O."""
        local = distributed.local_batch_size(batch_size, world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        return [self._draw(rng) for _ in range(batch_size)][rank * local : (rank + 1) * local]

    def read(self, choices: list[list[tuple[int, float, bool, bool]]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Read and augment the examples described by `choices` -> (mixture, sources)."""
        sources = np.empty((len(choices), len(self.targets), 2, self.segment), dtype=np.float32)
        for b, example in enumerate(choices):
            for s, (target, (track, offset, swap, flip)) in enumerate(zip(self.targets, example, strict=True)):
                chunk = self._read(self.tracks[track], target, offset)
                if swap:
                    chunk = chunk[::-1]
                if flip:
                    chunk = -chunk
                sources[b, s] = chunk
        sources_t = torch.from_numpy(sources)
        return sources_t.sum(dim=1), sources_t


class BatchLoader:
    """Batches of a ChunkSampler read ahead by `workers` threads, up to `prefetch` batches deep.

    The random choices are drawn in order on the calling thread and only the reading is done by
    the workers, so the batches are exactly those of calling `sampler.batch` one after another.
    rng_state() is the generator's state right after the last batch handed out: what a resumed
    run must restore (the generator itself has already drawn the prefetched batches).
    """

    def __init__(self, sampler: ChunkSampler, rng: np.random.Generator, batch_size: int, rank: int = 0, world_size: int = 1, workers: int = 0, prefetch: int = 0) -> None:
        if workers < 0 or prefetch < 0:
            raise ValueError(f"loader workers and prefetch must be >= 0, got {workers} and {prefetch}")
        self.sampler, self.rng = sampler, rng
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.depth = max(prefetch, 1) if workers else 0  # without workers nothing reads ahead
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="loader") if workers else None
        self.queue: deque[tuple[dict, Any]] = deque()

    def _enqueue(self) -> None:
        state = copy.deepcopy(self.rng.bit_generator.state)
        choices = self.sampler.choices(self.rng, self.batch_size, self.rank, self.world_size)
        pending = self.pool.submit(self.sampler.read, choices) if self.pool else choices
        self.queue.append((state, pending))

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch: (mixture, sources) as ChunkSampler.batch returns them."""
        if not self.queue:
            self._enqueue()
        _, pending = self.queue.popleft()
        while len(self.queue) < self.depth:
            self._enqueue()
        return pending.result() if self.pool else self.sampler.read(pending)

    def rng_state(self) -> dict:
        """The generator state after the last batch returned by next()."""
        return copy.deepcopy(self.queue[0][0] if self.queue else self.rng.bit_generator.state)

    def close(self) -> None:
        if self.pool:
            self.pool.shutdown(wait=True, cancel_futures=True)


class _SeparationLoss(nn.Module):
    """`model.separation_loss` as a module's forward: DistributedDataParallel synchronises the
    gradients of what runs through its wrapper's forward, not of other methods of the model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, mixture: torch.Tensor, sources: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.model.separation_loss(mixture, sources)


class _MixedPrecision:
    """Autocast for the forward passes and loss scaling for the backward passes of one run.

    With precision "fp32" both are disabled and every call below reduces to the plain
    `loss.backward()` / `optimizer.step()`, so fp32 runs stay bit-identical to a loop without them.
    """

    def __init__(self, precision: str, device: torch.device) -> None:
        self.dtype = PRECISIONS[precision]
        self.device_type = device.type
        self.scaling = precision == "fp16"

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)

    def scaler(self) -> torch.amp.GradScaler:
        """A loss scaler for one optimiser (one per optimiser: their gradients overflow independently)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.scaling)


def _sync_batchnorm(module: nn.Module, device: torch.device, name: str) -> nn.Module:
    """BatchNorm layers -> SyncBatchNorm, so a multi-process run normalises with the statistics of
    the global batch, as a 1-process run does."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
        return module
    if device.type != "cuda":
        raise ValueError(
            f"{name} has BatchNorm layers, whose statistics must be synchronised over the "
            f"{distributed.world_size()} processes, but torch's SyncBatchNorm works on CUDA only; "
            "train it on GPUs, or in a single process on CPU"
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


def _validate(model: nn.Module, valid_dirs: Sequence[Path], config: TrainConfig, targets: Sequence[str], device: torch.device) -> dict[str, float]:
    """Validation on whole tracks: the model's reconstruction loss (averaged over segments of
    valid_segment_seconds, so memory stays bounded) and the nSDR per target of the full-track
    separation, averaged over tracks ("valid_nsdr_<target>", "valid_nsdr") and per track
    ("valid_nsdr_tracks": track -> target -> nSDR).

    In a multi-process run every rank validates every world_size-th track and the per-track
    results are gathered in track order: every rank gets the same result, that of one process."""
    model.eval()
    rank, world = distributed.rank(), distributed.world_size()
    mine = {i: _validate_track(model, valid_dirs[i], config, targets, device) for i in range(rank, len(valid_dirs), world)}
    per_track: dict[int, tuple[list[float], dict[str, float]]] = {}
    for part in distributed.all_gather_object(mine):
        per_track.update(part)
    losses = [loss for i in range(len(valid_dirs)) for loss in per_track[i][0]]
    scores = {t: [per_track[i][1][t] for i in range(len(valid_dirs))] for t in targets}
    result = {"valid_loss": float(np.mean(losses))}
    result.update({f"valid_nsdr_{t}": float(np.mean(v)) for t, v in scores.items()})
    result["valid_nsdr"] = float(np.mean([result[f"valid_nsdr_{t}"] for t in targets]))
    result["valid_nsdr_tracks"] = {Path(valid_dirs[i]).name: per_track[i][1] for i in range(len(valid_dirs))}
    return result


def _validate_track(model: nn.Module, track_dir: Path, config: TrainConfig, targets: Sequence[str], device: torch.device) -> tuple[list[float], dict[str, float]]:
    """One validation track: the loss of each segment and the nSDR per target."""
    segment = int(config.valid_segment_seconds * config.sample_rate)
    losses = []
    with torch.no_grad():
        track = load_decoded(track_dir, stems=("mixture", *targets))
        mixture = np.array(track["mixture"])
        references = np.stack([np.array(track[t]) for t in targets])
        for start in range(0, mixture.shape[-1], segment):
            loss, _, _ = model.separation_loss(
                torch.from_numpy(mixture[None, :, start : start + segment]).to(device),
                torch.from_numpy(references[None, ..., start : start + segment]).to(device),
            )
            losses.append(loss.item())
        estimates = separate(model, mixture, segment=segment, device=device)
    return losses, {target: nsdr(references[i], estimates[i]) for i, target in enumerate(targets)}


class TrainingInterrupted(RuntimeError):
    """Raised after SIGTERM/SIGUSR1: the rolling state was saved; rerunning resumes from it."""


@dataclass
class _Progress:
    """Everything about a run that changes while it trains, apart from modules and optimisers."""

    step: int = 0  # optimiser steps done
    epoch: int = 0  # epochs completed (trained and validated)
    sums: dict[str, float] = field(default_factory=lambda: {"train_loss": 0.0, "train_adv": 0.0, "train_d": 0.0})
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch: int = -1
    best_loss: float = float("inf")
    stale_epochs: int = 0  # epochs since the validation loss last improved
    stopped_early: bool = False


class _StopSignals:
    """Turns SIGTERM and SIGUSR1 (what Slurm sends before preemption or the time limit) into a
    flag the training loop polls between steps, so it can save a consistent state."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():  # handlers only work there
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _fingerprint(model_spec: ModelSpec, config: TrainConfig, gan: GANConfig | None) -> str:
    """What a rolling state must match to be resumed: everything that changes the weights."""
    settings = {k: v for k, v in asdict(config).items() if k not in ("threads", "device", "checkpoint_every_steps", "loader_workers", "prefetch_batches")}
    text = json.dumps({"model": asdict(model_spec), "train": settings, "gan": asdict(gan) if gan else None}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The LR scheduler of `config.lr_schedule`, or None for "constant". cosine and step are stepped
    after every optimiser step, plateau after every validation (with the validation loss)."""
    total_steps = config.epochs * config.steps_per_epoch
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step_epochs * config.steps_per_epoch, gamma=config.lr_gamma)
    if config.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=config.lr_gamma, patience=config.lr_plateau_patience)
    if config.lr_schedule == "constant":
        return None
    raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}; allowed: constant, cosine, step, plateau")


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
) -> list[dict[str, float]]:
    """Train, validate every epoch, and write the best-on-validation checkpoint and the history.

    Args:
        model_spec: architecture and constructor arguments.
        config: optimisation and data settings, including the seed.
        train_dirs, valid_dirs: decoded track directories (see demixbench.data.decode_track).
        checkpoint: path of model.pt; model.json is written beside it.
        history_csv: per-epoch learning curves (history.json and history.png are written beside it).
        input_stats: (mean, std) per frequency bin, for models that normalise their input.
        gan: adversarial training settings, or None for the plain baseline.
        record: the resolved configuration to store in the checkpoint metadata.
        provenance: added to the checkpoint's provenance (e.g. ``{"dataset_fingerprint": ...}``,
            see demixbench.provenance.dataset_summary).
        work_dir: where the rolling state (model, optimisers, schedulers, RNG states, step) is kept,
            written atomically after every epoch, every `checkpoint_every_steps` steps and on
            SIGTERM/SIGUSR1. A run started with the same settings resumes from it and ends with
            the same weights as an uninterrupted run (on CPU). Removed after success.

    Under torchrun (WORLD_SIZE > 1) every process calls train() with the same arguments; it joins
    the process group (see demixbench.distributed.init_process_group) and trains data parallel,
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
    model = build_model(model_spec.arch, model_spec.args)
    if input_stats is not None and hasattr(model, "set_input_stats"):
        model.set_input_stats(torch.from_numpy(input_stats[0]), torch.from_numpy(input_stats[1]))
    targets = tuple(getattr(model, "targets", TARGETS))
    if multi:
        model = _sync_batchnorm(model, device, f"model {model_spec.arch!r}")
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = _make_scheduler(optimizer, config)
    discriminator = opt_d = None
    if gan is not None:
        discriminator = build_discriminator(gan.discriminator, gan.discriminator_args).to(device)
        if discriminator.domain != model.domain:
            compatible = sorted(name for name, cls in DISCRIMINATORS.items() if cls.domain == model.domain)
            raise ValueError(
                f"discriminator {gan.discriminator!r} compares {discriminator.domain} representations, but "
                f"{model_spec.arch!r} is a {model.domain} model; use one of: {', '.join(compatible)}"
            )
        if multi:
            discriminator = _sync_batchnorm(discriminator, device, f"discriminator {gan.discriminator!r}")
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=gan.lr, betas=gan.betas)
    if multi:  # the same initial weights everywhere, but each rank its own stream (dropout masks)
        torch.manual_seed(int(np.random.SeedSequence([config.seed, rank]).generate_state(1)[0]))
    sampler = ChunkSampler(train_dirs, config.segment, config.remix, config.channel_swap, config.sign_flip, targets)

    amp = _MixedPrecision(config.precision, device)
    scaler, scaler_d = amp.scaler(), amp.scaler() if gan is not None else None
    modules = {
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "discriminator": discriminator,
        "opt_d": opt_d,
        # A disabled GradScaler has no state to save (and refuses to load an empty one).
        "scaler": scaler if amp.scaling else None,
        "scaler_d": scaler_d if amp.scaling else None,
    }
    state_file = Path(work_dir) / "state.pt" if work_dir is not None else None
    fingerprint = _fingerprint(model_spec, config, gan)
    progress = _load_state(state_file, fingerprint, modules, rng, device) if state_file else None
    progress = progress or _Progress()
    # What the training step calls: the plain modules, or their DDP wrappers, which average the
    # gradients over the ranks in backward. State dicts, validation and `condition` use the plain ones.
    generator, critic = _SeparationLoss(model), discriminator
    if multi:
        device_ids = [device.index] if device.type == "cuda" else None
        generator = DistributedDataParallel(generator, device_ids=device_ids)
        if discriminator is not None:
            critic = DistributedDataParallel(discriminator, device_ids=device_ids)
    log.info(
        "training %s (%d parameters%s) seed %d on %s (%s), %d tracks, validating on %d%s",
        model_spec.arch,
        sum(p.numel() for p in model.parameters()),
        f", GAN with {gan.discriminator}" if gan else "",
        config.seed,
        f"{world} processes ({device.type}), batch {config.batch_size // world} each" if multi else device,
        config.precision,
        len(train_dirs),
        len(valid_dirs),
        f"; resumed at step {progress.step}" if progress.step else "",
    )

    loader = BatchLoader(sampler, rng, config.batch_size, rank, world, config.loader_workers, config.prefetch_batches)

    def save_state() -> None:
        if state_file is not None:
            _save_state(state_file, fingerprint, modules, loader.rng_state(), progress, device)

    with _StopSignals() as stop, closing(loader):
        while progress.epoch < config.epochs and not progress.stopped_early:
            epoch = progress.epoch + 1
            generator.train()
            started = time.perf_counter()
            first = progress.step - progress.epoch * config.steps_per_epoch  # > 0 when resumed mid-epoch
            bar = tqdm(range(first, config.steps_per_epoch), desc=f"epoch {epoch}/{config.epochs}", unit="step", leave=False, disable=rank != 0)
            for _ in bar:
                mixture, sources = (x.to(device, non_blocking=True) for x in loader.next())
                with amp.autocast():
                    loss, estimate, reference = generator(mixture, sources)
                total = loss
                adversarial = discriminator is not None and progress.step >= gan.warmup_steps
                adv_value = d_value = 0.0
                if adversarial:
                    with amp.autocast():
                        condition = model.condition(mixture)
                        real_logits, real_features = critic(reference, condition)
                        fake_logits, _ = critic(estimate.detach(), condition)
                        d_loss = discriminator_loss(real_logits, fake_logits, gan.loss)
                    opt_d.zero_grad(set_to_none=True)
                    scaler_d.scale(d_loss).backward()
                    scaler_d.step(opt_d)
                    scaler_d.update()
                    with amp.autocast():
                        fake_logits, fake_features = critic(estimate, condition)
                        adv = generator_adversarial_loss(fake_logits, gan.loss)
                        total = total + gan.adv_weight * adv
                        if gan.feature_match_weight > 0:
                            # Real features from before the discriminator update, detached (as MelGAN does).
                            total = total + gan.feature_match_weight * feature_matching_loss(real_features, fake_features)
                    adv_value, d_value = adv.item(), d_loss.item()
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(total).backward()
                if config.grad_clip is not None:  # gradients are already averaged over the ranks here
                    scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                scaler.step(optimizer)  # skipped by the fp16 scaler when a gradient is inf/NaN
                scaler.update()
                if scheduler is not None and config.lr_schedule != "plateau":
                    scheduler.step()
                # Losses of the global batch (the mean of the ranks' equal shares), the same on every rank.
                loss_value, adv_value, d_value = distributed.all_reduce_mean([loss.item(), adv_value, d_value])
                if adversarial:
                    progress.sums["train_adv"] += adv_value
                    progress.sums["train_d"] += d_value
                progress.sums["train_loss"] += loss_value
                progress.step += 1
                bar.set_postfix(loss=f"{loss_value:.4f}")
                received = distributed.all_reduce_max(stop.received or 0)  # every rank stops at the same step
                if received:
                    save_state()
                    distributed.barrier()  # the state is written before any rank exits
                    name = signal.Signals(received).name
                    raise TrainingInterrupted(f"{name} received: state saved at step {progress.step} in {state_file}; rerun to resume")
                if config.checkpoint_every_steps and progress.step % config.checkpoint_every_steps == 0:
                    save_state()
            lr = optimizer.param_groups[0]["lr"]  # after the epoch's last step (the same after a resume)
            validation = _validate(model, valid_dirs, config, targets, device)
            _end_epoch(progress, epoch, config, scheduler, model, lr, validation, time.perf_counter() - started)
            save_state()

    model.load_state_dict(progress.best_state)
    if rank == 0:
        _write_history(history_csv, progress.history)
        save_checkpoint(
            model,
            checkpoint,
            arch=model_spec.arch,
            args=model_spec.args,
            config={"model": asdict(model_spec), "train": asdict(config), "gan": asdict(gan) if gan else None, **(record or {})},
            extra={"best_epoch": progress.best_epoch, "best_valid_loss": progress.best_loss, "steps": progress.step, "stopped_early": progress.stopped_early},
            provenance_extra=provenance,
        )
        if state_file is not None:
            state_file.unlink(missing_ok=True)  # a finished run must not be "resumed" by a later, different one
        log.info("best epoch %d (valid loss %.4f) saved to %s", progress.best_epoch, progress.best_loss, checkpoint)
    distributed.barrier()  # every rank returns once the files are written
    return progress.history


def _end_epoch(progress: _Progress, epoch: int, config: TrainConfig, scheduler: Any, model: nn.Module, lr: float, validation: dict[str, float], seconds: float) -> None:
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
        epoch, config.epochs, row["train_loss"], row["valid_loss"], row["valid_nsdr"], lr,
        "  (best)" if improved else "", seconds,
        f"\nstopping early: no improvement for {patience} epochs" if progress.stopped_early else "",
    )


def _torch_rng_state(device: torch.device) -> dict[str, torch.Tensor | None]:
    """This process's torch generator states: CPU, and the CUDA device it trains on."""
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _save_state(path: Path, fingerprint: str, modules: dict[str, Any], rng_state: dict, progress: _Progress, device: torch.device) -> None:
    """Write the rolling state (rank 0; the other ranks take part in gathering their RNG states)."""
    rng_ranks = distributed.all_gather_object(_torch_rng_state(device)) if distributed.is_distributed() else None
    if distributed.rank() != 0:
        return
    state = {
        "fingerprint": fingerprint,
        "progress": {k: v for k, v in asdict(progress).items() if k != "best_state"},
        "best_state": progress.best_state,
        "rng_numpy": json.dumps(rng_state),
        **{name: module.state_dict() for name, module in modules.items() if module is not None},
    }
    if rng_ranks is None:
        state["rng_torch"] = torch.get_rng_state()
        state["rng_cuda"] = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    else:  # rank 0's as the main state (what a 1-process resume restores), and every rank's
        state["rng_torch"] = rng_ranks[0]["torch"]
        state["rng_cuda"] = [rng_ranks[0]["cuda"]] if rng_ranks[0]["cuda"] is not None else []
        state["rng_ranks"] = rng_ranks
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def _load_state(path: Path, fingerprint: str, modules: dict[str, Any], rng: np.random.Generator, device: torch.device) -> _Progress | None:
    """Restore a rolling state written with the same settings; None when there is none to resume.

    Every rank of a multi-process run reads the same file and restores its own torch RNG state."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["fingerprint"] != fingerprint:
        log.warning("%s was written with other settings; starting from scratch", path)
        return None
    for name, module in modules.items():
        if module is not None:
            module.load_state_dict(state[name])
    rng.bit_generator.state = json.loads(state["rng_numpy"])
    rng_ranks = state.get("rng_ranks")
    world = distributed.world_size()
    if len(rng_ranks or [None]) != world:
        log.warning(
            "%s was written by a run with %d processes, this one has %d: the data and weights continue, "
            "but the torch random streams (dropout) differ from an uninterrupted run", path, len(rng_ranks or [None]), world,
        )
    if world == 1:
        torch.set_rng_state(state["rng_torch"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
    elif rng_ranks is not None and len(rng_ranks) == world:
        own = rng_ranks[distributed.rank()]
        torch.set_rng_state(own["torch"])
        if own["cuda"] is not None and device.type == "cuda":
            torch.cuda.set_rng_state(own["cuda"], device)
    return _Progress(**state["progress"], best_state=state["best_state"])


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    """history.csv (scalar columns), history.json (everything, including the per-track validation
    nSDR) and history.png (learning curves) side by side."""
    columns = [c for c, value in history[0].items() if not isinstance(value, dict)]
    lines = [",".join(columns)] + [",".join(repr(row[c]) for c in columns) for row in history]
    atomic_write_text(path, "\n".join(lines) + "\n")
    atomic_write_text(Path(path).with_suffix(".json"), json.dumps(history, indent=1))
    plot_history(history, Path(path).with_suffix(".png"))


def plot_history(history: list[dict[str, float]], path: Path) -> None:
    """Learning curves: train/validation loss and validation nSDR per target, per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, (losses, scores) = plt.subplots(1, 2, figsize=(10, 3.8))
    losses.plot(epochs, [row["train_loss"] for row in history], label="train")
    losses.plot(epochs, [row["valid_loss"] for row in history], label="validation")
    losses.set(xlabel="epoch", ylabel="reconstruction loss (L1)", title="loss")
    losses.legend()
    for key in sorted(k for k, v in history[0].items() if k.startswith("valid_nsdr_") and not isinstance(v, dict)):
        scores.plot(epochs, [row[key] for row in history], label=key.removeprefix("valid_nsdr_"))
    scores.plot(epochs, [row["valid_nsdr"] for row in history], "k--", label="mean")
    scores.set(xlabel="epoch", ylabel="nSDR (dB)", title="validation nSDR")
    scores.legend(fontsize="small")
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)
