"""Cheap audio file checks that read headers only: container completeness and stream properties.

Verification runs over every file of a dataset (750 files for MUSDB18-HQ) before anything is
decoded, so these functions read a few hundred bytes per file (the RIFF chunk list of a wav, the
top-level boxes of an mp4, ffprobe's view of an mp4's streams), never the audio itself.

Why a completeness check of our own: libsndfile (soundfile) silently returns fewer frames for a
wav cut off mid-way, and ffmpeg decodes a truncated mp4 whose index sits at the front without
failing; in both cases the container's own size fields still promise the full length, so
comparing them with the file size names the truncated file before it reaches the cache.
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import soundfile

log = logging.getLogger(__name__)

#: ISO BMFF boxes that may legitimately run to the end of the file (size 0).
_TO_EOF = 0


class ProbeError(ValueError):
    """A file whose header is unreadable or promises more data than the file holds.

    The message starts with the file's path; callers wrap it into a DatasetError.
    """


@dataclass(frozen=True)
class StreamInfo:
    """One audio stream (a wav file, or one stream of a .stem.mp4) as its header describes it."""

    sample_rate: int
    channels: int
    #: Length in samples per channel as declared by the header.
    samples: int


def check_complete(path: Path) -> None:
    """Raise ProbeError naming `path` when its container declares more bytes than the file has.

    Supports RIFF/WAVE (.wav) and ISO BMFF (.mp4, .stem.mp4); other files are not checked.
    Reads only chunk/box headers.
    """
    path = Path(path)
    name = path.name.lower()
    if path.stat().st_size == 0:
        raise ProbeError(
            f"{path}: empty file (0 bytes), e.g. an interrupted copy or download; restore it from the "
            "original archive (or delete it and rerun the acquisition)"
        )
    if name.endswith(".wav"):
        _check_riff(path)
    elif name.endswith(".mp4") or name.endswith(".m4a"):
        _check_bmff(path)


def _check_riff(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] not in (b"RIFF", b"RF64") or header[8:12] != b"WAVE":
            raise ProbeError(f"{path}: not a RIFF/WAVE file (header {header[:12]!r}); the file is damaged or not a wav")
        if header[:4] == b"RF64":
            return  # 64-bit sizes live in a ds64 chunk; libsndfile reports those correctly
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            # Streaming writers leave 0 or 0xFFFFFFFF in the data chunk's size: nothing to compare with.
            if chunk_id == b"data" and chunk_size in (0, 0xFFFFFFFF):
                return
            end = offset + 8 + chunk_size
            if end > size:
                raise ProbeError(
                    f"{path}: truncated: its {chunk_id.decode('latin-1')!r} chunk declares {chunk_size} bytes but "
                    f"the file ends {end - size} bytes early; restore the file from the original archive"
                )
            offset = end + (chunk_size & 1)  # chunks are padded to even sizes
        if offset < 12 + 8:
            raise ProbeError(f"{path}: truncated: no chunks after the RIFF header")


def _check_bmff(path: Path) -> None:
    size = path.stat().st_size
    seen = []
    with open(path, "rb") as f:
        offset = 0
        while offset < size:
            f.seek(offset)
            head = f.read(8)
            if len(head) < 8:
                raise ProbeError(f"{path}: truncated: {size - offset} stray bytes after the last complete box")
            box_size, box_type = struct.unpack(">I4s", head)
            header_len = 8
            if box_size == 1:  # 64-bit "largesize" follows the type
                large = f.read(8)
                if len(large) < 8:
                    raise ProbeError(f"{path}: truncated inside the header of box {box_type!r}")
                box_size, header_len = struct.unpack(">Q", large)[0], 16
            elif box_size == _TO_EOF:
                box_size = size - offset
            if box_size < header_len:
                raise ProbeError(
                    f"{path}: damaged: box {box_type!r} at byte {offset} has an impossible size {box_size}"
                )
            if offset + box_size > size:
                raise ProbeError(
                    f"{path}: truncated: box {box_type.decode('latin-1')!r} declares {box_size} bytes but the file "
                    f"ends {offset + box_size - size} bytes early; restore the file from the original archive"
                )
            seen.append(box_type)
            offset += box_size
    if b"moov" not in seen:
        raise ProbeError(f"{path}: damaged: no 'moov' box (the mp4 index is missing); restore the file")


def probe_wav(path: Path) -> StreamInfo:
    """Header of one wav file (soundfile.info: no audio is read). Checks completeness first."""
    check_complete(path)
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as err:  # LibsndfileError subclasses RuntimeError
        raise ProbeError(f"{path}: unreadable wav header: {err}") from None
    return StreamInfo(sample_rate=int(info.samplerate), channels=int(info.channels), samples=int(info.frames))


def ffprobe_available() -> bool:
    return shutil.which("ffprobe") is not None


def probe_streams(path: Path) -> list[StreamInfo]:
    """Audio streams of an mp4 (e.g. the 5 streams of a MUSDB18 .stem.mp4), via one ffprobe call.

    `samples` is the stream's declared duration in samples (``duration_ts`` in the stream's
    time base converted to samples). Checks completeness first.
    """
    check_complete(path)
    if not ffprobe_available():
        raise ProbeError(
            f"{path}: ffprobe not found on PATH; install ffmpeg (it provides ffprobe) to read .stem.mp4 files"
        )
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ProbeError(
            f"{path}: unreadable (ffprobe: {result.stderr.strip()[-300:] or 'exit ' + str(result.returncode)})"
        )
    streams = []
    for stream in json.loads(result.stdout or "{}").get("streams", []):
        rate = int(stream.get("sample_rate", 0))
        samples = _stream_samples(stream, rate)
        streams.append(StreamInfo(sample_rate=rate, channels=int(stream.get("channels", 0)), samples=samples))
    if not streams:
        raise ProbeError(f"{path}: no audio streams")
    return streams


def _stream_samples(stream: dict, rate: int) -> int:
    """Declared length in samples of an ffprobe stream record."""
    if "duration_ts" in stream and "time_base" in stream:
        num, den = (int(x) for x in stream["time_base"].split("/"))
        return int(round(int(stream["duration_ts"]) * num * rate / den))
    if "duration" in stream:
        return int(round(float(stream["duration"]) * rate))
    return 0
