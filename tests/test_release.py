"""Tests of demixbench.models.release: Demucs v1 weights in the authors' release format (what their
``save_model`` wrote: ``torch.save((demucs.model.Demucs, args, kwargs, state))``, possibly gzipped)
loaded without running code and converted to a checkpoint."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from demixbench.models.checkpoint import CheckpointError, load_checkpoint, metadata_path
from demixbench.models.demucs import DemucsV1
from demixbench.models.release import FORMAT, convert_demucs_v1_release, load_demucs_v1_release

#: The authors' keyword arguments of a small Demucs v1 (their defaults for the rest: channels=64
#: is theirs, so channels is always given here).
KWARGS = {"sources": 4, "audio_channels": 2, "channels": 4, "depth": 2, "lstm_layers": 1, "context": 3}
ARGS = {"channels": 4, "depth": 2, "lstm_layers": 1, "context": 3}


class _FakeDemucsModule:
    """Registers a module ``demucs.model`` with a class ``Demucs`` for as long as the context
    lasts, so that torch.save pickles the class by that name, as the authors' save_model did."""

    def __enter__(self) -> type:
        package, module = types.ModuleType("demucs"), types.ModuleType("demucs.model")

        class Demucs:
            pass

        Demucs.__module__, Demucs.__qualname__ = "demucs.model", "Demucs"
        module.Demucs, package.model = Demucs, module
        self.saved = {name: sys.modules.get(name) for name in ("demucs", "demucs.model")}
        sys.modules.update({"demucs": package, "demucs.model": module})
        return Demucs

    def __exit__(self, *exc) -> None:
        for name, module in self.saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {name: tensor.clone() for name, tensor in DemucsV1(**ARGS).state_dict().items()}


def _save_release(path: Path, state, args=(), kwargs=None, legacy: bool = False, gzipped: bool = False) -> Path:
    """Write `path` as the authors' save_model did (torch.save of (klass, args, kwargs, state))."""
    with _FakeDemucsModule() as klass:
        target = path.with_name(path.name + ".tmp") if gzipped else path
        torch.save(
            (klass, tuple(args), KWARGS if kwargs is None else kwargs, state),
            target,
            _use_new_zipfile_serialization=not legacy,
        )
    if gzipped:
        path.write_bytes(gzip.compress(target.read_bytes()))
        target.unlink()
    assert "demucs.model" not in sys.modules
    return path


def write_release_file(path: Path, **kwargs) -> Path:
    """A gzipped release-format file of a randomly initialised Demucs v1 built with the authors'
    keyword arguments `kwargs` (over KWARGS): what tests/test_workflow.py feeds the pipeline."""
    authors = {**KWARGS, **kwargs}
    ours = {key: value for key, value in authors.items() if key not in ("sources", "audio_channels")}
    torch.manual_seed(0)
    state = {name: tensor.clone() for name, tensor in DemucsV1(**ours).state_dict().items()}
    return _save_release(Path(path), state, kwargs=authors, gzipped=True)


