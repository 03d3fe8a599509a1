"""A self-contained HTML listening page: short excerpts of the test tracks, the reference stems and
every method's estimates, side by side, so a reviewer can hear what the SDR numbers mean.

Inputs are the decoded cache (``<track_dir>/{mixture,drums,bass,other,vocals}.npy``, float32
(channels, samples), see :func:`demixbench.data.cache.load_decoded`) and, per method, the separated
estimates ``<estimates_root>/<track>/<target>.wav`` (see :func:`demixbench.separate.estimates.write_estimates`).
The excerpt window rule and the encoding of the clips are in :mod:`demixbench.report.excerpts`; the
clips are embedded as base64 ``data:`` URIs, so the page is one file that needs nothing else.
"""

from __future__ import annotations

import base64
import html
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from demixbench import SAMPLE_RATE, TARGETS
from demixbench.data.cache import NpyReader
from demixbench.fileio import atomic_write_text
from demixbench.htmlpage import page
from demixbench.report.excerpts import (
    CODECS,
    Excerpt,
    ExcerptSource,
    choose_excerpt,
    encode_clip,
    read_estimate,
    resolve_codec,
    track_paths,
)

log = logging.getLogger(__name__)

__all__ = ["Scores", "write_listening_page"]

#: Scores as given to the page: method name -> track name -> target -> SDR (dB).
Scores = Mapping[str, Mapping[str, Mapping[str, float]]]


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

_VIEWPORT = '<meta name="viewport" content="width=device-width, initial-scale=1">'


def _check_inputs(
    tracks: Mapping[str, Path], methods: Sequence[ExcerptSource], targets: Sequence[str], seconds: float, codec: str
) -> str:
    """Check the arguments and that every input file exists, before any encoding; return the codec
    this libsndfile can write (see :func:`~demixbench.report.excerpts.resolve_codec`)."""
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    if not tracks:
        raise ValueError("no tracks given")
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    codec = resolve_codec(codec)

    # Check every input first: a typo in one method's path should not cost minutes of encoding.
    for track, track_dir in tracks.items():
        track_paths(track_dir, targets)
        for method in methods:
            for target in targets:
                path = method.estimate_path(track, target)
                if not path.is_file():
                    raise FileNotFoundError(f"method {method.name!r}, track {track!r}: estimate file missing: {path}")
    return codec


class _ClipEncoder:
    """Turns clips into the page's <audio> elements and keeps the page's running totals: the base64
    characters embedded so far (checked against `max_bytes`), and the encoded bytes and seconds of
    audio, for the bit rate stated on the page."""

    def __init__(self, sample_rate: int, codec: str, compression_level: float | None, max_bytes: int | None) -> None:
        self.sample_rate, self.codec, self.compression_level = sample_rate, codec, compression_level
        self.max_bytes = max_bytes
        self.mime = CODECS[codec][2]
        self.total = 0  # base64 characters embedded so far
        self.encoded = 0  # bytes of the encoded clips and their duration, for the bit rate stated on the page
        self.clip_seconds = 0.0

    @property
    def kbps(self) -> float:
        """Average bit rate of the clips encoded so far."""
        return self.encoded * 8 / self.clip_seconds / 1000

    def player(
        self, audio: np.ndarray, label: str, track: str, kind: str, target: str, method: str | None = None
    ) -> str:
        """One <audio> element for a (channels, samples) clip; the data-* attributes say what it
        plays (kind: "mixture", "reference" or "estimate") for scripts and tests."""
        self.clip_seconds += audio.shape[1] / self.sample_rate
        clip_bytes = encode_clip(audio, self.sample_rate, self.codec, self.compression_level)
        self.encoded += len(clip_bytes)
        data = base64.b64encode(clip_bytes).decode("ascii")
        self.total += len(data)
        if self.max_bytes is not None and self.total > self.max_bytes:
            raise ValueError(
                f"listening page would exceed max_bytes={self.max_bytes} (at track {track!r}); use fewer tracks or "
                "methods, shorter excerpts or a higher compression level"
            )
        attrs = {"title": label, "data-track": track, "data-kind": kind, "data-target": target}
        if method is not None:
            attrs["data-method"] = method
        attr_text = " ".join(f'{key}="{html.escape(value)}"' for key, value in attrs.items())
        return (
            f'<audio controls preload="none" {attr_text} src="data:{self.mime};base64,{data}">'
            "Your browser cannot play this clip.</audio>"
        )


