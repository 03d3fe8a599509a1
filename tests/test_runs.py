"""Tests of ``demixbench runs`` (demixbench.runs and its command line): the state of every training
run read from crafted run directories, progress files and logs, and from a training running in the
background."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from demixbench import cli, runs
from demixbench.runs import (
    ProgressError,
    RunsError,
    collect_runs,
    finished,
    format_eta,
    format_runs,
    read_progress,
    runs_to_json,
    stale_after,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
OTHER_HOST = "node-that-is-not-this-one-42"


def _touch(path: Path, moment: datetime) -> None:
    os.utime(path, (moment.timestamp(), moment.timestamp()))


def _progress(results: Path, model: str, seed: int, *, updated: datetime = NOW, touch: bool = True, **fields) -> Path:
    """Write models/<model>/seed<seed>/progress.json in the training's format, modified at `updated`."""
    record = {
        "state": "training",
        "step": 250,
        "total_steps": 1000,
        "epoch": 2,
        "epochs": 8,
        "steps_per_second": 2.5,
        "best_valid_nsdr": 3.25,
        "valid_nsdr": {"vocals": 4.0, "drums": 3.0, "bass": 2.0, "other": 1.0},
        "started": (updated - timedelta(hours=1)).isoformat(),
        "updated": updated.isoformat(),
        "host": OTHER_HOST,
        "pid": 4242,
        **fields,
    }
    path = results / "models" / model / f"seed{seed}" / "progress.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    if touch:
        _touch(path, updated)
    return path


def _finished(results: Path, model: str, seed: int, moment: datetime = NOW - timedelta(hours=2)) -> Path:
    """The files of a finished training: model.json (config and counters), weights, history.csv."""
    run = results / "models" / model / f"seed{seed}"
    run.mkdir(parents=True, exist_ok=True)
    meta = {"arch": "unet", "config": {"train": {"epochs": 3, "steps_per_epoch": 10, "seed": seed}}, "steps": 30}
    (run / "model.json").write_text(json.dumps(meta))
    (run / "model.safetensors").write_bytes(b"weights")
    (run / "history.csv").write_text(
        "epoch,train_loss,valid_loss,valid_nsdr\n1,1.0,0.9,1.5\n2,0.8,0.7,2.75\n3,0.7,0.8,nan\n"
    )
    for path in run.iterdir():
        _touch(path, moment)
    return run


def _log(logs: Path, model: str, seed: int, lines: list[str], moment: datetime = NOW) -> Path:
    path = logs / "train_model" / model / f"seed{seed}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    _touch(path, moment)
    return path


STARTED = "2025-03-01 11:00:00,000 INFO demixbench.train.loop: training unet (1234 parameters) seed 1 on cpu"
CRASHED = [
    STARTED,
    "2025-03-01 11:59:00,000 CRITICAL demixbench: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
    "Traceback (most recent call last):",
    '  File "train_model.py", line 40, in <module>',
    "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
]


def _by_run(statuses):
    return {(status.model, status.seed): status for status in statuses}


