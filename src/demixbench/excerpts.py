"""A self-contained HTML listening page: short excerpts of the test tracks, the reference stems and
every method's estimates, side by side, so a reviewer can hear what the SDR numbers mean.

Inputs are the decoded cache (``<track_dir>/{mixture,drums,bass,other,vocals}.npy``, float32
(channels, samples), see :func:`demixbench.data.load_decoded`) and, per method, the separated
estimates ``<estimates_root>/<track>/<target>.wav`` (see :func:`demixbench.separate.write_estimates`).

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
level) with soundfile and embedded as base64 ``data:`` URIs, so the page is one file that needs
nothing else; if the installed libsndfile cannot write Vorbis, FLAC (lossless, about 4x larger) is
used instead, with a warning. Levels are not normalised: an estimate that is too quiet or too loud
sounds that way. The Ogg container's stream serial number is random (libsndfile), so two runs give
pages that play identically but differ in bytes.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from demixbench import SAMPLE_RATE, TARGETS
from demixbench.data import NpyReader
from demixbench.fileio import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = [
    "Excerpt",
    "ExcerptSource",
    "Window",
    "choose_excerpt",
    "choose_window",
    "encode_clip",
    "write_listening_page",
]

#: Scores as given to the page: method name -> track name -> target -> SDR (dB).
Scores = Mapping[str, Mapping[str, Mapping[str, float]]]

#: Codec name -> (soundfile format, subtype, MIME type).
_CODECS: dict[str, tuple[str, str, str]] = {
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
    memory map or a :class:`~demixbench.data.NpyReader`) -> (n_candidates,).

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
    memory maps or :class:`~demixbench.data.NpyReader`). window, hop: samples; hop defaults to
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
    paths = _track_paths(track_dir, targets)
    readers = {stem: NpyReader(path) for stem, path in paths.items()}
    window = max(1, round(seconds * sample_rate))
    hop = None if hop_seconds is None else max(1, round(hop_seconds * sample_rate))
    chosen = choose_window(readers["mixture"], {t: readers[t] for t in targets}, window, hop, silence_db)
    return Excerpt(chosen, sample_rate, tuple(targets))


def _track_paths(track_dir: Path, targets: Sequence[str]) -> dict[str, Path]:
    paths = {stem: Path(track_dir) / f"{stem}.npy" for stem in ("mixture", *targets)}
    for path in paths.values():
        if not path.is_file():
            raise FileNotFoundError(f"decoded track file missing: {path}")
    return paths


def _resolve_codec(codec: str) -> str:
    if codec not in _CODECS:
        raise ValueError(f"unknown codec {codec!r}; expected one of {sorted(_CODECS)}")
    file_format, subtype, _ = _CODECS[codec]
    if file_format in sf.available_formats() and subtype in sf.available_subtypes(file_format):
        return codec
    if codec != "flac":
        logger.warning("this libsndfile cannot write %s/%s; embedding FLAC instead (larger page)", file_format, subtype)
        return _resolve_codec("flac")
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
    file_format, subtype, _ = _CODECS[codec]
    if subtype.startswith("PCM"):
        # Integer PCM would wrap around, not saturate, on samples past full scale (estimates can
        # overshoot); Vorbis codes floats and leaves clipping to the player.
        np.clip(clip, -1.0, 1.0, out=clip)
    buffer = io.BytesIO()
    sf.write(buffer, clip.T, sample_rate, format=file_format, subtype=subtype, compression_level=compression_level)
    return buffer.getvalue()


def _read_estimate(path: Path, window: Window, sample_rate: int) -> np.ndarray:
    """The excerpt of one estimate file -> (channels, window samples) float32, read by seeking so
    only the window is decoded."""
    with sf.SoundFile(path) as f:
        if f.samplerate != sample_rate:
            raise ValueError(f"{path}: sample rate {f.samplerate} Hz, expected {sample_rate} Hz")
        if f.frames < window.stop:
            raise ValueError(f"{path}: {f.frames} samples, shorter than the excerpt window's end {window.stop}")
        f.seek(window.start)
        return f.read(window.stop - window.start, dtype="float32", always_2d=True).T


def _format_score(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "SDR n/a"
    return f"SDR {value:.2f}&nbsp;dB"


def _lookup(scores: Scores | None, method: str, track: str, target: str) -> float | None:
    if scores is None:
        return None
    value = scores.get(method, {}).get(track, {}).get(target)
    return None if value is None else float(value)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 90em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
p.note { max-width: 60em; line-height: 1.4; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.5em; text-align: center; vertical-align: top; }
th[scope=row] { text-align: left; }
thead th { background: #f3f3f3; }
audio { width: 14em; display: block; }
.score { font-size: 0.85em; color: #555; margin-top: 0.2em; }
.best { font-weight: bold; color: #0a5; }
.mixture audio { width: 28em; }
.warn { color: #a40; }
"""