def _track_section(
    anchor: str,
    track: str,
    track_dir: Path,
    excerpt: Excerpt,
    methods: Sequence[ExcerptSource],
    scores: Scores | None,
    encoder: _ClipEncoder,
) -> tuple[str, str]:
    """One track's part of the page: its line in the list of excerpts and its <section> (the
    mixture's player, then a row of reference and estimate players per target)."""
    window, targets, sample_rate = excerpt.window, excerpt.references, excerpt.sample_rate
    span = f"{excerpt.start_seconds:.2f}&ndash;{excerpt.stop_seconds:.2f}&nbsp;s"
    silent_note = ""
    if excerpt.silent:
        # Only possible when no window of the track has every reference active; say so on the
        # page, as a silent reference row would otherwise look like a broken player.
        silent_note = f' <span class="warn">(silent in every window: {html.escape(", ".join(excerpt.silent))})</span>'
    summary = f'<li><a href="#{anchor}">{html.escape(track)}</a>: {span}{silent_note}</li>'

    player = encoder.player
    readers = {stem: NpyReader(path) for stem, path in track_paths(track_dir, targets).items()}
    clip = {stem: reader[:, window.start : window.stop] for stem, reader in readers.items()}
    parts = [
        f'<section id="{anchor}">',
        f"<h2>{html.escape(track)} <small>({span})</small></h2>",
        '<div class="mixture"><p>Mixture</p>',
        player(clip["mixture"], f"{track}: mixture", track, "mixture", "mixture"),
        "</div>",
        "<table>",
        '<thead><tr><th scope="col">target</th><th scope="col">reference</th>'
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
            audio = read_estimate(method.estimate_path(track, target), window, sample_rate)
            score = ""
            if scores is not None:
                css = "score best" if best is not None and value == best else "score"
                score = f'<div class="{css}">{_format_score(value)}</div>'
            label = f"{track}: {target}, {method.name}"
            cells.append(f"<td>{player(audio, label, track, 'estimate', target, method.name)}{score}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts += ["</tbody>", "</table>", "</section>"]
    return summary, "\n".join(parts)


def _page(
    title: str,
    summary: Sequence[str],
    sections: Sequence[str],
    seconds: float,
    hop_seconds: float | None,
    silence_db: float,
    codec: str,
    kbps: float,
    scored: bool,
) -> str:
    """The whole page: title, the note on how excerpts were chosen and encoded, the list of
    excerpts and one section per track."""
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
        if scored
        else ""
    )
    hop_note = "every quarter of its length" if hop_seconds is None else f"every {hop_seconds:g}&nbsp;s"
    header = f"""<h1>{html.escape(title)}</h1>
<p class="note">Each track is represented by one excerpt of about {seconds:g}&nbsp;s: the mixture,
the reference stems and every method's estimates all play the <em>same</em> window, so the players can
be compared directly. The window is chosen among windows starting {hop_note} as the one with the highest \
mixture energy among those where every reference stem is
audible (mean square above {silence_db:g}&nbsp;dBFS). Clips are {codec_note}, with a 10&nbsp;ms fade in
and out and no level normalisation: an estimate that sounds quiet is quiet.{score_note}</p>
<ul>
{chr(10).join(summary)}
</ul>"""
    body = f"{header}\n{chr(10).join(sections)}\n<script>{_SCRIPT}</script>"
    return page(title, _CSS, body, head=_VIEWPORT)


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
    bold). seconds, hop_seconds, silence_db: the excerpt window rule (see
    :mod:`demixbench.report.excerpts`). codec: "vorbis" (default) or "flac"; compression_level:
    soundfile's, see :func:`~demixbench.report.excerpts.encode_clip`.

    Every input file is checked before any encoding, so a missing one fails fast with
    FileNotFoundError naming it. The page holds ``len(tracks) * (1 + len(targets) * (1 +
    len(methods)))`` clips; its size is logged, and a page growing past `max_bytes` raises
    ValueError (fewer tracks or methods, shorter `seconds` or a higher `compression_level`
    shrink it).
    """
    out = Path(out)
    codec = _check_inputs(tracks, methods, targets, seconds, codec)
    encoder = _ClipEncoder(sample_rate, codec, compression_level, max_bytes)

    summary: list[str] = []
    sections: list[str] = []
    for index, (track, track_dir) in enumerate(tracks.items()):
        excerpt = choose_excerpt(track_dir, seconds, sample_rate, targets, hop_seconds, silence_db)
        if excerpt.silent:
            log.warning("%s: no %g s window has every reference active; silent: %s", track, seconds, excerpt.silent)
        log.info("%s: excerpt %.2f-%.2f s", track, excerpt.start_seconds, excerpt.stop_seconds)
        item, section = _track_section(f"track-{index + 1}", track, track_dir, excerpt, methods, scores, encoder)
        summary.append(item)
        sections.append(section)

    n_clips = len(tracks) * (1 + len(targets) * (1 + len(methods)))
    kbps = encoder.kbps
    text = _page(title, summary, sections, seconds, hop_seconds, silence_db, codec, kbps, scores is not None)
    atomic_write_text(out, text)
    size = out.stat().st_size
    log.info(
        "wrote %s: %d tracks, %d methods, %d clips of %g s, %.2f MB (%s, %.0f kbps)",
        out,
        len(tracks),
        len(methods),
        n_clips,
        seconds,
        size / 1e6,
        codec,
        kbps,
    )
    return out