def test_each_state_from_the_files(tmp_path):
    results, logs = tmp_path / "results" / "exp", tmp_path / "logs" / "exp"
    _finished(results, "unet", 1)
    _progress(results, "unet", 2)  # fresh: training
    _progress(results, "unet", 3, state="failed")
    _log(logs, "unet_gan", 1, CRASHED)  # died before any progress: failed by its log
    _progress(results, "unet_gan", 2, updated=NOW - timedelta(hours=1))  # silent for an hour on a Slurm node
    expected = [(model, seed) for model in ("unet", "unet_gan") for seed in (1, 2, 3)]

    statuses = collect_runs(results, logs, expected, now=NOW)

    assert [(s.model, s.seed) for s in statuses] == expected  # the config's order
    assert [s.state for s in statuses] == ["done", "training", "failed", "failed", "stalled", "waiting"]
    done, training, failed, crashed, stalled, waiting = statuses
    # a run finished before progress files existed: model.json and history.csv say how it went
    assert (done.epoch, done.epochs, done.step, done.total_steps) == (3, 3, 30, 30)
    assert done.best_valid_nsdr == 2.75 and done.eta_seconds is None
    assert (training.epoch, training.epochs, training.step, training.total_steps) == (2, 8, 250, 1000)
    assert training.steps_per_second == 2.5 and training.best_valid_nsdr == 3.25 and training.updated == NOW
    assert training.log == logs / "train_model" / "unet" / "seed2.log"
    assert training.run_dir == results / "models" / "unet" / "seed2"
    assert "says failed" in failed.note
    assert crashed.note == "demixbench: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert "no progress for 1.0h" in stalled.note and OTHER_HOST in stalled.note
    assert stalled.eta_seconds is None  # an ETA only for a run that is moving
    assert waiting.step is None and waiting.note == ""
    assert runs.summary_line(statuses) == "1 done, 1 training, 1 waiting, 2 failed, 1 stalled"
    assert not finished(statuses) and finished([done, failed, crashed])


def test_eta_is_the_steps_left_at_the_current_rate(tmp_path):
    results = tmp_path / "results" / "exp"
    _progress(results, "unet", 1, step=250, total_steps=1000, steps_per_second=2.5)  # 750 steps / 2.5 per s
    _progress(results, "unet", 2, step=10, total_steps=20010, steps_per_second=4.0)  # 5000 s
    _progress(results, "unet", 3, steps_per_second=None)  # not measured yet
    first, second, third = collect_runs(results, None, [("unet", 1), ("unet", 2), ("unet", 3)], now=NOW)
    assert first.eta_seconds == pytest.approx(300.0) and format_eta(first.eta_seconds) == "0:05"
    assert second.eta_seconds == pytest.approx(5000.0) and format_eta(second.eta_seconds) == "1:24"
    assert third.state == "training" and third.eta_seconds is None and format_eta(None) == "-"
    assert format_eta(10) == "0:01" and format_eta(3600) == "1:00" and format_eta(0) == "0:00"
    assert format_eta(100 * 3600 + 60) == "100:01"


def test_a_silent_run_turns_stale_after_ten_minutes_or_twenty_steps(tmp_path):
    results = tmp_path / "results" / "exp"
    _progress(results, "fast", 1, updated=NOW - timedelta(minutes=9))
    _progress(results, "fast", 2, updated=NOW - timedelta(minutes=11))
    _progress(results, "slow", 1, updated=NOW - timedelta(minutes=11), steps_per_second=0.01)  # 20 steps: 2000 s
    _progress(results, "slow", 2, updated=NOW - timedelta(minutes=34), steps_per_second=0.01)
    statuses = _by_run(collect_runs(results, None, None, now=NOW))
    assert [s.state for s in statuses.values()] == ["training", "stalled", "training", "stalled"]
    assert stale_after(None) == 600 and stale_after(10.0) == 600 and stale_after(0.01) == pytest.approx(2000)


def test_the_log_or_the_file_time_is_a_sign_of_life(tmp_path):
    """`updated` an hour old (e.g. the writer's clock is behind), but the file or the log was
    written a minute ago: still training."""
    results, logs = tmp_path / "results" / "exp", tmp_path / "logs" / "exp"
    path = _progress(results, "unet", 1, updated=NOW - timedelta(hours=1), touch=False)
    _touch(path, NOW - timedelta(minutes=1))
    _progress(results, "unet", 2, updated=NOW - timedelta(hours=1))
    _log(logs, "unet", 2, [STARTED], moment=NOW - timedelta(minutes=1))
    assert [s.state for s in collect_runs(results, logs, None, now=NOW)] == ["training", "training"]


def test_a_stale_run_on_this_host_is_judged_by_its_process(tmp_path):
    results = tmp_path / "results" / "exp"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    _progress(results, "unet", 1, updated=NOW - timedelta(hours=1), host=host, pid=gone.pid)
    _progress(results, "unet", 2, updated=NOW - timedelta(hours=1), host=host, pid=os.getpid())
    dead, alive = collect_runs(results, None, [("unet", 1), ("unet", 2)], now=NOW)
    assert dead.state == "failed" and f"process {gone.pid} on {host} is gone" in dead.note
    assert alive.state == "training" and f"process {os.getpid()} is alive" in alive.note


