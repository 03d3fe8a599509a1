"""Evaluation guards: tests that catch the field's known traps in how separations are scored and how
the numbers are labelled (issue 14, parts 4 and 5).

- Scoring is BSS Eval v4 over exactly the four targets, jointly: a target's SIR depends on the other
  references; SDR and ISR do not.
- An extra ``accompaniment`` source is never scored: museval's ``eval_mus_track`` scores vocals in a
  separate vocals/accompaniment problem when an accompaniment estimate is present, which moves the
  vocals' SIR and SAR (not SDR or ISR, which in v4 depend on the vocals reference alone).
- Every caption states how each number is defined (frames, aggregation, seeds, All, nSDR epsilon).
- A row declared as trained with test tracks is marked in every table format.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

from demixbench import TARGETS
from demixbench.score.batch import score_directory
from demixbench.score.scorefile import load_track_scores
from demixbench.score.track import ScoringConfig, nsdr, score_arrays
from demixbench.table.build import build_table
from demixbench.table.model import (
    COMPARABLE,
    DEFAULT_TRAINED_ON,
    KINDS,
    MARKS,
    NSDR_EPSILON,
    TRAINED_ON,
    Comparison,
    Leaderboard,
    MethodRuns,
)
from table_helpers import frames_with_median, seeded_runs, write_track

RATE = 8000  # a low rate keeps BSS Eval's 512-tap filters cheap; the frames stay 1 s
SECONDS = 4


def _sources(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(references, estimates), each (4 targets, 2 channels, samples): independent noise
    references, and estimates that leak 15 % of every other source plus a little noise."""
    rng = np.random.default_rng(seed)
    references = rng.normal(size=(len(TARGETS), 2, RATE * SECONDS))
    mixture = references.sum(axis=0)
    estimates = np.stack(
        [
            0.8 * reference + 0.15 * (mixture - reference) + 0.05 * rng.normal(size=reference.shape)
            for reference in references
        ]
    )
    return references, estimates


def _median(scores: dict, target: str, metric: str) -> float:
    """Median over frames of one target's metric in a museval-format dict."""
    (entry,) = [entry for entry in scores["targets"] if entry["name"] == target]
    return float(np.nanmedian([frame["metrics"][metric] for frame in entry["frames"]]))


CONFIG = ScoringConfig(sample_rate=RATE)


# --------------------------------------------------------------------------------------------------
# (a) joint over exactly the four targets
# --------------------------------------------------------------------------------------------------


def test_targets_are_the_four_musdb_sources() -> None:
    assert TARGETS == ("drums", "bass", "other", "vocals")
    assert "accompaniment" not in TARGETS
    references, estimates = _sources()
    scores = score_arrays(references, estimates, config=CONFIG)  # the default targets: TARGETS
    assert [entry["name"] for entry in scores["targets"]] == list(TARGETS)
    assert list(scores["nsdr"]) == list(TARGETS)
    assert inspect.signature(score_arrays).parameters["targets"].default == TARGETS


def test_scoring_is_joint_over_the_targets() -> None:
    """v4 "all sources" mode: a target's interference is measured against the other references,
    so changing only the bass reference changes the drums' SIR; the drums' SDR and ISR compare
    the estimate with the drums reference alone and stay put."""
    references, estimates = _sources()
    joint = score_arrays(references, estimates, config=CONFIG)
    other = references.copy()
    other[1] = np.random.default_rng(99).normal(size=other[1].shape)  # another bass reference
    moved = score_arrays(other, estimates, config=CONFIG)
    assert abs(_median(moved, "drums", "SIR") - _median(joint, "drums", "SIR")) > 1.0
    for metric in ("SDR", "ISR"):
        assert _median(moved, "drums", metric) == pytest.approx(_median(joint, "drums", metric), abs=1e-6)


# --------------------------------------------------------------------------------------------------
# (b) never an extra accompaniment source
# --------------------------------------------------------------------------------------------------


def test_accompaniment_scenario_moves_vocals() -> None:
    """Why the guard matters: museval's eval_mus_track, given an accompaniment estimate, scores
    vocals in a separate (vocals, accompaniment) problem. Their SIR and SAR then differ from the
    four-target scores; SDR and ISR (own reference only, in v4) do not. So vocals SIR/SAR of such
    score files are not comparable with jointly scored ones."""
    references, estimates = _sources()
    four = score_arrays(references, estimates, config=CONFIG)
    accompaniment = (references[:3].sum(axis=0), estimates[:3].sum(axis=0))
    pair = score_arrays(
        np.stack([references[3], accompaniment[0]]),
        np.stack([estimates[3], accompaniment[1]]),
        targets=("vocals", "accompaniment"),
        config=CONFIG,
    )
    assert abs(_median(pair, "vocals", "SAR") - _median(four, "vocals", "SAR")) > 0.1
    assert _median(pair, "vocals", "SIR") != pytest.approx(_median(four, "vocals", "SIR"), abs=1e-4)
    for metric in ("SDR", "ISR"):
        assert _median(pair, "vocals", metric) == pytest.approx(_median(four, "vocals", metric), abs=1e-6)


