"""``demixbench separate`` (issue 14): audio files of several formats through a checkpoint into
one wav per target, the same samples as separating the array in memory; mono and other rates;
errors naming the file; outputs that appear only complete; the command line."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from demixbench import TARGETS
from demixbench.cli import build_parser, main
from demixbench.data.audiofile import AudioInfo, iter_audio_blocks
from demixbench.data.layout import DatasetError
from demixbench.models import build_model
from demixbench.models.checkpoint import CheckpointError, save_checkpoint
from demixbench.separate import files as files_module
from demixbench.separate.apply import separate
from demixbench.separate.files import OutputExistsError, output_name, separate_files
from demixbench.separate.track import SeparationConfig

ARGS = {"n_fft": 256, "hop_length": 64, "max_bins": 64, "channels": [4, 8], "kernel_size": 5}
RATE = 44100
#: 0.5 s segments over 1.3 s inputs: several overlapping segments and a shorter last step.
CONFIG = SeparationConfig(segment_seconds=0.5, overlap=0.25, device="cpu")
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run directory as the pipeline writes it: model.safetensors + model.json of a tiny U-Net."""
    folder = tmp_path_factory.mktemp("models") / "unet" / "seed1"
    torch.manual_seed(0)
    save_checkpoint(
        build_model("unet", ARGS), folder / "model.safetensors", "unet", ARGS, {"train": {"sample_rate": RATE}}
    )
    return folder


@pytest.fixture(scope="module")
def model(run_dir):
    from demixbench.models.checkpoint import load_checkpoint

    return load_checkpoint(run_dir / "model.safetensors")[0]


def noise(samples: int = int(1.3 * RATE), channels: int = 2, seed: int = 0) -> np.ndarray:
    """(samples, channels) float32 on the 16-bit grid, so 16-bit files hold it exactly."""
    rng = np.random.default_rng(seed)
    return (np.round(rng.uniform(-0.4, 0.4, (samples, channels)) * 32768) / 32768).astype(np.float32)


def reference(model, audio: np.ndarray) -> np.ndarray:
    """The in-memory separation of (samples, channels) audio -> (targets, channels, samples)."""
    segment = int(CONFIG.segment_seconds * RATE)
    return separate(model, np.ascontiguousarray(audio.T), segment, overlap=CONFIG.overlap)


def read_outputs(directory: Path) -> np.ndarray:
    arrays = []
    for target in TARGETS:
        audio, rate = sf.read(directory / f"{target}.wav", dtype="float32", always_2d=True)
        assert rate == RATE
        arrays.append(audio.T)
    return np.stack(arrays)


def test_wav_and_flac_give_the_in_memory_separation(run_dir, model, tmp_path):
    audio = noise()
    sf.write(tmp_path / "song.wav", audio, RATE, subtype="FLOAT")
    sf.write(tmp_path / "other take.flac", audio[::-1].copy(), RATE, subtype="PCM_16")
    out = tmp_path / "out"
    dirs = separate_files([tmp_path / "song.wav", tmp_path / "other take.flac"], run_dir, out, CONFIG, progress=False)
    assert dirs == [out / "song", out / "other take"]
    assert sorted(p.name for p in out.iterdir()) == ["other take", "song"]  # no scratch or partial left
    for directory, source in zip(dirs, (audio, audio[::-1]), strict=True):
        assert sorted(p.name for p in directory.iterdir()) == sorted(f"{t}.wav" for t in TARGETS)
        estimates = read_outputs(directory)
        assert estimates.shape == (len(TARGETS), 2, len(audio))
        np.testing.assert_allclose(estimates, reference(model, source), rtol=0, atol=1e-6)


@needs_ffmpeg
def test_stem_mp4_separates_its_mixture_stream(run_dir, model, tmp_path):
    """Stream 0 of a 5-stream AAC .stem.mp4 is the mixture; the other streams are different audio."""
    sources = []
    for k in range(5):
        path = tmp_path / f"stream{k}.wav"
        sf.write(path, noise(seed=k) * (1.0 if k == 0 else 0.1), RATE, subtype="PCM_16")
        sources.append(path)
    mp4 = tmp_path / "Artist - Title.stem.mp4"
    command = ["ffmpeg", "-nostdin", "-v", "error"]
    for path in sources:
        command += ["-i", str(path)]
    for k in range(5):
        command += ["-map", f"{k}:a"]
    result = subprocess.run([*command, "-c:a", "aac", "-b:a", "256k", str(mp4)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"ffmpeg cannot write AAC mp4 here: {result.stderr[-200:]!r}")
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(mp4), "-map", "0:a:0", "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"],
        capture_output=True,
        check=True,
    ).stdout
    mixture = np.frombuffer(decoded, dtype="<f4").reshape(-1, 2)
    (directory,) = separate_files([mp4], run_dir, tmp_path / "out", CONFIG, progress=False)
    assert directory.name == "Artist - Title"
    np.testing.assert_allclose(read_outputs(directory), reference(model, mixture), rtol=0, atol=1e-6)


