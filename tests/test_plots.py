"""Tests of demixbench.report.plots: boxplots, per-seed scatter and learning curves."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pytest
from matplotlib.collections import PathCollection

from demixbench import TARGETS
from demixbench.report.curves import _learning_curves_figure, _read_history, plot_learning_curves
from demixbench.report.plots import (
    _seed_scatter_figure,
    plot_seed_scatter,
    plot_track_boxplots,
    seed_scatter_data,
    track_values,
)
from demixbench.table.build import build_table
from demixbench.table.model import ALL, Comparison, MethodRuns
from demixbench.table.runs import track_frame_medians

SISEC18 = Path(__file__).parent / "data" / "sisec18"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def assert_figure_files(paths: Sequence[Path], out: Path) -> None:
    """PNG and SVG next to each other, non-blank, parseable, and nothing else left in the folder."""
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert paths == [out.with_suffix(".png"), out.with_suffix(".svg")]
    png, svg = paths
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    colours = np.unique(image.reshape(-1, image.shape[-1]), axis=0)
    assert len(colours) > 10, "the image looks blank"
    root = ElementTree.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert "<dc:date>" not in svg.read_text(encoding="utf-8")
    # Atomic writes leave no temporary files behind.
    leftovers = sorted(p.name for p in out.parent.iterdir() if p.name.startswith("."))
    assert leftovers == []


def write_scores(directory: Path, per_track: Mapping[str, Mapping[str, float]]) -> Path:
    """A museval-style score directory whose per-track medians over frames are ``per_track``."""
    directory.mkdir(parents=True, exist_ok=True)
    for track, per_target in per_track.items():
        document = {
            "targets": [
                {
                    "name": target,
                    "frames": [
                        {"time": float(i), "duration": 1.0, "metrics": {"SDR": v}}
                        for i, v in enumerate([value - 2.0, math.nan, value, value + 1.0])
                    ],
                }
                for target, value in per_target.items()
            ]
        }
        (directory / f"{track}.json").write_text(json.dumps(document), encoding="utf-8")
    return directory


def synthetic_run(directory: Path, offset: float, tracks: Sequence[str] = ("a", "b", "c", "d")) -> Path:
    """Score directory with distinct per-track, per-target values shifted by ``offset`` dB."""
    return write_scores(
        directory,
        {
            track: {target: offset + 1.5 * i - 0.7 * j + 0.1 * i * j for j, target in enumerate(TARGETS)}
            for i, track in enumerate(tracks)
        },
    )


@pytest.fixture
def synthetic_methods(tmp_path: Path) -> tuple[list[MethodRuns], list[Comparison]]:
    base = tuple(synthetic_run(tmp_path / "base" / f"seed{s}", 2.0 + 0.3 * s) for s in range(3))
    gan = tuple(synthetic_run(tmp_path / "gan" / f"seed{s}", 2.4 + 0.5 * s - 0.1 * s * s) for s in range(2))
    oracle = (synthetic_run(tmp_path / "oracle" / "scores", 8.0),)
    methods = [
        MethodRuns("oracle", oracle, kind="oracle"),
        MethodRuns("base", base),
        MethodRuns("imported", (synthetic_run(tmp_path / "imp", 1.0),), kind="imported"),
        MethodRuns("gan", gan),
    ]
    return methods, [Comparison("gan", "base")]


def write_history(path: Path, rows: Sequence[Mapping[str, float]]) -> Path:
    """A history.csv as demixbench.train.history writes it (header, one line per epoch)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0])
    lines = [",".join(columns)] + [",".join(repr(row[c]) for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def history_rows(scale: float, epochs: int = 5, nsdr: bool = True) -> list[dict[str, float]]:
    rows = []
    for epoch in range(1, epochs + 1):
        row = {
            "epoch": epoch,
            "step": 10 * epoch,
            "train_loss": scale * (0.2 / epoch + 0.05),
            "train_adv": 0.0,
            "train_d": 0.0,
            "valid_loss": scale * (0.15 / epoch + 0.06) + 0.002 * (epoch == 4),
        }
        if nsdr:
            row.update({f"valid_nsdr_{t}": 0.5 * epoch + j for j, t in enumerate(TARGETS)})
            row["valid_nsdr"] = 0.5 * epoch + 1.5
        row["seconds"] = 1.0
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------
# Boxplots
# --------------------------------------------------------------------------------------------------


def sisec_methods(entries: Sequence[str]) -> list[MethodRuns]:
    return [
        MethodRuns(entry, (SISEC18 / entry,), kind="oracle" if entry in ("IRM2", "MIX") else "imported")
        for entry in entries
    ]


def test_boxplots_sisec18(tmp_path: Path) -> None:
    methods = sisec_methods(("IRM2", "TAK1", "MIX"))
    out = tmp_path / "plots" / "boxplot"
    paths = plot_track_boxplots(methods, out)
    assert_figure_files(paths, out)
    svg = paths[1].read_text(encoding="utf-8")
    assert "<svg" in svg
    # Deterministic: the same input gives the same bytes (another output name, same content).
    again = plot_track_boxplots(methods, tmp_path / "again" / "boxplot")
    assert again[1].read_bytes() == paths[1].read_bytes()
    assert again[0].read_bytes() == paths[0].read_bytes()


def test_boxplots_leave_matplotlib_state_alone(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = dict(matplotlib.rcParams)
    backend = matplotlib.get_backend()
    plot_track_boxplots(sisec_methods(("MIX",)), tmp_path / "box.png", targets=("vocals",))
    assert plt.get_fignums() == []
    assert matplotlib.get_backend() == backend
    assert dict(matplotlib.rcParams) == before


def test_boxplot_suffix_is_replaced(tmp_path: Path, synthetic_methods) -> None:
    methods, _ = synthetic_methods
    paths = plot_track_boxplots(methods, tmp_path / "out" / "box.png", targets=("drums", "vocals"))
    assert_figure_files(paths, tmp_path / "out" / "box")


def test_track_values_average_seeds(synthetic_methods) -> None:
    methods, _ = synthetic_methods
    base = methods[1]
    values = track_values(base)
    expected = sum(track_frame_medians(d) for d in base.seed_dirs) / len(base.seed_dirs)
    np.testing.assert_allclose(values.to_numpy(), expected.to_numpy())
    assert values.attrs["n_seeds"] == 3
    assert values.attrs["frame_duration"] == 1.0


def test_boxplot_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one method"):
        plot_track_boxplots([], tmp_path / "x")
    empty = tmp_path / "empty_scores"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty_scores"):
        plot_track_boxplots([MethodRuns("m", (empty,))], tmp_path / "x")
    with pytest.raises(ValueError, match="missing"):
        plot_track_boxplots([MethodRuns("m", (tmp_path / "missing",))], tmp_path / "x")
    short = synthetic_run(tmp_path / "short", 1.0, tracks=("a", "b"))
    full = synthetic_run(tmp_path / "full", 1.0)
    with pytest.raises(ValueError, match="same tracks"):
        plot_track_boxplots([MethodRuns("full", (full,)), MethodRuns("short", (short,))], tmp_path / "x")
    with pytest.raises(ValueError, match="short"):
        plot_track_boxplots([MethodRuns("m", (full, short))], tmp_path / "x")
    assert not (tmp_path / "x.png").exists()


# --------------------------------------------------------------------------------------------------
# Seed scatter
# --------------------------------------------------------------------------------------------------


def test_seed_scatter_values_are_the_tables(tmp_path: Path, synthetic_methods) -> None:
    methods, comparisons = synthetic_methods
    points, table = seed_scatter_data(methods, comparisons)
    reference = build_table(methods, comparisons)
    # Every plotted per-seed value is build_table's seed value, for every method and seed.
    expected = {
        (name, seed): values[ALL] for name, seeds in reference.seed_values.items() for seed, values in seeds.items()
    }
    got = {(row.method, row.seed): row.value for row in points.itertuples()}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12)
    # ... and mean / s.e. are the table's All cells.
    summary = reference.data[reference.data["target"] == ALL].set_index("row")
    for row in points.itertuples():
        assert row.mean == pytest.approx(summary.at[row.method, "mean"])
        se = summary.at[row.method, "se"]
        assert (math.isnan(row.se) and math.isnan(se)) or row.se == pytest.approx(se)
    # Compared methods are adjacent, baseline first: oracle, base, gan, imported.
    order = list(dict.fromkeys(points.sort_values("x")["method"]))
    assert order == ["oracle", "base", "gan", "imported"]

    # What the figure draws: the dots' y values are those seed values, at their method's x.
    figure = _seed_scatter_figure(points, table)
    axes = figure.axes[0]
    plotted = {}
    for collection in axes.collections:
        if isinstance(collection, PathCollection) and collection.get_label().startswith("_seeds "):
            name = collection.get_label().removeprefix("_seeds ")
            plotted[name] = collection.get_offsets()
    assert sorted(plotted) == sorted(m.name for m in methods)
    for name, offsets in plotted.items():
        rows = points[points["method"] == name]
        np.testing.assert_allclose(np.asarray(offsets)[:, 1], rows["value"].to_numpy(), atol=1e-12)
        assert np.all(np.abs(np.asarray(offsets)[:, 0] - rows["x"].iloc[0]) < 0.5)
    texts = " ".join(text.get_text() for text in axes.texts)
    difference = reference.data[(reference.data["row"] == "gan - base") & (reference.data["target"] == ALL)]
    assert f"{difference['mean'].iloc[0]:+.2f}" in texts
    assert "gan − base" in texts


def test_seed_scatter_files(tmp_path: Path, synthetic_methods) -> None:
    methods, comparisons = synthetic_methods
    out = tmp_path / "scatter"
    paths = plot_seed_scatter(methods, out, comparisons=comparisons)
    assert_figure_files(paths, out)
    again = plot_seed_scatter(methods, tmp_path / "b" / "scatter", comparisons=comparisons)
    assert again[1].read_bytes() == paths[1].read_bytes()


def test_seed_scatter_matches_table_on_sisec18(tmp_path: Path) -> None:
    methods = [*sisec_methods(("IRM2", "MIX")), MethodRuns("two", (SISEC18 / "TAK1", SISEC18 / "UHL2"))]
    points, _ = seed_scatter_data(methods, [Comparison("two", "MIX")], targets=("vocals", "drums"))
    table = build_table(methods, [Comparison("two", "MIX")], targets=("vocals", "drums"))
    for row in points.itertuples():
        assert row.value == pytest.approx(table.seed_values[row.method][row.seed][ALL])
    paths = plot_seed_scatter(methods, tmp_path / "s", [Comparison("two", "MIX")], targets=("vocals", "drums"))
    assert_figure_files(paths, tmp_path / "s")


def test_seed_scatter_errors(tmp_path: Path, synthetic_methods) -> None:
    methods, _ = synthetic_methods
    with pytest.raises(ValueError, match="at least one method"):
        plot_seed_scatter([], tmp_path / "x")
    empty = tmp_path / "no_scores_here"
    empty.mkdir()
    with pytest.raises(ValueError, match="no_scores_here"):
        plot_seed_scatter([MethodRuns("m", (empty,))], tmp_path / "x")
    with pytest.raises(ValueError, match="unknown method"):
        plot_seed_scatter(methods, tmp_path / "x", comparisons=[Comparison("gan", "nope")])


# --------------------------------------------------------------------------------------------------
# Learning curves
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def histories(tmp_path: Path) -> dict[str, list[Path]]:
    root = tmp_path / "models"
    return {
        "unet": [
            write_history(root / "unet" / f"seed{s}" / "history.csv", history_rows(1.0 + 0.1 * s)) for s in (1, 2)
        ],
        "unet_gan": [
            write_history(root / "unet_gan" / f"seed{s}" / "history.csv", history_rows(0.9 + 0.05 * s)) for s in (1, 2)
        ],
    }


def test_learning_curves(tmp_path: Path, histories) -> None:
    out = tmp_path / "plots" / "learning_curves"
    paths = plot_learning_curves(histories, out)
    assert_figure_files(paths, out)
    again = plot_learning_curves(histories, tmp_path / "again" / "learning_curves")
    assert again[1].read_bytes() == paths[1].read_bytes()

    data = {model: [(p.parent.name, _read_history(p)) for p in paths_] for model, paths_ in histories.items()}
    figure = _learning_curves_figure(data)
    train, valid, nsdr = figure.axes[:3]
    assert [a.get_title() for a in (train, valid, nsdr)] == ["training loss", "validation loss", "validation nSDR"]
    assert "dB" in nsdr.get_ylabel()
    # One line per model and seed, one colour per model.
    lines = [line for line in train.get_lines() if not line.get_label().startswith("_")]
    assert sorted(line.get_label() for line in lines) == [
        "unet seed1",
        "unet seed2",
        "unet_gan seed1",
        "unet_gan seed2",
    ]
    colours = {line.get_label().split()[0]: set() for line in lines}
    for line in lines:
        colours[line.get_label().split()[0]].add(line.get_color())
    assert all(len(c) == 1 for c in colours.values()) and len(set().union(*colours.values())) == 2
    seed1 = next(line for line in valid.get_lines() if line.get_label() == "unet seed1")
    np.testing.assert_allclose(seed1.get_ydata(), [row["valid_loss"] for row in history_rows(1.1)])
    assert valid.get_shared_y_axes().joined(train, valid)


def test_learning_curves_without_nsdr(tmp_path: Path) -> None:
    runs = [write_history(tmp_path / f"seed{s}" / "history.csv", history_rows(1.0 + s, nsdr=False)) for s in (0, 1)]
    paths = plot_learning_curves({"demucs": runs}, tmp_path / "lc")
    assert_figure_files(paths, tmp_path / "lc")
    figure = _learning_curves_figure({"demucs": [(p.parent.name, _read_history(p)) for p in runs]})
    assert [a.get_title() for a in figure.axes] == ["training loss", "validation loss"]


def test_learning_curves_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one model"):
        plot_learning_curves({}, tmp_path / "x")
    with pytest.raises(ValueError, match="'unet': no history files"):
        plot_learning_curves({"unet": []}, tmp_path / "x")
    missing = tmp_path / "seed9" / "history.csv"
    with pytest.raises(ValueError, match="seed9"):
        plot_learning_curves({"unet": [missing]}, tmp_path / "x")
    bad = tmp_path / "bad" / "history.csv"
    bad.parent.mkdir()
    bad.write_text("epoch,loss\n1,0.5\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.*missing column"):
        plot_learning_curves({"unet": [bad]}, tmp_path / "x")
    empty = tmp_path / "empty" / "history.csv"
    empty.parent.mkdir()
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        plot_learning_curves({"unet": [empty]}, tmp_path / "x")
    assert not (tmp_path / "x.png").exists()
