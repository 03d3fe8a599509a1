"""The drum stem: kick, snare and hi-hat on a per-track pattern.

Kick (sine whose pitch falls exponentially from ~90-130 Hz to ~45-60 Hz, decaying amplitude,
a small click), snare (decaying tone + band-passed noise) and hi-hat (high-passed noise bursts,
closed or open) on a per-track 16-step pattern with per-bar variations (extra/dropped kicks,
ghost notes, fills, open hats), humanised timing and velocity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from demixbench.data.synthetic.frame import Song, add, pan


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
    snare_lo = rng.uniform(900.0, 2000.0)
    return _DrumKit(
        kick=_kick(rng, sr),
        snare_tone_hz=rng.uniform(160.0, 260.0),
        snare_tone_decay=rng.uniform(0.03, 0.08),
        snare_noise_decay=rng.uniform(0.05, 0.14),
        snare_noise_level=rng.uniform(0.5, 0.9),
        snare_sos=signal.butter(2, [snare_lo, snare_lo * rng.uniform(3.0, 6.0)], btype="bandpass", fs=sr, output="sos"),
        hat_sos=signal.butter(4, rng.uniform(6000.0, 9000.0), btype="highpass", fs=sr, output="sos"),
        hat_decay=rng.uniform(0.01, 0.035),
        open_hat_decay=rng.uniform(0.12, 0.25),
    )


def _snare(kit: _DrumKit, rng: np.random.Generator, sr: int) -> np.ndarray:
    """One snare hit: decaying drum-head tone (two modes) + band-passed noise (the wires)."""
    t = np.arange(int(sr * 5 * max(kit.snare_noise_decay, kit.snare_tone_decay))) / sr
    f = kit.snare_tone_hz
    modes = np.sin(2 * np.pi * f * t) + 0.5 * np.sin(2 * np.pi * 1.6 * f * t)
    tone = modes * np.exp(-t / kit.snare_tone_decay)
    noise = signal.sosfilt(kit.snare_sos, rng.standard_normal(len(t))) * np.exp(-t / kit.snare_noise_decay)
    return 0.6 * tone + kit.snare_noise_level * 3.0 * noise


def _hat(kit: _DrumKit, rng: np.random.Generator, sr: int, open_: bool) -> np.ndarray:
    """One hi-hat hit: high-passed noise with a short (closed) or longer (open) decay."""
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


def drums(rng: np.random.Generator, song: Song) -> np.ndarray:
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
            add(buses["hat" if piece == "open_hat" else piece], start, velocity * hit)
    hat_side = rng.choice([-1.0, 1.0])
    return (
        pan(buses["kick"], rng.uniform(-0.05, 0.05))
        + pan(buses["snare"], rng.uniform(-0.15, 0.15), int(rng.integers(-8, 9)))
        + 0.6 * pan(buses["hat"], hat_side * rng.uniform(0.2, 0.5), int(hat_side * rng.integers(0, 20)))
    )
