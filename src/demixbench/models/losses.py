"""Adversarial losses for the GAN variants (see demixbench.models.discriminators).

Every discriminator returns a list of logit maps, one per sub-discriminator (scale, period or patch
map), and a flat list of feature maps; the losses below take those lists and average over them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _as_list(logits: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    # A bare tensor is one logit map (iterating over it would split the batch instead).
    if isinstance(logits, torch.Tensor):
        return [logits]
    if not logits:
        raise ValueError("empty list of logits")
    return list(logits)


def discriminator_loss_terms(
    real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor], kind: str
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The discriminator loss for `kind` "lsgan" (least squares, Mao et al. 2017) or "hinge" split
    into its term on true sources and its term on estimates, per logit map (one per
    sub-discriminator): ([real term per map], [fake term per map]), 0-d tensors."""
    real_logits, fake_logits = _as_list(real_logits), _as_list(fake_logits)
    if len(real_logits) != len(fake_logits):
        raise ValueError(f"{len(real_logits)} real but {len(fake_logits)} fake logit maps")
    if kind == "lsgan":
        return (
            [F.mse_loss(real, torch.ones_like(real)) for real in real_logits],
            [F.mse_loss(fake, torch.zeros_like(fake)) for fake in fake_logits],
        )
    if kind == "hinge":
        return [F.relu(1 - real).mean() for real in real_logits], [F.relu(1 + fake).mean() for fake in fake_logits]
    raise ValueError(f"unknown GAN loss {kind!r}; allowed: lsgan, hinge")


def discriminator_loss(
    real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor], kind: str
) -> torch.Tensor:
    """Discriminator loss for `kind` "lsgan" or "hinge" (discriminator_loss_terms), the two terms
    added per logit map and averaged over the maps."""
    real_terms, fake_terms = discriminator_loss_terms(real_logits, fake_logits, kind)
    return torch.stack([real + fake for real, fake in zip(real_terms, fake_terms, strict=True)]).mean()


def generator_adversarial_loss(fake_logits: Sequence[torch.Tensor], kind: str) -> torch.Tensor:
    """The generator's adversarial term for `kind` "lsgan" or "hinge", averaged over the logit maps."""
    fake_logits = _as_list(fake_logits)
    if kind == "lsgan":
        losses = [F.mse_loss(fake, torch.ones_like(fake)) for fake in fake_logits]
    elif kind == "hinge":
        losses = [-fake.mean() for fake in fake_logits]
    else:
        raise ValueError(f"unknown GAN loss {kind!r}; allowed: lsgan, hinge")
    return torch.stack(losses).mean()


def feature_matching_loss(real_features: Sequence[torch.Tensor], fake_features: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean L1 distance between the discriminator's feature maps on true and estimated sources
    (flat lists, in the same order); the real features are detached."""
    losses = [F.l1_loss(fake, real.detach()) for real, fake in zip(real_features, fake_features, strict=True)]
    return torch.stack(losses).mean()
