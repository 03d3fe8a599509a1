"""The excerpts of the listening page (:mod:`demixbench.report.listening`): which window of each
test track to play, reading that window from the decoded stems and the estimates, and encoding it.

Inputs are the decoded cache (``<track_dir>/{mixture,drums,bass,other,vocals}.npy``, float32
(channels, samples), see :func:`demixbench.data.cache.load_decoded`) and, per method, the separated
estimates ``<estimates_root>/<track>/<target>.wav`` (see :func:`demixbench.separate.estimates.write_estimates`).

Excerpt window (one per track, shared by every clip of that track so the players compare the same
music):

* candidate windows are ``window`` samples long (``seconds`` * sample rate) and start every
  ``hop`` samples (a quarter of the window by default) from 0 up to the last start that still fits
  in the track; a track shorter than the window is used whole;
* a reference stem is *active* in a window when its mean square over channels and samples exceeds
  ``silence_db`` dBFS (-60 dB by default, i.e. an RMS of 1e-3);
* among the candidates where the most references are active (all of them whenever some window
  allows it), the one with the highest mixture energy wins; ties go to the earliest start.

Clips are encoded as Ogg Vorbis (lossy, about 110 kbps for stereo at the default compression
level) with soundfile, for the page to embed as base64 ``data:`` URIs; if the installed libsndfile
cannot write Vorbis, FLAC (lossless, about 4x larger) is used instead, with a warning. Levels are
not normalised: an estimate that is too quiet or too loud sounds that way. The Ogg container's
stream serial number is random (libsndfile), so two runs give pages that play identically but
differ in bytes.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from demixbench import SAMPLE_RATE, TARGETS
from demixbench.data.cache import NpyReader

log = logging.getLogger(__name__)

__all__ = [
    "CODECS",
    "Excerpt",
    "ExcerptSource",
    "Window",
    "choose_excerpt",
    "choose_window",
    "encode_clip",
    "read_estimate",
    "resolve_codec",
    "track_paths",
]

#: Codec name -> (soundfile format, subtype, MIME type).
CODECS: dict[str, tuple[str, str, str]] = {
    "vorbis": ("OGG", "VORBIS", "audio/ogg"),
    "flac": ("FLAC", "PCM_16", "audio/flac"),
}

#: Samples read at a time when summing energies, so memory stays bounded on full-length tracks.
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ExcerptSource:
    """One method on the page: its column title and where its estimates lie,
    ``estimates_root/<track>/<target>.wav``. For a method trained with several seeds the caller
    passes one seed's directory."""

    name: str
    estimates_root: Path

    def estimate_path(self, track: str, target: str) -> Path:
        return Path(self.estimates_root) / track / f"{target}.wav"


@dataclass(frozen=True)
class Window:
    """A chosen excerpt window, in samples: ``[start, stop)``; ``active`` names the references
    that are non-silent in it (all of them unless no window allows it)."""

    start: int
    stop: int
    active: tuple[str, ...]


@dataclass(frozen=True)
class Excerpt:
    """The excerpt of one track: its window and the sample rate that turns it into seconds."""

    window: Window
    sample_rate: int
    references: tuple[str, ...]

    @property
    def start_seconds(self) -> float:
        return self.window.start / self.sample_rate

    @property
    def stop_seconds(self) -> float:
        return self.window.stop / self.sample_rate

    @property
    def silent(self) -> tuple[str, ...]:
        """References that are silent in the window (empty unless the whole track forces it)."""
        return tuple(name for name in self.references if name not in self.window.active)


