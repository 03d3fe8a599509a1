"""Training a separator (optionally with a discriminator) from the decoded cache.

Examples are random segments read from memory-mapped per-track arrays, with the usual MUSDB18
augmentations (sources remixed across tracks, channel swap, sign flip). Every epoch the model is
validated on the validation split (never the test split) with its loss and the MDX nSDR, and the
best-on-validation weights become the checkpoint.

Everything random is seeded from `TrainConfig.seed`: on CPU, the same seed and config give
bit-identical weights.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from demixbench import TARGETS
from demixbench.checkpoint import save_checkpoint
from demixbench.data import load_decoded
from demixbench.devices import resolve_device
from demixbench.fileio import atomic_write_text
from demixbench.models import build_discriminator, build_model
from demixbench.models.discriminators import discriminator_loss, feature_matching_loss, generator_adversarial_loss
from demixbench.scoring import nsdr
from demixbench.separate import separate

log = logging.getLogger(__name__)


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
    threads: int = 1
    sample_rate: int = 44100
    device: str = "auto"  # "auto" (CUDA when available), "cpu" or "cuda"

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

    def batch(self, rng: np.random.Generator, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        n_targets = len(self.targets)
        sources = np.empty((batch_size, n_targets, 2, self.segment), dtype=np.float32)
        for b in range(batch_size):
            same_track = int(rng.integers(len(self.tracks)))
            same_offset = float(rng.random())
            for s, target in enumerate(self.targets):
                if self.remix:
                    track, offset = int(rng.integers(len(self.tracks))), float(rng.random())
                else:
                    track, offset = same_track, same_offset
                chunk = self._read(self.tracks[track], target, offset)
                if self.channel_swap and rng.random() < 0.5:
                    chunk = chunk[::-1]
                if self.sign_flip and rng.random() < 0.5:
                    chunk = -chunk
                sources[b, s] = chunk
        sources_t = torch.from_numpy(sources)
        return sources_t.sum(dim=1), sources_t


def _validate(model: nn.Module, valid_dirs: Sequence[Path], config: TrainConfig, targets: Sequence[str], device: torch.device) -> dict[str, float]:
    """Validation on whole tracks: the model's reconstruction loss (averaged over segments of
    valid_segment_seconds, so memory stays bounded) and the nSDR per target of the full-track
    separation, averaged over tracks."""
    model.eval()
    segment = int(config.valid_segment_seconds * config.sample_rate)
    losses, scores = [], {t: [] for t in targets}
    with torch.no_grad():
        for track_dir in valid_dirs:
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
            for i, target in enumerate(targets):
                scores[target].append(nsdr(references[i], estimates[i]))
    result = {"valid_loss": float(np.mean(losses))}
    result.update({f"valid_nsdr_{t}": float(np.mean(v)) for t, v in scores.items()})
    result["valid_nsdr"] = float(np.mean([result[f"valid_nsdr_{t}"] for t in targets]))
    return result


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
) -> list[dict[str, float]]:
    """Train, validate every epoch, and write the best-on-validation checkpoint and the history.

    Args:
        model_spec: architecture and constructor arguments.
        config: optimisation and data settings, including the seed.
        train_dirs, valid_dirs: decoded track directories (see demixbench.data.decode_track).
        checkpoint: path of model.pt; model.json is written beside it.
        history_csv: per-epoch learning curves (history.json is written beside it).
        input_stats: (mean, std) per frequency bin, for models that normalise their input.
        gan: adversarial training settings, or None for the plain baseline.
        record: the resolved configuration to store in the checkpoint metadata.
    Returns:
        The history, one dict per epoch.
    """
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng([config.seed, 0x5EED])
    model = build_model(model_spec.arch, model_spec.args)
    if input_stats is not None and hasattr(model, "set_input_stats"):
        model.set_input_stats(torch.from_numpy(input_stats[0]), torch.from_numpy(input_stats[1]))
    targets = tuple(getattr(model, "targets", TARGETS))
    device = resolve_device(config.device)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    discriminator = opt_d = None
    if gan is not None:
        discriminator = build_discriminator(gan.discriminator, gan.discriminator_args).to(device)
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=gan.lr, betas=tuple(gan.betas))
    sampler = ChunkSampler(train_dirs, config.segment, config.remix, config.channel_swap, config.sign_flip, targets)
    log.info(
        "training %s (%d parameters%s) seed %d on %s, %d tracks, validating on %d",
        model_spec.arch,
        sum(p.numel() for p in model.parameters()),
        f", GAN with {gan.discriminator}" if gan else "",
        config.seed,
        device,
        len(train_dirs),
        len(valid_dirs),
    )

    history: list[dict[str, float]] = []
    best: dict[str, torch.Tensor] | None = None
    best_epoch, best_loss = -1, float("inf")
    step = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        started = time.perf_counter()
        sums = {"train_loss": 0.0, "train_adv": 0.0, "train_d": 0.0}
        bar = tqdm(range(config.steps_per_epoch), desc=f"epoch {epoch}/{config.epochs}", unit="step", leave=False)
        for _ in bar:
            mixture, sources = (x.to(device, non_blocking=True) for x in sampler.batch(rng, config.batch_size))
            loss, estimate, reference = model.separation_loss(mixture, sources)
            total = loss
            if discriminator is not None and step >= gan.warmup_steps:
                condition = model.condition(mixture)
                real_logits, real_features = discriminator(reference, condition)
                fake_logits, _ = discriminator(estimate.detach(), condition)
                d_loss = discriminator_loss(real_logits, fake_logits, gan.loss)
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                fake_logits, fake_features = discriminator(estimate, condition)
                adv = generator_adversarial_loss(fake_logits, gan.loss)
                total = total + gan.adv_weight * adv
                if gan.feature_match_weight > 0:
                    # Real features from before the discriminator update, detached (as MelGAN does).
                    total = total + gan.feature_match_weight * feature_matching_loss(real_features, fake_features)
                sums["train_adv"] += adv.item()
                sums["train_d"] += d_loss.item()
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            sums["train_loss"] += loss.item()
            step += 1
            bar.set_postfix(loss=f"{loss.item():.4f}")
        row = {"epoch": epoch, "step": step, **{k: v / config.steps_per_epoch for k, v in sums.items()}}
        row.update(_validate(model, valid_dirs, config, targets, device))
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        if row["valid_loss"] < best_loss:
            best_loss, best_epoch = row["valid_loss"], epoch
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        log.info(
            "epoch %d/%d  train %.4f  valid %.4f  nSDR %.2f dB%s  %.1f s",
            epoch, config.epochs, row["train_loss"], row["valid_loss"], row["valid_nsdr"],
            "  (best)" if best_epoch == epoch else "", row["seconds"],
        )

    model.load_state_dict(best)
    _write_history(history_csv, history)
    save_checkpoint(
        model,
        checkpoint,
        arch=model_spec.arch,
        args=model_spec.args,
        config={"model": asdict(model_spec), "train": asdict(config), "gan": asdict(gan) if gan else None, **(record or {})},
        extra={"best_epoch": best_epoch, "best_valid_loss": best_loss, "steps": step},
    )
    log.info("best epoch %d (valid loss %.4f) saved to %s", best_epoch, best_loss, checkpoint)
    return history


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    columns = list(history[0])
    lines = [",".join(columns)] + [",".join(repr(row[c]) for c in columns) for row in history]
    atomic_write_text(path, "\n".join(lines) + "\n")
    atomic_write_text(Path(path).with_suffix(".json"), json.dumps(history, indent=1))
