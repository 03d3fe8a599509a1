"""demixbench: reproduce music source separation results, MUSDB18 to an SDR leaderboard.

The package knows nothing of Snakemake, DVC or config files: every public function takes
typed arguments and returns values or writes the files it is told to.
"""

__version__ = "0.1.0"

#: The four MUSDB18 targets, in the order used for every (targets, ...) tensor and table column.
TARGETS: tuple[str, ...] = ("drums", "bass", "other", "vocals")

#: MUSDB18's sample rate; the decoded cache is always at this rate.
SAMPLE_RATE: int = 44100