def test_a_logged_error_counts_only_when_it_is_the_logs_last_word(tmp_path):
    results, logs = tmp_path / "results" / "exp", tmp_path / "logs" / "exp"
    # the error was logged, then a new attempt started (torchrun appends to the log)
    _log(logs, "unet", 1, [*CRASHED, "2025-03-01 11:59:30,000 INFO demixbench.train.loop: training unet seed 1"])
    # the error was logged, and then progress.json was rewritten: the run outlived it
    _log(logs, "unet", 2, CRASHED, moment=NOW - timedelta(minutes=5))
    _progress(results, "unet", 2, updated=NOW)
    # a bare traceback (a torchrun worker) is an error too; its last line says which
    _log(logs, "unet", 3, [STARTED, "Traceback (most recent call last):", '  File "x.py"', "ValueError: bad shape"])
    # the weights were written after the log's error (a later successful attempt)
    _log(logs, "unet", 4, CRASHED, moment=NOW - timedelta(hours=3))
    _finished(results, "unet", 4, moment=NOW - timedelta(hours=2))
    statuses = collect_runs(results, logs, [("unet", seed) for seed in (1, 2, 3, 4)], now=NOW)
    assert [s.state for s in statuses] == ["waiting", "training", "failed", "done"]
    assert statuses[2].note == "ValueError: bad shape"


def test_done_wins_unless_a_newer_training_is_a_rerun(tmp_path):
    results = tmp_path / "results" / "exp"
    _finished(results, "unet", 1, moment=NOW - timedelta(hours=2))
    _progress(results, "unet", 1, updated=NOW)  # training again after the weights were written
    _finished(results, "unet", 2, moment=NOW - timedelta(minutes=1))
    _progress(results, "unet", 2, updated=NOW - timedelta(minutes=2))  # the last write before the weights
    _progress(results, "unet", 3, state="done", step=1000, epoch=8)  # says done, weights elsewhere (DVC pull)
    statuses = collect_runs(results, None, [("unet", 1), ("unet", 2), ("unet", 3)], now=NOW)
    assert [s.state for s in statuses] == ["training", "done", "done"]
    assert statuses[2].eta_seconds is None and (statuses[2].step, statuses[2].epoch) == (1000, 8)


def test_a_malformed_progress_file_is_shown_as_unreadable_and_named(tmp_path):
    results = tmp_path / "results" / "exp"
    broken = _progress(results, "unet", 1)
    broken.write_text('{"state": "training", "step": ')
    _progress(results, "unet", 2, state="running")
    _progress(results, "unet", 3, step=-1)
    bad_time = _progress(results, "unet", 4)
    bad_time.write_text(bad_time.read_text().replace(NOW.isoformat(), "yesterday"))
    _finished(results, "unet", 5)
    (results / "models" / "unet" / "seed5" / "progress.json").write_text("[]")
    statuses = collect_runs(results, None, None, now=NOW)
    assert [s.state for s in statuses] == ["unreadable", "unreadable", "unreadable", "unreadable", "done"]
    assert str(broken) in statuses[0].note and "not valid JSON" in statuses[0].note
    assert "delete it if an older version left it" in statuses[0].note
    assert "'state' must be 'training', 'done' or 'failed', got 'running'" in statuses[1].note
    assert "'step' must be an integer >= 0, got -1" in statuses[2].note
    assert "'updated' must be an ISO 8601 time, got 'yesterday'" in statuses[3].note
    assert "expected a JSON object" in statuses[4].note  # the weights say done; the note says what is wrong
    with pytest.raises(ProgressError, match="got 'running'"):
        read_progress(results / "models" / "unet" / "seed2" / "progress.json")
    assert "1 done, 0 training, 0 waiting, 0 failed, 4 unreadable" in format_runs(statuses, now=NOW)