def _window_energies(signal, window: int, hop: int, n_candidates: int) -> np.ndarray:
    """Energy (sum of squares over channels and samples, float64) of every candidate window of
    `signal` (anything shaped (channels, samples) that supports ``signal[:, a:b]``: an array, a
    memory map or a :class:`~demixbench.data.cache.NpyReader`) -> (n_candidates,).

    Candidate i covers samples [i * hop, i * hop + window). Energies are summed per block of
    gcd(window, hop) samples, read a chunk at a time; a window is then a whole number of blocks, so
    a cumulative sum over the blocks gives every window exactly without per-sample arrays."""
    block = math.gcd(window, hop)
    n_blocks = ((n_candidates - 1) * hop + window) // block
    chunk = max(1, _CHUNK // block) * block
    energies = np.empty(n_blocks, dtype=np.float64)
    for first in range(0, n_blocks * block, chunk):
        last = min(first + chunk, n_blocks * block)
        x = np.asarray(signal[:, first:last], dtype=np.float64)
        energies[first // block : last // block] = np.square(x).reshape(x.shape[0], -1, block).sum(axis=(0, 2))
    cumulative = np.concatenate([[0.0], np.cumsum(energies)])
    starts = np.arange(n_candidates) * (hop // block)
    return cumulative[starts + window // block] - cumulative[starts]


def choose_window(
    mixture,
    references: Mapping[str, object],
    window: int,
    hop: int | None = None,
    silence_db: float = -60.0,
) -> Window:
    """Pick the excerpt window of one track (rule in the module docstring).

    mixture: (channels, samples); references: name -> (channels, samples), the same length (arrays,
    memory maps or :class:`~demixbench.data.cache.NpyReader`). window, hop: samples; hop defaults to
    window // 4. A track shorter than `window` gives the whole track.
    """
    n = mixture.shape[1]
    for name, reference in references.items():
        if reference.shape[1] != n:
            raise ValueError(f"reference {name!r} has {reference.shape[1]} samples, the mixture {n}")
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    hop = max(1, window // 4) if hop is None else hop
    if hop <= 0:
        raise ValueError(f"hop must be positive, got {hop}")
    window = min(window, n)
    if window == 0:
        raise ValueError("empty track: no excerpt to choose")
    n_candidates = (n - window) // hop + 1

    mixture_energy = _window_energies(mixture, window, hop, n_candidates)
    threshold = 10.0 ** (silence_db / 10.0)  # on the mean square
    active = np.zeros((len(references), n_candidates), dtype=bool)  # (references, candidates)
    for row, reference in enumerate(references.values()):
        active[row] = _window_energies(reference, window, hop, n_candidates) / (reference.shape[0] * window) > threshold
    n_active = active.sum(axis=0)
    # Prefer windows where every reference can be heard (a silent reference makes that row of the
    # page useless); only then loudness, since loud passages are where the stems overlap most.
    eligible = n_active == n_active.max()
    best = int(np.argmax(np.where(eligible, mixture_energy, -np.inf)))  # argmax: earliest on ties
    start = best * hop
    names = tuple(references)
    return Window(start, start + window, tuple(name for name, on in zip(names, active[:, best]) if on))


def choose_excerpt(
    track_dir: Path,
    seconds: float = 10.0,
    sample_rate: int = SAMPLE_RATE,
    targets: Sequence[str] = TARGETS,
    hop_seconds: float | None = None,
    silence_db: float = -60.0,
) -> Excerpt:
    """The excerpt window of a decoded track directory (``mixture.npy`` and ``<target>.npy``),
    read a chunk at a time so memory stays small on full-length tracks."""
    paths = track_paths(track_dir, targets)
    readers = {stem: NpyReader(path) for stem, path in paths.items()}
    window = max(1, round(seconds * sample_rate))
    hop = None if hop_seconds is None else max(1, round(hop_seconds * sample_rate))
    chosen = choose_window(readers["mixture"], {t: readers[t] for t in targets}, window, hop, silence_db)
    return Excerpt(chosen, sample_rate, tuple(targets))


def track_paths(track_dir: Path, targets: Sequence[str]) -> dict[str, Path]:
    """Stem -> ``<track_dir>/<stem>.npy`` for the mixture and `targets`; FileNotFoundError names a
    missing one."""
    paths = {stem: Path(track_dir) / f"{stem}.npy" for stem in ("mixture", *targets)}
    for path in paths.values():
        if not path.is_file():
            raise FileNotFoundError(f"decoded track file missing: {path}")
    return paths


def resolve_codec(codec: str) -> str:
    """`codec` if this libsndfile can write it, else "flac" (with a warning); ValueError for an
    unknown codec, RuntimeError when neither can be written."""
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; expected one of {sorted(CODECS)}")
    file_format, subtype, _ = CODECS[codec]
    if file_format in sf.available_formats() and subtype in sf.available_subtypes(file_format):
        return codec
    if codec != "flac":
        log.warning("this libsndfile cannot write %s/%s; embedding FLAC instead (larger page)", file_format, subtype)
        return resolve_codec("flac")
    raise RuntimeError("this libsndfile can write neither Ogg Vorbis nor FLAC")


def encode_clip(
    audio: np.ndarray,
    sample_rate: int,
    codec: str = "vorbis",
    compression_level: float | None = 0.7,
    fade_seconds: float = 0.01,
) -> bytes:
    """Encode one clip, (channels, samples) float, to the bytes of an Ogg Vorbis (or FLAC) file.

    A short raised-cosine fade in and out (`fade_seconds`) keeps the cut at the window edges from
    clicking. `compression_level` is soundfile's (0 best quality .. 1 smallest): for Vorbis 0.7 is
    about 110 kbps stereo, transparent enough to hear separation artefacts.
    """
    clip = np.array(audio, dtype=np.float32, copy=True)
    if clip.ndim != 2 or clip.shape[1] == 0:
        raise ValueError(f"expected a non-empty (channels, samples) clip, got shape {clip.shape}")
    fade = min(round(fade_seconds * sample_rate), clip.shape[1] // 2)
    if fade > 0:
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)).astype(np.float32)
        clip[:, :fade] *= ramp
        clip[:, -fade:] *= ramp[::-1]
    file_format, subtype, _ = CODECS[codec]
    if subtype.startswith("PCM"):
        # Integer PCM would wrap around, not saturate, on samples past full scale (estimates can
        # overshoot); Vorbis codes floats and leaves clipping to the player.
        np.clip(clip, -1.0, 1.0, out=clip)
    buffer = io.BytesIO()
    sf.write(buffer, clip.T, sample_rate, format=file_format, subtype=subtype, compression_level=compression_level)
    return buffer.getvalue()


def read_estimate(path: Path, window: Window, sample_rate: int) -> np.ndarray:
    """The excerpt of one estimate file -> (channels, window samples) float32, read by seeking so
    only the window is decoded."""
    with sf.SoundFile(path) as f:
        if f.samplerate != sample_rate:
            raise ValueError(f"{path}: sample rate {f.samplerate} Hz, expected {sample_rate} Hz")
        if f.frames < window.stop:
            raise ValueError(f"{path}: {f.frames} samples, shorter than the excerpt window's end {window.stop}")
        f.seek(window.start)
        return f.read(window.stop - window.start, dtype="float32", always_2d=True).T
