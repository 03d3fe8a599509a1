"""The learning curves of one run, written at its end: history.csv (scalar columns), history.json
(everything, including the per-track validation nSDR) and history.png.

The figure is a :class:`matplotlib.figure.Figure` rendered by the Agg backend through
``savefig``, as in demixbench.report.plots (which the training stage must not import): pyplot is
not used, so no process-wide backend is set and no figure is left open.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from matplotlib.figure import Figure

from demixbench.fileio import atomic_path, atomic_write_text


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    """history.csv (scalar columns), history.json (everything, including the per-track validation
    nSDR) and history.png (learning curves) side by side."""
    columns = [c for c, value in history[0].items() if not isinstance(value, dict)]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")  # floats as repr(): the shortest text that reads back the same float
    writer.writerow(columns)
    writer.writerows([row[c] for c in columns] for row in history)
    atomic_write_text(path, text.getvalue())
    atomic_write_text(Path(path).with_suffix(".json"), json.dumps(history, indent=1))
    plot_history(history, Path(path).with_suffix(".png"))


def plot_history(history: list[dict[str, float]], path: Path) -> None:
    """Learning curves: train/validation loss and validation nSDR per target, per epoch."""
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(10, 3.8))
    losses, scores = figure.subplots(1, 2)
    losses.plot(epochs, [row["train_loss"] for row in history], label="train")
    losses.plot(epochs, [row["valid_loss"] for row in history], label="validation")
    losses.set(xlabel="epoch", ylabel="reconstruction loss (L1)", title="loss")
    losses.legend()
    for key in sorted(k for k, v in history[0].items() if k.startswith("valid_nsdr_") and not isinstance(v, dict)):
        scores.plot(epochs, [row[key] for row in history], label=key.removeprefix("valid_nsdr_"))
    scores.plot(epochs, [row["valid_nsdr"] for row in history], "k--", label="mean")
    scores.set(xlabel="epoch", ylabel="nSDR (dB)", title="validation nSDR")
    scores.legend(fontsize="small")
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, dpi=100)
