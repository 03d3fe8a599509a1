"""Tests of the pipeline's scoring stage (rule score_run, demixbench.score.stage): one job per run,
byte-identical per-track files, resumable per track through fingerprinted staging."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from demixbench import TARGETS
from demixbench.score import stage
from demixbench.score.stage import RunScoring, ScoreRunError, code_digest, fingerprint, score_run
from demixbench.score.track import ScoringConfig, score_track
from demixbench.separate.estimates import write_estimates

RATE = 44100
REPO = Path(__file__).resolve().parents[1]


def _test_tracks(decoded: dict[str, Path]) -> list[str]:
    return sorted(
        track for track, folder in decoded.items() if json.loads((folder / "meta.json").read_text())["subset"] == "test"
    )


def _write_estimates(root: Path, decoded: dict[str, Path], track: str, seed: int) -> None:
    """The references, damped, with cross-talk and noise (a different estimate for each seed)."""
    references = np.stack([np.load(decoded[track] / f"{target}.npy") for target in TARGETS])
    rng = np.random.default_rng(seed)
    noisy = 0.8 * references + 0.1 * np.roll(references, 1, axis=0) + rng.normal(0, 0.01, size=references.shape)
    write_estimates(root / track, noisy.astype(np.float32), TARGETS, RATE)


@pytest.fixture
def job(decoded, tmp_path) -> RunScoring:
    """A run of the small dataset's test tracks: estimates in tmp_path, the shared decoded cache."""
    estimates = tmp_path / "separated/unet/seed1"
    tracks = _test_tracks(decoded)
    for index, track in enumerate(tracks):
        _write_estimates(estimates, decoded, track, seed=index)
    code = tmp_path / "code.py"
    code.write_text("# the scoring code\n")
    return RunScoring(
        tracks=tuple(tracks),
        references_dir=decoded[tracks[0]].parent,
        estimates_dir=estimates,
        out_dir=tmp_path / "scores/unet/seed1",
        work_dir=tmp_path / "work/score_run/unet/seed1",
        code=(code,),
        jobs=1,
    )


def _outputs(job: RunScoring) -> dict[str, bytes]:
    return {track: job.output(track).read_bytes() for track in job.tracks if job.output(track).is_file()}


def _count_scored(monkeypatch) -> list[str]:
    """Record the tracks score_track is called for (in this process: jobs=1)."""
    calls = []

    def counting(track_dir, *args, **kwargs):
        calls.append(Path(track_dir).name)
        return score_track(track_dir, *args, **kwargs)

    monkeypatch.setattr(stage, "score_track", counting)
    return calls


@pytest.mark.parametrize("jobs", [1, 2])
def test_outputs_are_byte_identical_to_score_tracks(job, tmp_path, jobs):
    job = dataclasses.replace(job, jobs=jobs)
    summary = score_run(job, progress=False)
    assert summary.scored == sorted(job.tracks) and not summary.skipped and not summary.failed
    for track in job.tracks:
        expected = tmp_path / "expected" / f"{track}.json.gz"
        score_track(job.references_dir / track, job.estimates_dir / track, expected)
        assert job.output(track).read_bytes() == expected.read_bytes(), track
    # the staged copies stay as the run's cache: one per track, nothing else
    assert len(list(job.work_dir.iterdir())) == len(job.tracks)


def test_a_rerun_reuses_every_staged_track(job, monkeypatch):
    score_run(job, progress=False)
    before = _outputs(job)
    for path in job.out_dir.iterdir():  # what Snakemake does before it reruns a job
        path.unlink()
    calls = _count_scored(monkeypatch)
    summary = score_run(job, progress=False)
    assert calls == [] and summary.skipped == list(job.tracks) and summary.scored == []
    assert _outputs(job) == before


def test_a_changed_estimate_is_scored_again_and_only_it(job, decoded, monkeypatch):
    score_run(job, progress=False)
    before = _outputs(job)
    changed, unchanged = job.tracks
    _write_estimates(job.estimates_dir, decoded, changed, seed=99)
    calls = _count_scored(monkeypatch)
    summary = score_run(job, progress=False)
    assert calls == [changed] and summary.scored == [changed] and summary.skipped == [unchanged]
    after = _outputs(job)
    assert after[unchanged] == before[unchanged] and after[changed] != before[changed]
    assert len(list(job.work_dir.iterdir())) == len(job.tracks)  # the old entry of `changed` is gone


def test_settings_and_code_are_part_of_the_fingerprint(job, tmp_path):
    track = job.tracks[0]
    code = code_digest(job.code)
    base = fingerprint(job, track, code)
    assert fingerprint(job, track, code) == base  # deterministic
    other_config = dataclasses.replace(job, config=ScoringConfig(win_seconds=2.0, hop_seconds=2.0))
    assert fingerprint(other_config, track, code) != base
    assert fingerprint(job, track, code_digest([*job.code, tmp_path / "code.py"])) != base
    job.code[0].write_text("# the scoring code, edited\n")
    assert fingerprint(job, track, code_digest(job.code)) != base
    estimate = job.estimates_dir / track / "vocals.wav"
    os.utime(estimate, ns=(estimate.stat().st_atime_ns, estimate.stat().st_mtime_ns + 1))
    assert fingerprint(job, track, code) != base


