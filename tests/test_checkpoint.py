"""Tests of demixbench.models.checkpoint: safetensors weights with deterministic bytes, legacy torch
files loaded weights-only, and refused, damaged or empty files named in the error (issue 17)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from demixbench.models import build_model
from demixbench.models.checkpoint import (
    CheckpointError,
    convert_checkpoint,
    load_checkpoint,
    load_weights,
    metadata_path,
    save_checkpoint,
)

ARGS = {"n_fft": 256, "hop_length": 64, "max_bins": 64, "channels": [4, 8], "kernel_size": 5}


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("unet", ARGS)


def test_identical_weights_give_identical_bytes(tmp_path: Path) -> None:
    for name in ("a", "b"):
        save_checkpoint(small_model(), tmp_path / name / "model.safetensors", "unet", ARGS, config={"seed": 1})
    digest = [hashlib.sha256((tmp_path / n / "model.safetensors").read_bytes()).hexdigest() for n in "ab"]
    assert digest[0] == digest[1]
    other = tmp_path / "c" / "model.safetensors"
    save_checkpoint(small_model(seed=1), other, "unet", ARGS, config={})
    assert hashlib.sha256(other.read_bytes()).hexdigest() != digest[0]
    assert not (tmp_path / "a" / "model.safetensors").read_bytes().startswith(b"PK")  # not a zip/pickle


def test_round_trip_and_metadata(tmp_path: Path) -> None:
    model = small_model()
    path = tmp_path / "model.safetensors"
    save_checkpoint(model, path, "unet", ARGS, config={"x": 1})
    assert metadata_path(path) == tmp_path / "model.json"
    loaded, meta = load_checkpoint(path, expected_arch="unet")
    assert meta["arch"] == "unet" and meta["args"] == ARGS
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    with pytest.raises(ValueError, match="safetensors"):
        save_checkpoint(model, tmp_path / "model.pt", "unet", ARGS, config={})


def test_legacy_torch_file_loads_weights_only_with_a_deprecation_note(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = small_model()
    save_checkpoint(model, tmp_path / "model.safetensors", "unet", ARGS, config={})
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    with caplog.at_level(logging.WARNING):
        loaded, _ = load_checkpoint(tmp_path / "model.pt")
    assert "deprecated" in caplog.text and "convert_checkpoint" in caplog.text
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    converted = convert_checkpoint(tmp_path / "model.pt")
    assert converted == tmp_path / "model.safetensors"
    again, _ = load_checkpoint(converted)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())


class _RunsCode:
    """Unpickling this calls Path.touch on the marker: code a checkpoint must never get to run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "model.pt"
    torch.save({"weight": torch.zeros(2), "payload": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError) as error:
        load_weights(path)
    message = str(error.value)
    assert str(path) in message and "could run code" in message
    assert "weights_only=False" not in message
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00{not json", "not a readable safetensors file"),
        (b"garbage", "not a readable safetensors file"),
    ],
)
def test_damaged_weights_are_named(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=expected) as error:
        load_weights(path)
    assert str(path) in str(error.value)


def test_truncated_safetensors_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_checkpoint(small_model(), path, "unet", ARGS, config={})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)


def test_missing_metadata_and_wrong_arch(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_checkpoint(small_model(), path, "unet", ARGS, config={})
    with pytest.raises(CheckpointError, match="'unet' model, but 'demucs_v1' was requested"):
        load_checkpoint(path, expected_arch="demucs_v1")
    metadata_path(path).unlink()
    with pytest.raises(CheckpointError, match="model.json: checkpoint metadata missing"):
        load_checkpoint(path)