# Pause every other player when one starts, so A/B listening never plays two clips at once.
_SCRIPT = (
    'document.addEventListener("play", function (e) { document.querySelectorAll("audio")'
    ".forEach(function (a) { if (a !== e.target) { a.pause(); } }); }, true);"
)


def write_listening_page(
    tracks: Mapping[str, Path],
    methods: Sequence[ExcerptSource],
    out: Path,
    seconds: float = 10.0,
    sample_rate: int = SAMPLE_RATE,
    scores: Scores | None = None,
    title: str = "Listening excerpts",
    targets: Sequence[str] = TARGETS,
    codec: str = "vorbis",
    compression_level: float | None = 0.7,
    hop_seconds: float | None = None,
    silence_db: float = -60.0,
    max_bytes: int | None = 64_000_000,
) -> Path:
    """Write the listening page to `out` (atomically) and return `out`.

    tracks: track name -> decoded track directory (``mixture.npy`` and ``<target>.npy``, float32
    (channels, samples) at `sample_rate`). methods: the columns, in order; each needs
    ``estimates_root/<track>/<target>.wav`` for every track and target (float WAV, (samples,
    channels) as soundfile reads it, at `sample_rate`). scores: optional method -> track -> target
    -> SDR (dB), shown under each estimate's player (missing or NaN: "n/a"; the best of each row in
    bold). seconds, hop_seconds, silence_db: the excerpt window rule (module docstring).
    codec: "vorbis" (default) or "flac"; compression_level: soundfile's, see :func:`encode_clip`.

    Every input file is checked before any encoding, so a missing one fails fast with
    FileNotFoundError naming it. The page holds ``len(tracks) * (1 + len(targets) * (1 +
    len(methods)))`` clips; its size is logged, and a page growing past `max_bytes` raises
    ValueError (fewer tracks or methods, shorter `seconds` or a higher `compression_level`
    shrink it).
    """
    out = Path(out)
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    if not tracks:
        raise ValueError("no tracks given")
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    codec = _resolve_codec(codec)
    mime = _CODECS[codec][2]

    # Check every input first: a typo in one method's path should not cost minutes of encoding.
    for track, track_dir in tracks.items():
        _track_paths(track_dir, targets)
        for method in methods:
            for target in targets:
                path = method.estimate_path(track, target)
                if not path.is_file():
                    raise FileNotFoundError(f"method {method.name!r}, track {track!r}: estimate file missing: {path}")

    total = 0  # base64 characters embedded so far
    encoded = 0  # bytes of the encoded clips and their duration, for the bit rate stated on the page
    clip_seconds = 0.0

    def player(audio: np.ndarray, label: str, track: str, kind: str, target: str, method: str | None = None) -> str:
        """One <audio> element for a (channels, samples) clip; the data-* attributes say what it
        plays (kind: "mixture", "reference" or "estimate") for scripts and tests."""
        nonlocal total, encoded, clip_seconds
        clip_seconds += audio.shape[1] / sample_rate
        clip_bytes = encode_clip(audio, sample_rate, codec, compression_level)
        encoded += len(clip_bytes)
        data = base64.b64encode(clip_bytes).decode("ascii")
        total += len(data)
        if max_bytes is not None and total > max_bytes:
            raise ValueError(
                f"listening page would exceed max_bytes={max_bytes} (at track {track!r}); use fewer tracks or "
                "methods, shorter excerpts or a higher compression level"
            )
        attrs = {"title": label, "data-track": track, "data-kind": kind, "data-target": target}
        if method is not None:
            attrs["data-method"] = method
        attr_text = " ".join(f'{key}="{html.escape(value)}"' for key, value in attrs.items())
        return (
            f'<audio controls preload="none" {attr_text} src="data:{mime};base64,{data}">'
            "Your browser cannot play this clip.</audio>"
        )

    sections: list[str] = []
    summary: list[str] = []
    for index, (track, track_dir) in enumerate(tracks.items()):
        excerpt = choose_excerpt(track_dir, seconds, sample_rate, targets, hop_seconds, silence_db)
        window = excerpt.window
        span = f"{excerpt.start_seconds:.2f}&ndash;{excerpt.stop_seconds:.2f}&nbsp;s"
        silent_note = ""
        if excerpt.silent:
            # Only possible when no window of the track has every reference active; say so on the
            # page, as a silent reference row would otherwise look like a broken player.
            silent_note = f' <span class="warn">(silent in every window: {html.escape(", ".join(excerpt.silent))})</span>'
            logger.warning("%s: no %g s window has every reference active; silent: %s", track, seconds, excerpt.silent)
        logger.info("%s: excerpt %.2f-%.2f s", track, excerpt.start_seconds, excerpt.stop_seconds)
        anchor = f"track-{index + 1}"
        summary.append(f'<li><a href="#{anchor}">{html.escape(track)}</a>: {span}{silent_note}</li>')

        readers = {stem: NpyReader(path) for stem, path in _track_paths(track_dir, targets).items()}
        clip = {stem: reader[:, window.start : window.stop] for stem, reader in readers.items()}
        parts = [
            f'<section id="{anchor}">',
            f"<h2>{html.escape(track)} <small>({span})</small></h2>",
            '<div class="mixture"><p>Mixture</p>',
            player(clip["mixture"], f"{track}: mixture", track, "mixture", "mixture"),
            "</div>",
            "<table>",
            "<thead><tr><th scope=\"col\">target</th><th scope=\"col\">reference</th>"
            + "".join(f'<th scope="col">{html.escape(m.name)}</th>' for m in methods)
            + "</tr></thead>",
            "<tbody>",
        ]
        for target in targets:
            values = [_lookup(scores, m.name, track, target) for m in methods]
            finite = [v for v in values if v is not None and math.isfinite(v)]
            best = max(finite) if len(finite) > 1 else None
            cells = [
                f'<th scope="row">{html.escape(target)}</th>',
                f"<td>{player(clip[target], f'{track}: {target} reference', track, 'reference', target)}</td>",
            ]
            for method, value in zip(methods, values):
                audio = _read_estimate(method.estimate_path(track, target), window, sample_rate)
                score = ""
                if scores is not None:
                    css = "score best" if best is not None and value == best else "score"
                    score = f'<div class="{css}">{_format_score(value)}</div>'
                label = f"{track}: {target}, {method.name}"
                cells.append(f"<td>{player(audio, label, track, 'estimate', target, method.name)}{score}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts += ["</tbody>", "</table>", "</section>"]
        sections.append("\n".join(parts))

    n_clips = len(tracks) * (1 + len(targets) * (1 + len(methods)))
    kbps = encoded * 8 / clip_seconds / 1000
    codec_note = (
        f"Ogg Vorbis (lossy, {kbps:.0f}&nbsp;kbps on average; fine for hearing separation artefacts, "
        "but a faint coding noise is the codec's, not the method's)"
        if codec == "vorbis"
        else f"FLAC (lossless, 16-bit, {kbps:.0f}&nbsp;kbps on average)"
    )
    score_note = (
        " The number under each estimate is that method's SDR for the target on this track, as "
        "given to the page (computed on the whole track, not only on the excerpt); the best of each "
        "row is in bold."
        if scores is not None
        else ""
    )
    hop_note = "every quarter of its length" if hop_seconds is None else f"every {hop_seconds:g}&nbsp;s"
    header = f"""<h1>{html.escape(title)}</h1>
<p class="note">Each track is represented by one excerpt of about {seconds:g}&nbsp;s: the mixture,
the reference stems and every method's estimates all play the <em>same</em> window, so the players can
be compared directly. The window is chosen among windows starting {hop_note} as the one with the highest mixture energy among those where every reference stem is
audible (mean square above {silence_db:g}&nbsp;dBFS). Clips are {codec_note}, with a 10&nbsp;ms fade in
and out and no level normalisation: an estimate that sounds quiet is quiet.{score_note}</p>
<ul>
{chr(10).join(summary)}
</ul>"""
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
{header}
{chr(10).join(sections)}
<script>{_SCRIPT}</script>
</body>
</html>
"""
    atomic_write_text(out, page)
    size = out.stat().st_size
    logger.info(
        "wrote %s: %d tracks, %d methods, %d clips of %g s, %.2f MB (%s, %.0f kbps)",
        out, len(tracks), len(methods), n_clips, seconds, size / 1e6, codec, kbps,
    )
    return out