def test_negative_nsdr_and_a_time_without_zone_are_read(tmp_path):
    results = tmp_path / "results" / "exp"
    local = datetime(2025, 3, 1, 12, 0, 0)  # no zone: the local time of the host that wrote it
    path = _progress(results, "unet", 1, best_valid_nsdr=-2.5, touch=False)
    path.write_text(path.read_text().replace(NOW.isoformat(), local.isoformat()))
    progress = read_progress(path)
    assert progress["best_valid_nsdr"] == -2.5 and progress["updated"] == local.astimezone()


def test_without_a_config_the_runs_found_are_listed(tmp_path):
    results, logs = tmp_path / "results" / "exp", tmp_path / "logs" / "exp"
    _finished(results, "zeta", 10)
    _finished(results, "zeta", 9)
    _progress(results, "alpha", 1)
    (results / "models" / "alpha" / "notaseed").mkdir()
    _log(logs, "beta", 2, [STARTED])  # started, nothing written under results yet
    statuses = collect_runs(results, logs, None, now=NOW)
    assert [(s.model, s.seed, s.state) for s in statuses] == [
        ("alpha", 1, "training"),
        ("beta", 2, "waiting"),
        ("zeta", 9, "done"),
        ("zeta", 10, "done"),
    ]
    assert collect_runs(tmp_path / "results" / "empty-but-there", None, [("unet", 1)], now=NOW)[0].state == "waiting"
    with pytest.raises(RunsError, match=r"results/missing: no such directory; no run of this experiment has started"):
        collect_runs(tmp_path / "results" / "missing", None, None, now=NOW)


def test_the_table_is_aligned_with_notes_and_a_summary(tmp_path):
    results, logs = tmp_path / "results" / "exp", tmp_path / "logs" / "exp"
    _finished(results, "unet", 1)
    _progress(results, "unet_gan_long_name", 2, updated=NOW - timedelta(seconds=12))
    _log(logs, "unet", 3, CRASHED)
    statuses = collect_runs(results, logs, [("unet", 1), ("unet_gan_long_name", 2), ("unet", 3), ("unet", 4)], now=NOW)
    text = format_runs(statuses, now=NOW)
    lines = text.splitlines()
    header = lines[0]
    assert header.split() == [
        "MODEL",
        "SEED",
        "STATE",
        "EPOCH",
        "STEP",
        "STEPS/S",
        "ETA",
        "BEST",
        "nSDR",
        "UPDATED",
        "LOG",
    ]
    table = lines[1:5]
    for column in ("STATE", "UPDATED", "LOG"):  # left-aligned columns start where their header does
        start = header.index(column)
        assert all(line[start - 2 : start] == "  " and line[start] != " " for line in table), column
    assert header.index("MODEL") == 0 and lines[2].startswith("unet_gan_long_name")
    training = lines[2].split()
    assert training[:9] == ["unet_gan_long_name", "2", "training", "2/8", "250/1000", "2.50", "0:05", "3.25", "12s"]
    assert lines[1].split()[2:8] == ["done", "3/3", "30/30", "-", "-", "2.75"] and "2.0h ago" in lines[1]
    assert lines[4].split()[2:8] == ["waiting", "-/-", "-/-", "-", "-", "-"]
    assert "unet seed3 (failed): demixbench: RuntimeError: CUDA out of memory" in text
    assert lines[-1] == "1 done, 1 training, 1 waiting, 1 failed"
    assert format_runs([], now=NOW) == "no training runs yet\n0 done, 0 training, 0 waiting, 0 failed\n"


