"""Tests of demixbench.table.render: the Markdown, CSV, JSON, LaTeX, HTML and metrics outputs of a
leaderboard."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from demixbench import TARGETS
from demixbench.table.build import build_table
from demixbench.table.model import Comparison, Leaderboard, MethodRuns
from table_helpers import SEED0, SEED1, uniform_run, write_track


@pytest.fixture
def small_table(tmp_path: Path) -> Leaderboard:
    unet = (uniform_run(tmp_path / "unet" / "s0", SEED0), uniform_run(tmp_path / "unet" / "s1", SEED1))
    irm = (uniform_run(tmp_path / "irm", {t: [8.0, 9.0, 10.0] for t in TARGETS}),)
    # A target with only NaN frames on every track gives a NaN median: it must become null in JSON.
    nan_dir = tmp_path / "silent"
    for track in ("a", "b", "c"):
        write_track(nan_dir, track, {**{t: [1.0] for t in TARGETS}, "vocals": [math.nan, math.nan]})
    return build_table(
        [
            MethodRuns("unet", unet),
            MethodRuns("IRM2", irm, kind="oracle"),
            MethodRuns("silent", (nan_dir,), kind="imported"),
        ],
        [Comparison("unet", "IRM2")],
    )


def test_markdown(small_table: Leaderboard) -> None:
    text = small_table.to_markdown()
    lines = text.splitlines()
    assert lines[0] == "## SDR: median over frames, median over tracks (SiSEC 2018)"
    caption = lines[2]
    assert "median over 1 s frames" in caption and "3 test tracks" in caption
    assert "95% paired bootstrap" in caption and "2000 resamples, seed 0" in caption
    assert "Wilcoxon signed-rank" in caption and "n.s.: the interval contains 0" in caption
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == [
        "## SDR: median over frames, median over tracks (SiSEC 2018)",
        "## SDR: median over frames, mean over tracks",
    ]  # no nSDR in these score files: no nSDR section
    table_lines = [line for line in lines if line.startswith("|")]
    assert table_lines[0] == "| method | seeds | drums | bass | other | vocals | All |"
    assert len(table_lines) == 2 * (2 + 4)  # per section: header, alignment, 3 methods, 1 difference
    assert table_lines[2] == ("| unet | 2 | 3.00 ± 1.00 | 1.50 ± 0.50 | 2.50 ± 0.50 | 6.50 ± 0.50 | 3.38 ± 0.12 |")
    assert table_lines[3] == "| IRM2 | 1 | 9.00 | 9.00 | 9.00 | 9.00 | 9.00 |"
    assert table_lines[4].startswith("| silent | 1 | 1.00 |") and "n/a" in table_lines[4]
    difference = table_lines[5]
    assert difference.startswith("| unet - IRM2 | 2 vs 1 | -6.00 ± 1.00 [")
    assert "(p=0.250)" in difference  # three tracks, all lower: the smallest exact two-sided p
    # Mean over tracks: unet drums per seed 11/3 and 4 -> 3.83 ± 0.17.
    assert table_lines[8].startswith("| unet | 2 | 3.83 ± 0.17 | 1.33 ± 0.33 |")
    assert "Notes" not in text


def test_csv(small_table: Leaderboard, tmp_path: Path) -> None:
    path = small_table.to_csv(tmp_path / "out.csv")
    frame = pd.read_csv(path)
    assert list(frame.columns) == [
        "aggregation", "row", "kind", "target", "mean", "se", "n_seeds",
        "ci_low", "ci_high", "p_value", "significant",
    ]  # fmt: skip
    assert len(frame) == 2 * 4 * 5  # aggregations x rows x columns
    assert list(dict.fromkeys(frame["aggregation"])) == ["median", "mean"]
    median = frame[frame["aggregation"] == "median"]
    unet = median[(median["row"] == "unet") & (median["target"] == "drums")].iloc[0]
    assert (unet["kind"], unet["mean"], unet["se"], unet["n_seeds"]) == ("model", 3.0, 1.0, 2)
    assert pd.isna(unet["ci_low"]) and pd.isna(unet["significant"])
    difference = median[(median["row"] == "unet - IRM2") & (median["target"] == "drums")].iloc[0]
    assert difference["mean"] == pytest.approx(-6.0)
    assert difference["ci_low"] <= -6.0 <= difference["ci_high"]
    assert difference["p_value"] == pytest.approx(0.25)
    assert difference["significant"] in (True, "True")


def test_json_is_strict_and_complete(small_table: Leaderboard, tmp_path: Path) -> None:
    path = small_table.to_json(tmp_path / "out.json")
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text

    def reject(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    document = json.loads(text, parse_constant=reject)
    assert document["metric"] == "SDR" and document["unit"] == "dB"
    assert document["n_tracks"] == 3
    assert document["frame_duration"] == 1.0
    assert document["targets"] == list(TARGETS)
    assert document["primary"] == "median"
    assert "median over tracks" in document["aggregation"]
    assert document["statistics"]["n_resamples"] == 2000
    assert document["statistics"]["bootstrap_seed"] == 0
    assert document["statistics"]["confidence"] == 0.95
    assert "Wilcoxon" in document["statistics"]["p_value"]
    assert document["notes"] == {}
    # The primary table at the top level, the further aggregations under "aggregations".
    assert document["title"].startswith("SDR: median over frames, median over tracks")
    assert list(document["aggregations"]) == ["mean"]
    median = document
    unet = median["rows"]["unet"]
    assert unet["kind"] == "model" and unet["n_seeds"] == 2
    assert unet["drums"] == {"mean": 3.0, "se": 1.0}
    assert unet["seeds"]["s0"]["drums"] == 2.0 and unet["seeds"]["s1"]["All"] == 3.5
    assert median["rows"]["IRM2"]["bass"] == {"mean": 9.0, "se": None}
    assert median["rows"]["silent"]["vocals"] == {"mean": None, "se": None}
    difference = median["differences"]["unet - IRM2"]
    assert (difference["variant"], difference["baseline"]) == ("unet", "IRM2")
    drums = difference["drums"]
    assert set(drums) == {"mean", "se", "ci_low", "ci_high", "p_value", "significant"}
    assert drums["mean"] == pytest.approx(-6.0)
    assert drums["se"] == pytest.approx(1.0)
    assert drums["ci_low"] <= drums["mean"] <= drums["ci_high"] < 0
    assert drums["significant"] is True
    assert drums["p_value"] == pytest.approx(0.25)
    mean = document["aggregations"]["mean"]
    assert mean["rows"]["unet"]["seeds"]["s0"]["drums"] == pytest.approx(11 / 3)
    # Every value under rows/differences is a number, a bool or null (DVC metrics).
    for row in (*median["rows"].values(), *median["differences"].values()):
        for column in small_table.columns:
            assert all(v is None or isinstance(v, (int, float)) for v in row[column].values())


class _CellCollector(HTMLParser):
    """Collects the text of every <caption>, <th> and <td>, and checks tags are balanced."""

    VOID = {"meta", "br", "hr", "img", "link", "input"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.cells: list[tuple[str, str]] = []
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag in ("caption", "th", "td", "li", "h2"):
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (self.stack, tag)
        self.stack.pop()
        if tag in ("caption", "th", "td", "li", "h2") and self._text is not None:
            self.cells.append((tag, "".join(self._text)))
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def test_write_all_formats(tmp_path: Path) -> None:
    tricky = "a_b & <c> 100% #1"
    runs = uniform_run(tmp_path / "t", {t: [4.0, 5.0, 6.0] for t in TARGETS})
    base = uniform_run(tmp_path / "b", {t: [1.0, 2.0, 3.0] for t in TARGETS})
    table = build_table(
        [
            MethodRuns(tricky, (runs,), note="from <somewhere> & co"),
            MethodRuns("base", (base,), kind="imported", note="SiSEC 2018 submission, sigsep-mus-2018"),
        ],
        [Comparison(tricky, "base")],
    )
    out = tmp_path / "results" / "table"
    paths = table.write(out)
    assert set(paths) == {"md", "csv", "json", "tex", "html", "metrics"}
    assert sorted(p.name for p in out.iterdir()) == [
        "sdr.csv",
        "sdr.html",
        "sdr.json",
        "sdr.md",
        "sdr.metrics.json",
        "sdr.tex",
    ]
    assert paths["md"].read_text(encoding="utf-8") == table.to_markdown()

    # Markdown: notes listed under the tables.
    markdown = paths["md"].read_text(encoding="utf-8")
    assert "## Notes" in markdown
    assert "- base (imported): SiSEC 2018 submission, sigsep-mus-2018" in markdown

    # CSV and JSON parse, with numbers.
    assert len(pd.read_csv(paths["csv"])) == 2 * 3 * 5
    document = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert document["notes"] == {tricky: "from <somewhere> & co", "base": "SiSEC 2018 submission, sigsep-mus-2018"}
    assert document["rows"]["base"]["All"]["mean"] == 2.0
    assert isinstance(document["differences"][f"{tricky} - base"]["All"]["mean"], float)
    assert document["aggregations"]["mean"]["rows"]["base"]["All"]["mean"] == 2.0

    # Metrics (DVC): the primary table's seed means, nothing else.
    headline = json.loads(paths["metrics"].read_text(encoding="utf-8"))
    assert set(headline) == {"metric", "n_tracks", "rows", "differences"}
    assert headline["n_tracks"] == document["n_tracks"]
    for part in ("rows", "differences"):
        assert set(headline[part]) == set(document[part])
        for label, columns in headline[part].items():
            assert columns == {column: document[part][label][column]["mean"] for column in (*TARGETS, "All")}

    # LaTeX: booktabs rules, escaped names, ± as $\pm$.
    latex = paths["tex"].read_text(encoding="utf-8")
    assert latex.count("\\toprule") == latex.count("\\bottomrule") == 2  # one table per aggregation
    assert "\\midrule" in latex and "\\begin{tabular}{lrrrrrr}" in latex
    assert "a\\_b \\& \\textless{}c\\textgreater{} 100\\% \\#1" in latex
    assert tricky not in latex
    assert "$\\pm$" in latex and "±" not in latex
    assert "\\caption{SDR: median over frames, median over tracks" in latex
    assert "\\label{tab:sdr-median}" in latex and "\\label{tab:sdr-mean}" in latex
    assert "\\item \\textbf{base} (imported): SiSEC 2018 submission, sigsep-mus-2018" in latex
    assert latex.count("\\begin{table}") == latex.count("\\end{table}") == 2

    # HTML: standalone, escaped, captioned, well nested.
    page = paths["html"].read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<link" not in page and "<script" not in page
    assert "a_b &amp; &lt;c&gt; 100% #1" in page and "<c>" not in page
    collector = _CellCollector()
    collector.feed(page)
    collector.close()
    assert collector.stack == []
    captions = [text for tag, text in collector.cells if tag == "caption"]
    assert len(captions) == 2 and "median over 1 s frames, median over tracks" in captions[0]
    row_headers = [text for tag, text in collector.cells if tag == "th"]
    assert tricky in row_headers and f"{tricky} - base" in row_headers
    assert "from <somewhere> & co" in "".join(text for tag, text in collector.cells if tag == "li")

    table.write(out, stem="again")
    assert (out / "again.json").is_file() and (out / "again.tex").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
