"""Settings that must agree with each other, checked in plain Python (no torch, no scipy).

The classes that enforce these rules at run time (STFTConfig, UNet, DemucsV1, the discriminators'
training setup, TrainConfig, the distributed batch split) call the functions here, and the
workflow's config check (workflow/rules/common.smk) calls the same functions while Snakemake builds
the DAG, so a config that a job would reject is refused before any job runs. The functions take
typed arguments and raise ValueError (TypeError for an unknown constructor argument); they know
nothing of the config file's layout: naming the key is the caller's job.

The ``*_args`` functions mirror a constructor's signature (names and defaults; tests check that
they match) and return its complete arguments, defaults filled in, after checking them.
"""

from __future__ import annotations

from typing import Any

from demixbench import TARGETS

#: The representation each architecture's loss compares, and each discriminator expects: the
#: classes' ``domain`` attributes (tests check that they match), readable without torch.
ARCHITECTURE_DOMAINS: dict[str, str] = {"demucs_v1": "waveform", "unet": "spectrogram"}
DISCRIMINATOR_DOMAINS: dict[str, str] = {"multiperiod": "waveform", "multiscale": "waveform", "patchgan": "spectrogram"}


# ---- the STFT and the models ------------------------------------------------------------------


def check_stft(n_fft: int, hop_length: int) -> None:
    """n_fft a positive power of two; hop_length in (0, n_fft] (a larger hop skips samples, which
    the inverse STFT cannot rebuild)."""
    if n_fft <= 0 or n_fft & (n_fft - 1):
        raise ValueError(f"stft.n_fft must be a positive power of two, got {n_fft}")
    if not 0 < hop_length <= n_fft:
        raise ValueError(f"stft.hop_length must be in (0, n_fft={n_fft}], got {hop_length}")


