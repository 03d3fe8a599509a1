"""The listening page: excerpt window rule, embedded clips, escaping, errors."""

from __future__ import annotations

import base64
import html
import io
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from demixbench import SAMPLE_RATE, TARGETS
from demixbench.report.excerpts import ExcerptSource, choose_excerpt, choose_window, encode_clip
from demixbench.report.listening import write_listening_page
from demixbench.separate.estimates import write_estimates

SR = SAMPLE_RATE
#: Apostrophe, space and a non-ASCII letter: all must survive escaping and the file system.
ODD_TRACK = "Don't Stop Müller"
ODD_METHOD = "<b>UMX</b> & co"
VOID = {"meta", "link", "br", "img", "input", "source", "hr", "wbr"}


def _stems(rng: np.random.Generator, seconds: float) -> dict[str, np.ndarray]:
    """Tonal stems (channels=2, samples): a few sines each plus a little noise, all audible."""
    t = np.arange(round(seconds * SR)) / SR
    stems = {}
    for i, target in enumerate(TARGETS):
        freqs = rng.uniform(80, 2000, size=3) * (i + 1) ** 0.5
        tone = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in freqs) / 3
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t) ** 2
        left, right = 0.2 * tone * envelope, 0.15 * tone * envelope
        stems[target] = (np.stack([left, right]) + 0.005 * rng.standard_normal((2, t.size))).astype(np.float32)
    stems["mixture"] = sum(stems[t] for t in TARGETS).astype(np.float32)
    return stems


def _write_decoded(track_dir: Path, stems: dict[str, np.ndarray]) -> Path:
    track_dir.mkdir(parents=True, exist_ok=True)
    for stem, audio in stems.items():
        np.save(track_dir / f"{stem}.npy", audio)
    return track_dir


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """2 decoded tracks of 3 s and the estimates of 2 methods for both."""
    root = tmp_path_factory.mktemp("excerpts")
    rng = np.random.default_rng(3)
    tracks, references = {}, {}
    for name in (ODD_TRACK, "Plain Track"):
        references[name] = _stems(rng, 3.0)
        tracks[name] = _write_decoded(root / "decoded" / name, references[name])
    methods = []
    for m, (method, gain) in enumerate(((ODD_METHOD, 0.9), ("Oracle IRM", 1.0))):
        for name, stems in references.items():
            estimates = np.stack([gain * stems[t] + 0.02 * (m + 1) * stems["mixture"] for t in TARGETS])
            write_estimates(root / f"method{m}" / name, estimates, TARGETS, SR)
        methods.append(ExcerptSource(method, root / f"method{m}"))
    return tracks, references, methods, root


