"""Decode a track of a MUSDB18 dataset once into the float32 cache (see ``cache``).

Decoding reads wav files with soundfile and .stem.mp4 streams with ffmpeg exactly as ``musdb``
(through stempeg) does -- 16-bit PCM, divided by 32768 -- so the cache holds the arrays the
``musdb`` parser returns, but every failure (unreadable or truncated file, NaN/Inf samples,
stems of different lengths, a mixture that is not the sum of its stems) names the file.
"""

from __future__ import annotations

import json
import logging
import math
import mmap
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from demixbench import SAMPLE_RATE, TARGETS
from demixbench.data.cache import LSB16, pcm_scale, save_channel_major, to_float32
from demixbench.data.layout import STEMS, DatasetError, dataset_layout, track_location
from demixbench.data.probe import ProbeError, check_complete, probe_streams
from demixbench.fileio import atomic_path, atomic_write_text, remove_stale_temporaries

log = logging.getLogger(__name__)


#: Tracks whose mixture is known not to be the sum of their stems in the official release, with the
#: reason; decoding warns about them instead of refusing. Source: the errata table on
#: https://sigsep.github.io/datasets/musdb.html (sigsep/website content/datasets/musdb.md).
MIXTURE_ERRATA: dict[str, str] = {
    "PR - Oh No": "sum of sources does not add up to the mix for the left channel (MUSDB18 errata)",
}
#: Mixture-check policies: refuse the track, log a warning, or skip the check.
MIXTURE_CHECKS: tuple[str, ...] = ("refuse", "warn", "off")


@dataclass(frozen=True)
class DecodeOptions:
    """How strictly decode_track checks a track. The defaults are the documented tolerances.

    Mixture check ("the mixture is the sum of the stems"), done at the file's own sample rate:

    * lossless files (wav): the largest |mixture - sum(stems)| over samples where the mixture is
      not at 16-bit full scale (clipped samples cannot equal the sum) must be at most
      `lossless_tolerance`. Default 8 LSB of 16-bit PCM (2.4e-4, -72 dBFS): rounding 4 stems and
      the mixture to 16 bit separately errs by at most 2.5 LSB, dither by a few more; anything
      wrong (a missing, swapped or mis-scaled stem) is orders of magnitude larger.
    * lossy files (AAC .stem.mp4): each stream is encoded separately, so the residual is the sum
      of five codecs' noise. The mixture-to-residual energy ratio must be at least
      `lossy_min_snr_db`. Default 10 dB. Measured on 20 synthetic tracks written by
      synthetic.write_dataset(format="stem.mp4") (ffmpeg's native AAC encoder, 256 kb/s per
      stream, 1 s tracks, seed 11): 17.3 to 24.5 dB (median 21.3 dB; max |error| up to 0.86, so
      a max-abs criterion cannot work for AAC). Leaving one stem out of the sum gives 6.9 dB
      (median) and at most 12.9 dB: 10 dB keeps a 7 dB margin below the codec's noise and
      catches a wrong track, a wrong stream order or a missing loud stem; it does not catch
      every missing quiet stem, which the lossless check does for wav copies.

    Tracks in `errata` (default: MIXTURE_ERRATA, the official errata) get a warning instead.
    Silent stems are always allowed.
    """

    mixture_check: str = "refuse"
    lossless_tolerance: float = 8 * LSB16
    lossy_min_snr_db: float = 10.0
    #: Largest length difference, in samples, between the streams of one .stem.mp4 (trimmed to
    #: the shortest): one AAC frame, the codec's granularity. Wav stems must match exactly.
    lossy_length_tolerance: int = 1024
    errata: tuple[str, ...] = tuple(MIXTURE_ERRATA)

    def __post_init__(self) -> None:
        if self.mixture_check not in MIXTURE_CHECKS:
            raise ValueError(f"mixture_check must be one of {MIXTURE_CHECKS}, got {self.mixture_check!r}")
        if not self.lossless_tolerance >= 0 or self.lossy_length_tolerance < 0:
            raise ValueError("tolerances must be >= 0")


