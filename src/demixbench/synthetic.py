"""Deterministic synthetic MUSDB18: small, structured songs with exact stems.

The generator writes a dataset that the real ``musdb`` parser reads, either in the
MUSDB18-HQ layout (``ROOT/{train,test}/<name>/{mixture,drums,bass,other,vocals}.wav``,
16-bit PCM like the real MUSDB18-HQ; stems are quantised to the 16-bit grid first, so the
mixture is *exactly* the sum of the stems, also after musdb decodes them) or in the MUSDB18
layout (``ROOT/{train,test}/<name>.stem.mp4``, AAC, via stempeg).

Musical model
-------------
Every track is one short song. A per-track "song" fixes the shared musical frame:

* tempo (80-150 BPM), 16th-note grid, 16 steps per 4/4 bar, a little swing;
* key (any of the 12 tonics) and mode (major or natural minor);
* a four-chord diatonic progression, one chord per bar, looped (sometimes with 7ths).

Each stem is rendered by small instrument functions that all follow that frame, so the
stems are correlated in time and harmony like real music (separation is not trivial:
the sources overlap in time and, partly, in frequency) yet each has a distinct,
learnable signature (separation is possible):

* **drums** -- kick (sine whose pitch falls exponentially from ~90-130 Hz to ~45-60 Hz,
  decaying amplitude, a small click), snare (decaying tone + band-passed noise) and
  hi-hat (high-passed noise bursts, closed or open) on a per-track 16-step pattern with
  per-bar variations (extra/dropped kicks, ghost notes, fills, open hats), humanised
  timing and velocity;
* **bass** -- roots of the progression in the 40-200 Hz range, with some fifths and
  octaves, on a per-track rhythm; saw/square/sine mix, soft saturation, low-pass;
* **other** -- a pad (per chord tone, two detuned band-limited saws, one per channel,
  slow attack, low-passed) and a plucked arpeggio (decaying harmonic series, higher
  harmonics decaying faster) over the same chords in the mid-high register;
* **vocals** -- a glottal-pulse-like source (band-limited pulse train with spectral
  tilt and a little aspiration noise) whose f0 follows a melody in the key, with
  portamento, 5-6 Hz vibrato of random depth and slow pitch drift; formant filtering by
  three resonances per vowel, cross-faded per syllable so the formants move; syllable
  envelopes, occasional consonant noise bursts, and phrases separated by rests (vocals
  are exactly silent between phrases, like real songs).

Per track we also draw the instruments' timbre parameters, stereo placement
(constant-power panning plus small inter-channel delays or detuning) and per-stem
gains (+-6 dB around a base balance). All stems of a track are then scaled by one
common factor so that the mixture (and every stem) peaks at <= 0.9.

Determinism: everything is drawn from ``numpy.random.default_rng([seed, split_id,
index, stream])``, one stream per instrument, so a track does not depend on how many
other tracks are generated, and the same spec always yields byte-identical files.
All synthesis is vectorised over samples (loops only run over notes and events), so a
12 s track takes a fraction of a second.

Imports: ``scipy.signal`` and ``scipy.io.wavfile`` are imported inside the functions that
use them, not at the top. The workflow imports this module when it builds the DAG (for
``track_names``), and scipy takes about 0.9 s to import: every ``snakemake`` invocation, and
on a cluster every job, would pay for it.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from demixbench import SAMPLE_RATE, TARGETS
from demixbench.musdb18 import MUSDB18_TRACKS

log = logging.getLogger(__name__)

#: Dataset splits, in the order their tracks are generated and numbered.
SPLITS: tuple[str, ...] = ("train", "test")
#: Supported output formats: MUSDB18-HQ (wav folders) and MUSDB18 (NI stems mp4).
FORMATS: tuple[str, ...] = ("wav", "stem.mp4")
#: Track naming: generated "Synth NNN - Title" names, or the official MUSDB18 names (the first
#: n_train / n_test of each subset), for a stand-in of the real dataset's layout.
NAMINGS: tuple[str, ...] = ("synthetic", "musdb18")
#: Upper bound on the peak of every written signal.
MAX_PEAK: float = 0.9
#: Full scale of 16-bit PCM: stems are quantised to multiples of 1 / _PCM_SCALE.
_PCM_SCALE: float = 32768.0
#: Stem order of a stem.mp4 file (musdb's ``stem_ids``).
STEM_MP4_ORDER: tuple[str, ...] = ("mixture", "drums", "bass", "other", "vocals")

_SPLIT_IDS = {split: i for i, split in enumerate(SPLITS)}
# Independent random streams per track, so tweaking one instrument does not change the others.
_STREAM_SONG, _STREAM_DRUMS, _STREAM_BASS, _STREAM_OTHER, _STREAM_VOCALS, _STREAM_MIX = range(6)
# Base level of each stem in dB (before the random +-6 dB), roughly a pop balance.
_BASE_GAIN_DB = {"drums": 0.0, "bass": -1.0, "other": -3.0, "vocals": 1.0}
_STEPS_PER_BAR = 16

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
# Common four-chord progressions as 0-based scale degrees.
_PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 4, 3), (1, 4, 0, 5), (0, 3, 0, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 5, 3, 4), (0, 3, 6, 2), (5, 6, 0, 0)),
}
# Formant frequencies (Hz) of five vowels for a low voice: a, e, i, o, u.
_VOWEL_FORMANTS = np.array(
    [[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]],
    dtype=np.float64,
)
_FORMANT_BANDWIDTHS = np.array([90.0, 110.0, 150.0])
_FORMANT_GAINS = np.array([1.0, 0.6, 0.3])

_TITLE_NAMES = (
    "Night", "Summer", "Ocean", "River", "Winter", "Midnight", "Heaven", "City", "Mother",
    "Stranger", "Lover", "Devil", "Angel", "Sailor", "Dreamer", "Morning", "Autumn", "Desert",
)
_TITLE_NOUNS = (
    "Drive", "Rain", "Song", "Fire", "Dream", "Road", "Heart", "Light", "Shadow", "Garden",
    "Echo", "Voices", "Lullaby", "Horizon", "Promise", "Letter", "Machine", "Gold",
)
_TITLE_ADJECTIVES = (
    "Electric", "Silent", "Broken", "Golden", "Endless", "Velvet", "Neon", "Hollow", "Paper",
    "Crimson", "Distant", "Quiet", "Wild", "Glass", "Slow", "Burning", "Lonely", "Blue",
)
_TITLE_PHRASES = (
    "Don't Look Back", "We're Still Here", "It's Over Now", "Can't Stop Now", "Rock 'n' Roll",
    "Hold On", "Into The Blue", "Under The Bridge", "Let It Go", "Won't Be Long",
)


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate: track counts, track length, sample rate, seed, file format and naming."""

    n_train: int = 12
    n_test: int = 4
    duration: float = 12.0
    sample_rate: int = SAMPLE_RATE
    seed: int = 0
    format: str = "wav"
    names: str = "synthetic"

    def __post_init__(self) -> None:
        if not isinstance(self.n_train, int) or self.n_train < 1:
            raise ValueError(f"n_train must be an integer >= 1, got {self.n_train!r}")
        if not isinstance(self.n_test, int) or self.n_test < 1:
            raise ValueError(f"n_test must be an integer >= 1, got {self.n_test!r}")
        if not self.duration > 0:
            raise ValueError(f"duration must be > 0 seconds, got {self.duration!r}")
        if not isinstance(self.sample_rate, int) or self.sample_rate < 8000:
            raise ValueError(f"sample_rate must be an integer >= 8000 Hz, got {self.sample_rate!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        if self.names not in NAMINGS:
            raise ValueError(f"names must be one of {NAMINGS}, got {self.names!r}")
        if self.names == "musdb18":
            for split, count in zip(SPLITS, (self.n_train, self.n_test)):
                if count > len(MUSDB18_TRACKS[split]):
                    raise ValueError(f"names='musdb18' has {len(MUSDB18_TRACKS[split])} {split} tracks, got n_{split}={count}")

    @property
    def n_samples(self) -> int:
        """Samples per track."""
        return max(1, int(round(self.duration * self.sample_rate)))


def track_names(spec: SyntheticSpec) -> dict[str, list[str]]:
    """Track names per split: ``{"train": [...], "test": [...]}``.

    Names look like MUSDB18's "Artist - Title", e.g. ``"Synth 003 - Night's Drive"``: they
    contain spaces and " - ", and every third track (including the first of each split)
    an apostrophe, to exercise path handling. The artist number is unique across splits
    (train tracks are numbered first), so names are unique; the title depends only on
    (seed, split, index). Names never contain "/". With ``spec.names == "musdb18"``: the first
    n_train / n_test official MUSDB18 names of each subset instead.
    """
    if spec.names == "musdb18":
        return {split: list(MUSDB18_TRACKS[split][:count]) for split, count in zip(SPLITS, (spec.n_train, spec.n_test))}
    names: dict[str, list[str]] = {}
    number = 1
    for split, count in zip(SPLITS, (spec.n_train, spec.n_test)):
        names[split] = []
        for index in range(count):
            names[split].append(f"Synth {number:03d} - {_title(spec.seed, split, index)}")
            number += 1
    return names


def generate_track(spec: SyntheticSpec, split: str, index: int) -> dict[str, np.ndarray]:
    """Render one track.

    Returns ``{"drums", "bass", "other", "vocals", "mixture"}`` -> float32 arrays of shape
    ``(spec.n_samples, 2)`` (samples, channels). ``mixture`` is computed in float32 as
    ``((drums + bass) + other) + vocals``, and peaks at <= 0.9, as does every stem.
    """
    if split not in _SPLIT_IDS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index!r}")

    def rng(stream: int) -> np.random.Generator:
        return np.random.default_rng([spec.seed, _SPLIT_IDS[split], index, stream])

    song = _make_song(rng(_STREAM_SONG), spec.sample_rate, spec.n_samples)
    raw = {
        "drums": _drums(rng(_STREAM_DRUMS), song),
        "bass": _bass(rng(_STREAM_BASS), song),
        "other": _other(rng(_STREAM_OTHER), song),
        "vocals": _vocals(rng(_STREAM_VOCALS), song),
    }
    return _mix(rng(_STREAM_MIX), raw)


