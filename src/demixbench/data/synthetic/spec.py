"""What a synthetic MUSDB18 contains: its spec, splits, formats and track names.

The generator (``render``, ``writer``) writes a dataset that the real ``musdb`` parser reads,
either in the MUSDB18-HQ layout (``ROOT/{train,test}/<name>/{mixture,drums,bass,other,vocals}.wav``)
or in the MUSDB18 layout (``ROOT/{train,test}/<name>.stem.mp4``). This module fixes what is
generated and how the tracks are named, without rendering anything.

Light: the workflow imports this module when it builds the DAG (``SyntheticSpec``,
``track_names``), so it needs numpy and the standard library only; scipy, which the instruments
use, takes about 0.9 s to import, and every ``snakemake`` invocation (on a cluster, every job)
would pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from demixbench import SAMPLE_RATE
from demixbench.data.musdb18 import MUSDB18_TRACKS

#: Dataset splits, in the order their tracks are generated and numbered.
SPLITS: tuple[str, ...] = ("train", "test")
#: Supported output formats: MUSDB18-HQ (wav folders) and MUSDB18 (NI stems mp4).
FORMATS: tuple[str, ...] = ("wav", "stem.mp4")
#: Track naming: generated "Synth NNN - Title" names, or the official MUSDB18 names (the first
#: n_train / n_test of each subset), for a stand-in of the real dataset's layout.
NAMINGS: tuple[str, ...] = ("synthetic", "musdb18")
#: Upper bound on the peak of every written signal.
MAX_PEAK: float = 0.9

#: Split -> its number in the random streams ``[seed, split id, index, stream]``.
SPLIT_IDS = {split: i for i, split in enumerate(SPLITS)}

_TITLE_NAMES = (
    "Night",
    "Summer",
    "Ocean",
    "River",
    "Winter",
    "Midnight",
    "Heaven",
    "City",
    "Mother",
    "Stranger",
    "Lover",
    "Devil",
    "Angel",
    "Sailor",
    "Dreamer",
    "Morning",
    "Autumn",
    "Desert",
)
_TITLE_NOUNS = (
    "Drive",
    "Rain",
    "Song",
    "Fire",
    "Dream",
    "Road",
    "Heart",
    "Light",
    "Shadow",
    "Garden",
    "Echo",
    "Voices",
    "Lullaby",
    "Horizon",
    "Promise",
    "Letter",
    "Machine",
    "Gold",
)
_TITLE_ADJECTIVES = (
    "Electric",
    "Silent",
    "Broken",
    "Golden",
    "Endless",
    "Velvet",
    "Neon",
    "Hollow",
    "Paper",
    "Crimson",
    "Distant",
    "Quiet",
    "Wild",
    "Glass",
    "Slow",
    "Burning",
    "Lonely",
    "Blue",
)
_TITLE_PHRASES = (
    "Don't Look Back",
    "We're Still Here",
    "It's Over Now",
    "Can't Stop Now",
    "Rock 'n' Roll",
    "Hold On",
    "Into The Blue",
    "Under The Bridge",
    "Let It Go",
    "Won't Be Long",
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
                    raise ValueError(
                        f"names='musdb18' has {len(MUSDB18_TRACKS[split])} {split} tracks, got n_{split}={count}"
                    )

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


# --------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------


def _title(seed: int, split: str, index: int) -> str:
    """A song title drawn from (seed, split, index); apostrophe in every third one."""
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index, 99])
    kind = index % 3
    if kind == 0:
        return f"{rng.choice(_TITLE_NAMES)}'s {rng.choice(_TITLE_NOUNS)}"
    if kind == 1:
        return f"{rng.choice(_TITLE_ADJECTIVES)} {rng.choice(_TITLE_NOUNS)}"
    return (
        str(rng.choice(_TITLE_PHRASES))
        if rng.random() < 0.5
        else (f"{rng.choice(_TITLE_ADJECTIVES)} {rng.choice(_TITLE_NAMES)}")
    )