def read_track(
    layout: str, root: Path, subset: str, track: str, options: DecodeOptions | None = None
) -> tuple[dict[str, np.ndarray], int, dict[str, str]]:
    """Read one track at its native sample rate.

    Returns (stems, sample_rate, origin): stem -> array (samples, channels) for STEMS, and
    stem -> the file (and stream) it came from, for messages. Arrays of 16-bit sources (every
    .stem.mp4, 16-bit wav) are int16 PCM, full scale 32768 (see `to_float32`); other wavs are
    float32. Keeping PCM as int16 until the cache is written holds half the memory, and memory
    is what decoding mostly spends its time on (docs/benchmarks.md).
    Raises DatasetError naming the file for missing, unreadable or truncated files, sample-rate
    or length mismatches between stems.
    """
    options = options or DecodeOptions()
    location = track_location(layout, root, subset, track)
    if not location.exists():
        raise DatasetError(f"track {track!r} not found in {Path(root) / subset} (looked for {location})")
    if layout == "wav":
        return _read_wav_track(location)
    return _read_stem_mp4(location, options.lossy_length_tolerance)


def _read_wav_track(track_dir: Path) -> tuple[dict[str, np.ndarray], int, dict[str, str]]:
    arrays, rates, origin = {}, {}, {}
    for stem in STEMS:
        path = track_dir / f"{stem}.wav"
        if not path.is_file():
            raise DatasetError(f"{path}: missing stem file; every track needs {', '.join(s + '.wav' for s in STEMS)}")
        try:
            check_complete(path)
            dtype = "int16" if soundfile.info(str(path)).subtype == "PCM_16" else "float32"
            audio, rate = soundfile.read(str(path), dtype=dtype, always_2d=True)  # (samples, channels)
        except ProbeError as err:
            raise DatasetError(str(err)) from None
        except (RuntimeError, soundfile.LibsndfileError) as err:
            raise DatasetError(f"{path}: unreadable wav: {err}") from None
        if audio.shape[0] == 0:
            raise DatasetError(
                f"{path}: empty file: a wav header without audio (0 samples); restore it from the original archive"
            )
        arrays[stem], rates[stem], origin[stem] = audio, int(rate), str(path)
    reference = rates["mixture"]
    for stem, rate in rates.items():
        if rate != reference:
            raise DatasetError(
                f"{origin[stem]}: sample rate {rate} Hz, but mixture.wav has {reference} Hz; "
                "stems of a track must share one rate"
            )
    n = arrays["mixture"].shape[0]
    for stem, audio in arrays.items():
        # MUSDB18-HQ stems are cut from one session: equal lengths are exact, any difference is damage.
        if audio.shape[0] != n:
            raise DatasetError(
                f"{origin[stem]}: {audio.shape[0]} samples, but mixture.wav has {n}; "
                "stems of a track must have equal lengths"
            )
    return arrays, reference, origin


def _read_stem_mp4(path: Path, length_tolerance: int) -> tuple[dict[str, np.ndarray], int, dict[str, str]]:
    try:
        streams = probe_streams(path)
    except ProbeError as err:
        raise DatasetError(str(err)) from None
    if len(streams) < len(STEMS):
        raise DatasetError(
            f"{path}: {len(streams)} audio streams, expected {len(STEMS)} (mixture, drums, bass, other, vocals)"
        )
    rate = streams[0].sample_rate
    arrays, origin = {}, {}
    # musdb's stem order: stream k of the file is STEMS[k] (mixture, drums, bass, other, vocals).
    wheres = [f"{path} (stream {k}, {stem})" for k, stem in enumerate(STEMS)]
    for k, where in enumerate(wheres):
        if streams[k].sample_rate != rate:
            raise DatasetError(
                f"{where}: sample rate {streams[k].sample_rate} Hz, but the mixture stream has {rate} Hz"
            )
    used = streams[: len(STEMS)]
    decoded = _ffmpeg_decode(path, [stream.channels for stream in used], wheres)
    for k, stem in enumerate(STEMS):
        where, audio = wheres[k], decoded[k]
        # ffmpeg can stop early on a damaged stream without failing: compare with the header.
        if audio.shape[0] + length_tolerance < streams[k].samples:
            raise DatasetError(
                f"{where}: truncated or damaged: decoded {audio.shape[0]} samples, "
                f"the header declares {streams[k].samples}"
            )
        arrays[stem], origin[stem] = audio, where
    lengths = {stem: a.shape[0] for stem, a in arrays.items()}
    shortest = min(lengths.values())
    if max(lengths.values()) - shortest > length_tolerance:
        raise DatasetError(f"{path}: streams have different lengths {lengths} (tolerance {length_tolerance} samples)")
    if max(lengths.values()) != shortest:
        log.info("%s: trimming streams to %d samples (lengths %s within one AAC frame)", path, shortest, lengths)
        arrays = {stem: a[:shortest] for stem, a in arrays.items()}
    return arrays, rate, origin


