"""The song frame shared by every instrument of a track, and the signal helpers they use.

A per-track ``Song`` fixes the shared musical frame:

* tempo (80-150 BPM), 16th-note grid, 16 steps per 4/4 bar, a little swing;
* key (any of the 12 tonics) and mode (major or natural minor);
* a four-chord diatonic progression, one chord per bar, looped (sometimes with 7ths).

The helpers place notes (``add``), pan them (constant-power panning plus small inter-channel
delays: ``pan``), shape them (``envelope``) and filter them (``lowpass``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

#: 16th notes per 4/4 bar.
STEPS_PER_BAR = 16

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
# Common four-chord progressions as 0-based scale degrees.
_PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 4, 3), (1, 4, 0, 5), (0, 3, 0, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 5, 3, 4), (0, 3, 6, 2), (5, 6, 0, 0)),
}


@dataclass(frozen=True)
class Song:
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
        return int(np.ceil(self.n / (self.step_samples * STEPS_PER_BAR)))

    def time(self, bar: int, step: int) -> int:
        """Sample index of a 16th step (0..15) in a bar; odd 16ths are delayed by the swing."""
        swung = step + (self.swing if step % 2 == 1 else 0.0)
        return int(round((bar * STEPS_PER_BAR + swung) * self.step_samples))

    def chord(self, bar: int) -> tuple[int, ...]:
        """Chord of a bar: semitones above the tonic, root first."""
        return self.chords[bar % len(self.chords)]

    def scale_midi(self, degree: int, base: int) -> int:
        """MIDI pitch of a (possibly negative or > 6) scale degree above ``base + tonic``."""
        octave, d = divmod(degree, 7)
        return base + self.tonic + 12 * octave + self.scale[d]


def make_song(rng: np.random.Generator, sr: int, n: int) -> Song:
    """Draw tempo, swing, key, mode and chord progression."""
    mode = "major" if rng.random() < 0.55 else "minor"
    scale = _MAJOR if mode == "major" else _MINOR
    progression = _PROGRESSIONS[mode][rng.integers(len(_PROGRESSIONS[mode]))]
    sevenths = rng.random() < 0.3
    chords = []
    for degree in progression:
        members = (0, 2, 4, 6) if sevenths else (0, 2, 4)
        chords.append(tuple(12 * ((degree + m) // 7) + scale[(degree + m) % 7] for m in members))
    return Song(
        sr=sr,
        n=n,
        bpm=float(rng.uniform(80.0, 150.0)),
        swing=float(rng.choice([0.0, 0.0, rng.uniform(0.05, 0.2)])),
        tonic=int(rng.integers(12)),
        scale=scale,
        chords=tuple(chords),
    )


def hz(midi: np.ndarray | float) -> np.ndarray | float:
    """Frequency (Hz) of a MIDI pitch (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((np.asarray(midi) - 69.0) / 12.0)


def add(buf: np.ndarray, start: int, x: np.ndarray) -> None:
    """Add ``x`` into ``buf`` (along axis 0) at ``start``, cropping whatever falls outside."""
    if start < 0:
        x, start = x[-start:], 0
    m = min(len(x), len(buf) - start)
    if m > 0:
        buf[start : start + m] += x[:m]


def pan(mono: np.ndarray, position: float, delay: int = 0) -> np.ndarray:
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


def envelope(n: int, sr: int, attack: float, release: float, decay: float = np.inf, sustain: float = 1.0) -> np.ndarray:
    """Attack-decay-sustain-release envelope of ``n`` samples (times in seconds)."""
    t = np.arange(n) / sr
    env = np.minimum(1.0, t / max(attack, 1e-4))
    if np.isfinite(decay):
        env *= sustain + (1.0 - sustain) * np.exp(-np.maximum(t - attack, 0.0) / decay)
    n_rel = min(n, max(1, int(release * sr)))
    env[n - n_rel :] *= np.linspace(1.0, 0.0, n_rel)
    return env


def lowpass(x: np.ndarray, cutoff: float, sr: int, order: int = 2) -> np.ndarray:
    """Butterworth low-pass of ``x`` along axis 0 (samples), the cutoff capped at 0.45 ``sr``."""
    sos = signal.butter(order, min(cutoff, 0.45 * sr), btype="lowpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x, axis=0)