@pytest.mark.parametrize(
    ("name", "legacy", "gzipped"),
    [("demucs.th", False, False), ("demucs.th.gz", False, True), ("legacy.th", True, False), ("old.th.gz", True, True)],
)
def test_a_release_file_loads_and_converts_to_the_same_model(tmp_path, name, legacy, gzipped):
    state = _state()
    path = _save_release(tmp_path / name, state, legacy=legacy, gzipped=gzipped)
    args, loaded = load_demucs_v1_release(path)
    assert args["normalize"] == "track" and args["channels"] == 4 and args["depth"] == 2
    assert args["targets"] == ["drums", "bass", "other", "vocals"]
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], v) for k, v in state.items())

    weights = convert_demucs_v1_release(path, tmp_path / "out" / "model.safetensors", {"trained_on": "musdb18-train"})
    model, meta = load_checkpoint(weights, expected_arch="demucs_v1")
    assert model.normalize == "track"
    assert meta["source"]["file"] == name and meta["source"]["format"] == FORMAT
    assert meta["source"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["source"]["arguments"]["channels"] == 4 and meta["source"]["arguments"]["upsample"] is False
    assert meta["normalization"]["normalize"] == "track" and meta["trained_on"] == "musdb18-train"
    assert json.loads(metadata_path(weights).read_text())["args"]["normalize"] == "track"

    reference = DemucsV1(**ARGS, normalize="track").eval()
    reference.load_state_dict(state)
    mixture = torch.randn(1, 2, 3000)
    with torch.no_grad():
        assert torch.equal(model(mixture), reference(mixture))


def test_positional_arguments_and_the_authors_defaults(tmp_path):
    """Positional arguments follow the authors' signature; what the file omits takes their
    defaults (channels=64 there, 100 in DemucsV1), so the arguments come from the file alone."""
    torch.manual_seed(0)
    state = DemucsV1(channels=64, depth=1, lstm_layers=0, kernel_size=4, stride=2).state_dict()
    path = _save_release(
        tmp_path / "positional.th",
        state,
        args=(4, 2),
        kwargs={"depth": 1, "lstm_layers": 0, "kernel_size": 4, "stride": 2},
    )
    args, _ = load_demucs_v1_release(path)
    assert args["channels"] == 64 and args["depth"] == 1 and args["lstm_layers"] == 0 and args["stride"] == 2


class _RunsCode:
    """Unpickling this runs os.system, which creates the marker file: code a release file must never run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("where", ["state", "kwargs", "class"])
@pytest.mark.parametrize("gzipped", [False, True])
def test_a_file_that_would_run_code_is_refused_and_nothing_runs(tmp_path, where, gzipped):
    marker = tmp_path / "code-ran"
    state, kwargs = _state(), dict(KWARGS)
    if where == "state":
        state["payload"] = _RunsCode(marker)
    elif where == "kwargs":
        kwargs["channels"] = _RunsCode(marker)
    path = tmp_path / ("evil.th.gz" if gzipped else "evil.th")
    if where == "class":
        content = (_RunsCode(marker), (), kwargs, state)
        torch.save(content, path.with_suffix(".tmp"))
        data = path.with_suffix(".tmp").read_bytes()
        path.write_bytes(gzip.compress(data) if gzipped else data)
    else:
        _save_release(path, state, kwargs=kwargs, gzipped=gzipped)
    with pytest.raises(CheckpointError) as error:
        load_demucs_v1_release(path)
    message = str(error.value)
    assert str(path) in message and "could run code" in message and "system" in message
    assert "weights_only" not in message
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        convert_demucs_v1_release(path, tmp_path / "out" / "model.safetensors")
    assert not marker.exists() and not (tmp_path / "out" / "model.safetensors").exists()


def test_the_class_reference_cannot_be_called(tmp_path):
    """The placeholder bound to demucs.model.Demucs is the one global the loader allows besides
    tensors; a file that calls it is refused too."""
    with _FakeDemucsModule() as klass:

        class CallsTheClass:
            def __reduce__(self):
                return (klass, ())

        torch.save((CallsTheClass(), (), KWARGS, _state()), tmp_path / "calls.th")
    with pytest.raises(CheckpointError, match="could run code"):
        load_demucs_v1_release(tmp_path / "calls.th")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({**KWARGS, "upsample": True}, "argument upsample=True is not supported"),
        ({**KWARGS, "rewrite": False}, "argument rewrite=False is not supported"),
        ({**KWARGS, "glu": False}, "argument glu=False is not supported"),
        ({**KWARGS, "sources": 2}, "argument sources=2"),
        ({**KWARGS, "samplerate": 44100}, "argument 'samplerate' is not one of Demucs v1's"),
        ({**KWARGS, "channels": "4"}, "argument channels='4' is not an integer"),
        ({**KWARGS, "stride": 16}, "stride <= kernel_size"),
    ],
)
def test_settings_demucs_v1_cannot_represent_are_refused(tmp_path, kwargs, expected):
    path = _save_release(tmp_path / "unsupported.th", _state(), kwargs=kwargs)
    with pytest.raises(CheckpointError, match=expected) as error:
        load_demucs_v1_release(path)
    assert str(path) in str(error.value)


def test_weights_that_do_not_match_the_arguments_are_refused(tmp_path):
    state = _state()
    state["encoder.9.0.weight"] = state.pop("encoder.1.0.weight")
    path = _save_release(tmp_path / "renamed.th", state)
    with pytest.raises(CheckpointError, match=r"missing encoder\.1\.0\.weight; unexpected encoder\.9\.0\.weight"):
        load_demucs_v1_release(path)
    state = _state()
    state["lstm.linear.bias"] = torch.zeros(3)
    path = _save_release(tmp_path / "shape.th", state)
    with pytest.raises(CheckpointError, match=r"lstm\.linear\.bias has shape \(3,\)") as error:
        load_demucs_v1_release(path)
    assert str(path) in str(error.value)


def test_files_not_in_the_release_format_are_named(tmp_path):
    bare = tmp_path / "state_dict.th"
    torch.save(_state(), bare)
    with pytest.raises(CheckpointError, match="not the \\(class, args, kwargs, state\\) tuple"):
        load_demucs_v1_release(bare)
    (tmp_path / "garbage.th").write_bytes(b"not a torch file at all" * 4)
    with pytest.raises(CheckpointError, match="not a readable torch file"):
        load_demucs_v1_release(tmp_path / "garbage.th")
    (tmp_path / "broken.th.gz").write_bytes(gzip.compress(b"x" * 100)[:20])
    with pytest.raises(CheckpointError, match="damaged gzip"):
        load_demucs_v1_release(tmp_path / "broken.th.gz")
    (tmp_path / "empty.th").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        load_demucs_v1_release(tmp_path / "empty.th")
    with pytest.raises(CheckpointError, match="no such file"):
        load_demucs_v1_release(tmp_path / "missing.th")


def test_a_checkpoint_file_of_either_format_converts_with_its_source_recorded(tmp_path):
    from demixbench.models.checkpoint import load_checkpoint, save_checkpoint
    from demixbench.models.release import convert_checkpoint_file

    release = write_release_file(tmp_path / "demucs.th.gz")
    out = convert_checkpoint_file(release, tmp_path / "a/model.safetensors", "demucs_v1", FORMAT, {"trained_on": "x"})
    model, meta = load_checkpoint(out, expected_arch="demucs_v1")
    assert meta["source"]["format"] == FORMAT and meta["trained_on"] == "x" and model.normalize == "track"
    with pytest.raises(CheckpointError, match="holds a 'demucs_v1' model, not 'unet'"):
        convert_checkpoint_file(release, tmp_path / "b/model.safetensors", "unet", FORMAT)
    # a checkpoint of this project, as another lab would share it
    ours = tmp_path / "shared/model.safetensors"
    ours.parent.mkdir()
    save_checkpoint(model, ours, "demucs_v1", meta["args"], {"train": {"seed": 3}})
    copied = convert_checkpoint_file(
        ours, tmp_path / "c/model.safetensors", "demucs_v1", "demixbench", {"trained_on": "y"}
    )
    again, copied_meta = load_checkpoint(copied)
    assert copied_meta["source"]["format"] == "demixbench" and copied_meta["config"] == {"train": {"seed": 3}}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    with pytest.raises(CheckpointError, match="'unet' was requested"):
        convert_checkpoint_file(ours, tmp_path / "d/model.safetensors", "unet", "demixbench")