def test_mono_input_is_duplicated_to_stereo_with_a_log_line(run_dir, model, tmp_path, caplog):
    mono = noise(channels=1)
    sf.write(tmp_path / "mono.wav", mono, RATE, subtype="PCM_16")
    with caplog.at_level(logging.INFO, logger="demixbench"):
        (directory,) = separate_files([tmp_path / "mono.wav"], run_dir, tmp_path / "out", CONFIG, progress=False)
    assert "mono.wav: mono, duplicated to stereo" in caplog.text
    np.testing.assert_allclose(read_outputs(directory), reference(model, np.repeat(mono, 2, axis=1)), atol=1e-6)


@needs_ffmpeg
def test_48khz_input_is_resampled_to_the_model_rate_with_a_log_line(run_dir, tmp_path, caplog):
    sf.write(tmp_path / "high.wav", noise(samples=48000 * 2), 48000, subtype="PCM_16")
    with caplog.at_level(logging.INFO, logger="demixbench"):
        (directory,) = separate_files([tmp_path / "high.wav"], run_dir, tmp_path / "out", CONFIG, progress=False)
    assert "resampling 48000 Hz -> 44100 Hz" in caplog.text
    assert read_outputs(directory).shape == (len(TARGETS), 2, 2 * RATE)


def test_missing_and_undecodable_inputs_are_named_before_anything_runs(run_dir, tmp_path):
    sf.write(tmp_path / "good.wav", noise(), RATE)
    with pytest.raises(DatasetError, match=r"missing\.wav: no such audio file"):
        separate_files([tmp_path / "good.wav", tmp_path / "missing.wav"], run_dir, tmp_path / "out", CONFIG)
    (tmp_path / "broken.wav").write_bytes(b"not audio at all")
    with pytest.raises(DatasetError, match=r"broken\.wav: unreadable wav"):
        separate_files([tmp_path / "good.wav", tmp_path / "broken.wav"], run_dir, tmp_path / "out", CONFIG)
    sf.write(tmp_path / "surround.wav", noise(channels=3), RATE)
    with pytest.raises(DatasetError, match=r"surround\.wav: 3 channels; .* -ac 2"):
        separate_files([tmp_path / "surround.wav"], run_dir, tmp_path / "out", CONFIG)
    assert not (tmp_path / "out").exists()  # the good file was not separated either


@needs_ffmpeg
def test_undecodable_compressed_input_carries_ffmpegs_message(run_dir, tmp_path):
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(DatasetError, match=r"broken\.mp3: unreadable \(ffprobe"):
        separate_files([broken], run_dir, tmp_path / "out", CONFIG)
    # A header ffprobe accepts but a stream ffmpeg cannot decode fails while decoding, named too.
    info = AudioInfo(broken, RATE, 2, RATE, 1, "ffmpeg")
    with pytest.raises(DatasetError, match=r"broken\.mp3: undecodable \(ffmpeg exit \d+: .+\)"):
        list(iter_audio_blocks(info, RATE))


def test_checkpoints_are_resolved_or_refused_naming_the_file(run_dir, model, tmp_path):
    sf.write(tmp_path / "a.wav", noise(), RATE)
    with pytest.raises(CheckpointError, match=r"nowhere: checkpoint not found"):
        separate_files([tmp_path / "a.wav"], tmp_path / "nowhere", tmp_path / "out", CONFIG)
    with pytest.raises(CheckpointError, match=r"seed1: pass one of them"):  # the model's directory of seeds
        separate_files([tmp_path / "a.wav"], run_dir.parent, tmp_path / "out", CONFIG)
    with pytest.raises(CheckpointError, match=r"model\.json: unknown checkpoint format '\.json'"):
        separate_files([tmp_path / "a.wav"], run_dir / "model.json", tmp_path / "out", CONFIG)
    # A legacy model.pt (torch's format) in a run directory still loads, with model.json beside it.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    torch.save(model.state_dict(), legacy / "model.pt")
    shutil.copy(run_dir / "model.json", legacy / "model.json")
    (directory,) = separate_files([tmp_path / "a.wav"], legacy, tmp_path / "out", CONFIG, progress=False)
    np.testing.assert_allclose(read_outputs(directory), reference(model, noise()), atol=1e-6)


