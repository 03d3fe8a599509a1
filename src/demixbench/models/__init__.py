"""Model registry: architecture names (as written in config) -> classes.

A model entry in the workflow config names an ``arch`` and its constructor ``args``; a GAN variant
adds a ``gan`` block naming a discriminator. Adding a variant is a config edit; adding an
architecture is one class plus one line here. A separator provides what
:class:`demixbench.models.base.Separator` states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from demixbench.models.demucs import DemucsV1
from demixbench.models.discriminators import (
    DISCRIMINATORS,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    PatchGANDiscriminator,
)
from demixbench.models.unet import UNet

ARCHITECTURES: dict[str, type[nn.Module]] = {"demucs_v1": DemucsV1, "unet": UNet}


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: architecture name and its constructor arguments."""

    arch: str
    args: dict[str, Any] = field(default_factory=dict)


def _build(registry: dict[str, type[nn.Module]], what: str, name: str, args: dict[str, Any]) -> nn.Module:
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; allowed: {', '.join(sorted(registry))}")
    try:
        return registry[name](**args)
    except TypeError as err:  # unknown or missing constructor argument
        raise ValueError(f"bad arguments for {what} {name!r}: {err}") from err


def build_model(arch: str, args: dict[str, Any]) -> nn.Module:
    """Instantiate the separator `arch` with constructor arguments `args` (JSON-serialisable)."""
    return _build(ARCHITECTURES, "architecture", arch, args)


def build_discriminator(kind: str, args: dict[str, Any]) -> nn.Module:
    """Instantiate the discriminator `kind` with constructor arguments `args`."""
    return _build(DISCRIMINATORS, "discriminator", kind, args)


__all__ = [
    "ARCHITECTURES",
    "DISCRIMINATORS",
    "DemucsV1",
    "ModelSpec",
    "MultiPeriodDiscriminator",
    "MultiScaleDiscriminator",
    "PatchGANDiscriminator",
    "UNet",
    "build_discriminator",
    "build_model",
]