class _Page(HTMLParser):
    """Collect <audio> attributes and text; check that every non-void element is closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.audio: list[dict[str, str]] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.doctype = None

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        if tag == "audio":
            self.audio.append(dict(attrs))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert page.doctype and page.doctype.lower() == "doctype html"
    assert page.stack == [], f"unclosed elements: {page.stack}"
    return page


def _clip(page: _Page, **attrs) -> tuple[np.ndarray, int]:
    """Decode the one clip whose data-* attributes match -> ((channels, samples), sample rate)."""
    (audio,) = [a for a in page.audio if all(a.get(f"data-{k}") == v for k, v in attrs.items())]
    header, data = audio["src"].split(",", 1)
    assert header == "data:audio/ogg;base64"
    decoded, rate = sf.read(io.BytesIO(base64.b64decode(data)), dtype="float32", always_2d=True)
    return decoded.T, rate


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.fixture(scope="module")
def page(setup):
    tracks, _, methods, root = setup
    scores = {
        ODD_METHOD: {ODD_TRACK: {"drums": 4.5678, "bass": float("nan")}},
        "Oracle IRM": {ODD_TRACK: {"drums": 9.0}},
    }
    out = write_listening_page(
        tracks, methods, root / "page" / "listen.html", seconds=1.0, scores=scores, title="Test <page>"
    )
    return out, _parse(out)


def test_page_structure_and_escaping(setup, page):
    tracks, _, methods, _ = setup
    out, parsed = page
    # Per track: the mixture, then a reference and an estimate per method for every target.
    assert len(parsed.audio) == len(tracks) * (1 + len(TARGETS) * (1 + len(methods)))
    for audio in parsed.audio:
        assert audio["src"].startswith("data:audio/ogg;base64,")
        assert "controls" in audio and audio["preload"] == "none"
    raw = out.read_text(encoding="utf-8")
    text = "".join(parsed.text)
    # Names come back intact through the parser and never appear unescaped in the markup.
    assert ODD_TRACK in text and ODD_METHOD in text and "Test <page>" in text
    assert html.escape(ODD_METHOD) in raw and "<b>UMX" not in raw and "<page>" not in raw
    assert {a["data-track"] for a in parsed.audio} == set(tracks)
    assert {a.get("data-method") for a in parsed.audio} == {None, *(m.name for m in methods)}
    # No external resources.
    assert "http://" not in raw and "https://" not in raw
    # Scores: formatted, NaN shown as n/a, the best of a row marked.
    assert "SDR 4.57" in text and "SDR n/a" in text and "SDR 9.00" in text
    assert 'class="score best">SDR 9.00' in raw


def test_clips_decode_to_the_excerpt(setup, page):
    tracks, references, methods, _ = setup
    _, parsed = page
    excerpt = choose_excerpt(tracks[ODD_TRACK], seconds=1.0)
    window = excerpt.window
    assert window.stop - window.start == SR
    assert f"{excerpt.start_seconds:.2f}" in "".join(parsed.text)

    clip, rate = _clip(parsed, track=ODD_TRACK, kind="reference", target="vocals")
    assert rate == SR and clip.shape == (2, SR)
    source = references[ODD_TRACK]["vocals"][:, window.start : window.stop]
    assert _correlation(clip, source) > 0.9  # Vorbis is lossy: similar, not equal

    clip, _ = _clip(parsed, track=ODD_TRACK, kind="mixture")
    assert clip.shape == (2, SR)
    assert _correlation(clip, references[ODD_TRACK]["mixture"][:, window.start : window.stop]) > 0.9

    path = methods[0].estimate_path(ODD_TRACK, "bass")
    estimate = sf.read(path, dtype="float32", always_2d=True)[0].T[:, window.start : window.stop]
    clip, _ = _clip(parsed, track=ODD_TRACK, kind="estimate", target="bass", method=ODD_METHOD)
    assert clip.shape == (2, SR) and _correlation(clip, estimate) > 0.9


def test_window_picks_the_loud_part():
    rng = np.random.default_rng(0)
    n = 3 * SR
    references = {t: 0.01 * rng.standard_normal((2, n)) for t in TARGETS}
    references["vocals"][:, int(1.5 * SR) : int(2.5 * SR)] *= 30  # loud second at 1.5-2.5 s
    mixture = sum(references.values())
    window = choose_window(mixture, references, window=SR)  # hop: a quarter second
    assert (window.start, window.stop) == (int(1.5 * SR), int(2.5 * SR))
    assert window.active == TARGETS


def test_window_prefers_all_references_audible():
    rng = np.random.default_rng(1)
    n = 3 * SR
    references = {t: 0.01 * rng.standard_normal((2, n)) for t in TARGETS}
    references["vocals"][:, : 2 * SR] = 0.0  # vocals only in the last second ...
    references["drums"][:, :SR] *= 50  # ... while the loudest second is the first
    mixture = sum(references.values())
    window = choose_window(mixture, references, window=SR, hop=SR // 2)
    assert window.start == 2 * SR and window.active == TARGETS

    # No window with audible vocals at all: loudest window among the rest, vocals reported silent.
    references["vocals"][:] = 0.0
    window = choose_window(sum(references.values()), references, window=SR, hop=SR // 2)
    assert window.start == 0 and window.active == ("drums", "bass", "other")


def test_window_of_a_short_track_is_the_whole_track():
    x = np.ones((2, 1000), dtype=np.float32)
    window = choose_window(x, {"a": x}, window=SR)
    assert (window.start, window.stop) == (0, 1000)


def test_missing_estimate_names_the_file(setup, tmp_path):
    tracks, _, methods, _ = setup
    broken = tmp_path / "broken"
    for target in TARGETS[:-1]:
        (broken / ODD_TRACK).mkdir(parents=True, exist_ok=True)
        (broken / ODD_TRACK / f"{target}.wav").write_bytes(methods[0].estimate_path(ODD_TRACK, target).read_bytes())
    with pytest.raises(FileNotFoundError, match=r"vocals\.wav"):
        write_listening_page(
            {ODD_TRACK: tracks[ODD_TRACK]}, [ExcerptSource("broken", broken)], tmp_path / "p.html", seconds=1.0
        )
    assert not (tmp_path / "p.html").exists()


def test_missing_decoded_stem_names_the_file(tmp_path):
    _write_decoded(tmp_path / "t", {"mixture": np.zeros((2, 10), np.float32)})
    with pytest.raises(FileNotFoundError, match=r"drums\.npy"):
        write_listening_page({"t": tmp_path / "t"}, [], tmp_path / "p.html", seconds=1.0)


def test_size_limit_and_flac(setup, tmp_path):
    tracks, _, methods, _ = setup
    one = {ODD_TRACK: tracks[ODD_TRACK]}
    with pytest.raises(ValueError, match="max_bytes"):
        write_listening_page(one, methods[:1], tmp_path / "p.html", seconds=1.0, max_bytes=10_000)
    out = write_listening_page(one, [], tmp_path / "flac.html", seconds=0.5, codec="flac")
    parsed = _parse(out)
    assert len(parsed.audio) == 1 + len(TARGETS)
    assert all(a["src"].startswith("data:audio/flac;base64,") for a in parsed.audio)


def test_encode_clip_fades_edges():
    clip = np.ones((1, SR), dtype=np.float32)
    decoded, _ = sf.read(io.BytesIO(encode_clip(clip, SR, codec="flac")), always_2d=True)
    assert abs(decoded[0, 0]) < 0.01 and abs(decoded[-1, 0]) < 0.01
    assert math.isclose(decoded[SR // 2, 0], 1.0, abs_tol=1e-3)
