"""Decode one audio file of any common format into the float32 (channels=2, samples) ``.npy`` the
separation stage reads, in blocks: memory stays flat in the file's length.

Used by ``demixbench separate`` (:mod:`demixbench.separate.files`) for files that are not part of a
dataset: wav, flac, mp3, m4a, a MUSDB18 ``.stem.mp4`` (its first audio stream, the mixture) and
anything else ffmpeg reads.

* wav and flac files already at the wanted rate are read with soundfile, a block at a time;
  everything else, and any file at another rate, is decoded by ffmpeg piping raw float32 PCM of the
  file's first audio stream (``-map 0:a:0``), resampled by ffmpeg's own resampler (``-ar``) where
  needed: :func:`demixbench.data.decode.resample` needs the whole track in memory;
* mono is duplicated to stereo, NaN/Inf samples and more than two channels are refused, naming the
  file (:func:`demixbench.data.decode.checked_stereo`);
* the ``.npy`` is assembled from one raw scratch file per channel once the length is known (the
  array is channel-major), and appears only complete (:func:`demixbench.fileio.atomic_path`).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
from tqdm import tqdm

from demixbench.data.decode import checked_stereo
from demixbench.data.layout import DatasetError
from demixbench.data.probe import ProbeError, probe_streams
from demixbench.fileio import atomic_path

log = logging.getLogger(__name__)

#: Extensions read with soundfile (libsndfile) when no resampling is needed; ffmpeg reads the rest.
SOUNDFILE_SUFFIXES: tuple[str, ...] = (".wav", ".flac")

#: Frames per decoded block: 2**18 (about 6 s at 44.1 kHz, 2 MB as float32 stereo).
BLOCK_FRAMES = 1 << 18


@dataclass(frozen=True)
class AudioInfo:
    """An audio file's first audio stream as its header describes it.

    Attributes:
        path: the file.
        sample_rate: its native rate in Hz.
        channels: its channels (1 or 2 are accepted).
        samples: declared length in samples at the native rate (approximate for lossy codecs).
        streams: audio streams in the file (5 for a MUSDB18 .stem.mp4, whose stream 0 is the mixture).
        reader: "soundfile" or "ffmpeg", whichever :func:`iter_audio_blocks` uses at the native rate.
    """

    path: Path
    sample_rate: int
    channels: int
    samples: int
    streams: int
    reader: str


@dataclass(frozen=True)
class DecodedAudio:
    """What :func:`decode_audio_file` wrote: ``samples`` per channel at ``sample_rate`` (stereo)."""

    info: AudioInfo
    sample_rate: int
    samples: int
    mono: bool


def probe_audio(path: Path) -> AudioInfo:
    """Describe `path`'s first audio stream. Raises DatasetError naming the file when it is missing,
    unreadable, has no audio stream or more than two channels."""
    path = Path(path)
    if path.is_dir():
        raise DatasetError(f"{path}: a directory, not an audio file; pass the audio files in it")
    if not path.is_file():
        raise DatasetError(f"{path}: no such audio file")
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            header = soundfile.info(str(path))
        except (RuntimeError, soundfile.LibsndfileError) as err:
            raise DatasetError(f"{path}: unreadable {path.suffix.lower()[1:]} file: {err}") from None
        info = AudioInfo(path, int(header.samplerate), int(header.channels), int(header.frames), 1, "soundfile")
    else:
        if shutil.which("ffmpeg") is None:
            raise DatasetError(f"{path}: ffmpeg not found on PATH; install ffmpeg to decode {path.suffix} files")
        try:
            streams = probe_streams(path)
        except ProbeError as err:
            raise DatasetError(str(err)) from None
        first = streams[0]
        info = AudioInfo(path, first.sample_rate, first.channels, first.samples, len(streams), "ffmpeg")
    if info.sample_rate <= 0:
        raise DatasetError(f"{path}: no sample rate in the header; the file is damaged or not audio")
    if info.channels not in (1, 2):
        raise DatasetError(
            f"{path}: {info.channels} channels; separation takes stereo or mono (duplicated) audio. "
            f"Downmix it first, e.g. ffmpeg -i '{path}' -ac 2 stereo.wav"
        )
    return info


def iter_audio_blocks(info: AudioInfo, sample_rate: int, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Yield the file's first audio stream at `sample_rate` as float32 (frames, channels) blocks of
    at most `block_frames` frames (channels as in the file). Raises DatasetError naming the file
    (with ffmpeg's message) when decoding fails."""
    if info.reader == "soundfile" and info.sample_rate == sample_rate:
        yield from _soundfile_blocks(info.path, block_frames)
    else:
        yield from _ffmpeg_blocks(info, sample_rate, block_frames)


