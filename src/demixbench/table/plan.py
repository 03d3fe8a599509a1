"""Planning an experiment's seeds: how small a difference a given number of seeds per method can
detect, and how many seeds it takes to detect a given difference, from existing score files
(``demixbench plan``; the test it plans for is :mod:`demixbench.table.significance`).

The variances come from runs already scored: the seed variance of the per-seed aggregates (pooled
over the methods given, each with its own mean), for a paired design the variance of per-seed
differences between two methods trained with the same seeds, and the test tracks' share of the
difference's variance from a bootstrap over tracks when two methods are given. With one method
only, the tracks' share between two *different* methods is unknown and counted as 0, so the
detectable differences are lower bounds (the plan says so).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from demixbench import TARGETS
from demixbench.table.model import ALL
from demixbench.table.runs import read_run, seed_labels
from demixbench.table.significance import compare, detectable_difference, satterthwaite
from demixbench.table.stats import over_tracks, with_all

log = logging.getLogger(__name__)

__all__ = ["SeedPlan", "plan_seeds"]


@dataclass(frozen=True)
class SeedPlan:
    """Variances measured from existing runs, and what they imply for a planned comparison.

    columns: the targets, then ``"All"``.
    seed_sd: (columns,) pooled standard deviation over seeds of the per-seed aggregates.
    seed_df: its degrees of freedom (seeds minus methods).
    paired_sd: (columns,) standard deviation of per-seed differences (two methods with the same
        seeds), or None.
    track_se: (columns,) standard error of a difference from the test tracks (zeros when unknown).
    track_df: degrees of freedom of ``track_se`` (tracks - 1).
    notes: what the estimates rest on, one sentence each.
    """

    columns: tuple[str, ...]
    seed_sd: np.ndarray
    seed_df: int
    paired_sd: np.ndarray | None
    track_se: np.ndarray
    track_df: int
    n_tracks: int
    alpha: float = 0.05
    power: float = 0.8
    notes: tuple[str, ...] = ()

    def mdd(self, n_seeds: int, *, paired: bool = False) -> np.ndarray:
        """(columns,) minimum detectable difference with ``n_seeds`` seeds per method (NaN for one
        seed: its seed variance is unknown)."""
        if paired and self.paired_sd is None:
            raise ValueError("a paired plan needs two methods trained with the same seeds")
        if n_seeds < 2:
            return np.full(len(self.columns), np.nan)
        track = np.square(self.track_se)
        if paired:
            parts, dofs = [np.square(self.paired_sd) / n_seeds], [n_seeds - 1]
        else:
            parts, dofs = [np.square(self.seed_sd) / n_seeds] * 2, [n_seeds - 1] * 2
        se = np.sqrt(np.sum(parts, axis=0) + track)
        df = satterthwaite(parts, dofs)  # the seed part's, as the table's test uses
        return np.array(
            [detectable_difference(float(s), float(d), alpha=self.alpha, power=self.power) for s, d in zip(se, df)]
        )

    def seeds_needed(self, difference: float, *, paired: bool = False, max_seeds: int = 100) -> list[int | None]:
        """Per column, the fewest seeds per method whose MDD is at most ``difference`` (None when
        even ``max_seeds`` do not suffice)."""
        needed: list[int | None] = [None] * len(self.columns)
        for n in range(2, max_seeds + 1):
            mdd = self.mdd(n, paired=paired)
            for index, value in enumerate(mdd):
                if needed[index] is None and value <= difference:
                    needed[index] = n
            if all(count is not None for count in needed):
                break
        return needed

    def floor(self) -> np.ndarray:
        """(columns,) the MDD with infinitely many seeds: what the test tracks alone allow. The
        test's degrees of freedom are the seeds' (see significance.compare), so they grow without
        bound too: the normal limit (a very large df stands in for infinity)."""
        return np.array(
            [detectable_difference(float(s), 1e9, alpha=self.alpha, power=self.power) for s in self.track_se]
        )

    def to_markdown(self, max_seeds: int = 10, difference: float | None = None) -> str:
        """A Markdown report: the MDD per seed count (unpaired, and paired when known), then the
        seeds needed for ``difference``."""
        designs = [("unpaired", False)] + ([("paired", True)] if self.paired_sd is not None else [])
        lines = [
            f"# Minimum detectable difference (dB), {self.power:.0%} power, alpha {self.alpha:g}, "
            f"{self.n_tracks} test tracks",
            "",
            *(f"- {note}" for note in self.notes),
            f"- seed standard deviation: {_numbers(self.seed_sd)} ({self.seed_df} degrees of freedom)",
        ]
        if self.paired_sd is not None:
            lines.append(f"- standard deviation of per-seed differences (paired): {_numbers(self.paired_sd)}")
        lines += [f"- test tracks' standard error of a difference: {_numbers(self.track_se)}", ""]
        header = "| seeds per method | design | " + " | ".join(self.columns) + " |"
        lines += [header, "|---:|:---|" + "---:|" * len(self.columns)]
        for n in range(2, max_seeds + 1):
            for name, paired in designs:
                lines.append(f"| {n} | {name} | " + " | ".join(f"{v:.2f}" for v in self.mdd(n, paired=paired)) + " |")
        lines.append(
            "| ∞ | tracks only | " + " | ".join(f"{v:.2f}" for v in self.floor()) + " |",
        )
        if difference is not None:
            lines += ["", f"Seeds per method to detect {difference:g} dB:", ""]
            for name, paired in designs:
                needed = self.seeds_needed(difference, paired=paired)
                floor = self.floor()
                cells = ", ".join(
                    f"{column} {count}"
                    if count is not None
                    else f"{column} not reachable (the test tracks alone allow {limit:.2f})"
                    if limit > difference
                    else f"{column} more than 100"
                    for column, count, limit in zip(self.columns, needed, floor, strict=True)
                )
                lines.append(f"- {name}: {cells}")
        return "\n".join(lines) + "\n"

    def to_dict(self, max_seeds: int = 10, difference: float | None = None) -> dict[str, Any]:
        """JSON-ready: the estimates, the MDD per seed count and design, the seeds needed."""
        designs = {"unpaired": False} | ({"paired": True} if self.paired_sd is not None else {})

        def clean(values: np.ndarray) -> list[float | None]:
            return [float(v) if math.isfinite(v) else None for v in values]

        document: dict[str, Any] = {
            "columns": list(self.columns),
            "alpha": self.alpha,
            "power": self.power,
            "n_tracks": self.n_tracks,
            "notes": list(self.notes),
            "seed_sd": clean(self.seed_sd),
            "seed_df": self.seed_df,
            "paired_sd": None if self.paired_sd is None else clean(self.paired_sd),
            "track_se": clean(self.track_se),
            "mdd": {
                name: {str(n): clean(self.mdd(n, paired=paired)) for n in range(2, max_seeds + 1)}
                for name, paired in designs.items()
            },
            "mdd_tracks_only": clean(self.floor()),
        }
        if difference is not None:
            document["difference"] = difference
            document["seeds_needed"] = {
                name: dict(zip(self.columns, self.seeds_needed(difference, paired=paired), strict=True))
                for name, paired in designs.items()
            }
        return document


def _numbers(values: np.ndarray) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def _per_seed(dirs: Sequence[Path], targets: tuple[str, ...], metric: str) -> tuple[np.ndarray, list[str], list[str]]:
    """(seeds, tracks, targets) per-track values of one method, its seed labels (as the tables
    label them: :func:`~demixbench.table.runs.seed_labels`) and its tracks."""
    runs = [read_run(Path(d), targets, metric) for d in dirs]
    tracks = sorted(runs[0].medians.index)
    for directory, run in zip(dirs, runs, strict=True):
        if sorted(run.medians.index) != tracks:
            raise ValueError(f"{directory}: not scored on the same tracks as {dirs[0]}")
    values = np.stack([run.medians.reindex(tracks)[list(targets)].to_numpy(dtype=np.float64) for run in runs])
    return values, seed_labels(dirs), tracks


def plan_seeds(
    baseline: Sequence[Path],
    variant: Sequence[Path] = (),
    *,
    targets: Sequence[str] = TARGETS,
    metric: str = "SDR",
    over_tracks_statistic: str = "median",
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    power: float = 0.8,
) -> SeedPlan:
    """Measure the variances behind a comparison from existing score directories (one per seed):
    ``baseline`` alone, or ``baseline`` and ``variant`` (see the module docstring).

    Raises ValueError when no method has two seeds (no seed variance to measure), or when the
    directories do not cover the same tracks.
    """
    targets = tuple(targets)
    baseline_values, baseline_seeds, tracks = _per_seed(baseline, targets, metric)
    sides = [baseline_values]
    notes = []
    variant_values = None
    if variant:
        variant_values, variant_seeds, variant_tracks = _per_seed(variant, targets, metric)
        if variant_tracks != tracks:
            raise ValueError(f"{variant[0]} and {baseline[0]}: not scored on the same tracks")
        sides.append(variant_values)
    aggregates = [with_all(over_tracks(values, over_tracks_statistic, axis=1)) for values in sides]
    usable = [a for a in aggregates if len(a) >= 2]
    if not usable:
        raise ValueError(
            "the seed variance needs at least two seeds of one method: give a method's score "
            "directories of two or more seeds"
        )
    seed_df = sum(len(a) - 1 for a in usable)
    pooled = sum((len(a) - 1) * a.var(axis=0, ddof=1) for a in usable) / seed_df
    notes.append(
        f"seed variance pooled over {len(usable)} method(s) with {seed_df + len(usable)} seeds "
        f"({over_tracks_statistic} over tracks per seed)"
    )

    paired_sd = None
    track_se = np.zeros(len(targets) + 1)
    if variant_values is not None:
        # The table's own comparison of the two: its track part, and for shared seeds its paired
        # seed part (the s.e. of the per-seed differences times sqrt(pairs) is their s.d.).
        difference = compare(
            variant_values,
            baseline_values,
            variant_seeds,
            baseline_seeds,
            over_tracks=over_tracks_statistic,
            n_resamples=n_resamples,
            seed=seed,
            confidence=confidence,
            power=power,
        )
        track_se = difference.se_tracks
        notes.append(f"test tracks' share from {n_resamples} bootstrap resamples of the variant - baseline difference")
        if difference.design.kind == "paired":
            pairs = len(variant_seeds)
            paired_sd = difference.se_seeds * np.sqrt(pairs)
            notes.append(f"paired: {pairs} seeds shared by both methods")
    else:
        notes.append(
            "one method only: the test tracks' share of a difference between two methods is unknown and "
            "counted as 0, so these are lower bounds; give the variant's runs too to include it"
        )
    log.info("plan from %d baseline and %d variant directories, %d tracks", len(baseline), len(variant), len(tracks))
    return SeedPlan(
        columns=(*targets, ALL),
        seed_sd=np.sqrt(pooled),
        seed_df=seed_df,
        paired_sd=paired_sd,
        track_se=track_se,
        track_df=len(tracks) - 1,
        n_tracks=len(tracks),
        alpha=round(1.0 - confidence, 12),
        power=power,
        notes=tuple(notes),
    )