def _decoded_references(root: Path, track: str, references: np.ndarray) -> Path:
    """A decoded-cache track (``ROOT/<track>/<stem>.npy`` and meta.json) at RATE."""
    folder = root / track
    folder.mkdir(parents=True)
    for target, audio in zip(TARGETS, references, strict=True):
        np.save(folder / f"{target}.npy", audio.astype(np.float32))
    np.save(folder / "mixture.npy", references.sum(axis=0).astype(np.float32))
    meta = {"subset": "test", "sample_rate": RATE, "samples": references.shape[-1]}
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


def _write_estimates(folder: Path, estimates: np.ndarray, *, accompaniment: bool) -> None:
    folder.mkdir(parents=True)
    for target, audio in zip(TARGETS, estimates, strict=True):
        soundfile.write(folder / f"{target}.wav", audio.T.astype(np.float32), RATE, subtype="FLOAT")
    if accompaniment:
        soundfile.write(folder / "accompaniment.wav", estimates[:3].sum(axis=0).T.astype(np.float32), RATE, "FLOAT")


@pytest.fixture
def scored_with_and_without_accompaniment(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> dict:
    """`demixbench score`'s library call on one track, once with an extra accompaniment.wav in the
    estimates and once without; the scores and the log records of the run with it."""
    references, estimates = _sources(3)
    refs = _decoded_references(tmp_path / "refs", "song", references)
    _write_estimates(tmp_path / "plain" / "song", estimates, accompaniment=False)
    _write_estimates(tmp_path / "extra" / "song", estimates, accompaniment=True)
    score_directory(refs, tmp_path / "plain", tmp_path / "out_plain", jobs=1, progress=False)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        summary = score_directory(refs, tmp_path / "extra", tmp_path / "out_extra", jobs=1, progress=False)
    return {
        "summary": summary,
        "plain": tmp_path / "out_plain" / "song.json.gz",
        "extra": tmp_path / "out_extra" / "song.json.gz",
        "records": list(caplog.records),
    }


def test_extra_accompaniment_estimate_is_not_scored(scored_with_and_without_accompaniment: dict) -> None:
    """An estimates folder holding accompaniment.wav besides the four targets is scored on the four
    targets only, jointly, with the same numbers as without the extra file."""
    result = scored_with_and_without_accompaniment
    assert result["summary"].scored == ["song"] and not result["summary"].failed
    assert result["extra"].read_bytes() == result["plain"].read_bytes()
    for metric in ("SDR", "SIR", "ISR", "SAR"):
        assert list(load_track_scores(result["extra"], metric)) == list(TARGETS)


def test_extra_accompaniment_estimate_is_named_in_a_warning(scored_with_and_without_accompaniment: dict) -> None:
    warnings = [r for r in scored_with_and_without_accompaniment["records"] if r.levelno >= logging.WARNING]
    assert any("accompaniment" in record.getMessage() for record in warnings), warnings


def test_accompaniment_as_a_target_is_refused(tmp_path: Path) -> None:
    references, estimates = _sources(4)
    refs = _decoded_references(tmp_path / "refs", "song", references)
    _write_estimates(tmp_path / "est" / "song", estimates, accompaniment=True)
    with pytest.raises(ValueError) as error:
        score_directory(
            refs, tmp_path / "est", tmp_path / "out", targets=(*TARGETS, "accompaniment"), jobs=1, progress=False
        )
    # Named in the message itself, not only in tmp_path (whose name holds this test's).
    assert "accompaniment" in str(error.value).replace(str(tmp_path), "")


def test_nsdr_epsilon_in_captions_is_the_scorers() -> None:
    assert inspect.signature(nsdr).parameters["eps"].default == NSDR_EPSILON
    silent = np.zeros((2, 100))
    assert nsdr(silent, silent) == pytest.approx(0.0)  # (0 + eps) / (0 + eps)
    perfect = np.ones((2, 100))  # energy 200 over both channels, no error: finite thanks to eps
    assert nsdr(perfect, perfect) == pytest.approx(10 * np.log10((200 + NSDR_EPSILON) / NSDR_EPSILON))


# --------------------------------------------------------------------------------------------------
# (c) every caption defines every number
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def hop_table(tmp_path: Path) -> Leaderboard:
    """Two methods whose score files hold 1 s frames every 0.5 s, with nSDR."""
    for method in ("a", "b"):
        for index, track in enumerate(("t0", "t1", "t2")):
            frames = {target: frames_with_median(float(index + (method == "b"))) for target in TARGETS}
            write_track(tmp_path / method / "seed1", track, frames, nsdr={t: float(index) for t in TARGETS}, hop=0.5)
    methods = [MethodRuns(name, (tmp_path / name / "seed1",)) for name in ("a", "b")]
    return build_table(methods, [Comparison("b", "a")], n_resamples=50)


def _caption_texts(table: Leaderboard) -> dict[str, dict[str, str]]:
    """Per format, aggregation -> its caption text as rendered (LaTeX unescaped enough to read)."""
    markdown = table.to_markdown()
    latex = table.to_latex()
    html = table.to_html()
    document = table.to_dict()
    texts: dict[str, dict[str, str]] = {name: {} for name in ("markdown", "latex", "html", "json")}
    for aggregation in table.aggregations:
        section = markdown.split(f"## {table.title(aggregation)}\n\n")[1]
        texts["markdown"][aggregation] = section.split("\n")[0]
        (caption,) = re.findall(r"\\caption\{(.*)\}\n\\label\{tab:sdr-" + aggregation + "}", latex)
        texts["latex"][aggregation] = caption.replace("$\\pm$", "±").replace("\\_", "_")
        heading = f"<h2>{table.title(aggregation)}</h2>\n<table>\n<caption>"
        texts["html"][aggregation] = html.split(heading)[1].split("</caption>")[0].replace("&#x27;", "'")
        part = document if aggregation == "median" else document["aggregations"][aggregation]
        texts["json"][aggregation] = part["caption"]
    return texts


def test_every_caption_defines_every_number(hop_table: Leaderboard) -> None:
    assert hop_table.aggregations == ("median", "mean", "nsdr")
    assert (hop_table.frame_duration, hop_table.frame_hop) == (1.0, 0.5)
    common = [
        "mean ± s.e. over seeds",  # across seeds
        "sample standard deviation over seeds / sqrt(number of seeds)",
        "All: per seed, the mean of the targets",
        "3 test tracks",
    ]
    framed = [
        "BSS Eval v4",
        "the targets drums, bass, other, vocals scored jointly, without an accompaniment source",
        "1 s windows every 0.5 s",  # the score files' frame duration and hop
        "median over 1 s frames",
        "NaN frames (silent reference) are skipped",
    ]
    expected = {
        "median": [*common, *framed, "median over tracks"],
        "mean": [*common, *framed, "mean over tracks"],
        "nsdr": [
            *common,
            "mean over tracks",
            "10 log10((reference energy + eps) / (error energy + eps))",
            "energies summed over every sample of the track",
            f"eps = {NSDR_EPSILON:g}",
        ],
    }
    for form, captions in _caption_texts(hop_table).items():
        assert set(captions) == set(expected), form
        for aggregation, phrases in expected.items():
            for phrase in phrases:
                assert phrase in captions[aggregation], (form, aggregation, phrase)
    statistics = hop_table.statistics()
    assert "1 s windows every 0.5 s" in statistics["frames"] and f"eps = {NSDR_EPSILON:g}" in statistics["nsdr"]


# --------------------------------------------------------------------------------------------------
# (d) a row declared test-seen is marked in every format
# --------------------------------------------------------------------------------------------------


def test_provenance_vocabulary() -> None:
    assert set(COMPARABLE) == set(TRAINED_ON) == {"musdb18-train", "extra-data", "test-seen", "oracle", "undeclared"}
    assert set(DEFAULT_TRAINED_ON) == set(KINDS)
    assert {"estimates", "command", "checkpoint"} <= set(KINDS)
    assert COMPARABLE["test-seen"] is False and COMPARABLE["undeclared"] is None
    marks = [mark for mark, _ in MARKS.values()]
    assert len(set(marks)) == len(marks) and "test-seen" in MARKS


@pytest.fixture
def contaminated(tmp_path: Path) -> Leaderboard:
    """A pipeline model (2 seeds), a published checkpoint trained with the test set (test-seen), a
    SiSEC entry with extra data, and the differences of both against the model."""
    rng = np.random.default_rng(5)
    base = rng.normal(5.0, 1.0, size=(2, 8, 4))
    methods = [
        MethodRuns("unet", seeded_runs(tmp_path, "unet", base)),
        MethodRuns(
            "mdx_extra",
            seeded_runs(tmp_path, "mdx_extra", base + 2.0 + rng.normal(0, 0.1, size=base.shape)),
            kind="checkpoint",
            trained_on="test-seen",
            note="demucs mdx_extra: trained with extra data including the MUSDB18 test set",
        ),
        MethodRuns("TAK2", seeded_runs(tmp_path, "TAK2", base[:1] + 1.0), kind="imported", trained_on="extra-data"),
    ]
    return build_table(methods, [Comparison("mdx_extra", "unet"), Comparison("TAK2", "unet")], n_resamples=100)


def test_test_seen_row_is_marked_in_every_format(contaminated: Leaderboard, tmp_path: Path) -> None:
    paths = contaminated.write(tmp_path / "out")
    reason = MARKS["test-seen"][1]

    markdown = paths["md"].read_text(encoding="utf-8")
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert sum(line.startswith("| mdx_extra† | 2 | ") for line in rows) == 2  # one per aggregation
    assert sum(line.startswith("| mdx_extra - unet† | 2 vs 2, no test | ") for line in rows) == 2
    assert sum(line.startswith("| TAK2\\* | 1 | ") for line in rows) == 2
    assert sum(line.startswith("| unet | 2 | ") for line in rows) == 2  # the model: no mark
    assert markdown.count(f"† {reason}.") == 2 and "* trained with data beyond MUSDB18" in markdown

    latex = paths["tex"].read_text(encoding="utf-8")
    assert latex.count("\nmdx\\_extra\\textsuperscript{\\dag} & 2 & ") == 2
    assert latex.count("\nmdx\\_extra - unet\\textsuperscript{\\dag} & 2 vs 2, no test & ") == 2
    assert latex.count("\nTAK2\\textsuperscript{*} & 1 & ") == 2
    assert latex.count(f"\\dag{{}} {reason}.") == 2
    assert "†" not in latex

    page = paths["html"].read_text(encoding="utf-8")
    assert page.count('<th scope="row">mdx_extra<sup>†</sup></th>') == 2
    assert page.count('<th scope="row">mdx_extra - unet<sup>†</sup></th>') == 2
    assert page.count('<th scope="row">TAK2<sup>*</sup></th>') == 2
    assert page.count(f"† {reason}.") == 2

    frame = pd.read_csv(paths["csv"])
    rows_csv = frame.drop_duplicates(["aggregation", "row"])
    contaminated_rows = rows_csv[rows_csv["row"] == "mdx_extra"]
    assert list(contaminated_rows["trained_on"]) == ["test-seen", "test-seen"]
    assert list(contaminated_rows["comparable"]) == [False, False]
    assert list(rows_csv[rows_csv["row"] == "mdx_extra - unet"]["comparable"]) == [False, False]
    assert list(rows_csv[rows_csv["row"] == "TAK2"]["trained_on"]) == ["extra-data"] * 2
    assert list(rows_csv[rows_csv["row"] == "unet"]["comparable"]) == [True, True]

    document = json.loads(paths["json"].read_text(encoding="utf-8"))
    for part in (document, document["aggregations"]["mean"]):
        row = part["rows"]["mdx_extra"]
        assert (row["trained_on"], row["comparable"], row["marks"]) == ("test-seen", False, "†")
        difference = part["differences"]["mdx_extra - unet"]
        assert (difference["comparable"], difference["marks"]) == (False, "†")
        assert "mdx_extra" in difference["not_tested"] and "test tracks" in difference["not_tested"]
        assert part["differences"]["TAK2 - unet"]["not_tested"] is None
    assert document["marks"]["†"] == reason
    headline = json.loads(paths["metrics"].read_text(encoding="utf-8"))
    assert headline["trained_on"]["mdx_extra"] == "test-seen"
    assert headline["comparable"]["mdx_extra"] is False and headline["comparable"]["mdx_extra - unet"] is False


def test_difference_with_a_test_seen_side_is_not_tested(contaminated: Leaderboard) -> None:
    """The difference is shown, but without interval, p, mark or MDD, and outside Holm's family;
    the other comparison is tested as before."""
    for aggregation in contaminated.aggregations:
        frame = contaminated.results[aggregation]
        untested = frame[frame["row"] == "mdx_extra - unet"]
        assert untested["mean"].notna().all() and (untested["mean"] > 1.0).all()
        assert untested[["se", "ci_low", "p_value", "p_holm", "mdd", "p_wilcoxon_tracks"]].isna().all().all()
        assert untested["significant"].isna().all()
        assert untested["design"].eq("paired").all()  # the seeds' relation is still recorded
        tested = frame[frame["row"] == "TAK2 - unet"]
        assert tested["p_value"].notna().all()
        assert contaminated.n_tests(aggregation) == len(contaminated.columns)
    assert "mdx_extra - unet" in contaminated.not_tested and "TAK2 - unet" not in contaminated.not_tested
