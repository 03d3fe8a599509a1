"""What every figure of the report shares: written as a PNG and an SVG next to each other (``out``
with the suffixes ``.png`` and ``.svg``; any suffix of ``out`` is replaced), atomically. Figures are
built as :class:`matplotlib.figure.Figure` objects rendered with the Agg (PNG) and SVG backends:
pyplot is never used, so nothing of one call (open figures, current axes) leaks into the next, and
the process-wide backend is left alone. Every figure is drawn under matplotlib's default style plus
this module's settings (a user's matplotlibrc does not change the output), with a fixed
``svg.hashsalt`` and no date in the metadata, so the same input gives the same SVG (and PNG) bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.style
from matplotlib.figure import Figure

from demixbench.fileio import atomic_path

log = logging.getLogger(__name__)

#: Matplotlib settings of every figure (on top of matplotlib's default style).
_RC: dict[str, Any] = {
    "svg.hashsalt": "demixbench",  # deterministic ids of clip paths etc.
    "svg.fonttype": "path",  # glyphs as paths: the SVG looks the same without the fonts
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.35,
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "savefig.facecolor": "white",
}

#: Metadata written into the files: no date, so that the bytes depend on the input only.
_METADATA: dict[str, dict[str, Any]] = {"png": {}, "svg": {"Date": None}}

_DPI = 150


@contextmanager
def style() -> Iterator[None]:
    """matplotlib's default style plus :data:`_RC`, restored on exit (the backend is not touched)."""
    with matplotlib.style.context("default"), matplotlib.rc_context(_RC):
        yield


def save(figure: Figure, out: Path) -> list[Path]:
    """Write ``figure`` as ``out.png`` and ``out.svg`` atomically; returns both paths."""
    out = Path(out)
    paths = []
    for fmt in ("png", "svg"):
        path = out.with_suffix(f".{fmt}")
        with atomic_path(path, suffix=f".{fmt}") as temporary:
            figure.savefig(temporary, format=fmt, dpi=_DPI, metadata=_METADATA[fmt])
        paths.append(path)
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return paths


def seeds_note(n_seeds: int) -> str:
    """How many runs a legend entry stands for: "3 seeds", "1 run"."""
    return f"{n_seeds} seeds" if n_seeds != 1 else "1 run"
