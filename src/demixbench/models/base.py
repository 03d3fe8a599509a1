"""What a separator must provide: the :class:`Separator` protocol.

The models do not inherit from it; it states, in one place, what the training loop
(demixbench.train), separation (demixbench.separate) and the discriminators use of a model, and
``isinstance(model, Separator)`` checks that a model has those members (not their signatures).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Separator(Protocol):
    """A source separation model (an ``nn.Module``), as the rest of the package uses one.

    Optional: ``set_input_stats(mean, std)``, per-bin mean and std (bins,) of the training
    mixtures' magnitude, for models that normalise their input with training-set statistics (the
    U-Net). The trainer calls it when the model has it and input stats are given; it is not a member
    of the protocol, so models without it (Demucs) satisfy it. Spectrogram models also provide
    ``stft`` and ``masks`` for Wiener filtering (demixbench.separate.apply).
    """

    #: The representation the loss compares and a discriminator must see: "spectrogram" or "waveform".
    domain: str
    #: Names of the estimated sources, in output order.
    targets: tuple[str, ...]

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """mixture (batch, channels, time) -> estimates (batch, targets, channels, time)."""
        ...

    def separation_loss(
        self, mixture: torch.Tensor, sources: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """mixture (batch, channels, time), sources (batch, targets, channels, time) ->
        (loss, estimate, reference): the scalar reconstruction loss, and the estimated and true
        sources in `domain`'s representation, (batch, targets, channels, ...): what a GAN
        discriminator compares."""
        ...

    def condition(self, mixture: torch.Tensor) -> torch.Tensor:
        """mixture (batch, channels, time) -> what a conditional discriminator sees besides the
        sources, in `domain`'s representation: (batch, channels, ...)."""
        ...
