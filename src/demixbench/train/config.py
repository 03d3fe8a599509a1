"""The settings of one training: ``TrainConfig`` (the config's ``train:`` section), ``GANConfig``
(its ``gan:`` block) and ``PRECISIONS``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from demixbench.constraints import samples

#: Training precisions: the autocast dtype of each (None: no autocast).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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
    valid_segment_seconds: float = 30.0  # inference segment used for validation nSDR
    lr_schedule: str = "constant"  # constant | cosine (per step) | step (every lr_step_epochs) | plateau
    lr_gamma: float = 0.3  # LR factor for "step" and "plateau"
    lr_step_epochs: int = 30
    lr_plateau_patience: int = 5  # epochs without improvement before "plateau" lowers the LR
    early_stopping_patience: int | None = None  # stop after this many epochs without improvement
    checkpoint_every_steps: int = 0  # also save the rolling state every N steps (0: each epoch only)
    log_every_steps: int = 50  # log the step scalars (losses, LR, gradient norm, ...) every N steps
    loader_workers: int = 0  # threads reading training examples ahead (0: read on demand)
    prefetch_batches: int = 2  # batches read ahead when loader_workers > 0
    threads: int = 1
    sample_rate: int = 44100
    device: str = "auto"  # "auto" (CUDA when available), "cpu" or "cuda"
    precision: str = "fp32"  # "fp32", or mixed precision "bf16" / "fp16" (see demixbench.train.loop)

    def __post_init__(self) -> None:
        if self.log_every_steps < 1:
            raise ValueError(f"log_every_steps must be at least 1, not {self.log_every_steps}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; allowed: {', '.join(PRECISIONS)}")
        samples(self.segment_seconds, self.sample_rate)
        samples(self.valid_segment_seconds, self.sample_rate)

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
