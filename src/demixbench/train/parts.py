"""The parts of a training run, built before the first step: the separator with its optimiser
and LR scheduler, the discriminator with its own (GAN variants), mixed precision, and where the
rolling state goes. They live on one object, :class:`Parts`, which knows which of them are
checkpointed (demucs' Solver keeps a run's state the same way); ``build_parts`` makes them and
``wrap_ddp`` wraps them for a multi-process run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from demixbench import TARGETS
from demixbench.constraints import DISCRIMINATOR_ARGS, check_discriminator, discriminator_min_length
from demixbench.models import ModelSpec, build_discriminator, build_model
from demixbench.train import distributed
from demixbench.train.config import PRECISIONS, GANConfig, TrainConfig
from demixbench.train.sampler import BatchLoader
from demixbench.train.state import _Progress, fingerprint, load_state, save_state


@dataclass
class Parts:
    """Everything of one run that trains and is checkpointed, built by build_parts (demucs' Solver
    keeps the same on one object): the separator with its optimiser and LR scheduler (None for
    "constant"), the discriminator with its optimiser (None without GAN), autocast and one loss
    scaler per optimiser, and where the rolling state goes (None without a work_dir) with the
    fingerprint a state on disk must match to be resumed.

    `generator` and `critic` are what the training step calls: the separation loss and the
    discriminator, or their DDP wrappers (see wrap_ddp). State dicts, validation and `condition`
    use the plain `model` and `discriminator`.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    discriminator: nn.Module | None
    opt_d: torch.optim.Optimizer | None
    amp: _MixedPrecision
    scaler: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler | None
    targets: tuple[str, ...]
    device: torch.device
    state_file: Path | None
    fingerprint: str
    generator: nn.Module = field(init=False)
    critic: nn.Module | None = field(init=False)

    def __post_init__(self) -> None:
        self.generator, self.critic = _SeparationLoss(self.model), self.discriminator

    def stateful(self) -> dict[str, Any]:
        """The parts of the rolling state by name (None: not part of this run)."""
        return {
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "discriminator": self.discriminator,
            "opt_d": self.opt_d,
            # A disabled GradScaler has no state to save (and refuses to load an empty one).
            "scaler": self.scaler if self.amp.scaling else None,
            "scaler_d": self.scaler_d if self.amp.scaling else None,
        }

    def resume(self, rng: np.random.Generator) -> _Progress:
        """Restore the parts and `rng` from a rolling state written with the same settings and
        return its progress; a fresh progress when there is none."""
        progress = (
            load_state(self.state_file, self.fingerprint, self.stateful(), rng, self.device)
            if self.state_file
            else None
        )
        return progress or _Progress()

    def save(self, progress: _Progress, loader: BatchLoader) -> None:
        """Write the rolling state (nothing without a work_dir)."""
        if self.state_file is not None:
            save_state(self.state_file, self.fingerprint, self.stateful(), loader.rng_state(), progress, self.device)


#: Entropy that separates the discriminator's random stream from the generator's (any fixed value;
#: changing it changes every GAN variant's discriminator initialisation).
_DISCRIMINATOR_STREAM = 0xD15C


def discriminator_seed(seed: int) -> int:
    """The seed of a GAN variant's discriminator initialisation: derived from the run's seed, and
    independent of the stream the generator (the baseline's model) draws from."""
    return int(np.random.SeedSequence([seed, _DISCRIMINATOR_STREAM]).generate_state(1)[0])


def build_parts(
    model_spec: ModelSpec,
    config: TrainConfig,
    gan: GANConfig | None,
    input_stats: tuple[np.ndarray, np.ndarray] | None,
    device: torch.device,
    multi: bool,
    work_dir: Path | None,
) -> Parts:
    """The separator (input stats set, BatchNorm synchronised in a multi-process run, on `device`)
    with its Adam optimiser and LR scheduler; for a GAN variant the discriminator, which must
    compare the separator's representation, with its own Adam; autocast and the loss scalers.
    The separator's weights are initialised from torch's generator as the caller seeded it, the
    discriminator's from a stream of its own (see discriminator_seed)."""
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
        # Common random numbers: the discriminator is initialised from a stream of its own, derived
        # from the seed, so the generator's stream (its initialisation above, then its dropout masks)
        # is the baseline's at the same seed, and "variant - baseline" at one seed is the effect of
        # the GAN alone. (Discriminators draw no random numbers in forward: tests/test_models.py.)
        # Built on the CPU, so only the CPU generator is forked and seeded: no CUDA state (or
        # context on every visible GPU of a multi-process run) is touched.
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(discriminator_seed(config.seed))
            discriminator = build_discriminator(gan.discriminator, gan.discriminator_args)
        discriminator.to(device)
        # the checks of the workflow's config check (demixbench.constraints)
        disc_args = DISCRIMINATOR_ARGS[gan.discriminator](**gan.discriminator_args)
        check_discriminator(
            gan.discriminator,
            model_spec.arch,
            disc_args["in_channels"],
            len(targets),
            model.audio_channels,
            discriminator_min_length(gan.discriminator, disc_args),
            config.segment,
        )
        if multi:
            discriminator = _sync_batchnorm(discriminator, device, f"discriminator {gan.discriminator!r}")
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=gan.lr, betas=gan.betas)
    amp = _MixedPrecision(config.precision, device)
    state_file = Path(work_dir) / "state.pt" if work_dir is not None else None
    return Parts(
        model,
        optimizer,
        scheduler,
        discriminator,
        opt_d,
        amp,
        amp.scaler(),
        amp.scaler() if gan is not None else None,
        targets,
        device,
        state_file,
        fingerprint(model_spec, config, gan),
    )


def _make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The LR scheduler of `config.lr_schedule`, or None for "constant". cosine and step are stepped
    after every optimiser step, plateau after every validation (with the validation loss)."""
    total_steps = config.epochs * config.steps_per_epoch
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.lr_step_epochs * config.steps_per_epoch, gamma=config.lr_gamma
        )
    if config.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.lr_gamma, patience=config.lr_plateau_patience
        )
    if config.lr_schedule == "constant":
        return None
    raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}; allowed: constant, cosine, step, plateau")


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


def wrap_ddp(parts: Parts) -> None:
    """Multi-process run: the training step calls DDP wrappers of the separation loss and of the
    discriminator, which average the gradients over the ranks in backward (the wrappers broadcast
    rank 0's weights when built, so this comes after any resume)."""
    device_ids = [parts.device.index] if parts.device.type == "cuda" else None
    parts.generator = DistributedDataParallel(parts.generator, device_ids=device_ids)
    if parts.discriminator is not None:
        parts.critic = DistributedDataParallel(parts.discriminator, device_ids=device_ids)


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
