"""Set-up: the ffmpeg check of the Makefile, and the pins of the lock and the conda environment."""

from __future__ import annotations

import re
import shutil
import subprocess

import yaml

from conftest import REPO


def test_missing_ffmpeg_without_root_stops_with_one_line_naming_the_fix(tmp_path):
    # A PATH with no ffmpeg, and an `id` that says we are not root: nothing may be installed.
    fake_id = tmp_path / "id"
    fake_id.write_text("#!/bin/sh\necho 1000\n")
    fake_id.chmod(0o755)
    make = shutil.which("make")
    result = subprocess.run(
        [make, "--no-print-directory", "-C", str(REPO), "ffmpeg"],
        env={"PATH": str(tmp_path)}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "ffmpeg/ffprobe not found" in errors[0]
    for fix in ("apt-get install ffmpeg", "conda install -c conda-forge ffmpeg", "brew install ffmpeg"):
        assert fix in errors[0]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_lock_pins_the_required_versions():
    pins = _lock()
    assert pins["torch"] == "2.11.0" and pins["torchaudio"] == "2.11.0"
    assert pins["snakemake"].startswith("9.") and pins["dvc"].startswith("3.")
    for package in ("musdb", "museval", "pandas", "soundfile", "numpy", "scipy", "tqdm", "matplotlib", "pytest"):
        assert package in pins, package


def test_conda_environment_pins_agree_with_the_lock():
    env = yaml.safe_load((REPO / "envs/demixbench.yaml").read_text())
    pip_section = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    pins = _lock()
    checked = 0
    for requirement in pip_section:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", requirement)
        if match:
            name = match.group(1).lower().replace("_", "-")
            assert pins.get(name) == match.group(2), f"envs/demixbench.yaml pins {requirement}, the lock has {pins.get(name)}"
            checked += 1
    assert checked >= 10
    assert "ffmpeg" in env["dependencies"]
