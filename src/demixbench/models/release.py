"""Demucs v1 weights as the authors released them, read without running code and converted to a
checkpoint of this project (model.safetensors + model.json).

The release format is what the v1 code's ``save_model`` wrote: ``torch.save((klass, args, kwargs,
state), path)``, where ``klass`` is the class ``demucs.model.Demucs``, ``args`` and ``kwargs`` the
positional and keyword arguments the model was built with, and ``state`` its state_dict (name ->
tensor); their ``load_model`` read it back with a plain ``torch.load`` and opened paths ending in
``.gz`` with gzip. Both torch formats occur: the legacy one (torch < 1.6, the 2019 release) and the
zip one.

A plain unpickling of such a file imports and calls whatever it names, so it could run any code.
Here it goes through torch's weights-only unpickler, which rebuilds tensors and plain containers
and refuses every other global. The one other global the format needs, the class reference, is
allowed under its name ``demucs.model.Demucs`` only, and is bound to :class:`_DemucsClass`, a
placeholder that cannot be instantiated (the unpickler may call an allowed global; calling this one
fails). A file that names anything else is refused with :class:`CheckpointError`, and nothing in it
runs.

The authors' constructor arguments are then mapped onto :class:`demixbench.models.demucs.DemucsV1`
(same state_dict keys and outputs for the same weights), with ``normalize="track"``: the released
weights were trained on tracks normalised by their whole mono mixture's mean and std and evaluated
the same way (the authors' ``raw.py`` and ``test.py``), which the separation and training stages
reproduce for such a model. Settings DemucsV1 does not implement (``upsample=True``,
``rewrite=False``, ``glu=False``, a number of sources other than 4) are refused, naming the file
and the argument, and the state_dict must match ``DemucsV1(**args)`` key for key and shape for
shape.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import pickle
import re
import zlib
from pathlib import Path
from typing import Any

import torch

from demixbench import TARGETS
from demixbench.constraints import demucs_v1_args
from demixbench.models.checkpoint import CheckpointError, load_checkpoint, save_state_checkpoint
from demixbench.models.demucs import DemucsV1

log = logging.getLogger(__name__)

__all__ = [
    "AUTHORS_ARGUMENTS",
    "CHECKPOINT_FORMATS",
    "FORMAT",
    "convert_checkpoint_file",
    "convert_demucs_v1_release",
    "load_demucs_v1_release",
]

#: The format's name, as the config (``external.<name>.format``) and model.json write it.
FORMAT = "demucs_v1_release"

#: The full name under which release files refer to the authors' model class.
_CLASS_NAME = "demucs.model.Demucs"

#: ``demucs.model.Demucs.__init__`` of the v1 code: its arguments in order, with their defaults
#: (a file records only the arguments its model was built with; the others take these).
AUTHORS_ARGUMENTS: tuple[tuple[str, Any], ...] = (
    ("sources", 4),
    ("audio_channels", 2),
    ("channels", 64),
    ("depth", 6),
    ("rewrite", True),
    ("glu", True),
    ("upsample", False),
    ("rescale", 0.1),
    ("kernel_size", 8),
    ("stride", 4),
    ("growth", 2.0),
    ("lstm_layers", 2),
    ("context", 3),
)

#: What DemucsV1 implements of the authors' switches, and why the other values are refused.
_FIXED = {
    "rewrite": (True, "DemucsV1 always has the 1x1 encoder and context decoder convolutions (rewrite=True)"),
    "glu": (True, "DemucsV1 uses GLU activations after those convolutions (glu=True)"),
    "upsample": (False, "DemucsV1 decodes with transposed convolutions, not Wave-U-Net upsampling (upsample=False)"),
}
_INTEGERS = ("sources", "audio_channels", "channels", "depth", "kernel_size", "stride", "lstm_layers", "context")
_NUMBERS = ("rescale", "growth")

_INSTANTIATED = "the release format's class reference demucs.model.Demucs is named only, never instantiated"

_REFUSED = (
    "refused: unpickling this file would have to {what}, so loading it could run code. Nothing in it "
    "was executed. A Demucs v1 release file holds only the class name demucs.model.Demucs, plain "
    "arguments and tensors; fetch the file again from the authors' release, and never load this one "
    "with a loader that allows code"
)


class _DemucsClass:
    """Stands for the class ``demucs.model.Demucs`` that a release file names, so that the file
    can be read without the authors' code. It cannot be instantiated: torch's weights-only
    unpickler lets a file call the globals it allows, and a call of this one fails."""

    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> _DemucsClass:
        raise pickle.UnpicklingError(_INSTANTIATED)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _unpickle(path: Path) -> Any:
    """torch.load of `path` (gzipped or not; recognised by its first bytes, not its suffix) with
    the weights-only unpickler, the class reference allowed as _DemucsClass."""
    source: Path | io.BytesIO = path
    if _is_gzip(path):
        try:
            with gzip.open(path, "rb") as f:
                source = io.BytesIO(f.read())
        except (OSError, EOFError, zlib.error) as error:
            raise CheckpointError(f"{path}: a damaged gzip file ({error}); fetch it again") from None
    try:
        with torch.serialization.safe_globals([(_DemucsClass, _CLASS_NAME)]):
            return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - bytes that are not a torch file fail in many ways
        # The weights-only unpickler stops at the first thing it does not allow, before calling
        # it. Its message advises weights_only=False, which would run it, so it is not passed on.
        raise _load_error(path, f"{type(error).__name__}: {error}") from None


def _load_error(path: Path, message: str) -> CheckpointError:
    named = re.search(r"GLOBAL (\S+)", message)
    if named and named.group(1).startswith("demucs."):
        return CheckpointError(
            f"{path}: holds a {named.group(1)}, not a {_CLASS_NAME}: only Demucs v1 models (the release's "
            "demucs.th, demucs_extra.th) can be converted. Nothing in the file was executed"
        )
    if named:
        return CheckpointError(f"{path}: " + _REFUSED.format(what=f"import and call {named.group(1)}"))
    if _INSTANTIATED in message:
        return CheckpointError(f"{path}: " + _REFUSED.format(what="call the class demucs.model.Demucs"))
    if "Unsupported operand" in message:  # an opcode the weights-only reader never accepts
        return CheckpointError(
            f"{path}: not a readable torch file: it holds a pickle instruction plain weights never use "
            "(damaged, not a torch file, or made to run code; nothing in it was executed). Fetch it again"
        )
    if re.search(r"reduce|new object|BUILD|Unsupported", message, flags=re.I):
        return CheckpointError(f"{path}: " + _REFUSED.format(what="call or build objects other than tensors"))
    first = message.strip().splitlines()[0] if message.strip() else "unreadable"
    return CheckpointError(
        f"{path}: not a readable torch file ({first}); a Demucs v1 release is a torch.save file, "
        "possibly gzipped (.th or .th.gz). Fetch it again"
    )


def _constructor_args(path: Path, args: Any, kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The authors' (args, kwargs) -> (their complete arguments, DemucsV1's arguments)."""
    names = [name for name, _ in AUTHORS_ARGUMENTS]
    if not isinstance(args, (tuple, list)) or not isinstance(kwargs, dict):
        raise CheckpointError(
            f"{path}: the constructor arguments are a {type(args).__name__} and a {type(kwargs).__name__}, "
            "not the tuple and dict demucs' save_model writes"
        )
    if len(args) > len(names):
        raise CheckpointError(f"{path}: {len(args)} positional arguments; Demucs v1 takes at most {len(names)}")
    given = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key not in names:
            raise CheckpointError(
                f"{path}: argument {key!r} is not one of Demucs v1's ({', '.join(names)}); "
                "a file of a later demucs release is not supported"
            )
        if key in given:
            raise CheckpointError(f"{path}: argument {key!r} given both by position and by name")
        given[key] = value
    settings = {**dict(AUTHORS_ARGUMENTS), **given}
    for key in _INTEGERS:
        if not isinstance(settings[key], int) or isinstance(settings[key], bool):
            raise CheckpointError(f"{path}: argument {key}={settings[key]!r} is not an integer")
    for key in _NUMBERS:
        if not isinstance(settings[key], (int, float)) or isinstance(settings[key], bool):
            raise CheckpointError(f"{path}: argument {key}={settings[key]!r} is not a number")
    for key, (supported, why) in _FIXED.items():
        if bool(settings[key]) != supported:  # the authors' code tests them for truth
            raise CheckpointError(
                f"{path}: argument {key}={settings[key]!r} is not supported: {why}; this model cannot be converted"
            )
    if settings["sources"] != len(TARGETS):
        raise CheckpointError(
            f"{path}: argument sources={settings['sources']}; DemucsV1 separates the {len(TARGETS)} MUSDB18 "
            f"sources ({', '.join(TARGETS)}, the authors' order)"
        )
    converted = {key: settings[key] for key in (*_INTEGERS[1:], *_NUMBERS)}
    converted.update(growth=float(settings["growth"]), rescale=float(settings["rescale"]))
    converted.update(targets=list(TARGETS), normalize="track")
    try:
        converted = demucs_v1_args(**converted)
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from None
    return settings, {**converted, "targets": list(converted["targets"])}


