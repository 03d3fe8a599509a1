"""Set-up: the ffmpeg and build-tools checks of the Makefile, the compiled scorer loop, the pins
of the lock and the conda environment, and the lint and format checks of `make lint`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO


def _make_fails_without_root(tmp_path, *arguments: str) -> list[str]:
    """`make ARGUMENTS` with PATH = tmp_path (plus what the test put there) and an `id` that says
    we are not root; checks that it fails, and returns its `error:` lines, of which there is one."""
    fake_id = tmp_path / "id"
    fake_id.write_text("#!/bin/sh\necho 1000\n")
    fake_id.chmod(0o755)
    make = shutil.which("make")
    result = subprocess.run(
        [make, "--no-print-directory", "-C", str(REPO), *arguments],
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    return errors


def test_missing_ffmpeg_without_root_stops_with_one_line_naming_the_fix(tmp_path):
    # A PATH with no ffmpeg, and an `id` that says we are not root: nothing may be installed.
    errors = _make_fails_without_root(tmp_path, "ffmpeg")
    assert "ffmpeg/ffprobe not found" in errors[0]
    for fix in ("apt-get install ffmpeg", "conda install -c conda-forge ffmpeg", "brew install ffmpeg"):
        assert fix in errors[0]


def test_missing_compiler_without_root_stops_with_one_line_naming_the_fix(tmp_path):
    # A PATH with this Python but no `cc`, and an `id` that says we are not root.
    (tmp_path / "python3").symlink_to(sys.executable)
    errors = _make_fails_without_root(tmp_path, "build-tools", f"PYTHON={tmp_path / 'python3'}")
    assert "_kernels.c" in errors[0] and "C compiler" in errors[0]
    for fix in ("apt-get install build-essential python3-dev", "conda install -c conda-forge c-compiler"):
        assert fix in errors[0]


def test_the_scorer_loop_is_compiled_with_the_package():
    """`pip install -e .` built the extension (setup.py): the scorer imports it."""
    from demixbench.score import _kernels

    assert callable(_kernels.frame_energies)


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
            assert pins.get(name) == match.group(2), (
                f"envs/demixbench.yaml pins {requirement}, the lock has {pins.get(name)}"
            )
            checked += 1
    assert checked >= 10
    assert "ffmpeg" in env["dependencies"]


def test_lock_pins_the_lint_tools_of_pyproject():
    """`make lint` and the test below run the versions pyproject.toml names (formatters change their
    output between releases, so an unpinned one would fail CI on a clean clone)."""
    lint = re.search(r"^lint = \[(.*)\]$", (REPO / "pyproject.toml").read_text(), flags=re.M).group(1)
    pins = _lock()
    for requirement in re.findall(r'"([^"]+)"', lint):
        name, version = requirement.split("==")
        assert pins.get(name) == version, (
            f"pyproject.toml lint pins {requirement}, requirements.lock has {pins.get(name)}"
        )


def test_code_is_lint_clean_and_formatted():
    """What `make lint` checks (besides snakemake --lint, which tests/test_workflow.py runs):
    ruff's lint rules and import order, ruff's formatting, snakefmt on the workflow."""
    bin_dir = Path(sys.executable).parent
    for command in (
        [bin_dir / "ruff", "check", "--no-cache", "."],
        [bin_dir / "ruff", "format", "--check", "--no-cache", "."],
        [bin_dir / "snakefmt", "--check", "Snakefile", "workflow/rules"],
    ):
        result = subprocess.run([str(part) for part in command], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (
            f"{' '.join(map(str, command[1:]))}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
