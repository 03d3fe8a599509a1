"""The tonal stems over the song's chords: bass, and "other" (pad + plucked arpeggio).

* **bass** -- roots of the progression in the 40-200 Hz range, with some fifths and octaves, on
  a per-track rhythm; saw/square/sine mix, soft saturation, low-pass;
* **other** -- a pad (per chord tone, two detuned band-limited saws, one per channel, slow
  attack, low-passed) and a plucked arpeggio (decaying harmonic series, higher harmonics
  decaying faster) over the same chords in the mid-high register.

Both use the band-limited sawtooth ``_saw``; the pad and the pluck voice the chords with
``_voicing``.
"""

from __future__ import annotations

import numpy as np

from demixbench.data.synthetic.frame import STEPS_PER_BAR, Song, add, envelope, hz, lowpass, pan


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


def bass(rng: np.random.Generator, song: Song) -> np.ndarray:
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
            f = float(hz(midi))
            n_note = max(1, int(length * song.step_samples * legato))
            phase = rng.random() + f / sr * np.arange(n_note)
            saw = _saw(phase, f / sr)
            square = saw - _saw(phase + 0.5, f / sr)  # difference of shifted saws is a pulse wave
            osc = w_saw * saw + 0.5 * w_square * square + w_sine * np.sin(2 * np.pi * phase)
            env = envelope(n_note, sr, attack, 0.02, decay, sustain)
            velocity = (1.0 if step % 4 == 0 else 0.8) * rng.uniform(0.85, 1.0)
            add(out, song.time(bar, step), velocity * env * osc)
    # Saturation adds upper harmonics that the low-pass then tames: a per-track "amp" colour.
    out = np.tanh(drive * out) / np.tanh(drive)
    out = lowpass(out, rng.uniform(250.0, 900.0), sr, order=2)
    return pan(out, rng.uniform(-0.1, 0.1), int(rng.integers(-3, 4)))


# --------------------------------------------------------------------------------------
# Other: pad + pluck
# --------------------------------------------------------------------------------------


def _voicing(song: Song, bar: int, low: int) -> list[int]:
    """MIDI notes of the bar's chord, each folded into the octave [low, low + 12)."""
    return sorted(low + (song.tonic + semis - low) % 12 for semis in song.chord(bar))


def _pad(rng: np.random.Generator, song: Song) -> np.ndarray:
    """Pad, (samples, 2): per chord tone two detuned saws (one per channel), slow attack."""
    sr = song.sr
    detune = rng.uniform(4.0, 15.0)  # cents; the L/R detuning makes the pad wide
    attack, release = rng.uniform(0.15, 0.6), rng.uniform(0.2, 0.5)
    w_sine = rng.uniform(0.0, 0.6)  # softer (sine-heavy) or brighter pads
    low = int(rng.integers(52, 58))
    bar_len = STEPS_PER_BAR * song.step_samples
    out = np.zeros((2, song.n))  # channel-major while summing: contiguous rows are faster
    for bar in range(song.n_bars):
        start = song.time(bar, 0)
        n_note = int(bar_len + release * sr)
        env = envelope(n_note, sr, attack, release)
        ramp = np.arange(n_note)
        for midi in _voicing(song, bar, low):
            for ch, sign in ((0, -1.0), (1, 1.0)):
                inc = float(hz(midi + sign * detune / 100.0)) / sr
                phase = rng.random() + inc * ramp
                osc = (1.0 - w_sine) * _saw(phase, inc) + w_sine * np.sin(2 * np.pi * phase)
                add(out[ch], start, env * osc)
    return lowpass(out.T, rng.uniform(1500.0, 4000.0), sr)


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


def _pluck(rng: np.random.Generator, song: Song) -> np.ndarray:
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
            note = _pluck_note(float(hz(midi)), sr, decay, brightness)
            add(out, song.time(bar, step), (1.0 if step % 4 == 0 else 0.75) * note)
    side = rng.choice([-1.0, 1.0])
    return pan(out, side * rng.uniform(0.2, 0.7), int(side * rng.integers(0, 30)))


def other(rng: np.random.Generator, song: Song) -> np.ndarray:
    """'Other' stem, (samples, 2): pad + plucked arpeggio in a per-track balance."""
    pad = _pad(rng, song)
    pluck = _pluck(rng, song)
    pad /= np.sqrt(np.mean(pad**2)) + 1e-12
    pluck /= np.sqrt(np.mean(pluck**2)) + 1e-12
    return rng.uniform(0.4, 1.0) * pad + rng.uniform(0.4, 1.0) * pluck
