"""The vocal stem: a sung melody with moving formants, silent between phrases.

A glottal-pulse-like source (band-limited pulse train with spectral tilt and a little
aspiration noise) whose f0 follows a melody in the key, with portamento, 5-6 Hz vibrato of
random depth and slow pitch drift; formant filtering by three resonances per vowel,
cross-faded per syllable so the formants move; syllable envelopes, occasional consonant noise
bursts, and phrases separated by rests (vocals are exactly silent between phrases, like real
songs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from demixbench.data.synthetic.frame import STEPS_PER_BAR, Song, add, envelope, hz, lowpass, pan

# Formant frequencies (Hz) of five vowels for a low voice: a, e, i, o, u.
_VOWEL_FORMANTS = np.array(
    [[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]],
    dtype=np.float64,
)
_FORMANT_BANDWIDTHS = np.array([90.0, 110.0, 150.0])
_FORMANT_GAINS = np.array([1.0, 0.6, 0.3])


@dataclass(frozen=True)
class _Syllable:
    start: int  # samples
    length: int  # samples
    midi: int
    vowel: int  # row of _VOWEL_FORMANTS
    consonant: str  # "", "s" (fricative) or "t" (plosive)


def _vocal_score(rng: np.random.Generator, song: Song, low: int, high: int) -> list[_Syllable]:
    """Phrases of syllables on the 16th grid, separated by rests of >= half a bar.

    The melody is a random walk on the scale, pulled to chord tones on strong beats.
    """
    syllables: list[_Syllable] = []
    bar_steps = STEPS_PER_BAR
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


def _glottal_source(f0: np.ndarray, sr: int, tilt: float, breath: float, rng: np.random.Generator) -> np.ndarray:
    """Voice-like harmonic source from an f0 contour (Hz, (samples,)) -> (samples,).

    A band-limited pulse train (Dirichlet kernel: the sum of N equal cosine harmonics in
    closed form, so no loop over harmonics and no aliasing) followed by a two-pole
    spectral tilt, like the glottal flow's roll-off, plus pitch-synchronous breath noise.
    """
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
    filters = []
    for f, bw in zip(_VOWEL_FORMANTS[vowel] * scale, _FORMANT_BANDWIDTHS):
        filters.append(signal.iirpeak(min(f, 0.45 * sr), f / bw, fs=sr))
    return filters


def vocals(rng: np.random.Generator, song: Song) -> np.ndarray:
    """Vocal stem, (samples, 2): sung melody with moving formants, silent between phrases."""
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
        add(env, syl.start, envelope(syl.length, sr, attack, release, decay=0.4, sustain=0.7))
        if syl.consonant == "s":  # fricative: ~60 ms of bright noise just before the vowel
            burst = rng.standard_normal(int(0.06 * sr)) * np.hanning(int(0.06 * sr))
            add(consonants, syl.start - int(0.03 * sr), 0.3 * burst)
        elif syl.consonant == "t":  # plosive: a very short broadband burst
            n_burst = int(0.008 * sr)
            add(consonants, syl.start, 0.6 * rng.standard_normal(n_burst) * np.linspace(1.0, 0.0, n_burst))
    env = np.minimum(env, 1.0)  # overlapping releases must not swell

    # f0: glide between notes (one-pole smoothing of the pitch), vibrato, slow drift.
    k = np.exp(-1.0 / (glide * sr))
    pitch = signal.lfilter([1.0 - k], [1.0, -k], pitch, zi=[k * pitch[0]])[0]
    t = np.arange(n) / sr
    # Singers start a note straight and let the vibrato bloom: fade it in over ~0.25 s.
    since_onset = (np.arange(n) - (onsets[current] if score else 0)) / sr
    vibrato = (
        vib_depth
        / 100.0
        * np.clip(since_onset / 0.25, 0.0, 1.0)
        * np.sin(2 * np.pi * vib_rate * t + rng.uniform(0, 2 * np.pi))
    )
    drift = lowpass(rng.standard_normal(n), 3.0, sr) * 0.3
    f0 = hz(pitch + vibrato + drift)
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
    return pan(mono, rng.uniform(-0.15, 0.15), int(rng.integers(-4, 5)))