def _soundfile_blocks(path: Path, block_frames: int) -> Iterator[np.ndarray]:
    try:
        with soundfile.SoundFile(str(path)) as f:
            while True:
                block = f.read(block_frames, dtype="float32", always_2d=True)
                if not len(block):
                    return
                yield block
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise DatasetError(f"{path}: unreadable {path.suffix.lower()[1:]} file: {err}") from None


def _ffmpeg_blocks(info: AudioInfo, sample_rate: int, block_frames: int) -> Iterator[np.ndarray]:
    """ffmpeg decodes stream 0:a:0 to interleaved float32 on a pipe, read block by block. Its
    messages go to an unnamed file (a pipe for them could fill up and stall ffmpeg)."""
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(info.path), "-map", "0:a:0"]
    if sample_rate != info.sample_rate:
        command += ["-ar", str(sample_rate)]
    command += ["-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
    frame_bytes = 4 * info.channels
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        try:
            while True:
                data = process.stdout.read(block_frames * frame_bytes)
                if not data:
                    break
                if len(data) % frame_bytes:
                    raise DatasetError(
                        f"{info.path}: ffmpeg returned {len(data)} bytes, not whole {info.channels}-channel frames"
                    )
                yield np.frombuffer(data, dtype="<f4").reshape(-1, info.channels)
            code = process.wait()
        finally:
            if process.poll() is None:  # stopped early (an error, or the consumer gave up)
                process.kill()
                process.wait()
            process.stdout.close()
        if code != 0:
            errors.seek(0)
            message = "; ".join(errors.read().decode("utf-8", "replace").strip().splitlines())[-300:]
            raise DatasetError(f"{info.path}: undecodable (ffmpeg exit {code}: {message or 'no message'})")


def decode_audio_file(
    path: Path, out: Path, sample_rate: int, progress: bool = False, info: AudioInfo | None = None
) -> DecodedAudio:
    """Decode `path` into `out`, a float32 (2, samples) .npy at `sample_rate`, block by block.

    Mono is duplicated to stereo (logged), other rates are resampled by ffmpeg (logged). Each
    channel goes to a raw scratch file beside `out` while the length is not yet known; the .npy
    is then written from them atomically and they are removed. Raises DatasetError naming the file
    when it is missing, undecodable, holds no samples, or holds NaN/Inf samples.
    """
    path, out = Path(path), Path(out)
    info = info or probe_audio(path)
    if info.sample_rate != sample_rate:
        log.info("%s: resampling %d Hz -> %d Hz (ffmpeg)", path, info.sample_rate, sample_rate)
    if info.channels == 1:
        log.info("%s: mono, duplicated to stereo", path)
    if info.streams > 1:
        log.info("%s: %d audio streams; separating stream 0 (a .stem.mp4's mixture)", path, info.streams)
    expected = int(round(info.samples * sample_rate / info.sample_rate)) or None
    samples = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        scratch = [stack.enter_context(tempfile.TemporaryFile(dir=out.parent)) for _ in range(2)]
        bar = stack.enter_context(
            tqdm(total=expected, desc="decode", unit="sample", unit_scale=True, disable=not progress, leave=False)
        )
        for block in iter_audio_blocks(info, sample_rate):
            stereo = {"mixture": block}
            checked_stereo(stereo, {"mixture": str(path)})  # NaN/Inf refused; mono duplicated
            for channel, f in enumerate(scratch):
                f.write(np.ascontiguousarray(stereo["mixture"][:, channel]))
            samples += len(block)
            bar.update(len(block))
        if samples == 0:
            raise DatasetError(f"{path}: no audio samples (an empty file or stream); nothing to separate")
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False, "shape": (2, samples)}
        with atomic_path(out, suffix=".npy") as temporary, open(temporary, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            for channel_file in scratch:
                channel_file.seek(0)
                shutil.copyfileobj(channel_file, f, 1 << 20)
    return DecodedAudio(info=info, sample_rate=sample_rate, samples=samples, mono=info.channels == 1)
