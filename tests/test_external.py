"""Methods the pipeline does not train: command templates, folders of estimates, and the checks and
copies that bring their estimates into the pipeline's layout (demixbench.separate.external,
demixbench.separate.estimates)."""

from __future__ import annotations

import shlex
import subprocess

import numpy as np
import pytest
import soundfile as sf

from demixbench import TARGETS
from demixbench.separate.estimates import EstimatesError, export_mixture, import_estimates, read_estimates
from demixbench.separate.external import check_template, estimate_dirs, estimates_root, format_command

RATE = 8000


def test_a_command_template_is_filled_with_quoted_values():
    command = format_command(
        "sep --in {mixture} --out {outdir} --name {track} --sr {sample_rate} -j {threads}",
        mixture="work/mix.wav",
        outdir="work/out/Synth 013 - Midnight's Heart",
        track="Synth 013 - Midnight's Heart",
        sample_rate=44100,
        threads=4,
    )
    words = shlex.split(command)
    assert words == [
        "sep", "--in", "work/mix.wav", "--out", "work/out/Synth 013 - Midnight's Heart",
        "--name", "Synth 013 - Midnight's Heart", "--sr", "44100", "-j", "4",
    ]  # fmt: skip


def test_a_track_name_cannot_inject_shell_code(tmp_path):
    marker = tmp_path / "marker"
    command = format_command(
        "echo {track} > {outdir}/name.txt # {mixture}",
        mixture="m.wav",
        outdir=str(tmp_path),
        track=f"x; touch {marker}",
        sample_rate=1,
        threads=1,
    )
    subprocess.run(["bash", "-c", command], check=True)
    assert not marker.exists()
    assert (tmp_path / "name.txt").read_text().strip() == f"x; touch {marker}"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("sep {mixture}", "must name {outdir}"),
        ("sep {outdir}", "must name {mixture}"),
        ("sep {mixture} {outdir} {gpu}", "unknown placeholder(s) {gpu}"),
        ("sep {mixture} {outdir} {", "literal brace"),
    ],
)
def test_a_bad_template_is_refused_with_the_reason(template, message):
    with pytest.raises(ValueError, match="command template") as error:
        check_template(template)
    assert message in str(error.value)


def test_literal_braces_pass_through():
    command = format_command(
        "awk '{{print}}' {mixture} > {outdir}/x", mixture="m", outdir="o", track="t", sample_rate=1, threads=1
    )
    assert command == "awk '{print}' m > o/x"


def test_a_glob_of_folders_is_seeds_in_sorted_order(tmp_path):
    for name in ("run_b", "run_a", "run_c.txt"):
        (tmp_path / name).mkdir() if not name.endswith(".txt") else (tmp_path / name).write_text("")
    assert estimate_dirs(str(tmp_path / "run_*")) == [tmp_path / "run_a", tmp_path / "run_b"]
    with pytest.raises(ValueError, match="matches no folder"):
        estimate_dirs(str(tmp_path / "nothing*"))


def test_museval_layout_is_recognised(tmp_path):
    (tmp_path / "test" / "Track A").mkdir(parents=True)
    assert estimates_root(tmp_path, "test", ["Track A"]) == tmp_path / "test"
    (tmp_path / "Track A").mkdir()
    assert estimates_root(tmp_path, "test", ["Track A"]) == tmp_path


def write_mixture(path, samples=RATE * 2, channels=2):
    mixture = np.random.default_rng(0).standard_normal((channels, samples)).astype(np.float32) * 0.1
    np.save(path, mixture)
    return mixture


def write_estimates(folder, samples=RATE * 2, rate=RATE, subtype="PCM_16", targets=TARGETS, channels=2):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for target in targets:
        audio = (rng.standard_normal((samples, channels)) * 0.1).clip(-1, 1)
        sf.write(folder / f"{target}.wav", audio, rate, subtype=subtype)