def _check_state(path: Path, state: Any, args: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The file's state_dict, float32, after checking it against DemucsV1(**args) (built on the meta
    device: shapes only, no memory)."""
    if not isinstance(state, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise CheckpointError(f"{path}: the state is a {type(state).__name__}, not a dict of named tensors")
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in DemucsV1(**args).state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(name for name in set(expected) & set(state) if tuple(state[name].shape) != expected[name])
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            problems.append(f"unexpected {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
        for name in wrong[:5]:
            problems.append(f"{name} has shape {tuple(state[name].shape)}, expected {expected[name]}")
        raise CheckpointError(
            f"{path}: the weights do not match a Demucs v1 with the file's own arguments: " + "; ".join(problems)
        )
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            raise CheckpointError(f"{path}: weight {name} is {tensor.dtype}, not floating point")
    return {name: tensor.float() for name, tensor in state.items()}


def load_demucs_v1_release(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a Demucs v1 release file (``.th`` or gzipped ``.th.gz``) without running code.

    Returns (DemucsV1's constructor arguments, normalize="track" included; the state_dict as
    float32 CPU tensors), so that ``DemucsV1(**args).load_state_dict(state)`` rebuilds the
    released model. Raises CheckpointError naming the file when it is missing, damaged, would run
    code to load, is not in the release format, holds settings DemucsV1 cannot represent, or
    holds weights that do not match its arguments.
    """
    return _load(Path(path))[1:]