def write_dataset(spec: SyntheticSpec, root: Path) -> dict[str, list[str]]:
    """Write the whole dataset under ``root`` and return ``track_names(spec)``.

    Layout for ``format="wav"``: ``root/{split}/<name>/{mixture,drums,bass,other,vocals}.wav``
    (16-bit PCM, stereo); for ``format="stem.mp4"``: ``root/{split}/<name>.stem.mp4`` with
    streams (mixture, drums, bass, other, vocals), AAC (stempeg's NIStemsWriter, or its
    StreamsWriter when MP4Box is missing). Everything is written into the
    sibling ``.<root name>.tmp-<pid>`` and renamed to ``root`` at the end, so an
    interrupted run never leaves a half-written dataset at ``root``.

    Raises FileExistsError if ``root`` already exists.
    """
    root = Path(root)
    if root.exists():
        raise FileExistsError(f"refusing to overwrite existing dataset root: {root}")
    names = track_names(spec)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    if tmp.exists():  # left behind by a killed run that had our pid
        shutil.rmtree(tmp)
    jobs = [(split, i, name) for split in SPLITS for i, name in enumerate(names[split])]
    log.info(
        "writing synthetic MUSDB18 (%d train + %d test tracks, %.1f s, seed %d, %s) to %s",
        spec.n_train, spec.n_test, spec.duration, spec.seed, spec.format, root,
    )
    try:
        for split in SPLITS:
            (tmp / split).mkdir(parents=True)
        for split, index, name in tqdm(jobs, desc="synthetic tracks", unit="track"):
            stems = generate_track(spec, split, index)
            _write_track(spec, tmp / split, name, stems)
            log.debug("wrote %s/%s", split, name)
        if root.exists():  # appeared while we were writing; do not clobber it
            raise FileExistsError(f"refusing to overwrite existing dataset root: {root}")
        tmp.rename(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %d tracks to %s", len(jobs), root)
    return names


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _write_track(spec: SyntheticSpec, split_dir: Path, name: str, stems: dict[str, np.ndarray]) -> None:
    """Write one track's stems (each (samples, 2) float32 on the 16-bit grid) in ``spec.format``."""
    if spec.format == "wav":
        track_dir = split_dir / name
        track_dir.mkdir()
        for stem in ("mixture", *TARGETS):
            # 16-bit PCM as in MUSDB18-HQ (musdb decodes every file as s16le anyway). The
            # samples are already on the 16-bit grid, so this is lossless. scipy rather than
            # soundfile writes them so that two runs of the same spec are byte-identical.
            from scipy.io import wavfile  # imported on use: see "Imports" in the module docstring

            pcm = np.round(stems[stem] * _PCM_SCALE).astype(np.int16)
            wavfile.write(track_dir / f"{stem}.wav", spec.sample_rate, pcm)
    else:
        _write_stem_mp4(split_dir / f"{name}.stem.mp4", stems, spec.sample_rate)


def _write_stem_mp4(path: Path, stems: dict[str, np.ndarray], sample_rate: int) -> None:
    """Write a 5-stream AAC ``.stem.mp4`` (mixture, drums, bass, other, vocals)."""
    import stempeg  # imported lazily: it probes for ffmpeg at import time

    data = np.stack([stems[s] for s in STEM_MP4_ORDER])  # (5, samples, 2)
    if _mp4box_available():
        writer = stempeg.NIStemsWriter(output_sample_rate=sample_rate)
    else:
        writer = stempeg.StreamsWriter(
            codec=stempeg.cmds.get_aac_codec(),
            bitrate=256000,
            output_sample_rate=sample_rate,
            stem_names=list(STEM_MP4_ORDER),
        )
    stempeg.write_stems(str(path), data, sample_rate=sample_rate, writer=writer)


@functools.cache
def _mp4box_available() -> bool:
    """Whether stempeg's NIStemsWriter can run (it needs GPAC's MP4Box); warn once if not."""
    import stempeg

    if stempeg.cmds.mp4box_exists():
        return True
    # MP4Box only adds the Traktor (NI stems) metadata; the AAC streams, which are all that
    # musdb reads, are the same with stempeg's plain ffmpeg StreamsWriter.
    log.warning("MP4Box not found: writing .stem.mp4 files with stempeg.StreamsWriter (no NI metadata)")
    return False


# --------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------


def _title(seed: int, split: str, index: int) -> str:
    """A song title drawn from (seed, split, index); apostrophe in every third one."""
    rng = np.random.default_rng([seed, _SPLIT_IDS[split], index, 99])
    kind = index % 3
    if kind == 0:
        return f"{rng.choice(_TITLE_NAMES)}'s {rng.choice(_TITLE_NOUNS)}"
    if kind == 1:
        return f"{rng.choice(_TITLE_ADJECTIVES)} {rng.choice(_TITLE_NOUNS)}"
    return str(rng.choice(_TITLE_PHRASES)) if rng.random() < 0.5 else (
        f"{rng.choice(_TITLE_ADJECTIVES)} {rng.choice(_TITLE_NAMES)}"
    )


# --------------------------------------------------------------------------------------
# Song frame and signal helpers
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Song:
    """The musical frame shared by all instruments of one track."""

    sr: int
    n: int  # samples
    bpm: float
    swing: float  # delay of odd 16ths, as a fraction of a 16th
    tonic: int  # MIDI pitch class of the key, 0..11
    scale: tuple[int, ...]  # semitone offsets of the 7 scale degrees
    chords: tuple[tuple[int, ...], ...]  # per progression step: semitones above the tonic, root first

    @property
    def step_samples(self) -> float:
        """Samples per 16th note."""
        return self.sr * 60.0 / self.bpm / 4.0

    @property
    def n_bars(self) -> int:
        """Bars needed to cover the track (the last one is cut)."""
        return int(np.ceil(self.n / (self.step_samples * _STEPS_PER_BAR)))

    def time(self, bar: int, step: int) -> int:
        """Sample index of a 16th step (0..15) in a bar; odd 16ths are delayed by the swing."""
        swung = step + (self.swing if step % 2 == 1 else 0.0)
        return int(round((bar * _STEPS_PER_BAR + swung) * self.step_samples))

    def chord(self, bar: int) -> tuple[int, ...]:
        """Chord of a bar: semitones above the tonic, root first."""
        return self.chords[bar % len(self.chords)]

    def scale_midi(self, degree: int, base: int) -> int:
        """MIDI pitch of a (possibly negative or > 6) scale degree above ``base + tonic``."""
        octave, d = divmod(degree, 7)
        return base + self.tonic + 12 * octave + self.scale[d]


def _make_song(rng: np.random.Generator, sr: int, n: int) -> _Song:
    """Draw tempo, swing, key, mode and chord progression."""
    mode = "major" if rng.random() < 0.55 else "minor"
    scale = _MAJOR if mode == "major" else _MINOR
    progression = _PROGRESSIONS[mode][rng.integers(len(_PROGRESSIONS[mode]))]
    sevenths = rng.random() < 0.3
    chords = []
    for degree in progression:
        members = (0, 2, 4, 6) if sevenths else (0, 2, 4)
        chords.append(tuple(12 * ((degree + m) // 7) + scale[(degree + m) % 7] for m in members))
    return _Song(
        sr=sr,
        n=n,
        bpm=float(rng.uniform(80.0, 150.0)),
        swing=float(rng.choice([0.0, 0.0, rng.uniform(0.05, 0.2)])),
        tonic=int(rng.integers(12)),
        scale=scale,
        chords=tuple(chords),
    )


def _hz(midi: np.ndarray | float) -> np.ndarray | float:
    return 440.0 * 2.0 ** ((np.asarray(midi) - 69.0) / 12.0)


def _add(buf: np.ndarray, start: int, x: np.ndarray) -> None:
    """Add ``x`` into ``buf`` (along axis 0) at ``start``, cropping whatever falls outside."""
    if start < 0:
        x, start = x[-start:], 0
    m = min(len(x), len(buf) - start)
    if m > 0:
        buf[start : start + m] += x[:m]


def _pan(mono: np.ndarray, position: float, delay: int = 0) -> np.ndarray:
    """Constant-power pan of a (samples,) signal to (samples, 2).

    ``position`` in [-1, 1] (left .. right); ``delay`` > 0 delays the right channel,
    < 0 the left, by that many samples: a small inter-channel time difference.
    """
    angle = (position + 1.0) * np.pi / 4.0
    out = np.stack([np.cos(angle) * mono, np.sin(angle) * mono], axis=1) * np.sqrt(2.0)
    if delay:
        ch = 1 if delay > 0 else 0
        d = abs(delay)
        out[d:, ch] = out[:-d, ch].copy()
        out[:d, ch] = 0.0
    return out


def _saw(phase: np.ndarray, inc: float) -> np.ndarray:
    """Band-limited (polyBLEP) sawtooth in [-1, 1] from phase in cycles and increment per sample."""
    t = phase % 1.0
    y = 2.0 * t - 1.0
    # PolyBLEP: replace the naive discontinuity by a 2-sample polynomial step, which
    # removes most of the aliasing that would otherwise fold into the audible band.
    lo = t < inc
    x = t[lo] / inc
    y[lo] -= x + x - x * x - 1.0
    hi = t > 1.0 - inc
    x = (t[hi] - 1.0) / inc
    y[hi] -= x * x + x + x + 1.0
    return y


def _envelope(
    n: int, sr: int, attack: float, release: float, decay: float = np.inf, sustain: float = 1.0
) -> np.ndarray:
    """Attack-decay-sustain-release envelope of ``n`` samples (times in seconds)."""
    t = np.arange(n) / sr
    env = np.minimum(1.0, t / max(attack, 1e-4))
    if np.isfinite(decay):
        env *= sustain + (1.0 - sustain) * np.exp(-np.maximum(t - attack, 0.0) / decay)
    n_rel = min(n, max(1, int(release * sr)))
    env[n - n_rel :] *= np.linspace(1.0, 0.0, n_rel)
    return env


def _lowpass(x: np.ndarray, cutoff: float, sr: int, order: int = 2) -> np.ndarray:
    from scipy import signal  # imported on use: see "Imports" in the module docstring
    sos = signal.butter(order, min(cutoff, 0.45 * sr), btype="lowpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x, axis=0)


# --------------------------------------------------------------------------------------
# Drums
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DrumKit:
    kick: np.ndarray  # one kick hit; a drum machine repeats the same sample
    snare_tone_hz: float
    snare_tone_decay: float
    snare_noise_decay: float
    snare_noise_level: float
    snare_sos: np.ndarray  # band-pass for the snare wires
    hat_sos: np.ndarray  # high-pass for the hats
    hat_decay: float
    open_hat_decay: float


def _kick(rng: np.random.Generator, sr: int) -> np.ndarray:
    """One kick hit: sine swept down exponentially (~90-130 -> 45-60 Hz), decaying, plus a click."""
    f_hi, f_lo = rng.uniform(90.0, 130.0), rng.uniform(45.0, 60.0)
    pitch_decay, amp_decay = rng.uniform(0.02, 0.06), rng.uniform(0.08, 0.2)
    t = np.arange(int(sr * 6 * amp_decay)) / sr
    # Closed-form phase of f(t) = f_lo + (f_hi - f_lo) exp(-t / pitch_decay).
    phase = 2 * np.pi * (f_lo * t + (f_hi - f_lo) * pitch_decay * (1.0 - np.exp(-t / pitch_decay)))
    drive = rng.uniform(1.0, 3.0)  # saturation: some kicks are round, some punchy
    body = np.tanh(drive * np.sin(phase) * np.exp(-t / amp_decay)) / np.tanh(drive)
    click = rng.uniform(0.05, 0.3) * rng.standard_normal(len(t)) * np.exp(-t / 0.002)
    return body + click


def _drum_kit(rng: np.random.Generator, sr: int) -> _DrumKit:
    """Draw a per-track drum kit."""
    from scipy import signal  # imported on use: see "Imports" in the module docstring
    snare_lo = rng.uniform(900.0, 2000.0)
    return _DrumKit(
        kick=_kick(rng, sr),
        snare_tone_hz=rng.uniform(160.0, 260.0),
        snare_tone_decay=rng.uniform(0.03, 0.08),
        snare_noise_decay=rng.uniform(0.05, 0.14),
        snare_noise_level=rng.uniform(0.5, 0.9),
        snare_sos=signal.butter(
            2, [snare_lo, snare_lo * rng.uniform(3.0, 6.0)], btype="bandpass", fs=sr, output="sos"
        ),
        hat_sos=signal.butter(4, rng.uniform(6000.0, 9000.0), btype="highpass", fs=sr, output="sos"),
        hat_decay=rng.uniform(0.01, 0.035),
        open_hat_decay=rng.uniform(0.12, 0.25),
    )


def _snare(kit: _DrumKit, rng: np.random.Generator, sr: int) -> np.ndarray:
    """One snare hit: decaying drum-head tone (two modes) + band-passed noise (the wires)."""
    from scipy import signal  # imported on use: see "Imports" in the module docstring
    t = np.arange(int(sr * 5 * max(kit.snare_noise_decay, kit.snare_tone_decay))) / sr
    f = kit.snare_tone_hz
    modes = np.sin(2 * np.pi * f * t) + 0.5 * np.sin(2 * np.pi * 1.6 * f * t)
    tone = modes * np.exp(-t / kit.snare_tone_decay)
    noise = signal.sosfilt(kit.snare_sos, rng.standard_normal(len(t))) * np.exp(-t / kit.snare_noise_decay)
    return 0.6 * tone + kit.snare_noise_level * 3.0 * noise


def _hat(kit: _DrumKit, rng: np.random.Generator, sr: int, open_: bool) -> np.ndarray:
    """One hi-hat hit: high-passed noise with a short (closed) or longer (open) decay."""
    from scipy import signal  # imported on use: see "Imports" in the module docstring
    decay = kit.open_hat_decay if open_ else kit.hat_decay
    t = np.arange(int(sr * 5 * decay)) / sr
    return signal.sosfilt(kit.hat_sos, rng.standard_normal(len(t))) * np.exp(-t / decay)


def _drum_pattern(rng: np.random.Generator) -> dict[str, set[int]]:
    """A per-track one-bar 16-step pattern: kick, snare and hat steps."""
    extra = rng.choice([3, 6, 7, 8, 10, 11, 14], size=rng.integers(1, 4), replace=False)
    kick = {0} | {int(s) for s in extra}
    if rng.random() < 0.6:
        kick.add(8)
    snare = {4, 12} if rng.random() < 0.8 else {8}  # backbeat or half-time feel
    hat_mode = rng.integers(3)
    hats = set(range(0, 16, 2)) if hat_mode == 0 else set(range(16)) if hat_mode == 1 else {2, 6, 10, 14}
    return {"kick": kick, "snare": snare, "hat": hats}


def _drums(rng: np.random.Generator, song: _Song) -> np.ndarray:
    """Drum stem, (samples, 2): pattern with per-bar variations, humanised, panned per piece."""
    sr = song.sr
    kit = _drum_kit(rng, sr)
    base = _drum_pattern(rng)
    jitter = rng.uniform(0.0, 0.004) * sr  # timing looseness, samples
    buses = {piece: np.zeros(song.n) for piece in ("kick", "snare", "hat")}
    for bar in range(song.n_bars):
        kick, snare, hats = set(base["kick"]), set(base["snare"]), set(base["hat"])
        ghosts: set[int] = set()
        if rng.random() < 0.3:  # syncopated extra kick
            kick.add(int(rng.choice([1, 3, 5, 7, 9, 11, 13, 15])))
        if rng.random() < 0.25 and len(kick) > 1:  # drop a kick that is not the downbeat
            kick.discard(int(rng.choice(sorted(kick - {0}))))
        if rng.random() < 0.3:
            ghosts.add(int(rng.integers(16)))
        open_hat = rng.random() < 0.3
        if open_hat:
            hats -= {14, 15}
        if bar % 4 == 3 and rng.random() < 0.5:  # fill at the end of a phrase
            snare |= {13, 14, 15}
        events = (  # (piece, step, velocity); fill hits crescendo towards the next bar
            [("kick", s, 1.0) for s in sorted(kick)]
            + [("snare", s, 0.7 + 0.1 * (s - 12) if s > 12 else 1.0) for s in sorted(snare)]
            + [("snare", s, 0.25) for s in sorted(ghosts - snare)]
            + [("hat", s, 0.9 if s % 4 == 0 else 0.6) for s in sorted(hats)]  # accents on beats
            + ([("open_hat", 14, 0.8)] if open_hat else [])
        )
        for piece, step, velocity in events:
            start = song.time(bar, step) + int(round(rng.normal(0.0, jitter)))
            velocity *= rng.uniform(0.85, 1.0)
            if piece == "kick":
                hit = kit.kick
            elif piece == "snare":
                hit = _snare(kit, rng, sr)
            else:
                hit = _hat(kit, rng, sr, open_=piece == "open_hat")
            _add(buses["hat" if piece == "open_hat" else piece], start, velocity * hit)
    hat_side = rng.choice([-1.0, 1.0])
    return (
        _pan(buses["kick"], rng.uniform(-0.05, 0.05))
        + _pan(buses["snare"], rng.uniform(-0.15, 0.15), int(rng.integers(-8, 9)))
        + 0.6 * _pan(buses["hat"], hat_side * rng.uniform(0.2, 0.5), int(hat_side * rng.integers(0, 20)))
    )


# --------------------------------------------------------------------------------------
# Bass
# --------------------------------------------------------------------------------------

# One-bar bass rhythms: (16th step, length in 16ths).
_BASS_RHYTHMS = (
    ((0, 4), (4, 4), (8, 4), (12, 4)),
    tuple((s, 2) for s in range(0, 16, 2)),
    ((0, 3), (3, 3), (6, 2), (8, 3), (11, 3), (14, 2)),
    ((0, 8), (8, 8)),
    ((0, 6), (6, 2), (8, 6), (14, 2)),
    ((0, 2), (3, 1), (4, 2), (8, 2), (10, 2), (12, 2), (15, 1)),
)


def _bass(rng: np.random.Generator, song: _Song) -> np.ndarray:
    """Bass stem, (samples, 2): chord roots (some fifths/octaves) in ~40-200 Hz, per-track timbre."""
    sr = song.sr
    rhythm = _BASS_RHYTHMS[rng.integers(len(_BASS_RHYTHMS))]
    w_saw, w_square, w_sine = rng.dirichlet([1.0, 1.0, 1.0])
    drive = rng.uniform(1.0, 4.0)
    legato = rng.uniform(0.6, 0.95)
    attack, decay, sustain = rng.uniform(0.003, 0.015), rng.uniform(0.08, 0.4), rng.uniform(0.3, 0.9)
    out = np.zeros(song.n)
    for bar in range(song.n_bars):
        # Roots in MIDI 31-42 (49-92 Hz); fifths and octaves above stay below ~190 Hz.
        root = 31 + (song.tonic + song.chord(bar)[0] - 31) % 12
        for step, length in rhythm:
            u = rng.random()
            midi = root if u < 0.65 or step == 0 else root + 7 if u < 0.82 else root + 12
            f = float(_hz(midi))
            n_note = max(1, int(length * song.step_samples * legato))
            phase = rng.random() + f / sr * np.arange(n_note)
            saw = _saw(phase, f / sr)
            square = saw - _saw(phase + 0.5, f / sr)  # difference of shifted saws is a pulse wave
            osc = w_saw * saw + 0.5 * w_square * square + w_sine * np.sin(2 * np.pi * phase)
            env = _envelope(n_note, sr, attack, 0.02, decay, sustain)
            velocity = (1.0 if step % 4 == 0 else 0.8) * rng.uniform(0.85, 1.0)
            _add(out, song.time(bar, step), velocity * env * osc)
    # Saturation adds upper harmonics that the low-pass then tames: a per-track "amp" colour.
    out = np.tanh(drive * out) / np.tanh(drive)
    out = _lowpass(out, rng.uniform(250.0, 900.0), sr, order=2)
    return _pan(out, rng.uniform(-0.1, 0.1), int(rng.integers(-3, 4)))


# --------------------------------------------------------------------------------------
# Other: pad + pluck
# --------------------------------------------------------------------------------------


def _voicing(song: _Song, bar: int, low: int) -> list[int]:
    """MIDI notes of the bar's chord, each folded into the octave [low, low + 12)."""
    return sorted(low + (song.tonic + semis - low) % 12 for semis in song.chord(bar))


def _pad(rng: np.random.Generator, song: _Song) -> np.ndarray:
    """Pad, (samples, 2): per chord tone two detuned saws (one per channel), slow attack."""
    sr = song.sr
    detune = rng.uniform(4.0, 15.0)  # cents; the L/R detuning makes the pad wide
    attack, release = rng.uniform(0.15, 0.6), rng.uniform(0.2, 0.5)
    w_sine = rng.uniform(0.0, 0.6)  # softer (sine-heavy) or brighter pads
    low = int(rng.integers(52, 58))
    bar_len = _STEPS_PER_BAR * song.step_samples
    out = np.zeros((2, song.n))  # channel-major while summing: contiguous rows are faster
    for bar in range(song.n_bars):
        start = song.time(bar, 0)
        n_note = int(bar_len + release * sr)
        env = _envelope(n_note, sr, attack, release)
        ramp = np.arange(n_note)
        for midi in _voicing(song, bar, low):
            for ch, sign in ((0, -1.0), (1, 1.0)):
                inc = float(_hz(midi + sign * detune / 100.0)) / sr
                phase = rng.random() + inc * ramp
                osc = (1.0 - w_sine) * _saw(phase, inc) + w_sine * np.sin(2 * np.pi * phase)
                _add(out[ch], start, env * osc)
    return _lowpass(out.T, rng.uniform(1500.0, 4000.0), sr)


def _pluck_note(f: float, sr: int, decay: float, brightness: float) -> np.ndarray:
    """One plucked note, (samples,): harmonic series, higher harmonics decaying faster (like a string)."""
    n = int(4 * decay * sr)  # the fundamental is down 35 dB by then
    t = np.arange(n) / sr
    theta = 2 * np.pi * f * t
    # sin(k theta) by the Chebyshev recurrence sin((k+1)x) = 2 cos(x) sin(kx) - sin((k-1)x):
    # two multiply-adds per harmonic instead of a sin() each.
    two_cos = 2.0 * np.cos(theta)
    prev, cur = np.zeros(n), np.sin(theta)
    env = np.exp(-t / decay)
    faster = np.exp(-t * 0.8 / decay)  # each harmonic decays this much faster than the one below
    out = np.zeros(n)
    for k in range(1, min(8, int(0.45 * sr / f)) + 1):
        amp = brightness ** (k - 1) / k
        if amp < 1e-3:  # inaudible under the lower harmonics; dull plucks stop early
            break
        out += amp * cur * env
        prev, cur = cur, two_cos * cur - prev
        env *= faster
    n_fade = int(0.01 * sr)
    out[-n_fade:] *= np.linspace(1.0, 0.0, n_fade)  # end at exactly zero
    return out


def _pluck(rng: np.random.Generator, song: _Song) -> np.ndarray:
    """Plucked arpeggio over the chords, (samples, 2), in the MIDI 64-92 register."""
    sr = song.sr
    decay, brightness = rng.uniform(0.08, 0.25), rng.uniform(0.3, 0.8)
    density = rng.uniform(0.5, 0.9)
    grid = 2 if rng.random() < 0.6 else 1  # 8th or 16th notes
    direction = rng.integers(3)  # up, down, random
    low = int(rng.integers(64, 70))
    out = np.zeros(song.n)
    for bar in range(song.n_bars):
        chord = _voicing(song, bar, low)
        tones = chord + [m + 12 for m in chord]
        if direction == 1:
            tones = tones[::-1]
        for i, step in enumerate(range(0, 16, grid)):
            if step != 0 and rng.random() > density:
                continue
            midi = tones[int(rng.integers(len(tones)))] if direction == 2 else tones[i % len(tones)]
            note = _pluck_note(float(_hz(midi)), sr, decay, brightness)
            _add(out, song.time(bar, step), (1.0 if step % 4 == 0 else 0.75) * note)
    side = rng.choice([-1.0, 1.0])
    return _pan(out, side * rng.uniform(0.2, 0.7), int(side * rng.integers(0, 30)))


def _other(rng: np.random.Generator, song: _Song) -> np.ndarray:
    """'Other' stem, (samples, 2): pad + plucked arpeggio in a per-track balance."""
    pad = _pad(rng, song)
    pluck = _pluck(rng, song)
    pad /= np.sqrt(np.mean(pad**2)) + 1e-12
    pluck /= np.sqrt(np.mean(pluck**2)) + 1e-12
    return rng.uniform(0.4, 1.0) * pad + rng.uniform(0.4, 1.0) * pluck


# --------------------------------------------------------------------------------------
# Vocals
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Syllable:
    start: int  # samples
    length: int  # samples
    midi: int
    vowel: int  # row of _VOWEL_FORMANTS
    consonant: str  # "", "s" (fricative) or "t" (plosive)


def _vocal_score(rng: np.random.Generator, song: _Song, low: int, high: int) -> list[_Syllable]:
    """Phrases of syllables on the 16th grid, separated by rests of >= half a bar.

    The melody is a random walk on the scale, pulled to chord tones on strong beats.
    """
    syllables: list[_Syllable] = []
    bar_steps = _STEPS_PER_BAR
    total_steps = song.n_bars * bar_steps
    # Start after a one-bar intro half of the time, as many songs do.
    pos = bar_steps if (rng.random() < 0.5 and song.n_bars > 2) else int(rng.integers(0, 4))
    degree = int(rng.integers(7, 12))  # scale index above (low rounded to the key) -- mid register
    # scale_midi(0, base) is then the tonic at or just below `low`.
    base = low - (low - song.tonic) % 12 - song.tonic
    while pos < total_steps:
        phrase_end = min(total_steps, pos + bar_steps * int(rng.integers(1, 3)) - int(rng.integers(0, 5)))
        while pos < phrase_end:
            length = int(rng.choice([2, 2, 3, 4, 4, 6, 8]))
            bar, step = divmod(pos, bar_steps)
            degree += int(rng.choice([-2, -1, -1, 0, 1, 1, 2]))
            midi = song.scale_midi(degree, base)
            if step % 4 == 0:  # strong beat: snap to the nearest chord tone
                chord_pcs = {(song.tonic + s) % 12 for s in song.chord(bar)}
                candidates = [m for m in range(midi - 2, midi + 3) if m % 12 in chord_pcs]
                midi = min(candidates, key=lambda m: abs(m - midi)) if candidates else midi
            if midi < low or midi >= high:  # keep the singer in range: reflect the walk
                degree += 3 if midi < low else -3
                midi = song.scale_midi(degree, base)
            start = song.time(bar, step)
            length_samples = int(min(length, phrase_end - pos) * song.step_samples)
            syllables.append(
                _Syllable(
                    start=start,
                    length=max(length_samples, int(0.05 * song.sr)),
                    midi=midi,
                    vowel=int(rng.integers(len(_VOWEL_FORMANTS))),
                    consonant=str(rng.choice(["", "", "", "s", "t"])),
                )
            )
            pos += length + (1 if rng.random() < 0.15 else 0)  # occasional breath between syllables
        pos = phrase_end + int(rng.integers(bar_steps // 2, bar_steps + 1))  # rest between phrases
    return syllables


def _glottal_source(
    f0: np.ndarray, sr: int, tilt: float, breath: float, rng: np.random.Generator
) -> np.ndarray:
    """Voice-like harmonic source from an f0 contour (Hz, (samples,)) -> (samples,).

    A band-limited pulse train (Dirichlet kernel: the sum of N equal cosine harmonics in
    closed form, so no loop over harmonics and no aliasing) followed by a two-pole
    spectral tilt, like the glottal flow's roll-off, plus pitch-synchronous breath noise.
    """
    from scipy import signal  # imported on use: see "Imports" in the module docstring
    theta = 2 * np.pi * np.cumsum(f0 / sr)
    n_harm = max(1, int(0.45 * sr / max(float(f0.max()), 1.0)))
    half = np.sin(theta / 2.0)
    safe = np.abs(half) > 1e-9
    pulses = np.full_like(theta, float(n_harm))
    pulses[safe] = np.sin((n_harm + 0.5) * theta[safe]) / (2.0 * half[safe]) - 0.5
    pulses /= n_harm
    src = signal.lfilter([1.0 - tilt], [1.0, -tilt], pulses)
    src = signal.lfilter([1.0 - tilt], [1.0, -tilt], src) * 10.0  # ~unit level: `breath` is relative
    noise = rng.standard_normal(len(f0)) * (0.5 + 0.5 * np.cos(theta))
    return src + breath * noise


def _formant_filters(vowel: int, scale: float, sr: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Three (b, a) band-pass resonators for a vowel, formants scaled for the voice type."""
    from scipy import signal  # imported on use: see "Imports" in the module docstring
    filters = []
    for f, bw in zip(_VOWEL_FORMANTS[vowel] * scale, _FORMANT_BANDWIDTHS):
        filters.append(signal.iirpeak(min(f, 0.45 * sr), f / bw, fs=sr))
    return filters


def _vocals(rng: np.random.Generator, song: _Song) -> np.ndarray:
    """Vocal stem, (samples, 2): sung melody with moving formants, silent between phrases."""
    from scipy import signal  # imported on use: see "Imports" in the module docstring
    sr, n = song.sr, song.n
    high_voice = rng.random() < 0.5
    low, high = (57, 76) if high_voice else (47, 66)
    formant_scale = rng.uniform(1.1, 1.2) if high_voice else rng.uniform(0.95, 1.05)
    vib_rate, vib_depth = rng.uniform(5.0, 6.0), rng.uniform(10.0, 60.0)  # Hz, cents
    glide = rng.uniform(0.02, 0.06)  # portamento time constant, seconds
    tilt, breath = rng.uniform(0.85, 0.95), rng.uniform(0.01, 0.06)
    attack, release = rng.uniform(0.015, 0.04), rng.uniform(0.04, 0.09)
    score = _vocal_score(rng, song, low, high)

    # Per-sample targets: pitch and vowel are held from each syllable onset to the next
    # (so a glide starts from the last sung note), the amplitude envelope is per syllable.
    onsets = np.array([max(syl.start, 0) for syl in score], dtype=np.int64)
    current = np.searchsorted(onsets, np.arange(n), side="right") - 1  # syllable index per sample
    current = np.maximum(current, 0)
    if score:
        pitch = np.array([syl.midi for syl in score], dtype=np.float64)[current]
        vowel_index = np.array([syl.vowel for syl in score])[current]
    else:
        pitch, vowel_index = np.full(n, float(low)), np.zeros(n, dtype=np.int64)
    vowels = (vowel_index[None, :] == np.arange(len(_VOWEL_FORMANTS))[:, None]).astype(np.float64)
    env = np.zeros(n)
    consonants = np.zeros(n)
    for syl in score:
        _add(env, syl.start, _envelope(syl.length, sr, attack, release, decay=0.4, sustain=0.7))
        if syl.consonant == "s":  # fricative: ~60 ms of bright noise just before the vowel
            burst = rng.standard_normal(int(0.06 * sr)) * np.hanning(int(0.06 * sr))
            _add(consonants, syl.start - int(0.03 * sr), 0.3 * burst)
        elif syl.consonant == "t":  # plosive: a very short broadband burst
            n_burst = int(0.008 * sr)
            _add(consonants, syl.start, 0.6 * rng.standard_normal(n_burst) * np.linspace(1.0, 0.0, n_burst))
    env = np.minimum(env, 1.0)  # overlapping releases must not swell

    # f0: glide between notes (one-pole smoothing of the pitch), vibrato, slow drift.
    k = np.exp(-1.0 / (glide * sr))
    pitch = signal.lfilter([1.0 - k], [1.0, -k], pitch, zi=[k * pitch[0]])[0]
    t = np.arange(n) / sr
    # Singers start a note straight and let the vibrato bloom: fade it in over ~0.25 s.
    since_onset = (np.arange(n) - (onsets[current] if score else 0)) / sr
    vibrato = (
        vib_depth / 100.0
        * np.clip(since_onset / 0.25, 0.0, 1.0)
        * np.sin(2 * np.pi * vib_rate * t + rng.uniform(0, 2 * np.pi))
    )
    drift = _lowpass(rng.standard_normal(n), 3.0, sr) * 0.3
    f0 = _hz(pitch + vibrato + drift)
    source = _glottal_source(f0, sr, tilt, breath, rng) * env

    # Moving formants: filter the source with each vowel's resonators and cross-fade the
    # outputs with smoothed vowel weights (~30 ms transitions between syllables).
    kv = np.exp(-1.0 / (0.03 * sr))
    weights = signal.lfilter([1.0 - kv], [1.0, -kv], vowels, axis=1)
    voiced = np.zeros(n)
    for vowel in np.flatnonzero(vowels.any(axis=1)):
        resonators = _formant_filters(vowel, formant_scale, sr)
        shaped = sum(g * signal.lfilter(b, a, source) for g, (b, a) in zip(_FORMANT_GAINS, resonators))
        voiced += weights[vowel] * shaped
    unvoiced = signal.sosfilt(signal.butter(2, 3500.0, btype="highpass", fs=sr, output="sos"), consonants)
    # Gate to the envelope's support plus 50 ms (the formants' ring-out), so that pauses
    # are digital silence rather than decaying filter tails.
    support = np.cumsum(env > 0)
    tail = int(0.05 * sr)
    gate = support - np.concatenate([np.zeros(tail, dtype=support.dtype), support[:-tail]])[:n] > 0
    # The factor sets the vowel/consonant balance (consonants are short, quieter accents).
    mono = (voiced * 4.0 + unvoiced) * (gate | (consonants != 0))
    return _pan(mono, rng.uniform(-0.15, 0.15), int(rng.integers(-4, 5)))


# --------------------------------------------------------------------------------------
# Mixing
# --------------------------------------------------------------------------------------


def _mix(rng: np.random.Generator, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Balance raw stems, scale them by one common factor, and add the float32 mixture.

    Each stem is normalised to unit RMS, then given its base level +-6 dB. The common
    factor sets the loudest of (mixture, stems) to a random peak in [0.6, 0.89]: <= 0.9
    with margin for float32 rounding of the sum.
    """
    stems = {}
    for name in TARGETS:
        x = raw[name]
        rms = np.sqrt(np.mean(x**2))
        gain_db = _BASE_GAIN_DB[name] + rng.uniform(-6.0, 6.0)
        stems[name] = x / rms * 10 ** (gain_db / 20.0) if rms > 0 else x
    mix64 = sum(stems[name] for name in TARGETS)
    peak = max(float(np.max(np.abs(mix64))), *(float(np.max(np.abs(s))) for s in stems.values()))
    scale = rng.uniform(0.6, 0.89) / peak if peak > 0 else 1.0
    # Quantise each stem to the 16-bit grid: the float32 sum of such values (|x| < 1) is exact,
    # so the mixture written as 16-bit PCM is exactly the sum of the written stems.
    out = {name: (np.round(stems[name] * scale * _PCM_SCALE) / _PCM_SCALE).astype(np.float32) for name in TARGETS}
    out["mixture"] = ((out["drums"] + out["bass"]) + out["other"]) + out["vocals"]
    return out