def test_a_failed_track_fails_the_job_without_outputs_and_the_others_stay_staged(job, monkeypatch):
    failing, fine = job.tracks

    def failing_on_one(track_dir, *args, **kwargs):
        if Path(track_dir).name == failing:
            raise ValueError("broken estimate")
        return score_track(track_dir, *args, **kwargs)

    monkeypatch.setattr(stage, "score_track", failing_on_one)
    with pytest.raises(ScoreRunError, match=f"1 of 2 tracks failed.*\n.*{failing}.*broken estimate") as error:
        score_run(job, progress=False)
    assert len(error.value.problems) == 1
    assert not job.out_dir.exists() or not any(job.out_dir.iterdir())  # no output at all
    calls = _count_scored(monkeypatch)
    summary = score_run(job, progress=False)
    assert calls == [failing] and summary.skipped == [fine]
    assert set(_outputs(job)) == set(job.tracks)


KILLED_CHILD = """
import sys, time
from pathlib import Path
from demixbench.score import stage
from demixbench.score.stage import RunScoring, score_run

job = RunScoring(**{key: (tuple(map(Path, value)) if key == "code" else tuple(value) if key == "tracks"
                          else Path(value) if key.endswith("_dir") else value)
                    for key, value in {spec}.items()})
real = stage.score_track

def hanging_on_the_second(track_dir, estimates_dir, out, *args):
    if Path(track_dir).name == job.tracks[1]:
        out.parent.mkdir(parents=True, exist_ok=True)
        Path(out.parent, "." + out.name + ".abc.tmp").write_bytes(b"half")  # as a killed atomic write leaves it
        print("hanging", flush=True)
        time.sleep(600)
    return real(track_dir, estimates_dir, out, *args)

stage.score_track = hanging_on_the_second
score_run(job, progress=False)
"""


def test_a_killed_job_leaves_no_outputs_and_its_rerun_reuses_what_was_staged(job, monkeypatch):
    """SIGKILL (no cleanup runs) while the second track is scored, its atomic write half done."""
    spec = {
        "tracks": list(job.tracks),
        "references_dir": str(job.references_dir),
        "estimates_dir": str(job.estimates_dir),
        "out_dir": str(job.out_dir),
        "work_dir": str(job.work_dir),
        "code": [str(path) for path in job.code],
        "jobs": 1,
    }
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED_CHILD).replace("{spec}", repr(spec))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:  # the first track is staged once the child hangs on the second
        line = child.stdout.readline()
        assert line.strip() == "hanging", (line, child.stderr.read() if child.poll() is not None else "")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert not job.out_dir.exists() or not any(job.out_dir.iterdir())
    staged = sorted(path.name for path in job.work_dir.iterdir())
    assert len(staged) == 2 and any(name.startswith(".") and name.endswith(".tmp") for name in staged), staged
    calls = _count_scored(monkeypatch)
    summary = score_run(job, progress=False)
    assert calls == [job.tracks[1]] and summary.skipped == [job.tracks[0]]
    assert set(_outputs(job)) == set(job.tracks)
    assert not [path for path in job.work_dir.iterdir() if path.name.endswith(".tmp")]  # the killed write's leftover


def test_a_missing_input_is_named_before_anything_is_scored(job, monkeypatch):
    missing = job.estimates_dir / job.tracks[1] / "bass.wav"
    missing.unlink()
    calls = _count_scored(monkeypatch)
    with pytest.raises(ScoreRunError, match="input file.* missing") as error:
        score_run(job, progress=False)
    assert calls == [] and error.value.problems == [f"{missing}: no such file (an input of track {job.tracks[1]!r})"]


def test_jobs_of_single_tracks_share_the_run_work_directory(job):
    """The per-track fallback (test tracks unknown until the download): one job per track, all
    staging into the run's work directory; each removes only its own track's stale entries."""
    first, second = job.tracks
    score_run(dataclasses.replace(job, tracks=(first,)), progress=False)
    stray = job.work_dir / f"{second}.{'0' * stage.FINGERPRINT_DIGITS}.json.gz"  # another job's, in flight
    stray.write_bytes(b"")
    score_run(dataclasses.replace(job, tracks=(second,)), progress=False)
    assert set(_outputs(job)) == {first, second}
    assert not stray.exists()  # its own stale entry
    summary = score_run(job, progress=False)  # per run again: both reused
    assert summary.skipped == [first, second]


def test_the_scoring_job_imports_no_torch_no_museval_and_no_scipy():
    code = (
        "import sys, demixbench.score.stage, demixbench.logs; "
        "print(sorted(m for m in ('torch', 'museval', 'musdb', 'torchaudio', 'scipy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_next_fast_len_is_scipys_for_real_transforms():
    """bss_eval's own next_fast_len (no scipy import in a scoring job) gives scipy's FFT lengths,
    so the scores are unchanged."""
    import scipy.fft

    from demixbench.score.bss_eval import next_fast_len

    rng = np.random.default_rng(0)
    for n in [*range(1, 5000), *rng.integers(5000, 10**8, 2000).tolist()]:
        assert next_fast_len(n) == scipy.fft.next_fast_len(n, real=True), n