def _load(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, torch.Tensor]]:
    """(the authors' complete arguments, DemucsV1's arguments, the state)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (the released Demucs v1 weights)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (an interrupted download?); fetch it again")
    content = _unpickle(path)
    if not (isinstance(content, tuple) and len(content) == 4):
        raise CheckpointError(
            f"{path}: holds a {type(content).__name__}, not the (class, args, kwargs, state) tuple the "
            "Demucs v1 release's save_model wrote (a file of a later demucs release, or a bare state_dict, "
            "does not say its architecture and is not supported)"
        )
    klass, args, kwargs, state = content
    if klass is not _DemucsClass:
        raise CheckpointError(f"{path}: the first item is a {type(klass).__name__}, not the class {_CLASS_NAME}")
    authors, converted = _constructor_args(path, args, kwargs)
    return authors, converted, _check_state(path, state, converted)


def convert_demucs_v1_release(path: Path, weights_out: Path, extra_metadata: dict[str, Any] | None = None) -> Path:
    """Convert a Demucs v1 release file (see :func:`load_demucs_v1_release`) into a checkpoint:
    ``weights_out`` (``model.safetensors``) and its ``model.json`` beside it, written atomically by
    :func:`demixbench.models.checkpoint.save_state_checkpoint`, loadable with ``load_checkpoint(
    weights_out, expected_arch="demucs_v1")``.

    model.json records the architecture and its arguments (``normalize: "track"``), ``config``
    empty (the weights were not trained by this pipeline), ``source`` (the file's name, sha256,
    the format and the authors' constructor arguments), ``normalization`` (what the weights
    expect), and ``extra_metadata`` (e.g. what the weights were trained on) at the top level.
    Returns ``weights_out``.
    """
    path, weights_out = Path(path), Path(weights_out)
    authors, args, state = _load(path)
    source = {"file": path.name, "sha256": _sha256(path), "format": FORMAT, "arguments": authors}
    normalization = {
        "normalize": "track",
        "statistics": "mean and std of the whole track's mono mixture",
        "as": "the authors' raw.py (training data) and test.py (evaluation)",
    }
    weights_out.parent.mkdir(parents=True, exist_ok=True)
    save_state_checkpoint(
        state,
        weights_out,
        "demucs_v1",
        args,
        config={},
        extra={"source": source, "normalization": normalization, **(extra_metadata or {})},
    )
    log.info(
        "converted %s (%s, sha256 %s, %d tensors) -> %s", path, FORMAT, source["sha256"][:12], len(state), weights_out
    )
    return weights_out


#: The checkpoint formats a config's ``external.<name>.format`` names: the Demucs authors' v1
#: release files, and this project's own checkpoints (a ``model.safetensors`` with its
#: ``model.json``, e.g. shared by another lab).
CHECKPOINT_FORMATS: tuple[str, ...] = (FORMAT, "demixbench")


def convert_checkpoint_file(
    path: Path, weights_out: Path, arch: str, file_format: str, extra_metadata: dict[str, Any] | None = None
) -> Path:
    """Released weights `path` of architecture `arch`, in `file_format` (one of CHECKPOINT_FORMATS),
    as a checkpoint of this project at `weights_out` (``model.safetensors``, ``model.json`` beside
    it), loaded without running code: a Demucs v1 release file through
    :func:`convert_demucs_v1_release`; a demixbench checkpoint rebuilt and checked against its
    model.json (:func:`demixbench.models.checkpoint.load_checkpoint`), then written again with
    ``source`` (file name, sha256, format) and `extra_metadata` added. Raises CheckpointError
    naming the file and the problem."""
    path = Path(path)
    if file_format == FORMAT:
        if arch != "demucs_v1":
            raise CheckpointError(f"{path}: the {FORMAT} format holds a 'demucs_v1' model, not {arch!r}")
        return convert_demucs_v1_release(path, weights_out, extra_metadata)
    if file_format != "demixbench":
        raise CheckpointError(
            f"{path}: unknown checkpoint format {file_format!r}; one of {', '.join(CHECKPOINT_FORMATS)}"
        )
    model, meta = load_checkpoint(path, expected_arch=arch)
    source = {"file": path.name, "sha256": _sha256(path), "format": "demixbench", "provenance": meta.get("provenance")}
    kept = {key: value for key, value in meta.items() if key not in ("arch", "args", "config", "provenance")}
    save_state_checkpoint(
        model.state_dict(),
        Path(weights_out),
        meta["arch"],
        meta["args"],
        config=meta.get("config", {}),
        extra={**kept, "source": source, **(extra_metadata or {})},
    )
    log.info("checked and copied %s (sha256 %s) -> %s", path, source["sha256"][:12], weights_out)
    return Path(weights_out)
