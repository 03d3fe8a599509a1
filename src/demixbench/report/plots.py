"""Figures of the scores: per-track score boxplots and the per-seed scatter of "All".

Every function takes typed arguments, writes a PNG and an SVG (see :mod:`demixbench.report.figures`)
and returns the written paths.

Aggregation is that of :mod:`demixbench.table` (museval / SiSEC 2018): per track, the median over
frames; per method and seed, the median over tracks; "All" is the mean of the targets' values.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import cbook
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from demixbench import TARGETS
from demixbench.report.figures import save, seeds_note, style
from demixbench.table.build import build_table
from demixbench.table.model import ALL, KINDS, Comparison, Leaderboard, MethodRuns
from demixbench.table.runs import track_frame_medians

log = logging.getLogger(__name__)

__all__ = [
    "KIND_COLORS",
    "plot_seed_scatter",
    "plot_track_boxplots",
    "seed_scatter_data",
    "track_values",
]

#: Colour of each method kind (colour-blind-safe Okabe-Ito hues).
KIND_COLORS: dict[str, str] = {
    "model": "#0072B2",
    "oracle": "#009E73",
    "imported": "#E69F00",
    "estimates": "#CC79A7",
    "command": "#D55E00",
    "checkpoint": "#56B4E9",
}

# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _check_methods(methods: Sequence[MethodRuns]) -> tuple[MethodRuns, ...]:
    methods = tuple(methods)
    if not methods:
        raise ValueError("at least one method is required")
    names = [method.name for method in methods]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"duplicate method name(s): {duplicates}")
    return methods


def _kind_legend(axes: Axes | Figure, kinds: Sequence[str], **kwargs: Any) -> None:
    """A legend with one colour patch per method kind present, in :data:`KINDS` order."""
    present = [kind for kind in KINDS if kind in set(kinds)]
    handles = [Patch(facecolor=KIND_COLORS[kind], edgecolor="black", alpha=0.8, label=kind) for kind in present]
    axes.legend(handles=handles, title="kind", **kwargs)


def _frames_text(frame_duration: float | None) -> str:
    return f"{frame_duration:g} s frames" if frame_duration else "frames"


# --------------------------------------------------------------------------------------------------
# Per-track boxplots
# --------------------------------------------------------------------------------------------------


def track_values(method: MethodRuns, targets: Sequence[str] = TARGETS, metric: str = "SDR") -> pd.DataFrame:
    """Per-track values of one method: median over frames per seed, then mean over its seeds.

    Returns a DataFrame indexed by track (sorted) with one column per target;
    ``attrs["frame_duration"]`` is the common frame duration in seconds (or None) and
    ``attrs["n_seeds"]`` the number of seeds. Raises ValueError (naming the directory) for a seed
    directory without score files, or when the seeds do not cover the same tracks.
    """
    tables = [track_frame_medians(seed_dir, targets, metric) for seed_dir in method.seed_dirs]
    reference = set(tables[0].index)
    for seed_dir, table in zip(method.seed_dirs, tables, strict=True):
        if set(table.index) != reference:
            missing = sorted(reference ^ set(table.index))
            raise ValueError(
                f"method {method.name!r}: seed directory {seed_dir} does not cover the same tracks as "
                f"{method.seed_dirs[0]} (differing: {missing})"
            )
    # Mean over seeds; a track NaN in one seed (no finite frame) stays NaN, as the table would skip it.
    mean = sum((table.sort_index() for table in tables[1:]), tables[0].sort_index()) / len(tables)
    durations = {table.attrs.get("frame_duration") for table in tables}
    mean.attrs = {
        "frame_duration": durations.pop() if len(durations) == 1 else None,
        "n_seeds": len(tables),
    }
    return mean


def plot_track_boxplots(
    methods: Sequence[MethodRuns],
    out: Path,
    targets: Sequence[str] = TARGETS,
    metric: str = "SDR",
) -> list[Path]:
    """SiSEC 2018-style boxplots of the per-track scores of every method, one panel per target.

    Per track: median of ``metric`` over frames, averaged over the method's seeds (see
    :func:`track_values`). In each panel the methods are sorted by their median over tracks (best
    on top); the box colour is the method kind (model, oracle, imported). Writes ``out.png`` and
    ``out.svg`` and returns their paths.

    Raises ValueError for no methods, duplicate names, a seed directory without score files (naming
    it), or methods that do not cover the same tracks.
    """
    methods = _check_methods(methods)
    targets = tuple(targets)
    if not targets:
        raise ValueError("at least one target is required")
    values = {method.name: track_values(method, targets, metric) for method in methods}
    first = methods[0]
    tracks = set(values[first.name].index)
    for method in methods[1:]:
        if set(values[method.name].index) != tracks:
            differing = sorted(tracks ^ set(values[method.name].index))
            raise ValueError(
                f"methods {first.name!r} ({first.seed_dirs[0]}) and {method.name!r} "
                f"({method.seed_dirs[0]}) are not scored on the same tracks (differing: {differing})"
            )
    durations = {table.attrs["frame_duration"] for table in values.values()}
    frame_duration = durations.pop() if len(durations) == 1 else None

    with style():
        figure = _boxplot_figure(methods, values, targets, metric, len(tracks), frame_duration)
        return save(figure, out)


def _box_limits(columns: Sequence[np.ndarray]) -> tuple[float, float]:
    """x range of the boxplots: every whisker, and outliers up to 40 % of the whisker span beyond
    them, so that a few extreme tracks (e.g. -50 dB on a silent-ish vocal) do not squash the boxes."""
    stats = [cbook.boxplot_stats(column)[0] for column in columns if column.size]
    if not stats:
        return -1.0, 1.0
    low_whisker = min(float(s["whislo"]) for s in stats)
    high_whisker = max(float(s["whishi"]) for s in stats)
    low_data = min(float(column.min()) for column in columns if column.size)
    high_data = max(float(column.max()) for column in columns if column.size)
    span = max(high_whisker - low_whisker, 1.0)
    low = max(low_data, low_whisker - 0.4 * span)
    high = min(high_data, high_whisker + 0.4 * span)
    pad = 0.04 * (high - low if high > low else 1.0)
    return low - pad, high + pad


def _boxplot_figure(
    methods: Sequence[MethodRuns],
    values: Mapping[str, pd.DataFrame],
    targets: Sequence[str],
    metric: str,
    n_tracks: int,
    frame_duration: float | None,
) -> Figure:
    ncols = 1 if len(targets) == 1 else 2
    nrows = math.ceil(len(targets) / ncols)
    longest = max(len(method.name) for method in methods) + 9  # "name (3 seeds)"
    panel_height = 0.75 + 0.32 * len(methods)
    figure = Figure(figsize=(4.2 * ncols + 0.14 * longest * ncols, 1.1 + panel_height * nrows), layout="constrained")
    axes_grid = figure.subplots(nrows, ncols, sharex=True, squeeze=False)
    kinds = {method.name: method.kind for method in methods}
    n_seeds = {method.name: values[method.name].attrs["n_seeds"] for method in methods}

    data: dict[str, dict[str, np.ndarray]] = {}
    for target in targets:
        data[target] = {}
        for name, table in values.items():
            column = table[target].to_numpy(dtype=np.float64)
            if np.isnan(column).any():
                log.warning(
                    "%s/%s: %d track(s) with NaN %s left out", name, target, int(np.isnan(column).sum()), metric
                )
            data[target][name] = column[~np.isnan(column)]
    low, high = _box_limits([column for per_target in data.values() for column in per_target.values()])
    label_room = 0.13 * (high - low)  # right of the data: the median labels
    clipped_any = False

    for index, axes in enumerate(axes_grid.flat):
        if index >= len(targets):
            axes.set_visible(False)
            continue
        target = targets[index]
        columns = data[target]
        medians = {name: float(np.median(column)) if column.size else -math.inf for name, column in columns.items()}
        # Best at the top: boxplot positions run upwards, so sort ascending (ties by name).
        order = sorted(columns, key=lambda name: (medians[name], name))
        boxes = axes.boxplot(
            [columns[name] for name in order],
            orientation="horizontal",
            widths=0.6,
            patch_artist=True,
            flierprops={"marker": ".", "markersize": 4, "markeredgecolor": "0.3", "alpha": 0.7},
            medianprops={"color": "black", "linewidth": 1.6},
            whiskerprops={"color": "0.25"},
            capprops={"color": "0.25"},
        )
        for patch, name in zip(boxes["boxes"], order, strict=True):
            patch.set_facecolor(KIND_COLORS[kinds[name]])
            patch.set_alpha(0.8)
            patch.set_edgecolor("0.2")
        for position, name in enumerate(order, start=1):
            if math.isfinite(medians[name]):
                axes.annotate(
                    f"{medians[name]:.2f}", xy=(1.0, position), xycoords=("axes fraction", "data"),
                    xytext=(-3, 0), textcoords="offset points", ha="right", va="center", fontsize=8, color="0.2",
                )  # fmt: skip
            # Tracks beyond the x range: a marker at the edge with their count.
            for side, beyond in (("left", columns[name] < low), ("right", columns[name] > high)):
                count = int(beyond.sum())
                if not count:
                    continue
                clipped_any = True
                x = low if side == "left" else high
                axes.plot(
                    [x],
                    [position],
                    marker="<" if side == "left" else ">",
                    color="0.3",
                    markersize=5,
                    clip_on=False,
                    zorder=5,
                )
                axes.annotate(
                    str(count), xy=(x, position), xytext=(5 if side == "left" else -5, 0), textcoords="offset points",
                    ha="left" if side == "left" else "right", va="center", fontsize=7.5, color="0.3",
                )  # fmt: skip
        axes.set_yticks(
            range(1, len(order) + 1),
            [name if n_seeds[name] == 1 else f"{name} ({n_seeds[name]} seeds)" for name in order],
        )
        axes.set_title(target)
        axes.grid(axis="y", visible=False)
        axes.axvline(0.0, color="0.6", linewidth=0.8, zorder=0)
    for axes in axes_grid[-1]:
        axes.set_xlabel(f"{metric} (dB)")
        axes.xaxis.set_tick_params(labelbottom=True)
    axes_grid.flat[0].set_xlim(low, high + label_room)

    seeds_text = "averaged over seeds; " if any(n > 1 for n in n_seeds.values()) else ""
    clipped_text = "; ◂n, n▸: n tracks beyond the axis" if clipped_any else ""
    figure.suptitle(
        f"{metric} per track (median over {_frames_text(frame_duration)}; {seeds_text}{n_tracks} tracks)\n"
        f"methods sorted by median over tracks (value at right){clipped_text}",
        fontsize=10.5,
    )
    _kind_legend(
        figure, [method.kind for method in methods], loc="outside lower center", ncols=len(KINDS), frameon=False
    )
    return figure


# --------------------------------------------------------------------------------------------------
# Per-seed scatter
# --------------------------------------------------------------------------------------------------


def _scatter_order(methods: Sequence[MethodRuns], comparisons: Sequence[Comparison]) -> list[str]:
    """Method names in the given order, but with each comparison's baseline and variant adjacent
    (baseline first), placed where the first of them appears."""
    order: list[str] = []
    for method in methods:
        if method.name in order:
            continue
        order.append(method.name)
        for comparison in comparisons:
            if method.name in (comparison.variant, comparison.baseline):
                for name in (comparison.baseline, comparison.variant):
                    if name not in order:
                        order.append(name)
    return order


def seed_scatter_data(
    methods: Sequence[MethodRuns],
    comparisons: Sequence[Comparison] = (),
    targets: Sequence[str] = TARGETS,
    metric: str = "SDR",
) -> tuple[pd.DataFrame, Leaderboard]:
    """What :func:`plot_seed_scatter` plots, and the table it comes from.

    The values are :func:`demixbench.table.build.build_table`'s (``table.seed_values``): per seed, the
    median over tracks of the per-track median over frames, "All" being the mean over targets.
    Returns (points, table): ``points`` has one row per method and seed with columns ``method``,
    ``kind``, ``seed``, ``value`` (the seed's "All" value), ``x`` (the method's position on the
    plot's x axis, methods ordered as given but with compared methods adjacent) and ``mean`` /
    ``se`` (the method's mean and standard error over seeds, as in the table).
    """
    methods = _check_methods(methods)
    comparisons = tuple(comparisons)
    table = build_table(methods, comparisons, targets, metric)
    order = _scatter_order(methods, comparisons)
    kinds = {method.name: method.kind for method in methods}
    summary = table.data[table.data["target"] == ALL].set_index("row")
    records = []
    for position, name in enumerate(order):
        for seed, per_seed in table.seed_values[name].items():
            records.append(
                {
                    "method": name,
                    "kind": kinds[name],
                    "seed": seed,
                    "value": float(per_seed[ALL]),
                    "x": position,
                    "mean": float(summary.at[name, "mean"]),
                    "se": float(summary.at[name, "se"]),
                }
            )
    points = pd.DataFrame.from_records(records, columns=["method", "kind", "seed", "value", "x", "mean", "se"])
    log.debug("seed scatter points:\n%s", points.to_string(index=False))
    return points, table


def plot_seed_scatter(
    methods: Sequence[MethodRuns],
    out: Path,
    comparisons: Sequence[Comparison] = (),
    targets: Sequence[str] = TARGETS,
    metric: str = "SDR",
) -> list[Path]:
    """Per-seed "All" scores of every method, with the mean over seeds ± one standard error.

    One column per method (coloured by kind), one dot per seed, the seed mean as a bar with ±s.e.
    whiskers; the values are exactly the table's (see :func:`seed_scatter_data`). Each comparison
    (``.variant``, ``.baseline``) puts its two methods side by side and is annotated above them
    with the difference of the means ± its standard error, as in the table's difference row.
    Writes ``out.png`` and ``out.svg`` and returns their paths.

    Raises ValueError for no methods, a seed directory without score files (naming it), a
    comparison naming an unknown method, or methods not covering the same tracks.
    """
    points, table = seed_scatter_data(methods, comparisons, targets, metric)
    with style():
        figure = _seed_scatter_figure(points, table)
        return save(figure, out)


def _seed_scatter_figure(points: pd.DataFrame, table: Leaderboard) -> Figure:
    order = list(dict.fromkeys(points["method"]))
    figure = Figure(figsize=(max(7.0, 1.5 + 1.0 * len(order)), 4.8), layout="constrained")
    axes = figure.subplots()
    for name in order:
        rows = points[points["method"] == name]
        x = int(rows["x"].iloc[0])
        color = KIND_COLORS[str(rows["kind"].iloc[0])]
        n = len(rows)
        # Deterministic spread of the seeds' dots around the column.
        offsets = np.linspace(-0.12, 0.12, n) if n > 1 else np.zeros(1)
        axes.scatter(
            x + offsets,
            rows["value"].to_numpy(dtype=np.float64),
            s=30,
            color=color,
            edgecolor="black",
            linewidth=0.5,
            alpha=0.85,
            zorder=3,
            label=f"_seeds {name}",
        )
        if n == 1:
            continue  # a single run: its dot is the mean
        mean, se = float(rows["mean"].iloc[0]), float(rows["se"].iloc[0])
        axes.errorbar(
            [x + 0.28],
            [mean],
            yerr=[[se], [se]],
            fmt="_",
            markersize=14,
            markeredgewidth=2.2,
            color="black",
            ecolor="black",
            elinewidth=1.4,
            capsize=4,
            zorder=4,
        )
    axes.set_xticks(
        range(len(order)),
        [f"{name}\n({seeds_note(len(table.seed_values[name]))})" for name in order],
    )
    axes.set_xlim(-0.6, len(order) - 0.4)
    axes.grid(axis="x", visible=False)
    axes.set_ylabel(f"{table.metric} (dB), {ALL} = mean of {len(table.targets)} targets")
    axes.set_title(f"{table.metric} {ALL} per seed (dots)\n{table.caption()}", fontsize=9.5)

    comparisons = table.comparisons
    if comparisons:
        low, high = axes.get_ylim()
        span = high - low
        step = 0.09 * span
        top = float(points["value"].max())
        differences = table.data[table.data["target"] == ALL].set_index("row")
        positions = {name: int(points.loc[points["method"] == name, "x"].iloc[0]) for name in order}
        for level, comparison in enumerate(comparisons):
            a, b = sorted((positions[comparison.baseline], positions[comparison.variant]))
            y = top + 0.06 * span + level * step
            axes.plot([a, a, b, b], [y - 0.02 * span, y, y, y - 0.02 * span], color="0.2", linewidth=1.0)
            mean = float(differences.at[comparison.label, "mean"])
            se = float(differences.at[comparison.label, "se"])
            text = f"{comparison.variant} − {comparison.baseline}: {mean:+.2f}"
            text += " dB" if math.isnan(se) else f" ± {se:.2f} dB"
            significant = differences.at[comparison.label, "significant"]
            if significant is not pd.NA and not significant:
                text += " (n.s.)"  # the table's mark: Holm-adjusted, seeds and tracks counted
            axes.text((a + b) / 2, y + 0.01 * span, text, ha="center", va="bottom", fontsize=8.5)
        axes.set_ylim(low, max(high, top + 0.06 * span + len(comparisons) * step + 0.04 * span))

    handles = [
        Patch(facecolor=KIND_COLORS[kind], edgecolor="black", alpha=0.85, label=kind)
        for kind in KINDS
        if kind in set(points["kind"])
    ]
    if (points.groupby("method").size() > 1).any():
        handles.append(
            Line2D(
                [],
                [],
                color="black",
                marker="_",
                markersize=12,
                markeredgewidth=2,
                linestyle="",
                label="mean ± s.e. over seeds",
            )
        )
    axes.legend(handles=handles, loc="best", fontsize=8.5)
    return figure