def _ffmpeg_decode(path: Path, channels: Sequence[int], wheres: Sequence[str]) -> list[np.ndarray]:
    """Decode the first len(channels) audio streams to int16 PCM (samples, channels) arrays as
    musdb/stempeg do (s16le), in one ffmpeg run: the container is read and demuxed once.

    Each stream goes to an anonymous scratch file of its own (memory-backed where the OS has
    memfd), which ffmpeg writes in large blocks and this process then maps without copying. Pipes
    drained by Python threads cost as much again as the decoding itself (many small reads under
    the GIL; see docs/benchmarks.md). The files have no name, so a killed run leaves nothing
    behind. If the run fails, the streams are decoded one by one to name the broken one.
    """
    if shutil.which("ffmpeg") is None:
        raise DatasetError(f"{wheres[0]}: ffmpeg not found on PATH; install ffmpeg to decode .stem.mp4 files")
    scratch = [_scratch_file() for _ in channels]
    try:
        command = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path)]
        for k, fd in enumerate(scratch):
            command += ["-map", f"0:a:{k}", "-f", "s16le", "-acodec", "pcm_s16le", f"pipe:{fd}"]
        result = subprocess.run(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=scratch
        )
        if result.returncode != 0:
            for k, (count, where) in enumerate(zip(channels, wheres)):
                _ffmpeg_decode_stream(path, k, count, where)  # raises, naming the stream, if one is broken
            message = result.stderr.decode("utf-8", "replace").strip()[-300:]
            raise DatasetError(f"{path}: unreadable (ffmpeg exit {result.returncode}: {message})")
        return [_pcm16(_map_file(fd), count, where) for fd, count, where in zip(scratch, channels, wheres)]
    finally:
        for fd in scratch:
            os.close(fd)