def test_json_output(tmp_path):
    results = tmp_path / "results" / "exp"
    _progress(results, "unet", 1)
    document = json.loads(runs_to_json(collect_runs(results, None, [("unet", 1), ("unet", 2)], now=NOW), now=NOW))
    assert document["time"] == NOW.isoformat()
    assert document["summary"] == {"done": 0, "training": 1, "waiting": 1, "failed": 0, "stalled": 0, "unreadable": 0}
    first = document["runs"][0]
    assert first["state"] == "training" and first["eta_seconds"] == pytest.approx(300.0)
    assert first["updated"] == NOW.isoformat() and first["run_dir"] == str(results / "models" / "unet" / "seed1")
    assert document["runs"][1]["log"] is None and document["runs"][1]["updated"] is None


def test_the_reader_accepts_what_the_training_writes(tmp_path):
    """demixbench.train.runstatus writes progress.json: the two agree on the format."""
    from demixbench.train.runstatus import ProgressWriter

    path = tmp_path / "results" / "exp" / "models" / "unet" / "seed1" / "progress.json"
    path.parent.mkdir(parents=True)
    writer = ProgressWriter(path, total_steps=100, epochs=4, resumed=False)
    writer.write("training", step=50, epoch=2, steps_per_second=5.0, best_valid_nsdr=-1.5, valid_nsdr={"vocals": 1.0})
    (status,) = collect_runs(tmp_path / "results" / "exp", None, None)
    assert (status.state, status.step, status.total_steps, status.epoch, status.epochs) == ("training", 50, 100, 2, 4)
    assert status.eta_seconds == pytest.approx(10.0) and status.best_valid_nsdr == -1.5
    writer.write("done", step=100, epoch=4)
    assert collect_runs(tmp_path / "results" / "exp", None, None)[0].state == "done"


# ---- the command line -------------------------------------------------------------------------


CONFIG = """\
experiment: exp
seeds: [1, 2]
models:
  unet: {arch: unet}
  unet_gan: {arch: unet}
"""


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A working directory like the repository root: config.yaml, results/exp, logs/exp."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(CONFIG)
    return tmp_path


def test_cli_lists_the_configs_runs(repo, capsys):
    _finished(Path("results/exp"), "unet", 1)
    _progress(Path("results/exp"), "unet", 2, updated=datetime.now(UTC))
    _finished(Path("results/exp"), "old_model", 1)  # not in the config: not listed
    assert cli.main(["runs"]) == 0  # config.yaml by default
    out = capsys.readouterr().out
    assert "old_model" not in out and out.splitlines()[-1] == "1 done, 1 training, 2 waiting, 0 failed"
    assert "logs/exp/train_model/unet_gan/seed2.log" in out

    _log(Path("logs/exp"), "unet_gan", 1, CRASHED, moment=datetime.now(UTC))
    assert cli.main(["runs", "--config", "config.yaml", "--json"]) == 1  # a run failed
    document = json.loads(capsys.readouterr().out)
    assert [run["state"] for run in document["runs"]] == ["done", "training", "failed", "waiting"]

    assert cli.main(["runs", "--experiment", "exp"]) == 1  # the runs found, old_model too; none waiting
    out = capsys.readouterr().out
    assert "old_model" in out and out.splitlines()[-1] == "2 done, 1 training, 0 waiting, 1 failed"
    assert cli.main(["runs", "--results", "results/exp"]) == 1  # logs/exp found beside results/exp
    assert "CUDA out of memory" in capsys.readouterr().out


def test_cli_errors_name_the_file_and_the_fix(repo, capsys):
    assert cli.main(["runs", "--experiment", "nope"]) == 1
    assert "results/nope: no such directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["runs", "--config", "other.yaml"])
    assert (
        "other.yaml: no such config; give --config FILE, --experiment NAME or --results DIR" in capsys.readouterr().err
    )
    Path("elsewhere").mkdir()
    with pytest.raises(SystemExit):
        cli.main(["runs", "--results", "elsewhere"])
    assert "--results elsewhere: give --logs DIR too" in capsys.readouterr().err
    assert cli.main(["runs", "--results", "elsewhere", "--logs", "elsewhere"]) == 0
    Path("bad.yaml").write_text("experiment: exp\nseeds: one\nmodels: {unet: {}}\n")
    assert cli.main(["runs", "--config", "bad.yaml"]) == 1
    assert "bad.yaml: 'seeds' must be a list of integers, got 'one'" in capsys.readouterr().err
    Path("broken.yaml").write_text("experiment: [exp\n")
    assert cli.main(["runs", "--config", "broken.yaml"]) == 1
    assert "broken.yaml:2:1: not valid YAML" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["runs", "--experiment", "exp", "--results", "results/exp"])  # one source of runs
    with pytest.raises(SystemExit):
        cli.main(["runs", "--watch", "0"])


