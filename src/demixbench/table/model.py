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
    "KINDS",
    "OVER_TRACKS",
    "PRIMARY_AGGREGATION",
    "Comparison",
    "Leaderboard",
    "MethodRuns",
]

#: Label of the column averaging the per-target values.
ALL: str = "All"

#: Allowed :attr:`MethodRuns.kind` values; difference rows get the kind ``"difference"``
#: (:data:`~demixbench.table.render.DIFFERENCE_KIND`).
KINDS: tuple[str, ...] = ("model", "oracle", "imported")

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
    kind: ``"model"``, ``"oracle"`` or ``"imported"``.
    note: optional provenance, e.g. ``"SiSEC 2018 submission, sigsep-mus-2018"``; listed under the
        tables and in the JSON metadata.
    """

    name: str
    seed_dirs: tuple[Path, ...]
    kind: str = "model"
    note: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "seed_dirs", tuple(Path(d) for d in self.seed_dirs))
        object.__setattr__(self, "note", " ".join(str(self.note or "").split()))
        if not self.name:
            raise ValueError("method name must not be empty")
        if not self.seed_dirs:
            raise ValueError(f"method {self.name!r}: at least one seed directory is required")
        if self.kind not in KINDS:
            raise ValueError(f"method {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")


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
        target) with columns ``aggregation``, ``row``, ``kind`` (model, oracle, imported or
        difference), ``target`` (each target, then ``"All"``), ``mean``, ``se``, ``n_seeds``
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
    notes: row -> provenance note (rows without a note absent).
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
        }

    def long_caption(self, aggregation: str = PRIMARY_AGGREGATION) -> str:
        """The full caption of one aggregation's table: :meth:`caption`, then every statistic shown."""
        parts = [self.caption(aggregation)]
        if aggregation == "nsdr":
            parts.append(
                "nSDR: the MDX challenge's SDR over the whole track, all channels together "
                "(10 log10 of reference energy over error energy); n/a: no nSDR in the score files "
                "(e.g. imported SiSEC 2018 results)."
            )
        else:
            parts.append("NaN frames (silent reference) are skipped.")
        if self.fewer_tracks(aggregation):
            parts.append(
                f"(N tracks): the cell rests on N of the {self.n_tracks} tracks; on the others the target's "
                "reference is silent throughout, so its score is undefined."
            )
        parts.append(
            "All: per seed, the mean of the targets. s.e.: sample standard deviation over seeds / "
            "sqrt(number of seeds); none for a single run."
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
                    else "No cell is tested: every comparison has one run per side. "
                )
                + "MDD: the smallest true difference the test "
                f"detects with {self.power:.0%} power at alpha {alpha} (uncorrected), from the observed "
                "variances; a difference below it cannot be told from seed and track noise."
            )
            designs = [
                f"{label}: {self.designs[label].reason}"
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
            "rows": rows,
            "differences": differences,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict (NaN as None); the structure :meth:`to_json` writes.

        The primary (SiSEC 2018) table sits at the top level, the further aggregations under
        ``"aggregations"`` with the same structure::

            {"metric", "unit", "n_tracks", "frame_duration", "targets",
             "primary": "median", "title", "description", "aggregation" (= description),
             "statistics": {name: description, ..., "confidence", "alpha", "power", "n_resamples",
                            "bootstrap_seed", "n_tests": {aggregation: Holm family size}},
             "notes": {row: note},
             "rows": {row: {"kind", "n_seeds", column: {"mean", "se"}, "seeds": {seed: {column: v}}}},
             "differences": {label: {"variant", "baseline", "design", "seeds" (the design in words),
                 column: {"mean", "se", "se_total", "df", "ci_low", "ci_high", "p_value", "p_holm",
                          "significant", "mdd", "p_wilcoxon_tracks"}}},
             "aggregations": {"mean": {"title", "description", "rows", "differences"}, "nsdr": {...}}}
        """
        primary = self._aggregation_dict(PRIMARY_AGGREGATION)
        document = {
            "metric": self.metric,
            "unit": "dB",
            "n_tracks": self.n_tracks,
            "frame_duration": self.frame_duration,
            "targets": list(self.targets),
            "primary": PRIMARY_AGGREGATION,
            "title": primary["title"],
            "description": primary["description"],
            "aggregation": self.aggregation,
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
             "differences": {label: {column: mean}}}
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