def _scratch_file() -> int:
    """A file descriptor of an unnamed read/write file: memory-backed (memfd) on Linux, else an
    already-unlinked temporary file in TMPDIR. Either way it disappears with its last descriptor."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("demixbench-pcm")  # ffmpeg inherits it through pass_fds
    return os.dup(tempfile.TemporaryFile().fileno())


def _map_file(fd: int) -> memoryview | bytes:
    """The whole content of file `fd` as a read-only buffer (mapped, not copied)."""
    size = os.fstat(fd).st_size
    return memoryview(mmap.mmap(fd, size, access=mmap.ACCESS_READ)) if size else b""


def _ffmpeg_decode_stream(path: Path, stream: int, channels: int, where: str) -> np.ndarray:
    """Decode audio stream `stream` alone; DatasetError naming it if ffmpeg fails."""
    result = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            f"0:a:{stream}",
            "-f",
            "s16le",
            "-acodec",
            "pcm_s16le",
            "pipe:1",
        ],
        capture_output=True,
    )
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip()[-300:]
        raise DatasetError(f"{where}: unreadable (ffmpeg exit {result.returncode}: {message})")
    return _pcm16(result.stdout, channels, where)


def _pcm16(data: bytes | bytearray | memoryview, channels: int, where: str) -> np.ndarray:
    """Interleaved s16le bytes -> int16 (samples, channels), a view of `data` (no copy)."""
    if channels < 1 or len(data) % (2 * channels):
        raise DatasetError(f"{where}: ffmpeg returned {len(data)} bytes, not whole {channels}-channel frames")
    return np.frombuffer(data, dtype="<i2").reshape(-1, channels)


def mixture_residual(arrays: dict[str, np.ndarray], block: int = 1 << 16) -> dict[str, float]:
    """How far the mixture is from the sum of the stems.

    Args:
        arrays: STEMS -> (samples, channels) arrays of equal shape, int16 PCM or float.
    Returns:
        {"max_abs_error": largest |mixture - sum| over samples where the mixture is below
        16-bit full scale, "snr_db": 10 log10(energy(mixture) / energy(mixture - sum))}
        (inf for an exact sum; -inf for a silent mixture with non-silent stems).
    Works in float64 blocks of `block` samples so memory stays proportional to the block; the
    default (1 MB per float64 stereo block) stays in the CPU cache, twice as fast as 16 MB blocks.
    """
    n = arrays["mixture"].shape[0]
    max_abs, signal, residual = 0.0, 0.0, 0.0
    for start in range(0, n, block):
        part = slice(start, start + block)
        mixture = np.multiply(arrays["mixture"][part], pcm_scale(arrays["mixture"]), dtype=np.float64)
        error = mixture.copy()
        for target in TARGETS:  # error = mixture - sum of the stems, in float64 (exact for PCM), in place
            error -= np.multiply(arrays[target][part], pcm_scale(arrays[target]), dtype=np.float64)
        # einsum: any memory layout (the decoded arrays are channel-major views), no copies
        signal += float(np.einsum("ij,ij->", mixture, mixture))
        residual += float(np.einsum("ij,ij->", error, error))
        unclipped = np.abs(mixture) < 1.0 - LSB16  # a clipped mixture sample cannot equal the sum
        max_abs = max(max_abs, float(np.max(np.abs(error), where=unclipped, initial=0.0)))
    if residual == 0.0:
        snr = math.inf
    elif signal == 0.0:
        snr = -math.inf
    else:
        snr = 10.0 * math.log10(signal / residual)
    return {"max_abs_error": max_abs, "snr_db": snr}


def _check_mixture(
    track: str, location: Path, arrays: dict[str, np.ndarray], lossless: bool, options: DecodeOptions
) -> dict:
    if options.mixture_check == "off":
        return {"checked": False}
    metrics = mixture_residual(arrays)
    if lossless:
        ok = metrics["max_abs_error"] <= options.lossless_tolerance
        detail = (
            f"max |mixture - sum of stems| = {metrics['max_abs_error']:.3g} "
            f"> tolerance {options.lossless_tolerance:.3g} "
            f"({options.lossless_tolerance / LSB16:g} LSB of 16-bit PCM)"
        )
    else:
        ok = metrics["snr_db"] >= options.lossy_min_snr_db
        detail = (
            f"mixture-to-residual ratio {metrics['snr_db']:.1f} dB < {options.lossy_min_snr_db:g} dB "
            f"(the AAC codec's own noise measures 17-25 dB)"
        )
    if not ok:
        message = f"{location}: the mixture is not the sum of the stems: {detail}"
        if track in options.errata:
            log.warning(
                "%s; known erratum of the official release (%s), kept",
                message,
                MIXTURE_ERRATA.get(track, "listed in errata"),
            )
        elif options.mixture_check == "warn":
            log.warning("%s; kept because the mixture check is set to 'warn'", message)
        else:
            raise DatasetError(
                f"{message}. A stem is missing, swapped or damaged; restore the track from the original archive "
                f"(or, for a copy known to differ, decode with the mixture check set to 'warn')"
            )
    return {
        "checked": True,
        "passed": bool(ok),
        "lossless": lossless,
        **{k: _json_float(v) for k, v in metrics.items()},
    }


def _json_float(value: float) -> float | str:
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def checked_stereo(arrays: dict[str, np.ndarray], origin: dict[str, str]) -> list[str]:
    """Check a track's stems in place and make them stereo: NaN/Inf samples and more than two
    channels are refused naming the file (``origin``: stem -> file); mono stems are duplicated to
    two channels. ``arrays``: stem -> (samples, channels). Returns the stems that were mono."""
    mono = []
    for stem, audio in arrays.items():
        if audio.dtype.kind == "f" and not np.isfinite(audio).all():  # PCM is finite by construction
            bad = int(np.count_nonzero(~np.isfinite(audio)))
            raise DatasetError(f"{origin[stem]}: {bad} NaN or Inf samples; the file is damaged, restore it")
        if audio.shape[1] == 1:
            mono.append(stem)
            arrays[stem] = np.repeat(audio, 2, axis=1)
        elif audio.shape[1] != 2:
            raise DatasetError(
                f"{origin[stem]}: {audio.shape[1]} channels; MUSDB18 stems are stereo (mono is duplicated)"
            )
    return mono


def decode_track(
    source: str,
    root: Path,
    subset: str,
    track: str,
    out_dir: Path,
    sample_rate: int = SAMPLE_RATE,
    options: DecodeOptions | None = None,
) -> dict:
    """Decode one track into the cache: out_dir/{mixture,drums,bass,other,vocals}.npy.

    Each array is float32 (channels=2, samples) at `sample_rate`. Returns the track's metadata,
    also written to out_dir/meta.json.

    * other sample rates are resampled with torchaudio.functional.resample (logged);
    * mono files are duplicated to stereo (warning); more than 2 channels are refused;
    * refused, naming the file: missing, unreadable or truncated files, NaN/Inf samples, stems of
      different lengths or rates, and a mixture that is not the sum of the stems beyond the
      codec's tolerance (see DecodeOptions). Silent stems are fine: each is named in a warning and
      in the metadata's ``silent_stems``.

    Every .npy is written atomically, so the cache never holds a half-written array; meta.json
    is written last, so its presence means the track is complete.
    """
    options = options or DecodeOptions()
    root = Path(root)
    layout = dataset_layout(source, root)
    location = track_location(layout, root, subset, track)
    arrays, native_rate, origin = read_track(layout, root, subset, track, options)

    mono = checked_stereo(arrays, origin)
    if mono:
        log.warning("%s: mono %s duplicated to stereo", location, ", ".join(mono))

    mixture_check = _check_mixture(track, location, arrays, layout == "wav", options)
    silent = [stem for stem in TARGETS if not np.any(arrays[stem])]
    for stem in silent:
        # Once per stem and track, here where every track passes exactly once (issue 17): a silent
        # test stem cannot be scored (museval's SDR is undefined without reference energy).
        consequence = (
            "its scores on this track are undefined (NaN) and the tables count this track out for it"
            if subset == "test"
            else "fine for training"
        )
        log.warning("%s: %s is silent over the whole track; %s", location, stem, consequence)

    if native_rate != sample_rate:
        log.info("%s: resampling %d Hz -> %d Hz (torchaudio.functional.resample)", location, native_rate, sample_rate)
        arrays = {stem: resample(to_float32(audio), native_rate, sample_rate) for stem, audio in arrays.items()}

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (*(f"{stem}.npy" for stem in STEMS), "meta.json"):
        for stale in remove_stale_temporaries(out_dir / name):
            log.info("removed %s, left by an earlier decode of %s that was killed", stale.name, track)
    for stem in STEMS:
        with atomic_path(out_dir / f"{stem}.npy") as temporary:
            save_channel_major(temporary, arrays[stem])
    samples = int(arrays["mixture"].shape[0])
    meta = {
        "track": track,
        "subset": subset,
        "source": source,
        "sample_rate": sample_rate,
        "samples": samples,
        "native_sample_rate": native_rate,
        "mono_stems": mono,
        "silent_stems": silent,
        "mixture_check": mixture_check,
    }
    atomic_write_text(out_dir / "meta.json", json.dumps(meta, indent=2))
    log.info("decoded %s (%s, %.1f s)", track, subset, samples / sample_rate)
    return meta


def resample(audio: np.ndarray, orig: int, new: int) -> np.ndarray:
    """(samples, channels) float32 at `orig` Hz -> (samples', channels) at `new` Hz."""
    # Imported here, not at the top: importing torch takes about 3.5 s, which every decode job
    # would pay, and only a dataset at another sample rate than data.sample_rate is resampled.
    import torch
    import torchaudio.functional

    with torch.no_grad():
        out = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(audio.T)), orig, new)
    return out.numpy().T
