"""Every cross-key constraint a job would enforce is refused before any job, with the key named
(issue 17): the config check in workflow/rules/common.smk runs the checks of
demixbench.constraints, which the library classes run at run time."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from demixbench import constraints
from demixbench.models import ARCHITECTURES, DISCRIMINATORS, build_discriminator

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def load_demo() -> dict:
    return yaml.safe_load((REPO / "config/demo.yaml").read_text())


def dry_run(workdir: Path, config: dict) -> subprocess.CompletedProcess:
    path = workdir / "test-config.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile", str(path), "-n"]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=workdir)


def _set(*path_and_value):
    """An edit of the demo config: set config[path...] = value (the value last)."""
    *path, key, value = path_and_value

    def edit(config):
        node = config
        for part in path:
            node = node[part]
        node[key] = value

    return edit


def _both(*edits):
    def edit(config):
        for one in edits:
            one(config)

    return edit


# (id, edit, what the message must contain). The demo's models share their `args` and `train`
# dicts through YAML aliases (unet with unet_gan, demucs_v1 with demucs_v1_gan).
CASES = [
    (
        "stft-hop-longer-than-window",
        _both(_set("stft", "hop_length", 2048), _set("models", "unet", "args", "hop_length", 2048)),
        "config key stft: stft.hop_length must be in (0, n_fft=1024], got 2048",
    ),
    (
        "unet-max-bins-above-n-bins",
        _set("models", "unet", "args", "max_bins", 1024),
        "config key models.unet.args: max_bins must be in (0, 513] for n_fft=1024, got 1024",
    ),
    (
        "unet-max-bins-not-a-multiple-of-the-depth",
        _set("models", "unet", "args", "max_bins", 500),
        "config key models.unet.args: max_bins=500 must be a multiple of 2**len(channels)=32",
    ),
    (
        "unet-too-deep-for-max-bins",
        _set("models", "unet", "args", "channels", [8, 16, 32, 64, 128, 256, 512, 512, 512, 512]),
        "config key models.unet.args: max_bins=512 must be a multiple of 2**len(channels)=1024",
    ),
    (
        "unet-even-kernel",
        _set("models", "unet", "args", "kernel_size", 4),
        "config key models.unet.args: kernel_size must be odd, got 4",
    ),
    (
        "unet-mask-extension",
        _set("models", "unet", "args", "mask_extension", "twos"),
        "config key models.unet.args: mask_extension must be 'zeros' or 'ones'",
    ),
    (
        "unet-unknown-argument",
        _set("models", "unet", "args", "chanels", [8, 16]),
        "config key models.unet.args: unknown argument(s) chanels for 'unet'; allowed: n_fft, hop_length,",
    ),
    (
        "demucs-depth",
        _set("models", "demucs_v1", "args", "depth", 0),
        "config key models.demucs_v1.args: depth must be >= 1, got 0",
    ),
    (
        "demucs-stride-above-kernel",
        _set("models", "demucs_v1", "args", "stride", 10),
        "config key models.demucs_v1.args: need 1 <= stride <= kernel_size, got stride=10, kernel_size=8",
    ),
    (
        "demucs-context",
        _set("models", "demucs_v1", "args", "context", 0),
        "config key models.demucs_v1.args: context must be >= 1, got 0",
    ),
    (
        "demucs-normalize",
        _set("models", "demucs_v1", "args", "normalize", "song"),
        "config key models.demucs_v1.args: normalize must be one of 'segment', 'track', got 'song'",
    ),
    (
        "demucs-unknown-argument",
        _set("models", "demucs_v1", "args", "n_fft", 1024),
        "config key models.demucs_v1.args: unknown argument(s) n_fft for 'demucs_v1'",
    ),
    (
        "mono-model",
        _set("models", "demucs_v1", "args", "audio_channels", 1),
        "config key models.demucs_v1.args.audio_channels: 1; the decoded tracks are stereo: 2",
    ),
    (
        "model-without-every-target",
        _set("models", "unet", "args", "targets", ["vocals"]),
        "config key models.unet.args.targets: ['vocals']; every model separates",
    ),
    (
        "training-segment-under-one-sample",
        _set("models", "unet", "train", "segment_seconds", 1.0e-6),
        "config key models.unet.train.segment_seconds: 1e-06 s is less than one sample at 44100 Hz",
    ),
    (
        "validation-segment-under-one-sample",
        _set("models", "demucs_v1", "train", "valid_segment_seconds", 1.0e-6),
        "config key models.demucs_v1.train.valid_segment_seconds: 1e-06 s is less than one sample",
    ),
    (
        "batch-not-split-over-the-gpus",
        _set("resources", "train", "gpu", 3),  # the models, in key order, train with batches of 8
        "config key models.demucs_v1.train.batch_size (with resources.train.gpu): batch_size=8 is the global "
        "batch and must be divisible by the number of processes (3)",
    ),
    (
        "waveform-discriminator-for-a-spectrogram-model",
        _set("models", "unet_gan", "gan", "discriminator", "multiscale"),
        "config key models.unet_gan.gan.discriminator: discriminator 'multiscale' compares waveform "
        "representations, but 'unet' is a spectrogram model; use one of: patchgan",
    ),
    (
        "spectrogram-discriminator-for-a-waveform-model",
        _both(
            _set("models", "demucs_v1_gan", "gan", "discriminator", "patchgan"),
            _set("models", "demucs_v1_gan", "gan", "discriminator_args", {}),
        ),
        "config key models.demucs_v1_gan.gan.discriminator: discriminator 'patchgan' compares spectrogram",
    ),
    (
        "discriminator-in-channels",
        _set("models", "unet_gan", "gan", "discriminator_args", "in_channels", 8),
        "config key models.unet_gan.gan.discriminator_args.in_channels: in_channels=8, but a model with 4 "
        "targets and 2 audio channels shows the discriminator (targets + mixture) x channels = 10",
    ),
    (
        "discriminator-unknown-argument",
        _set("models", "demucs_v1_gan", "gan", "discriminator_args", "period", [2]),
        "config key models.demucs_v1_gan.gan.discriminator_args: unknown argument(s) period for 'multiperiod'",
    ),
    (
        "training-segment-shorter-than-the-discriminator",
        _both(
            _set("models", "demucs_v1_gan", "gan", "discriminator", "multiscale"),
            _set("models", "demucs_v1_gan", "gan", "discriminator_args", {"n_scales": 5}),
            _set("models", "demucs_v1", "train", "segment_seconds", 0.002),
        ),
        "config key models.demucs_v1_gan.train.segment_seconds: the training segment (88 samples) is shorter "
        "than the 128 samples discriminator 'multiscale' needs",
    ),
    (
        "separation-segment-under-one-sample",
        _set("separation", "segment_seconds", 1.0e-6),
        "config key separation.segment_seconds: 1e-06 s is less than one sample",
    ),
    (
        "scoring-window-under-one-sample",
        _set("scoring", "win_seconds", 1.0e-6),
        "config key scoring.win_seconds: 1e-06 s is less than one sample",
    ),
    (
        "scoring-hop-longer-than-window",
        _set("scoring", "hop_seconds", 2.0),
        "config key scoring.hop_seconds: the hop (88200 samples) is longer than the window (44100 samples); "
        "use at most scoring.win_seconds: 1.0",
    ),
    (
        "museval-on-cuda",
        _both(_set("scoring", "backend", "museval"), _set("scoring", "device", "cuda")),
        "config key scoring.device: 'cuda' needs scoring.backend 'fast'",
    ),
    (
        "excerpt-under-one-sample",
        _set("report", "excerpt_seconds", 1.0e-6),
        "config key report.excerpt_seconds: 1e-06 s is less than one sample",
    ),
    (
        "synthetic-musdb18-names-run-out",
        _both(_set("data", "synthetic", "names", "musdb18"), _set("data", "synthetic", "n_train", 101)),
        "config key data.synthetic: names='musdb18' has 100 train tracks, got n_train=101",
    ),
    # methods not trained by the pipeline (config `external`)
    (
        "external-command-without-outdir",
        _set("external", {"x": {"kind": "command", "trained_on": "undeclared", "command": "sep {mixture}"}}),
        "config key external.x.command: command template 'sep {mixture}': it must name {outdir}",
    ),
    (
        "external-command-unknown-placeholder",
        _set(
            "external", {"x": {"kind": "command", "trained_on": "undeclared", "command": "s {mixture} {outdir} {gpu}"}}
        ),
        "unknown placeholder(s) {gpu}",
    ),
    (
        "external-estimates-matching-nothing",
        _set("external", {"x": {"kind": "estimates", "trained_on": "undeclared", "dirs": "/nonexistent/run_*"}}),
        "config key external.x.dirs: /nonexistent/run_*: matches no folder of estimates",
    ),
    (
        "external-checkpoint-file-missing",
        _set(
            "external",
            {
                "x": {
                    "kind": "checkpoint",
                    "trained_on": "test-seen",
                    "arch": "demucs_v1",
                    "file": "/no/demucs.th",
                    "format": "demucs_v1_release",
                }
            },
        ),  # fmt: skip
        "config key external.x.file: /no/demucs.th: no such file",
    ),
    (
        "external-checkpoint-unknown-separation-key",
        _set(
            "external",
            {
                "x": {
                    "kind": "checkpoint",
                    "trained_on": "test-seen",
                    "arch": "demucs_v1",
                    "file": "/no/demucs.th",
                    "format": "demucs_v1_release",
                    "separation": {"shift": 10},
                }
            },
        ),  # fmt: skip
        "config key external.x.separation: unknown key(s) shift",
    ),
    (
        "external-key-of-another-kind",
        _set("external", {"x": {"kind": "estimates", "trained_on": "undeclared", "dirs": "d", "command": "c"}}),
        "external.x",
    ),
    (
        "external-name-taken-by-a-model",
        _set("external", {"unet": {"kind": "estimates", "trained_on": "undeclared", "dirs": "d"}}),
        "config key external.unet: the name is taken by a model or oracle",
    ),
]

#: Kept in the fast suite; the others are marked slow (each dry run takes a few seconds).
FAST = {
    "stft-hop-longer-than-window",
    "waveform-discriminator-for-a-spectrogram-model",
    "scoring-hop-longer-than-window",
    "external-command-without-outdir",
}


@pytest.mark.parametrize(
    "edit,message",
    [
        pytest.param(edit, message, id=name, marks=() if name in FAST else pytest.mark.slow)
        for name, edit, message in CASES
    ],
)
def test_a_config_a_job_would_reject_is_refused_before_any_job(tmp_path, edit, message):
    config = load_demo()
    edit(config)
    result = dry_run(tmp_path, config)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert message in output, output
    assert not (tmp_path / "results").exists()


# ---- the mirrors in demixbench.constraints match what they mirror ------------------------------


def _parameters(function) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_the_architecture_mirrors_match_the_constructors(arch):
    constructor = ARCHITECTURES[arch].__init__
    assert _parameters(constraints.ARCHITECTURE_ARGS[arch]) == _parameters(constructor)[1:]
    assert constraints.ARCHITECTURE_DOMAINS[arch] == ARCHITECTURES[arch].domain


@pytest.mark.parametrize("kind", sorted(DISCRIMINATORS))
def test_the_discriminator_mirrors_match_the_constructors(kind):
    assert _parameters(constraints.DISCRIMINATOR_ARGS[kind]) == _parameters(DISCRIMINATORS[kind].__init__)[1:]
    assert constraints.DISCRIMINATOR_DOMAINS[kind] == DISCRIMINATORS[kind].domain


@pytest.mark.parametrize(
    "kind,args",
    [
        ("multiscale", {"n_scales": 1, "channels": 4, "max_channels": 8, "downsampling": [2]}),
        ("multiscale", {"n_scales": 3, "channels": 4, "max_channels": 8, "downsampling": [2, 2]}),
        ("multiperiod", {"periods": [2, 3], "channels": [4, 8, 8], "kernel_size": 4, "stride": 3}),
        ("multiperiod", {"periods": [2, 3], "channels": [4, 8, 8], "kernel_size": 6, "stride": 2}),
        ("multiperiod", {"periods": [2, 3], "channels": [4, 8], "kernel_size": 5, "stride": 3}),
    ],
)
def test_the_discriminator_min_length_is_the_shortest_input_that_works(kind, args):
    torch = pytest.importorskip("torch")
    discriminator = build_discriminator(kind, args)
    shortest = constraints.discriminator_min_length(kind, constraints.DISCRIMINATOR_ARGS[kind](**args))

    def works(length):
        try:
            discriminator(torch.randn(1, 4, 2, length), torch.randn(1, 2, length))
        except RuntimeError:
            return False
        return True

    assert works(shortest) and works(shortest + 1)
    assert shortest == 1 or not works(shortest - 1)