def test_estimates_are_checked_and_copied_as_float(tmp_path):
    write_mixture(tmp_path / "mixture.npy")
    write_estimates(tmp_path / "theirs")
    sf.write(tmp_path / "theirs" / "accompaniment.wav", np.zeros((RATE * 2, 2)), RATE)
    paths = import_estimates(
        tmp_path / "theirs", tmp_path / "mixture.npy", tmp_path / "ours", TARGETS, RATE, block=3000
    )
    assert [p.name for p in paths] == [f"{t}.wav" for t in TARGETS]
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == sorted(f"{t}.wav" for t in TARGETS)
    assert sf.info(tmp_path / "ours" / "vocals.wav").subtype == "FLOAT"
    theirs = np.stack([sf.read(tmp_path / "theirs" / f"{t}.wav", dtype="float32")[0].T for t in TARGETS])
    np.testing.assert_array_equal(read_estimates(tmp_path / "ours", TARGETS), theirs)  # PCM16 -> float is exact


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: write_estimates(d, targets=TARGETS[:3]), "missing estimate"),
        (lambda d: write_estimates(d, samples=RATE * 2 - 5), "5 fewer than the reference"),
        (lambda d: write_estimates(d, rate=RATE * 2, samples=RATE * 2), "sample rate 16000 Hz"),
        (lambda d: write_estimates(d, channels=1), "1 channel(s), the reference has 2"),
    ],
)
def test_bad_estimates_are_refused_naming_the_file_and_nothing_is_written(tmp_path, make, message):
    write_mixture(tmp_path / "mixture.npy")
    make(tmp_path / "theirs")
    with pytest.raises(EstimatesError, match="estimates cannot be scored") as error:
        import_estimates(tmp_path / "theirs", tmp_path / "mixture.npy", tmp_path / "ours", TARGETS, RATE)
    assert message in str(error.value) and str(tmp_path / "theirs") in str(error.value)
    assert not (tmp_path / "ours").exists() or not any((tmp_path / "ours").iterdir())


def test_estimates_with_nan_are_refused_naming_their_file_and_nothing_is_written(tmp_path):
    """A NaN in someone else's estimate (found block by block while copying, after the headers
    passed): their file is named with the sample's time, and no copy is left."""
    write_mixture(tmp_path / "mixture.npy")
    write_estimates(tmp_path / "theirs", subtype="FLOAT")
    audio, _ = sf.read(tmp_path / "theirs" / "bass.wav", dtype="float32")
    audio[RATE + 10, 1] = np.nan
    sf.write(tmp_path / "theirs" / "bass.wav", audio, RATE, subtype="FLOAT")
    with pytest.raises(EstimatesError) as error:
        import_estimates(tmp_path / "theirs", tmp_path / "mixture.npy", tmp_path / "ours", TARGETS, RATE, block=3000)
    message = str(error.value)
    assert (
        f"{tmp_path / 'theirs' / 'bass.wav'}: 1 samples are NaN or infinite, the first at 1.001 s (channel 1)"
        in message
    )
    assert "re-create them" in message and "Nothing was written" in message
    assert not (tmp_path / "ours").exists() or not any((tmp_path / "ours").iterdir())


def test_a_missing_folder_is_named(tmp_path):
    write_mixture(tmp_path / "mixture.npy")
    with pytest.raises(EstimatesError, match="no such folder of estimates"):
        import_estimates(tmp_path / "nothing", tmp_path / "mixture.npy", tmp_path / "ours", TARGETS, RATE)


def test_the_exported_mixture_is_the_decoded_one(tmp_path):
    mixture = write_mixture(tmp_path / "mixture.npy", samples=10_001)
    out = export_mixture(tmp_path / "mixture.npy", tmp_path / "mix.wav", RATE, block=4096)
    audio, rate = sf.read(out, dtype="float32")
    assert rate == RATE
    np.testing.assert_array_equal(audio.T, mixture)