def test_cli_watch_refreshes_until_every_run_is_done_or_failed(repo, capsys, monkeypatch):
    results = Path("results/exp")
    for model, seed in (("unet", 1), ("unet", 2), ("unet_gan", 1)):
        _finished(results, model, seed)
    _progress(results, "unet_gan", 2, updated=datetime.now(UTC))
    naps = []

    def nap(seconds):  # the training goes on while the command waits
        naps.append(seconds)
        if len(naps) == 2:
            _finished(results, "unet_gan", 2, moment=datetime.now(UTC))

    monkeypatch.setattr(cli.time, "sleep", nap)
    assert cli.main(["runs", "--watch", "5"]) == 0
    out = capsys.readouterr().out
    assert naps == [5.0, 5.0] and out.count("Ctrl-C to stop") == 3
    assert out.count("3 done, 1 training, 0 waiting, 0 failed") == 2 and out.rstrip().endswith(
        "4 done, 0 training, 0 waiting, 0 failed"
    )

    naps.clear()
    monkeypatch.setattr(cli.time, "sleep", lambda seconds: (_ for _ in ()).throw(KeyboardInterrupt))
    _progress(results, "unet", 1, updated=datetime.now(UTC) + timedelta(seconds=10))  # a rerun of unet seed 1
    assert cli.main(["runs", "--watch", "1", "--json"]) == 130  # Ctrl-C
    (line,) = capsys.readouterr().out.splitlines()  # one compact JSON document per refresh
    assert json.loads(line)["summary"]["training"] == 1


# ---- a training running in the background ---------------------------------------------------


WRITER = textwrap.dedent(
    """\
    # Stands in for a training: writes progress.json the way demixbench.train writes it, then the
    # files of a finished run.
    import json, os, socket, sys, time
    from datetime import UTC, datetime
    from pathlib import Path

    run = Path(sys.argv[1])
    total, per_epoch, pace = 60, 20, 0.05
    started = datetime.now(UTC).isoformat()

    def write(state, step, rate):
        record = {"state": state, "step": step, "total_steps": total, "epoch": step // per_epoch,
                  "epochs": total // per_epoch, "steps_per_second": rate, "best_valid_nsdr": None,
                  "valid_nsdr": None, "started": started, "updated": datetime.now(UTC).isoformat(),
                  "host": socket.gethostname(), "pid": os.getpid()}
        temporary = run / ".progress.json.tmp"
        temporary.write_text(json.dumps(record))
        os.replace(temporary, run / "progress.json")

    run.mkdir(parents=True, exist_ok=True)
    write("training", 0, None)
    begun = time.perf_counter()
    for step in range(1, total + 1):
        time.sleep(pace)
        write("training", step, step / (time.perf_counter() - begun))
    (run / "model.safetensors").write_bytes(b"weights")
    (run / "model.json").write_text(json.dumps({"config": {"train": {"epochs": 3, "steps_per_epoch": 20}}}))
    write("done", total, None)
    """
)