def test_existing_estimates_are_refused_unless_overwrite(run_dir, model, tmp_path):
    sf.write(tmp_path / "a.wav", noise(), RATE)
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / "vocals.wav").write_bytes(b"an earlier estimate")
    with pytest.raises(OutputExistsError, match=r"out/a: already holds estimates \(vocals\.wav\).*--overwrite"):
        separate_files([tmp_path / "a.wav"], run_dir, out, CONFIG)
    assert (out / "a" / "vocals.wav").read_bytes() == b"an earlier estimate"
    separate_files([tmp_path / "a.wav"], run_dir, out, CONFIG, overwrite=True, progress=False)
    np.testing.assert_allclose(read_outputs(out / "a"), reference(model, noise()), atol=1e-6)
    assert sorted(p.name for p in out.iterdir()) == ["a"]  # the replaced directory is gone
    with pytest.raises(ValueError, match=r"would both be separated into"):
        sf.write(tmp_path / "a.flac", noise(), RATE)
        separate_files([tmp_path / "a.wav", tmp_path / "a.flac"], run_dir, tmp_path / "new", CONFIG)


def test_a_failed_separation_leaves_no_output_directory(run_dir, tmp_path, monkeypatch):
    sf.write(tmp_path / "a.wav", noise(), RATE)
    real = files_module.separate_mixture

    def fail_after_writing(model, mixture, out_dir, *args, **kwargs):
        real(model, mixture, out_dir, *args, **kwargs)
        raise RuntimeError("killed")

    monkeypatch.setattr(files_module, "separate_mixture", fail_after_writing)
    with pytest.raises(RuntimeError, match="killed"):
        separate_files([tmp_path / "a.wav"], run_dir, tmp_path / "out", CONFIG, progress=False)
    assert list((tmp_path / "out").iterdir()) == []  # neither a/ nor the hidden directory it was built in


def test_output_names():
    assert output_name(Path("x/Artist - Title.stem.mp4")) == "Artist - Title"
    assert output_name(Path("song.v2.flac")) == "song.v2"


def test_command_line(run_dir, model, tmp_path, capsys):
    sf.write(tmp_path / "a.wav", noise(), RATE)
    out = tmp_path / "out"
    argv = ["separate", str(run_dir), str(tmp_path / "a.wav"), "-o", str(out), "--segment", "0.5", "--device", "cpu"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(out / "a")
    np.testing.assert_allclose(read_outputs(out / "a"), reference(model, noise()), atol=1e-6)
    assert main(argv) == 1  # the estimates exist now
    assert "already holds estimates" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--overlap", "0.5"]) == 0
    capsys.readouterr()
    assert main(["separate", str(tmp_path / "none"), str(tmp_path / "a.wav"), "-o", str(out)]) == 1
    assert "none: checkpoint not found" in capsys.readouterr().err
    options = build_parser().parse_args([*argv, "--wiener", "2", "--shifts", "3", "--overwrite"])
    assert (options.wiener, options.shifts, options.overwrite, options.segment) == (2, 3, True, 0.5)
    for bad in (["--overlap", "1"], ["--shifts", "-1"], ["--segment", "0"], ["--device", "tpu"]):
        with pytest.raises(SystemExit):
            main([*argv, *bad])


def test_a_demucs_v1_release_file_separates_as_its_converted_checkpoint(tmp_path):
    """The authors' release format straight from the command line: the same estimates as the
    checkpoint the pipeline converts it into (track normalisation included)."""
    from test_release import write_release_file

    from demixbench.models.checkpoint import load_checkpoint
    from demixbench.models.release import convert_demucs_v1_release

    release = write_release_file(tmp_path / "demucs.th.gz")
    converted, _ = load_checkpoint(convert_demucs_v1_release(release, tmp_path / "c/model.safetensors"))
    audio = noise(seed=4) * 0.3 + 0.01
    sf.write(tmp_path / "a.wav", audio, RATE, subtype="FLOAT")
    argv = ["separate", str(release), str(tmp_path / "a.wav"), "-o", str(tmp_path / "out"), "--device", "cpu"]
    assert main([*argv, "--segment", "0.5"]) == 0
    np.testing.assert_allclose(read_outputs(tmp_path / "out/a"), reference(converted, audio), atol=1e-5)


@pytest.mark.slow
def test_memory_does_not_grow_with_the_files_length(run_dir, tmp_path):
    """The command line on a 20 s and a 200 s wav, each in a fresh process: the same peak memory
    (bench/separate_memory.py measures 1 and 10 minutes with a demo-size model)."""
    import os
    import sys

    peaks = {}
    for seconds in (20, 200):
        path = tmp_path / f"track{seconds}.wav"
        with sf.SoundFile(path, "w", RATE, 2, subtype="PCM_16") as f:  # in pieces: the test holds no track either
            for start in range(0, seconds, 10):
                f.write(noise(samples=10 * RATE, seed=start))
        command = [sys.executable, "-m", "demixbench.cli", "separate", str(run_dir), str(path)]
        command += ["-o", str(tmp_path / "out"), "--segment", "5", "--device", "cpu"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        stderr = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, stderr.decode()[-2000:]
        peaks[seconds] = usage.ru_maxrss  # kB
    # The 200 s mixture as float32 alone is 71 MB, its four estimates 282 MB.
    assert peaks[200] < 1.15 * peaks[20], peaks