def check_unet(n_fft: int, hop_length: int, max_bins: int, channels, kernel_size: int, mask_extension: str) -> None:
    """The U-Net's STFT, its bins against its depth, and its kernel."""
    check_stft(n_fft, hop_length)
    n_bins = n_fft // 2 + 1
    if not 0 < max_bins <= n_bins:
        raise ValueError(f"max_bins must be in (0, {n_bins}] for n_fft={n_fft}, got {max_bins}")
    stride = 2 ** len(channels)
    if max_bins % stride:
        raise ValueError(f"max_bins={max_bins} must be a multiple of 2**len(channels)={stride}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        # "same" padding (kernel_size // 2) halves and doubles the sizes exactly only for odd kernels
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    if mask_extension not in ("zeros", "ones"):
        raise ValueError(f"mask_extension must be 'zeros' or 'ones', got {mask_extension!r}")


def unet_args(
    n_fft: int = 4096,
    hop_length: int = 1024,
    max_bins: int = 1024,
    channels: tuple[int, ...] = (16, 32, 64, 128, 256, 512),
    kernel_size: int = 5,
    dropout: float = 0.5,
    n_dropout_layers: int = 3,
    leaky_slope: float = 0.2,
    per_target: bool = False,
    mask_extension: str = "zeros",
    audio_channels: int = 2,
    targets: tuple[str, ...] = TARGETS,
) -> dict[str, Any]:
    """demixbench.models.UNet's arguments, checked, defaults filled in."""
    check_unet(n_fft, hop_length, max_bins, channels, kernel_size, mask_extension)
    return dict(locals())


#: Where Demucs v1's input is normalised (DemucsV1's ``normalize``): "segment", in forward, by each
#: input segment's own mono-mixture mean and std; "track", by the caller, with the statistics of the
#: whole track's mono mixture (the paper's, and what the released weights expect).
DEMUCS_NORMALIZATIONS: tuple[str, ...] = ("segment", "track")


def check_demucs(depth: int, kernel_size: int, stride: int, context: int, normalize: str = "segment") -> None:
    """Demucs v1's encoder and decoder convolutions, and where its input is normalised."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if not 1 <= stride <= kernel_size:
        raise ValueError(f"need 1 <= stride <= kernel_size, got stride={stride}, kernel_size={kernel_size}")
    if context < 1:
        raise ValueError(f"context must be >= 1, got {context}")
    if normalize not in DEMUCS_NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {', '.join(map(repr, DEMUCS_NORMALIZATIONS))}, got {normalize!r}")


def demucs_v1_args(
    audio_channels: int = 2,
    channels: int = 100,
    depth: int = 6,
    kernel_size: int = 8,
    stride: int = 4,
    context: int = 3,
    growth: float = 2.0,
    lstm_layers: int = 2,
    rescale: float = 0.1,
    targets: tuple[str, ...] = TARGETS,
    normalize: str = "segment",
) -> dict[str, Any]:
    """demixbench.models.DemucsV1's arguments, checked, defaults filled in."""
    check_demucs(depth, kernel_size, stride, context, normalize)
    return dict(locals())


ARCHITECTURE_ARGS = {"demucs_v1": demucs_v1_args, "unet": unet_args}


# ---- the discriminators of the GAN variants ----------------------------------------------------


def patchgan_args(in_channels: int = 10, channels: tuple[int, ...] = (32, 64, 128), kernel_size: int = 4) -> dict:
    """PatchGANDiscriminator's arguments, defaults filled in."""
    return dict(locals())


def multiscale_args(
    in_channels: int = 10,
    n_scales: int = 3,
    channels: int = 16,
    max_channels: int = 1024,
    downsampling: tuple[int, ...] = (4, 4, 4, 4),
) -> dict:
    """MultiScaleDiscriminator's arguments, defaults filled in."""
    return dict(locals())


def multiperiod_args(
    in_channels: int = 10,
    periods: tuple[int, ...] = (2, 3, 5, 7, 11),
    channels: tuple[int, ...] = (32, 128, 512, 1024, 1024),
    kernel_size: int = 5,
    stride: int = 3,
) -> dict:
    """MultiPeriodDiscriminator's arguments, defaults filled in."""
    return dict(locals())


DISCRIMINATOR_ARGS = {"multiperiod": multiperiod_args, "multiscale": multiscale_args, "patchgan": patchgan_args}


def discriminator_min_length(kind: str, args: dict[str, Any]) -> int:
    """The shortest waveform (samples) the discriminator `kind` with complete arguments `args` can
    take: MelGAN's scales reflection-pad by 7 samples after each halving; HiFi-GAN's period
    discriminators need each (kernel, 1) convolution to fit its padded input. 1 for spectrogram
    discriminators (PatchGAN's padded convolutions take any size)."""
    if kind == "multiscale":
        return 8 * 2 ** (args["n_scales"] - 1)
    if kind == "multiperiod":
        kernel, pad, widths = args["kernel_size"], (args["kernel_size"] - 1) // 2, list(args["channels"])

        def fits(rows: int) -> bool:
            for index in range(len(widths)):
                if rows + 2 * pad < kernel:
                    return False
                rows = (rows + 2 * pad - kernel) // (args["stride"] if index < len(widths) - 1 else 1) + 1
            return True

        rows = 1
        while not fits(rows):
            rows += 1
        return max((rows - 1) * period + 1 for period in args["periods"])  # ceil(length / period) >= rows
    return 1


def check_discriminator_domain(kind: str, arch: str) -> None:
    """A GAN variant's discriminator compares the representation its generator's loss is computed on."""
    model_domain, domain = ARCHITECTURE_DOMAINS[arch], DISCRIMINATOR_DOMAINS[kind]
    if domain != model_domain:
        compatible = sorted(name for name, other in DISCRIMINATOR_DOMAINS.items() if other == model_domain)
        raise ValueError(
            f"discriminator {kind!r} compares {domain} representations, but "
            f"{arch!r} is a {model_domain} model; use one of: {', '.join(compatible)}"
        )


def check_discriminator_channels(in_channels: int, n_targets: int, audio_channels: int) -> None:
    """A discriminator sees every target's channels and the mixture's (the condition)."""
    expected = (n_targets + 1) * audio_channels
    if in_channels != expected:
        raise ValueError(
            f"in_channels={in_channels}, but a model with {n_targets} targets and {audio_channels} audio "
            f"channels shows the discriminator (targets + mixture) x channels = {expected}"
        )


def check_discriminator_length(kind: str, min_length: int, segment: int) -> None:
    """The training segment (samples) fits the waveform discriminator (see discriminator_min_length)."""
    if segment < min_length:
        raise ValueError(
            f"the training segment ({segment} samples) is shorter than the {min_length} samples "
            f"discriminator {kind!r} needs; lengthen the segment or shrink the discriminator"
        )


def check_discriminator(
    kind: str, arch: str, in_channels: int, n_targets: int, audio_channels: int, min_length: int, segment: int
) -> None:
    """A GAN variant's discriminator against its generator: the representation it compares, the
    channels it sees, and the training segment (samples) it must fit."""
    check_discriminator_domain(kind, arch)
    check_discriminator_channels(in_channels, n_targets, audio_channels)
    check_discriminator_length(kind, min_length, segment)


# ---- lengths and the distributed batch ---------------------------------------------------------


def samples(seconds: float, sample_rate: int) -> int:
    """`seconds` in whole samples (as every stage rounds), refusing less than one sample."""
    count = int(seconds * sample_rate)
    if count < 1:
        raise ValueError(f"{seconds:g} s is less than one sample at {sample_rate} Hz")
    return count


def check_batch_split(batch_size: int, world_size: int) -> None:
    """The global batch of a multi-process run splits evenly over the processes."""
    if world_size < 1:
        raise ValueError(f"world size must be at least 1, got {world_size}")
    if batch_size % world_size:
        raise ValueError(
            f"batch_size={batch_size} is the global batch and must be divisible by the number of "
            f"processes ({world_size}); use a multiple of {world_size}, or another number of GPUs"
        )


def check_scoring_frames(win: int, hop: int) -> None:
    """Scoring frames (samples) that cover the whole track: a hop longer than the window would
    leave the samples between frames unscored."""
    if hop > win:
        raise ValueError(f"the hop ({hop} samples) is longer than the window ({win} samples)")


__all__ = [
    "ARCHITECTURE_ARGS",
    "ARCHITECTURE_DOMAINS",
    "DEMUCS_NORMALIZATIONS",
    "DISCRIMINATOR_ARGS",
    "DISCRIMINATOR_DOMAINS",
    "check_batch_split",
    "check_demucs",
    "check_discriminator",
    "check_discriminator_channels",
    "check_discriminator_domain",
    "check_discriminator_length",
    "check_scoring_frames",
    "check_stft",
    "check_unet",
    "discriminator_min_length",
    "samples",
]
