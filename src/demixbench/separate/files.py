"""``demixbench separate``: audio files through a trained model into ``<out_dir>/<name>/<target>.wav``.

For each input file (wav, flac, mp3, a MUSDB18 ``.stem.mp4``'s mixture stream, anything ffmpeg
reads), :func:`separate_files`

1. decodes it block by block into a float32 (2, samples) ``.npy`` at the model's sample rate
   (:func:`demixbench.data.audiofile.decode_audio_file`: mono duplicated, other rates resampled by
   ffmpeg, both logged),
2. separates that a segment at a time and streams the estimates into ``<target>.wav`` files
   (:func:`demixbench.separate.track.separate_mixture`, the pipeline's own path),

so memory depends on the segment length, not on the track's length. Everything for one input is
built in a hidden sibling directory (the decoded scratch copy included) that is renamed to
``<out_dir>/<name>/`` only once every target is written (:func:`demixbench.fileio.atomic_directory`):
a killed run leaves no directory that looks complete, and the next run removes its leftovers.

Checkpoints are resolved in one place, :func:`load_separator`: a run directory of the pipeline
(``results/<experiment>/models/<model>/seed<N>/``), a ``model.safetensors`` or a legacy
``model.pt``. Another format is one more entry in ``_LOADERS``.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from demixbench import SAMPLE_RATE
from demixbench.data.audiofile import AudioInfo, decode_audio_file, probe_audio
from demixbench.devices import resolve_device
from demixbench.fileio import atomic_directory
from demixbench.models.checkpoint import CheckpointError, load_checkpoint
from demixbench.separate.track import SeparationConfig, separate_mixture

log = logging.getLogger(__name__)

__all__ = ["LoadedSeparator", "OutputExistsError", "load_separator", "output_name", "separate_files"]

#: Weights a run directory may hold, in order of preference (model.pt: checkpoints of earlier versions).
RUN_WEIGHTS: tuple[str, ...] = ("model.safetensors", "model.pt")

#: The decoded mixture's name inside the directory being built; removed before it is renamed.
_SCRATCH_MIXTURE = ".mixture.npy"


class OutputExistsError(ValueError):
    """An output directory that already holds estimates, and overwriting was not asked for."""


@dataclass(frozen=True)
class LoadedSeparator:
    """A model ready to separate: forward (batch, 2, time) -> (batch, targets, 2, time) at `sample_rate`.

    Attributes:
        model: the separator, in eval mode, on the device it was loaded for.
        sample_rate: the rate it was trained at, in Hz; inputs are resampled to it.
        weights: the file its weights came from.
        name: how logs name it (the architecture).
    """

    model: nn.Module
    sample_rate: int
    weights: Path
    name: str


def _load_demixbench(weights: Path, device: torch.device) -> LoadedSeparator:
    """A checkpoint of this project: model.safetensors (or legacy model.pt) beside model.json."""
    model, meta = load_checkpoint(weights, map_location=device)
    train = (meta.get("config") or {}).get("train") or {}
    return LoadedSeparator(model, int(train.get("sample_rate") or SAMPLE_RATE), weights, str(meta.get("arch")))


def _load_demucs_release(weights: Path, device: torch.device) -> LoadedSeparator:
    """Demucs v1 weights as their authors released them (``.th``, ``.th.gz``), read without running
    code (demixbench.models.release); the model normalises by the whole track, as the authors did."""
    from demixbench.models import build_model
    from demixbench.models.release import load_demucs_v1_release

    args, state = load_demucs_v1_release(weights)
    model = build_model("demucs_v1", args)
    model.load_state_dict(state)
    return LoadedSeparator(model.to(device).eval(), SAMPLE_RATE, weights, "demucs_v1 (release)")


#: Weights-file suffix -> loader. A new checkpoint format is one function and one entry here.
_LOADERS: dict[str, Callable[[Path, torch.device], LoadedSeparator]] = {
    ".safetensors": _load_demixbench,
    ".pt": _load_demixbench,
    ".th": _load_demucs_release,
    ".gz": _load_demucs_release,
}


def resolve_checkpoint(path: Path) -> Path:
    """The weights file `path` names: itself, or for a run directory its model.safetensors (else a
    legacy model.pt). Raises CheckpointError naming `path` when there is none, or the format is unknown."""
    path = Path(path)
    if path.is_dir():
        for name in RUN_WEIGHTS:
            if (path / name).is_file():
                return path / name
        runs = sorted(p.parent.name for name in RUN_WEIGHTS for p in path.glob(f"*/{name}"))
        hint = f"; it holds the runs {', '.join(dict.fromkeys(runs))}: pass one of them" if runs else ""
        raise CheckpointError(f"{path}: no {' or '.join(RUN_WEIGHTS)} in this run directory{hint}")
    if not path.exists():
        raise CheckpointError(
            f"{path}: checkpoint not found; pass a run directory (results/<experiment>/models/<model>/seed<N>) "
            f"or its model.safetensors"
        )
    if path.suffix not in _LOADERS:
        raise CheckpointError(
            f"{path}: unknown checkpoint format {path.suffix or '(no suffix)'!r}; expected a run directory "
            f"or a {' or '.join(sorted(_LOADERS))} file"
        )
    return path


def load_separator(checkpoint: Path, device: torch.device) -> LoadedSeparator:
    """Resolve `checkpoint` (:func:`resolve_checkpoint`) and load its model onto `device`.
    Raises CheckpointError naming the file when it is missing or cannot be loaded."""
    weights = resolve_checkpoint(checkpoint)
    return _LOADERS[weights.suffix](weights, device)


def output_name(path: Path) -> str:
    """The output directory's name for an input file: its name without the audio suffix
    (``song.wav`` -> ``song``, ``Artist - Title.stem.mp4`` -> ``Artist - Title``)."""
    name = Path(path).name
    if name.lower().endswith(".stem.mp4"):
        return name[: -len(".stem.mp4")]
    return Path(name).stem or name


def _device(name: str) -> torch.device:
    device = resolve_device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda': CUDA is not available on this machine; use device 'cpu' or 'auto'")
    return device


def _plan_outputs(inputs: Sequence[Path], out_dir: Path, overwrite: bool) -> list[tuple[AudioInfo, Path]]:
    """Probe every input and choose its output directory before anything runs, so a bad input or a
    refused output stops the command before the first file is separated."""
    plan, seen = [], {}
    for path in inputs:
        info = probe_audio(Path(path))
        dest = Path(out_dir) / output_name(path)
        if dest in seen:
            raise ValueError(f"{path} and {seen[dest]} would both be separated into {dest}; rename one of them")
        seen[dest] = path
        if dest.exists() and not dest.is_dir():
            raise OutputExistsError(f"{dest}: exists and is not a directory; remove it or choose another --out")
        if dest.is_dir() and any(dest.iterdir()) and not overwrite:
            held = ", ".join(sorted(p.name for p in dest.iterdir())[:6])
            raise OutputExistsError(
                f"{dest}: already holds estimates ({held}); pass --overwrite to replace them, "
                "or choose another output directory"
            )
        plan.append((info, dest))
    return plan


def separate_files(
    inputs: Sequence[Path],
    checkpoint: Path,
    out_dir: Path,
    config: SeparationConfig,
    overwrite: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Separate each audio file of `inputs` with `checkpoint` into ``out_dir/<name>/<target>.wav``
    (float32 wav, (samples, 2) at the model's sample rate, as long as the input after resampling).

    Args:
        inputs: audio files (wav, flac, mp3, .stem.mp4, ...); a .stem.mp4's stream 0 (the mixture).
        checkpoint: a run directory, a model.safetensors or a legacy model.pt (:func:`load_separator`).
        out_dir: where the per-input directories go (created).
        config: segment, overlap, shifts, device, Wiener iterations, as for the pipeline.
        overwrite: replace existing output directories (each only once its replacement is complete).
        progress: tqdm bars over the decoded samples and the segments.
    Returns:
        The output directories, in the order of `inputs`.
    Raises:
        DatasetError: an input that is missing or undecodable (with ffmpeg's message), naming it.
        CheckpointError: a checkpoint that is missing or cannot be loaded, naming it.
        OutputExistsError: an output directory that holds estimates, unless `overwrite`.
        ValueError: CUDA asked for but unavailable; two inputs with the same output name.
    """
    resolve_checkpoint(Path(checkpoint))  # a wrong path is named before the inputs are probed
    plan = _plan_outputs(inputs, Path(out_dir), overwrite)
    device = _device(config.device)
    loaded = load_separator(Path(checkpoint), device)
    log.info(
        "%s (%s, %d Hz, targets %s) on %s",
        loaded.weights,
        loaded.name,
        loaded.sample_rate,
        ", ".join(loaded.model.targets),
        device,
    )
    done = []
    for info, dest in plan:
        started = time.perf_counter()
        old = None
        with atomic_directory(dest) as building:
            mixture = building / _SCRATCH_MIXTURE
            decoded = decode_audio_file(info.path, mixture, loaded.sample_rate, progress=progress, info=info)
            separate_mixture(
                loaded.model, mixture, building, config, device, loaded.sample_rate, loaded.name, progress=progress
            )
            mixture.unlink()
            if dest.exists():  # checked in _plan_outputs: empty, or to be overwritten
                old = dest.parent / f".{dest.name}.replaced-{os.getpid()}"
                os.rename(dest, old)
        if old is not None:
            shutil.rmtree(old)
        seconds = decoded.samples / decoded.sample_rate
        log.info(
            "separated %s (%.1f s at %d Hz) into %s in %.1f s",
            info.path,
            seconds,
            decoded.sample_rate,
            dest,
            time.perf_counter() - started,
        )
        done.append(dest)
    return done
