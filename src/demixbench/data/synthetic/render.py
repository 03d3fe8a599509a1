"""Deterministic synthetic MUSDB18: render one track, small and structured, with exact stems.

Musical model
-------------
Every track is one short song. A per-track "song" (``frame.Song``) fixes the shared musical
frame: tempo, swing, key, mode and a looped four-chord progression.

Each stem is rendered by small instrument functions (``drums.drums``, ``tonal.bass``,
``tonal.other``, ``vocals.vocals``) that all follow that frame, so the stems are correlated in
time and harmony like real music (separation is not trivial: the sources overlap in time and,
partly, in frequency) yet each has a distinct, learnable signature (separation is possible).

Per track we also draw the instruments' timbre parameters, stereo placement
(constant-power panning plus small inter-channel delays or detuning) and per-stem
gains (+-6 dB around a base balance). All stems of a track are then scaled by one
common factor so that the mixture (and every stem) peaks at <= 0.9.

Determinism: everything is drawn from ``numpy.random.default_rng([seed, split_id,
index, stream])``, one stream per instrument, so a track does not depend on how many
other tracks are generated, and the same spec always yields byte-identical files.
All synthesis is vectorised over samples (loops only run over notes and events), so a
12 s track takes a fraction of a second.
"""

from __future__ import annotations

import numpy as np

from demixbench import TARGETS
from demixbench.data.synthetic.drums import drums
from demixbench.data.synthetic.frame import make_song
from demixbench.data.synthetic.spec import SPLIT_IDS, SPLITS, SyntheticSpec
from demixbench.data.synthetic.tonal import bass, other
from demixbench.data.synthetic.vocals import vocals

#: Full scale of 16-bit PCM: stems are quantised to multiples of 1 / PCM_SCALE.
PCM_SCALE: float = 32768.0

# Independent random streams per track, so tweaking one instrument does not change the others.
_STREAM_SONG, _STREAM_DRUMS, _STREAM_BASS, _STREAM_OTHER, _STREAM_VOCALS, _STREAM_MIX = range(6)
# Base level of each stem in dB (before the random +-6 dB), roughly a pop balance.
_BASE_GAIN_DB = {"drums": 0.0, "bass": -1.0, "other": -3.0, "vocals": 1.0}


def generate_track(spec: SyntheticSpec, split: str, index: int) -> dict[str, np.ndarray]:
    """Render one track.

    Returns ``{"drums", "bass", "other", "vocals", "mixture"}`` -> float32 arrays of shape
    ``(spec.n_samples, 2)`` (samples, channels). ``mixture`` is computed in float32 as
    ``((drums + bass) + other) + vocals``, and peaks at <= 0.9, as does every stem.
    """
    if split not in SPLIT_IDS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index!r}")

    def rng(stream: int) -> np.random.Generator:
        return np.random.default_rng([spec.seed, SPLIT_IDS[split], index, stream])

    song = make_song(rng(_STREAM_SONG), spec.sample_rate, spec.n_samples)
    raw = {
        "drums": drums(rng(_STREAM_DRUMS), song),
        "bass": bass(rng(_STREAM_BASS), song),
        "other": other(rng(_STREAM_OTHER), song),
        "vocals": vocals(rng(_STREAM_VOCALS), song),
    }
    return _mix(rng(_STREAM_MIX), raw)


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
    out = {name: (np.round(stems[name] * scale * PCM_SCALE) / PCM_SCALE).astype(np.float32) for name in TARGETS}
    out["mixture"] = ((out["drums"] + out["bass"]) + out["other"]) + out["vocals"]
    return out
