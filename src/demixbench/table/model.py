"""What a table is: its rows (:class:`MethodRuns`, :class:`Comparison`), its aggregations, and the
built :class:`Leaderboard` with its descriptions, captions and JSON structure.

:func:`demixbench.table.build.build_table` builds a :class:`Leaderboard`; its ``to_*`` methods and
:meth:`Leaderboard.write` render it with :mod:`demixbench.table.render`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from demixbench.table import render
from demixbench.table.render import DIFFERENCE_KIND
from demixbench.table.significance import DESIGNS, SeedDesign

__all__ = [
    "AGGREGATIONS",
    "ALL",
    "COMPARABLE",
    "DEFAULT_TRAINED_ON",
    "KINDS",
    "MARKS",
    "NSDR_EPSILON",
    "OVER_TRACKS",
    "PRIMARY_AGGREGATION",
    "TRAINED_ON",
    "Comparison",
    "Leaderboard",
    "MethodRuns",
    "combined_comparable",
]

#: Label of the column averaging the per-target values.
ALL: str = "All"

#: Allowed :attr:`MethodRuns.kind` values; difference rows get the kind ``"difference"``
#: (:data:`~demixbench.table.render.DIFFERENCE_KIND`). ``model``: trained by the pipeline;
#: ``oracle``: computed from the true test stems; ``imported``: score files of an external run;
#: ``estimates``, ``command``, ``checkpoint``: a method not trained by the pipeline, scored by it from
#: given estimates, a separation command, or a published checkpoint.
KINDS: tuple[str, ...] = ("model", "oracle", "imported", "estimates", "command", "checkpoint")

#: Allowed :attr:`MethodRuns.trained_on` values -> what each declares about the row's training data.
TRAINED_ON: dict[str, str] = {
    "musdb18-train": "MUSDB18 train split only, validation taken from it",
    "extra-data": "MUSDB18 train plus other training data",
    "test-seen": "MUSDB18 test tracks seen in training or in model selection",
    "oracle": "computed from the true test stems: a bound, not a method",
    "undeclared": "training data not declared",
}

#: :attr:`MethodRuns.trained_on` -> whether the row's numbers can be compared with the other rows':
#: True, False (test tracks seen: the numbers overstate the method), or None (unknown: undeclared).
#: Extra data stays comparable, flagged, as the SiSEC 2018 tables listed such entries with the others.
COMPARABLE: dict[str, bool | None] = {
    "musdb18-train": True,
    "extra-data": True,
    "test-seen": False,
    "oracle": True,
    "undeclared": None,
}

#: :attr:`MethodRuns.trained_on` -> the mark after the row label in every rendered table, and the
#: caption line explaining it (values without a mark are absent).
MARKS: dict[str, tuple[str, str]] = {
    "test-seen": ("†", "trained or selected with MUSDB18 test tracks: not comparable with the other rows"),
    "extra-data": ("*", "trained with data beyond MUSDB18's training split (flagged as SiSEC 2018 did)"),
    "undeclared": ("?", "training data not declared: comparability unknown"),
}

#: :attr:`MethodRuns.kind` -> the :attr:`MethodRuns.trained_on` a row gets when it declares none.
DEFAULT_TRAINED_ON: dict[str, str] = {
    "model": "musdb18-train",
    "oracle": "oracle",
    "imported": "undeclared",
    "estimates": "undeclared",
    "command": "undeclared",
    "checkpoint": "undeclared",
}

#: The epsilon added to both energies of the nSDR (:func:`demixbench.score.track.nsdr`, its default;
#: tests/test_guards.py checks that they agree), stated in the nSDR captions.
NSDR_EPSILON: float = 1e-7

#: Aggregation key -> what it computes (see :mod:`demixbench.table`), in table order.
AGGREGATIONS: dict[str, str] = {
    "median": "median over frames, median over tracks",
    "mean": "median over frames, mean over tracks",
    "nsdr": "nSDR (MDX), mean over tracks",
}

#: The SiSEC 2018 aggregation: :attr:`Leaderboard.data` and :attr:`Leaderboard.seed_values` hold it.
PRIMARY_AGGREGATION: str = "median"

#: Aggregation key -> statistic over tracks applied to the per-track values.
OVER_TRACKS: dict[str, str] = {"median": "median", "mean": "mean", "nsdr": "mean"}

#: Statistics of a difference cell, as named in CSV/JSON.
_DIFFERENCE_STATISTICS: tuple[str, ...] = (
    "mean",
    "se",
    "se_total",
    "df",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
    "significant",
    "mdd",
    "p_wilcoxon_tracks",
)


# --------------------------------------------------------------------------------------------------
# Table specification
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodRuns:
    """One table row: a method and its runs.

    name: row label, e.g. ``"unet_gan"`` or ``"IRM2"``.
    seed_dirs: one directory of per-track score files per seed (a single one for oracles and
        imported single runs).
    kind: one of :data:`KINDS`.
    note: optional provenance, e.g. ``"SiSEC 2018 submission, sigsep-mus-2018"``; listed under the
        tables and in the JSON metadata.
    trained_on: what the method was trained (and selected) on, one of :data:`TRAINED_ON`; None
        takes the kind's default (:data:`DEFAULT_TRAINED_ON`: the pipeline's models
        ``"musdb18-train"``, oracles ``"oracle"``, every other kind ``"undeclared"``). Rows
        that are not comparable or are flagged carry a mark (:data:`MARKS`) in every table.
    """

    name: str
    seed_dirs: tuple[Path, ...]
    kind: str = "model"
    note: str = ""
    trained_on: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "seed_dirs", tuple(Path(d) for d in self.seed_dirs))
        object.__setattr__(self, "note", " ".join(str(self.note or "").split()))
        if not self.name:
            raise ValueError("method name must not be empty")
        if not self.seed_dirs:
            raise ValueError(f"method {self.name!r}: at least one seed directory is required")
        if self.kind not in KINDS:
            raise ValueError(f"method {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.trained_on is None:
            object.__setattr__(self, "trained_on", DEFAULT_TRAINED_ON[self.kind])
        if self.trained_on not in TRAINED_ON:
            raise ValueError(
                f"method {self.name!r}: trained_on must be one of {tuple(TRAINED_ON)}, got {self.trained_on!r}"
            )
        if self.kind == "oracle" and self.trained_on != "oracle":
            raise ValueError(
                f"method {self.name!r}: an oracle is computed from the test stems; trained_on must be "
                f"'oracle', got {self.trained_on!r}"
            )
        if self.kind == "model" and self.trained_on == "oracle":
            raise ValueError(
                f"method {self.name!r}: a model trained by the pipeline cannot be trained_on 'oracle' "
                "(use kind 'oracle' for a row computed from the test stems)"
            )

    @property
    def comparable(self) -> bool | None:
        """Whether the row's numbers compare with the other rows' (:data:`COMPARABLE`)."""
        return COMPARABLE[str(self.trained_on)]


def combined_comparable(*values: bool | None) -> bool | None:
    """Comparability of a difference row from its two sides' (Kleene's and): False when a side is
    not comparable, None when a side is unknown and none is False, else True."""
    if any(value is False for value in values):
        return False
    if any(value is None for value in values):
        return None
    return True


@dataclass(frozen=True)
class Comparison:
    """A difference row: ``variant`` minus ``baseline`` (both method names)."""

    variant: str
    baseline: str

    @property
    def label(self) -> str:
        """Row label, ``"<variant> - <baseline>"``."""
        return f"{self.variant} - {self.baseline}"


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf and pandas NA -> None, numpy scalars -> Python scalars."""
    if isinstance(value, Mapping):
        return {str(key): _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Leaderboard:
    """A built leaderboard (any metric), under one or more aggregations.

    results: aggregation key (see :data:`AGGREGATIONS`) -> tidy DataFrame, one row per (row,
        target) with columns ``aggregation``, ``row``, ``kind`` (one of :data:`KINDS`, or
        difference), ``trained_on`` (one of :data:`TRAINED_ON`; NA for difference rows),
        ``comparable`` (nullable boolean, :data:`COMPARABLE`; a difference row's from its two
        sides, :func:`combined_comparable`), ``target`` (each target, then ``"All"``), ``mean``, ``se``, ``n_seeds``
        (nullable integer; NA for difference rows), and for difference rows (NaN/NA for method
        rows) ``design`` (paired, unpaired, pooled or untested), ``se_total`` (seeds and tracks),
        ``df``, ``ci_low``, ``ci_high``, ``p_value`` (uncorrected), ``p_holm`` (Holm-adjusted across
        the table's tested cells), ``significant`` (nullable boolean: ``p_holm`` < 1 -
        ``confidence``), ``mdd`` (minimum detectable difference at ``power``) and
        ``p_wilcoxon_tracks`` (secondary per-track test, never used for significance).
    seeds: aggregation key -> row -> seed label -> target or ``"All"`` -> per-seed value.
    metric: the metric aggregated, e.g. ``"SDR"``.
    n_tracks: number of test tracks every method covers.
    targets: the target columns, in order (``"All"`` excluded).
    comparisons: the comparisons behind the difference rows.
    frame_duration: the score files' common frame duration in seconds, None when they disagree.
    frame_hop: the score files' common hop between frames in seconds (from the frames' times),
        None when they disagree or do not tell.
    notes: row -> provenance note (rows without a note absent).
    trained_on: method row -> what it was trained on (:data:`TRAINED_ON`); a row absent counts as
        ``"undeclared"``.
    not_tested: difference row label -> why it carries no test although its seeds would allow one
        (a side trained or selected with test tracks); such rows are outside Holm's family.
    n_resamples, bootstrap_seed: the bootstrap over test tracks behind the difference rows'
        track variance.
    confidence: the difference rows' interval level; 1 - confidence is the table's alpha.
    power: the power at which the minimum detectable differences are computed.
    designs: difference row label -> how the two methods' seeds relate (:class:`SeedDesign`).
    """

    results: Mapping[str, pd.DataFrame]
    seeds: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]]
    metric: str
    n_tracks: int
    targets: tuple[str, ...]
    comparisons: tuple[Comparison, ...] = field(default=())
    frame_duration: float | None = None
    notes: Mapping[str, str] = field(default_factory=dict)
    n_resamples: int = 2000
    bootstrap_seed: int = 0
    confidence: float = 0.95
    power: float = 0.8
    designs: Mapping[str, SeedDesign] = field(default_factory=dict)
    frame_hop: float | None = None
    trained_on: Mapping[str, str] = field(default_factory=dict)
    not_tested: Mapping[str, str] = field(default_factory=dict)

    # -- access -------------------------------------------------------------------------------------

    @property
    def aggregations(self) -> tuple[str, ...]:
        """The aggregation keys present, in table order."""
        return tuple(self.results)

    @property
    def data(self) -> pd.DataFrame:
        """The primary ("median over frames, median over tracks") tidy table."""
        return self.results[PRIMARY_AGGREGATION]

    @property
    def seed_values(self) -> Mapping[str, Mapping[str, Mapping[str, float]]]:
        """Per-seed values of the primary aggregation: row -> seed -> column -> value."""
        return self.seeds[PRIMARY_AGGREGATION]

    @property
    def aggregation(self) -> str:
        """Description of the primary aggregation (:meth:`describe`)."""
        return self.describe(PRIMARY_AGGREGATION)

    @property
    def columns(self) -> tuple[str, ...]:
        """The value columns: targets, then ``"All"``."""
        return (*self.targets, ALL)

    def tidy(self) -> pd.DataFrame:
        """All aggregations in one tidy DataFrame (what :meth:`to_csv` writes)."""
        return pd.concat(list(self.results.values()), ignore_index=True)

    # -- provenance ----------------------------------------------------------------------------------

    def provenance(self, row: str) -> str:
        """What a method row was trained on (:data:`TRAINED_ON`), ``"undeclared"`` when not recorded."""
        return self.trained_on.get(row, "undeclared")

    def _sides(self, label: str) -> tuple[str, ...]:
        """The method rows behind a row label: itself, or a difference row's variant and baseline."""
        for comparison in self.comparisons:
            if comparison.label == label:
                return (comparison.variant, comparison.baseline)
        return (label,)

    def comparable(self, label: str) -> bool | None:
        """Whether a row's numbers (a difference row's: both sides') compare with the other rows'
        (:data:`COMPARABLE`, :func:`combined_comparable`)."""
        return combined_comparable(*(COMPARABLE[self.provenance(side)] for side in self._sides(label)))

    def marks(self, label: str) -> str:
        """The marks after a row label (:data:`MARKS`), e.g. ``"†"``; a difference row carries
        those of both its sides, in :data:`MARKS` order; ``""`` for none."""
        present = {self.provenance(side) for side in self._sides(label)}
        return "".join(mark for trained_on, (mark, _) in MARKS.items() if trained_on in present)

    def mark_legend(self) -> dict[str, str]:
        """Mark -> its reason, for the marks some method row of this table carries, in :data:`MARKS` order."""
        present = {self.provenance(row) for row in self.seeds[PRIMARY_AGGREGATION]}
        return {mark: reason for trained_on, (mark, reason) in MARKS.items() if trained_on in present}

    # -- descriptions --------------------------------------------------------------------------------

    def _check_key(self, aggregation: str) -> None:
        if aggregation not in self.results:
            raise KeyError(f"no aggregation {aggregation!r} in this table (has: {list(self.results)})")

    def title(self, aggregation: str = PRIMARY_AGGREGATION) -> str:
        """Short heading of one aggregation's table, e.g. ``SDR: median over frames, median over tracks``."""
        self._check_key(aggregation)
        if aggregation == "nsdr":
            return AGGREGATIONS["nsdr"]
        suffix = " (SiSEC 2018)" if aggregation == PRIMARY_AGGREGATION else ""
        return f"{self.metric}: {AGGREGATIONS[aggregation]}{suffix}"

    def describe(self, aggregation: str = PRIMARY_AGGREGATION) -> str:
        """One phrase stating the aggregation, e.g.
        ``SDR (dB): median over 1 s frames, median over tracks; mean ± s.e. over seeds``."""
        self._check_key(aggregation)
        if aggregation == "nsdr":
            return "nSDR (MDX, dB): per-track nSDR, mean over tracks; mean ± s.e. over seeds"
        frames = f"{self.frame_duration:g} s frames" if self.frame_duration else "frames"
        over_tracks = OVER_TRACKS[aggregation]
        return f"{self.metric} (dB): median over {frames}, {over_tracks} over tracks; mean ± s.e. over seeds"

    def frames(self) -> str:
        """How the per-frame scores behind the median over frames were computed: BSS Eval v4, the
        targets scored jointly, and the window and hop the score files record."""
        if self.frame_duration:
            window = f"{self.frame_duration:g} s windows"
            if self.frame_hop:
                window += f" every {self.frame_hop:g} s"
        else:
            window = "windows of differing lengths (the score files disagree)"
        targets = ", ".join(self.targets)
        return (
            f"BSS Eval v4 (museval's v4 mode: one set of distortion filters per track, the targets {targets} "
            f"scored jointly, without an accompaniment source) on {window}, as the score files record them"
        )

    def caption(self, aggregation: str = PRIMARY_AGGREGATION) -> str:
        """One line stating the aggregation and the number of test tracks."""
        return f"{self.describe(aggregation)}; {self.n_tracks} test tracks."

    @property
    def alpha(self) -> float:
        """The table's significance level, 1 - :attr:`confidence`."""
        return round(1.0 - self.confidence, 12)  # 0.05, not 0.050000000000000044

    def fewer_tracks(self, aggregation: str = PRIMARY_AGGREGATION) -> bool:
        """Whether some cell of one aggregation's table rests on fewer tracks than the table's."""
        self._check_key(aggregation)
        counts = self.results[aggregation]["n_tracks"].dropna()
        return bool((counts < self.n_tracks).any())

    def n_tests(self, aggregation: str = PRIMARY_AGGREGATION) -> int:
        """How many difference cells of one aggregation's table carry a test (Holm's family size)."""
        self._check_key(aggregation)
        frame = self.results[aggregation]
        return int(frame["p_value"].notna().sum())

    def statistics(self) -> dict[str, str]:
        """What every reported statistic is, keyed by its CSV/JSON name (also in the captions)."""
        level = f"{self.confidence:.0%}"
        return {
            "mean": "per seed, the aggregate over tracks of the per-track values; then the mean over seeds. "
            "All: per seed, the mean of the targets. Difference rows: A's mean minus B's.",
            "se": "standard error over seeds: sample standard deviation (ddof=1) / sqrt(number of seeds); "
            "none for a single run. Difference rows: from the seeds alone, by design: paired, the s.e. "
            "of the per-seed differences; unpaired, sqrt(s.e.A² + s.e.B²); pooled, the seed variance of "
            "the side with several seeds times (1/nA + 1/nB); none when untested.",
            "design": "; ".join(f"{kind}: {text}" for kind, text in DESIGNS.items()),
            "se_total": "standard error counting seeds and tracks: sqrt(se² + v), v the variance of the "
            f"difference over {self.n_resamples} bootstrap resamples of the test tracks (random seed "
            f"{self.bootstrap_seed}; the same tracks for every seed of both methods, seeds held fixed).",
            "df": "degrees of freedom of the test: the seed part's (pairs - 1; Welch-Satterthwaite over both "
            "sides when unpaired; the borrowing side's seeds - 1 when pooled).",
            "ci": f"ci_low, ci_high: {level} t interval mean ± t(df) se_total.",
            "p_value": "two-sided t test of no difference, mean / se_total with df degrees of freedom; uncorrected.",
            "p_holm": "p_value Holm-adjusted across every tested difference cell of the same table (one aggregation).",
            "significant": f"p_holm < {self.alpha:g}; none when untested.",
            "mdd": f"minimum detectable difference: the true difference the test detects with "
            f"{self.power:.0%} power at alpha {self.alpha:g} (uncorrected), from se_total and df "
            "(noncentral t).",
            "p_wilcoxon_tracks": "secondary: two-sided Wilcoxon signed-rank test over tracks of A's vs B's "
            "per-track values averaged over seeds. It ignores seed variance, so it is never used to mark "
            "significance.",
            "trained_on": "what a method row was trained and selected on: "
            + "; ".join(f"{key}: {text}" for key, text in TRAINED_ON.items())
            + ". None for difference rows.",
            "comparable": "whether a row's numbers compare with the other rows': false when test tracks were "
            "seen in training or selection, null when the training data are undeclared; a difference row's "
            "is false when a side's is false, else null when a side's is null. A difference row with a "
            "non-comparable side is not tested and is outside Holm's family.",
            "frames": self.frames() + "; per track, the median over frames skipping NaN frames.",
            "nsdr": "10 log10((reference energy + eps) / (error energy + eps)) over the whole track, all "
            f"channels together, eps = {NSDR_EPSILON:g}.",
        }

    def long_caption(self, aggregation: str = PRIMARY_AGGREGATION) -> str:
        """The full caption of one aggregation's table: :meth:`caption`, then every statistic shown."""
        parts = [self.caption(aggregation)]
        if aggregation == "nsdr":
            parts.append(
                "nSDR: the MDX challenge's SDR over the whole track, all channels together: "
                "10 log10((reference energy + eps) / (error energy + eps)), energies summed over every sample "
                f"of the track, eps = {NSDR_EPSILON:g}; n/a: no nSDR in the score files "
                "(e.g. imported SiSEC 2018 results)."
            )
        else:
            parts.append(f"Frames: {self.frames()}; NaN frames (silent reference) are skipped.")
        if self.fewer_tracks(aggregation):
            parts.append(
                f"(N tracks): the cell rests on N of the {self.n_tracks} tracks; on the others the target's "
                "reference is silent throughout, so its score is undefined."
            )
        parts.append(
            "All: per seed, the mean of the targets. s.e.: sample standard deviation over seeds / "
            "sqrt(number of seeds); none for a single run."
        )
        legend = self.mark_legend()
        if legend:
            parts.append(" ".join(f"{mark} {reason}." for mark, reason in legend.items()))
            flagged = [c.label for c in self.comparisons if self.marks(c.label)]
            if flagged:
                parts.append("A difference row carries the marks of its two rows.")
        if self.not_tested:
            parts.append(
                f"A difference row with a {MARKS['test-seen'][0]} side ("
                + ", ".join(self.not_tested)
                + ") shows the difference only, without interval, test or MDD, and is outside Holm's family: "
                "a number that has seen the test tracks overstates its method by an unknown amount."
            )
        if self.comparisons:
            level = f"{self.confidence:.0%}"
            alpha = f"{self.alpha:g}"
            parts.append(
                "Difference rows A - B: A minus B ± s.e. over seeds: paired by seed when A and B were "
                "trained with the same seeds (the s.e. of the per-seed differences), unpaired otherwise "
                "(sqrt(s.e.A² + s.e.B²)); a side with a single run borrows the other side's seed variance "
                "(pooled); with one run per side the seed variance is unknown and no test is made. "
                f"[low, high]: {level} t interval whose standard error adds the seeds' variance and the "
                f"test tracks' (tracks resampled {self.n_resamples} times, seed {self.bootstrap_seed}, "
                "the same tracks for every seed of both sides) and the seeds' degrees of freedom. "
                + (
                    f"p: two-sided t test, Holm-adjusted across the {self.n_tests(aggregation)} tested cells "
                    f"of this table (the interval is not adjusted); n.s.: adjusted p ≥ {alpha}. "
                    if self.n_tests(aggregation)
                    else "No cell is tested: every comparison has one run per side"
                    + (f" or a {MARKS['test-seen'][0]} side. " if self.not_tested else ". ")
                )
                + "MDD: the smallest true difference the test "
                f"detects with {self.power:.0%} power at alpha {alpha} (uncorrected), from the observed "
                "variances; a difference below it cannot be told from seed and track noise."
            )
            designs = [
                f"{label}: {self.not_tested.get(label) or self.designs[label].reason}"
                for label in (c.label for c in self.comparisons)
                if label in self.designs
            ]
            if designs:
                parts.append("Seeds: " + "; ".join(designs) + ".")
        return " ".join(parts)

    # -- formats (demixbench.table.render) ---------------------------------------------------------

    def to_markdown(self) -> str:
        """GitHub Markdown, one section per aggregation, then the notes (:func:`render.markdown`)."""
        return render.markdown(self)

    def to_latex(self) -> str:
        """LaTeX, one booktabs ``table`` per aggregation, then the notes (:func:`render.latex`)."""
        return render.latex(self)

    def to_html(self) -> str:
        """A standalone HTML page, one ``<table>`` per aggregation, then the notes (:func:`render.html`)."""
        return render.html(self)

    def to_csv(self, path: Path) -> Path:
        """Write :meth:`tidy` (one line per aggregation, row and column) as CSV; returns the path."""
        return render.write_csv(self, path)

    # -- JSON --------------------------------------------------------------------------------------

    def _aggregation_dict(self, aggregation: str) -> dict[str, Any]:
        """``{"title", "description", "rows", "differences"}`` of one aggregation (see :meth:`to_dict`)."""
        frame = self.results[aggregation]
        comparisons = {comparison.label: comparison for comparison in self.comparisons}
        rows: dict[str, Any] = {}
        differences: dict[str, Any] = {}
        for label in dict.fromkeys(frame["row"]):
            part = frame[frame["row"] == label].set_index("target")
            kind = str(part["kind"].iloc[0])
            if kind == DIFFERENCE_KIND:
                comparison = comparisons[label]
                design = self.designs.get(label)
                differences[label] = {
                    "variant": comparison.variant,
                    "baseline": comparison.baseline,
                    "comparable": self.comparable(label),
                    "marks": self.marks(label),
                    "not_tested": self.not_tested.get(label),
                    "design": None if design is None else design.kind,
                    "seeds": None if design is None else design.reason,
                    **{
                        column: {name: part.at[column, name] for name in _DIFFERENCE_STATISTICS}
                        for column in self.columns
                    },
                }
            else:
                per_seed = self.seeds[aggregation][label]
                rows[label] = {
                    "kind": kind,
                    "trained_on": self.provenance(label),
                    "comparable": self.comparable(label),
                    "marks": self.marks(label),
                    "n_seeds": len(per_seed),
                    **{
                        column: {"mean": part.at[column, "mean"], "se": part.at[column, "se"]}
                        for column in self.columns
                    },
                    "seeds": {seed: dict(values) for seed, values in per_seed.items()},
                }
        return {
            "title": self.title(aggregation),
            "description": self.describe(aggregation),
            "caption": self.long_caption(aggregation),
            "rows": rows,
            "differences": differences,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict (NaN as None); the structure :meth:`to_json` writes.

        The primary (SiSEC 2018) table sits at the top level, the further aggregations under
        ``"aggregations"`` with the same structure::

            {"metric", "unit", "n_tracks", "frame_duration", "frame_hop", "targets",
             "primary": "median", "title", "description", "aggregation" (= description),
             "caption" (the full caption, every definition),
             "statistics": {name: description, ..., "confidence", "alpha", "power", "n_resamples",
                            "bootstrap_seed", "n_tests": {aggregation: Holm family size}},
             "notes": {row: note}, "marks": {mark: reason} (the marks this table uses),
             "rows": {row: {"kind", "trained_on", "comparable", "marks", "n_seeds",
                            column: {"mean", "se"}, "seeds": {seed: {column: v}}}},
             "differences": {label: {"variant", "baseline", "comparable", "marks",
                 "not_tested" (why there is no test, or null), "design", "seeds" (the design in words),
                 column: {"mean", "se", "se_total", "df", "ci_low", "ci_high", "p_value", "p_holm",
                          "significant", "mdd", "p_wilcoxon_tracks"}}},
             "aggregations": {"mean": {"title", "description", "caption", "rows", "differences"},
                              "nsdr": {...}}}
        """
        primary = self._aggregation_dict(PRIMARY_AGGREGATION)
        document = {
            "metric": self.metric,
            "unit": "dB",
            "n_tracks": self.n_tracks,
            "frame_duration": self.frame_duration,
            "frame_hop": self.frame_hop,
            "targets": list(self.targets),
            "primary": PRIMARY_AGGREGATION,
            "title": primary["title"],
            "description": primary["description"],
            "aggregation": self.aggregation,
            "caption": primary["caption"],
            "statistics": {
                **self.statistics(),
                "confidence": self.confidence,
                "alpha": self.alpha,
                "power": self.power,
                "n_resamples": self.n_resamples,
                "bootstrap_seed": self.bootstrap_seed,
                "n_tests": {aggregation: self.n_tests(aggregation) for aggregation in self.aggregations},
            },
            "notes": dict(self.notes),
            "marks": self.mark_legend(),
            "rows": primary["rows"],
            "differences": primary["differences"],
            "aggregations": {
                aggregation: self._aggregation_dict(aggregation)
                for aggregation in self.aggregations
                if aggregation != PRIMARY_AGGREGATION
            },
        }
        return _clean(document)

    def to_json(self, path: Path) -> Path:
        """Write the table as strict JSON (NaN as null); returns the path."""
        return render.write_json(self, path)

    def headline(self) -> dict[str, Any]:
        """The primary table's numbers only: the seed mean of every row and difference row per
        column, the values a reader compares between two versions (``dvc metrics show`` and
        ``dvc metrics diff`` print every number of a metrics file, so the full :meth:`to_dict`
        with its per-seed values, intervals and texts would bury them)::

            {"metric", "n_tracks", "rows": {row: {column: mean}},
             "differences": {label: {column: mean}},
             "trained_on": {row: value}, "comparable": {row or difference label: true or false}}

        ``trained_on`` and ``comparable`` say which headline numbers may be compared (a row trained
        with test tracks is ``false``); a row whose comparability is unknown (undeclared training
        data) is absent from ``comparable``, since ``dvc metrics show`` drops null values and the
        file should read back as written.
        """
        primary = self._aggregation_dict(PRIMARY_AGGREGATION)
        return _clean(
            {
                "metric": self.metric,
                "n_tracks": self.n_tracks,
                **{
                    part: {
                        label: {column: row[column]["mean"] for column in self.columns}
                        for label, row in primary[part].items()
                    }
                    for part in ("rows", "differences")
                },
                "trained_on": {label: row["trained_on"] for label, row in primary["rows"].items()},
                "comparable": {
                    label: row["comparable"]
                    for part in ("rows", "differences")
                    for label, row in primary[part].items()
                    if row["comparable"] is not None
                },
            }
        )

    def to_metrics(self, path: Path) -> Path:
        """Write :meth:`headline` as strict JSON, the file DVC publishes as metrics; returns the path."""
        return render.write_metrics(self, path)

    def write(self, out_dir: Path, stem: str | None = None) -> dict[str, Path]:
        """Write ``{stem}.md``, ``.csv``, ``.json``, ``.tex``, ``.html`` and ``.metrics.json`` (the
        headline numbers, see :meth:`headline`) atomically into ``out_dir``.

        ``stem`` defaults to the metric in lower case (``sdr``, ``sar``, ...). Returns the written
        paths keyed by ``"md"``, ``"csv"``, ``"json"``, ``"tex"``, ``"html"`` and ``"metrics"``.
        """
        return render.write(self, out_dir, stem)
