"""Learning curves of every model and seed on shared axes, from the runs' ``history.csv``
(written by :mod:`demixbench.train.history`); the figure conventions are those of
:mod:`demixbench.report.figures`."""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from demixbench.report.figures import save, seeds_note, style

log = logging.getLogger(__name__)

#: Line colours of the models in learning curves (Okabe-Ito, then matplotlib's tab10).
_MODEL_COLORS: tuple[str, ...] = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
)  # fmt: skip


#: Columns a history.csv must have (written by demixbench.train.history).
_HISTORY_REQUIRED: tuple[str, ...] = ("epoch", "train_loss", "valid_loss")


def _read_history(path: Path) -> pd.DataFrame:
    """One history.csv (demixbench.train.history's format) as a DataFrame; ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"history file {path} does not exist")
    try:
        history = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path}: cannot be read as CSV ({error})") from error
    missing = [column for column in _HISTORY_REQUIRED if column not in history.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} (has: {list(history.columns)})")
    if history.empty:
        raise ValueError(f"{path}: no epochs")
    return history.sort_values("epoch", kind="stable")


def _seed_label(path: Path) -> str:
    """A history.csv's seed label: its directory name (``seed1`` in ``.../unet/seed1/history.csv``)."""
    return Path(path).parent.name or str(path)


def plot_learning_curves(histories: Mapping[str, Sequence[Path]], out: Path) -> list[Path]:
    """Learning curves of several models, each with several seeds' ``history.csv``.

    Panels: training loss, validation loss (sharing the y axis) and, when any history has the
    column ``valid_nsdr``, the validation nSDR (dB, mean over targets); epochs on the shared x
    axis. One line per seed, one colour per model; a dot marks each seed's best validation loss
    (the epoch whose weights become the checkpoint). Writes ``out.png`` and ``out.svg`` and
    returns their paths.

    Raises ValueError for no models, a model without history files, or a missing or malformed file
    (naming it).
    """
    if not histories:
        raise ValueError("at least one model's history files are required")
    data: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    for model, paths in histories.items():
        paths = [Path(p) for p in paths]
        if not paths:
            raise ValueError(f"model {model!r}: no history files")
        data[str(model)] = [(_seed_label(p), _read_history(p)) for p in paths]
    with style():
        figure = _learning_curves_figure(data)
        return save(figure, out)


def _learning_curves_figure(data: Mapping[str, Sequence[tuple[str, pd.DataFrame]]]) -> Figure:
    has_nsdr = any("valid_nsdr" in history.columns for runs in data.values() for _, history in runs)
    n_panels = 3 if has_nsdr else 2
    figure = Figure(figsize=(4.3 * n_panels, 4.3), layout="constrained")
    panels = figure.subplots(1, n_panels, sharex=True)
    panels[1].sharey(panels[0])
    columns = [("train_loss", "training loss"), ("valid_loss", "validation loss")]
    if has_nsdr:
        columns.append(("valid_nsdr", "validation nSDR"))
    styles = ("-", "--", ":", "-.")
    handles = []
    for index, (model, runs) in enumerate(data.items()):
        color = _MODEL_COLORS[index % len(_MODEL_COLORS)]
        for seed_index, (seed, history) in enumerate(runs):
            linestyle = styles[seed_index % len(styles)]
            epochs = history["epoch"].to_numpy()
            best = int(np.nanargmin(history["valid_loss"].to_numpy(dtype=np.float64)))
            for axes, (column, _) in zip(panels, columns, strict=True):
                if column not in history.columns:
                    continue
                series = history[column].to_numpy(dtype=np.float64)
                axes.plot(
                    epochs, series, color=color, linestyle=linestyle, linewidth=1.4, alpha=0.9, label=f"{model} {seed}"
                )
                if column in ("valid_loss", "valid_nsdr"):
                    axes.plot(
                        epochs[best],
                        series[best],
                        "o",
                        color=color,
                        markersize=4.5,
                        markeredgecolor="black",
                        markeredgewidth=0.5,
                    )
        handles.append(Line2D([], [], color=color, linewidth=2, label=f"{model} ({seeds_note(len(runs))})"))
    n_seeds_max = max(len(runs) for runs in data.values())
    for seed_index in range(min(n_seeds_max, len(styles))):
        labels = sorted({runs[seed_index][0] for runs in data.values() if len(runs) > seed_index})
        handles.append(Line2D([], [], color="0.3", linestyle=styles[seed_index], label=" / ".join(labels)))
    handles.append(Line2D([], [], color="0.3", marker="o", linestyle="", markersize=4.5, label="best validation loss"))
    for axes, (_, title) in zip(panels, columns, strict=True):
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    panels[0].set_ylabel("reconstruction loss (each model's own)")
    panels[1].tick_params(labelleft=True)
    if has_nsdr:
        panels[2].set_ylabel("nSDR (dB), mean over targets")
    figure.legend(handles=handles, loc="outside right center", frameon=False)
    return figure