def test_runs_follows_a_training_running_in_the_background(tmp_path):
    """Acceptance (issue 15): a run in progress shows as training with a sensible ETA, then done.

    The training is a stand-in that writes progress.json at a known pace (20 steps/s, 60 steps), so
    the ETA can be checked against the pace; test_runs_follows_a_real_tiny_training below follows
    the real training."""
    results = tmp_path / "results" / "exp"
    run = results / "models" / "unet" / "seed1"
    writer = tmp_path / "writer.py"
    writer.write_text(WRITER)
    assert collect_runs(results, None, [("unet", 1)])[0].state == "waiting"
    process = subprocess.Popen([sys.executable, str(writer), str(run)])
    try:
        seen = _follow(results, None, process, timeout=60)
    finally:
        process.kill()
        process.wait()
    training = [s for s in seen if s.state == "training" and s.eta_seconds is not None]
    assert training, f"never saw the run training with an ETA: {[s.state for s in seen]}"
    for status in training:
        left = status.total_steps - status.step
        assert status.eta_seconds == pytest.approx(left / status.steps_per_second)
        assert 0 <= status.eta_seconds <= 60 and 0 < status.steps_per_second < 100  # about 3 s at about 20 steps/s
    assert seen[-1].state == "done" and seen[-1].step == 60


def _follow(results: Path, logs: Path | None, process: subprocess.Popen, timeout: float) -> list:
    """Poll collect_runs until the run is done (or the process ended and the files say so)."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ended = process.poll() is not None
        (status,) = collect_runs(results, logs, [("unet", 1)])
        seen.append(status)
        if status.state in ("done", "failed") or ended:
            if ended and status.state not in ("done", "failed"):
                seen.append(collect_runs(results, logs, [("unet", 1)])[0])
            return seen
        time.sleep(0.02)
    raise TimeoutError(f"the run did not finish in {timeout} s; last state {seen[-1].state if seen else None}")


TRAINING = textwrap.dedent(
    """\
    import json, sys
    from pathlib import Path
    from demixbench.logs import setup_logging
    from demixbench.models import ModelSpec
    from demixbench.train.config import TrainConfig
    from demixbench.train.loop import train

    a = json.loads(sys.argv[1])
    setup_logging(a["log"])
    out = Path(a["out"])
    train(ModelSpec(**a["spec"]), TrainConfig(**a["config"]), [Path(p) for p in a["train"]],
          [Path(p) for p in a["valid"]], out / "model.safetensors", out / "history.csv", run_dir=out)
    """
)


def test_runs_follows_a_real_tiny_training(tmp_path, decoded, small_splits):
    """Acceptance (issue 15) with the real training: a tiny U-Net in a subprocess, its run directory
    and log laid out as the workflow lays them out."""
    from demixbench.models import ModelSpec
    from demixbench.train.config import TrainConfig

    results, logs = tmp_path / "results" / "exp", tmp_path / "logs" / "exp"
    spec = ModelSpec("unet", {"n_fft": 512, "hop_length": 128, "max_bins": 256, "channels": [4, 8, 16, 32]})
    config = TrainConfig(
        seed=1,
        epochs=2,
        steps_per_epoch=60,
        batch_size=2,
        segment_seconds=0.5,
        valid_segment_seconds=3.0,
        log_every_steps=10,  # progress.json every 10 steps
    )
    arguments = {
        "spec": asdict(spec),
        "config": asdict(config),
        "train": [str(decoded[t]) for t in small_splits.train],
        "valid": [str(decoded[t]) for t in small_splits.valid],
        "out": str(results / "models" / "unet" / "seed1"),
        "log": str(logs / "train_model" / "unet" / "seed1.log"),
    }
    script = tmp_path / "training.py"
    script.write_text(TRAINING)
    process = subprocess.Popen([sys.executable, str(script), json.dumps(arguments)])
    try:
        seen = _follow(results, logs, process, timeout=300)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0 or seen[-1].state == "done"
    assert (results / "models" / "unet" / "seed1" / "progress.json").is_file(), "the training wrote no progress.json"
    training = [s for s in seen if s.state == "training" and s.eta_seconds is not None]
    assert training, f"never saw the run training with an ETA: {[s.state for s in seen]}"
    assert all(s.total_steps == 120 and 0 <= s.step <= 120 and s.eta_seconds < 300 for s in training)
    assert seen[-1].state == "done" and seen[-1].step == 120 and seen[-1].epoch == 2
    assert seen[-1].best_valid_nsdr is not None and seen[-1].log == logs / "train_model" / "unet" / "seed1.log"
