"""What results cost (demixbench.costs): the meter (wall, CPU, GPU-hours; NVML and RAPL energy, or
why not), attempts of an interrupted job, Snakemake benchmark files summed per stage and table row,
the training's costs in model.json, the run's provenance and the report's front page."""

from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from demixbench.costs import (
    NOT_METERED,
    Cost,
    CostError,
    CostMeter,
    Energy,
    RaplCounters,
    _NotMeasured,
    arguments_key,
    checkpoint_cost,
    collect_costs,
    gpus_used,
    read_benchmark,
    read_cost,
    sum_costs,
    write_cost,
)

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def bench(path: Path, seconds: float, cpu: float | str = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:01\t100\t1\t1\t1\t0\t0\t50\t{cpu}\n")
    return path


def fake_rapl(root: Path, packages: dict[int, tuple[int, int]], extra: bool = True) -> Path:
    """A powercap tree: intel-rapl:N -> (energy_uj, max_energy_range_uj), plus a core subdomain and
    a psys domain that must be ignored."""
    for index, (energy, top) in packages.items():
        domain = root / f"intel-rapl:{index}"
        domain.mkdir(parents=True, exist_ok=True)
        (domain / "name").write_text(f"package-{index}\n")
        (domain / "energy_uj").write_text(f"{energy}\n")
        (domain / "max_energy_range_uj").write_text(f"{top}\n")
        if extra:
            sub = root / f"intel-rapl:{index}:0"
            sub.mkdir(exist_ok=True)
            (sub / "name").write_text("core\n")
            (sub / "energy_uj").write_text("999999999\n")
    if extra:
        psys = root / "intel-rapl:9"
        psys.mkdir(exist_ok=True)
        (psys / "name").write_text("psys\n")
        (psys / "energy_uj").write_text("5\n")
        (psys / "max_energy_range_uj").write_text("10\n")
    return root


def set_energy(root: Path, index: int, value: int) -> None:
    """A new counter value, replaced atomically as the kernel's sysfs file reads: the meter's
    sampling thread may read it at any moment, and a write_text in place is empty for a while."""
    counter = root / f"intel-rapl:{index}" / "energy_uj"
    staged = counter.with_name("energy_uj.new")
    staged.write_text(f"{value}\n")
    staged.replace(counter)


# ---- RAPL -------------------------------------------------------------------------------------------


def test_rapl_sums_packages_and_counts_a_wraparound(tmp_path):
    root = fake_rapl(tmp_path, {0: (1_000_000, 10_000_000), 1: (9_000_000, 10_000_000)})
    counters = RaplCounters(root)
    set_energy(root, 0, 3_000_000)  # +2 J
    set_energy(root, 1, 500_000)  # wrapped: +1 J to the top, +0.5 J after it
    counters.update()
    assert counters.joules == pytest.approx(2.0 + 1.5)
    set_energy(root, 1, 2_500_000)  # +2 J
    counters.update()
    assert counters.joules == pytest.approx(5.5)


def test_rapl_absent_or_unreadable_is_not_measured_with_the_reason(tmp_path, monkeypatch):
    with pytest.raises(_NotMeasured, match="no RAPL package counters"):
        RaplCounters(tmp_path / "no-powercap")
    broken = fake_rapl(tmp_path / "broken", {0: (1, 10)}, extra=False)
    (broken / "intel-rapl:0/energy_uj").unlink()
    (broken / "intel-rapl:0/energy_uj").mkdir()  # unreadable as a number, even for root
    with pytest.raises(_NotMeasured, match="energy_uj is not readable"):
        RaplCounters(broken)
    # energy_uj is root-only since Linux 5.10: the reason says so (the tests may run as root)
    locked = fake_rapl(tmp_path / "locked", {0: (1, 10)}, extra=False)
    original = Path.read_text

    def read_text(self, *args, **kwargs):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(_NotMeasured, match="root only since Linux 5.10"):
        RaplCounters(locked)
    with CostMeter(rapl_root=locked) as meter:
        pass
    energy = meter.cost.energy["cpu"]
    assert energy.measured_jobs == 0 and "root only" in energy.not_measured[0]
    assert meter.cost.energy_kwh is None and meter.cost.energy_text().startswith("not measured: RAPL counter")


def test_meter_samples_rapl_while_the_job_runs_so_several_wraps_count(tmp_path):
    """A counter that wraps more than once during a job: the background reads catch every wrap."""
    root = fake_rapl(tmp_path, {0: (0, 1_000_000)}, extra=False)
    with CostMeter(rapl_root=root, sample_seconds=0.02) as meter:
        for value in (600_000, 200_000, 800_000, 400_000):  # +0.6, +0.6, +0.6, +0.6 J (two wraps)
            set_energy(root, 0, value)
            time.sleep(0.15)
    cpu = meter.cost.energy["cpu"]
    assert cpu.measured_jobs == 1 and cpu.joules == pytest.approx(2.4)
    assert meter.cost.energy_kwh == pytest.approx(2.4 / 3.6e6) and meter.cost.energy_complete


# ---- NVML ---------------------------------------------------------------------------------------------


class FakeNVMLError(Exception):
    pass


def fake_pynvml(energies: dict[int, list[int]], supported: bool = True) -> types.ModuleType:
    """A pynvml with devices index -> successive total energy readings (mJ)."""
    module = types.ModuleType("pynvml")
    module.NVMLError = FakeNVMLError
    readings = {index: iter(values) for index, values in energies.items()}
    module.calls = []
    module.nvmlInit = lambda: module.calls.append("init")
    module.nvmlShutdown = lambda: module.calls.append("shutdown")
    module.nvmlDeviceGetCount = lambda: len(energies)
    module.nvmlDeviceGetHandleByIndex = lambda index: index
    module.nvmlDeviceGetHandleByUUID = lambda uuid: int(uuid.removeprefix("GPU-fake-"))
    module.nvmlDeviceGetName = lambda handle: b"Fake GPU" if handle == 0 else "Fake GPU"

    def energy(handle):
        if not supported:
            raise FakeNVMLError("Not Supported")
        return next(readings[handle])

    module.nvmlDeviceGetTotalEnergyConsumption = energy
    return module


def test_nvml_absent_gives_not_measured(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    with CostMeter(gpus=1, rapl_root=tmp_path) as meter:
        time.sleep(0.01)
    cost = meter.cost
    assert cost.gpu_s == pytest.approx(cost.wall_s) and cost.gpu_s > 0
    assert cost.energy["gpu"].not_measured == ("nvidia-ml-py (pynvml) is not installed",)
    assert cost.energy_kwh is None
    record = cost.to_dict()
    assert record["energy_kwh"] is None and record["energy"]["gpu"]["kwh"] is None
    assert record["energy"]["gpu"]["not_measured"] == ["not measured: nvidia-ml-py (pynvml) is not installed"]
    assert record["energy_text"].startswith("not measured: nvidia-ml-py (pynvml) is not installed; no RAPL")


def test_nvml_energy_of_the_visible_gpus(monkeypatch, tmp_path):
    nvml = fake_pynvml({0: [0, 0], 1: [1_000, 3_600_001_000], 2: [5_000, 3_600_005_000]})
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,GPU-fake-2")
    with CostMeter(gpus=2, rapl_root=tmp_path) as meter:
        pass
    cost = meter.cost
    assert cost.energy["gpu"] == Energy(2 * 3_600_000.0, 1)  # two GPUs, 1 kWh each
    assert cost.energy_kwh == pytest.approx(2.0)
    assert cost.gpu_s == pytest.approx(2 * cost.wall_s)
    assert "2 x Fake GPU" in cost.hardware[0] and nvml.calls == ["init", "shutdown"]
    assert cost.energy_text().startswith("2 kWh measured (cpu not measured: no RAPL package counters")
    # fewer GPUs visible than used, a GPU without an energy counter, a MIG instance: not measured
    for visible, supported, reason in (
        ("0", True, "2 GPUs used but 1 visible"),
        (None, False, "do not report their energy (NVML: Not Supported"),
        ("MIG-abc,1", True, "MIG instance"),
    ):
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml({0: [0], 1: [0]}, supported=supported))
        with CostMeter(gpus=2, rapl_root=tmp_path) as meter:
            pass
        assert reason in meter.cost.energy["gpu"].not_measured[0], meter.cost.energy


def test_no_gpu_means_no_gpu_hours_and_nothing_to_measure(tmp_path):
    root = fake_rapl(tmp_path, {0: (0, 10**12)}, extra=False)
    with CostMeter(gpus=0, rapl_root=root) as meter:
        set_energy(root, 0, 7_200_000_000)  # 7200 J = 2 Wh
    cost = meter.cost
    assert cost.gpu_s == 0 and cost.energy["gpu"] == Energy(unused_jobs=1) and cost.energy_complete
    assert cost.energy_kwh == pytest.approx(0.002) and cost.energy_text() == "0.002 kWh"
    assert gpus_used(0, on_gpu=False) == 0 and gpus_used(0, on_gpu=True) == 1 and gpus_used(4, on_gpu=True) == 4


# ---- the meter ----------------------------------------------------------------------------------------


def test_meter_measures_wall_and_cpu_time_of_the_process_and_its_children(tmp_path):
    import subprocess

    with CostMeter(rapl_root=tmp_path) as meter:
        started = time.process_time()
        while time.process_time() - started < 0.2:
            pass
        subprocess.run(
            [sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"]
        )
    cost = meter.cost
    assert cost.jobs == 1 and cost.wall_s >= 0.5 and cost.cpu_s >= 0.45
    assert cost.hardware and "CPUs" in cost.hardware[0]
    assert Cost.from_dict(cost.to_dict()).to_dict() == cost.to_dict()
    path = write_cost(tmp_path / "job.costs.json", cost)
    assert read_cost(path).to_dict() == cost.to_dict()


def test_an_interrupted_attempt_is_kept_and_added_to_the_finished_one(tmp_path):
    ledger = tmp_path / "work/costs.json"
    for _ in range(2):
        with pytest.raises(KeyboardInterrupt), CostMeter(rapl_root=tmp_path, ledger=ledger, key="k") as failed:
            time.sleep(0.05)
            raise KeyboardInterrupt
        with pytest.raises(RuntimeError, match="once the measured block has ended"):
            _ = failed.cost
    kept = json.loads(ledger.read_text())
    assert kept["attempts"] == 2 and kept["cost"]["jobs"] == 1 and kept["cost"]["wall_hours"] * 3600 >= 0.1
    with CostMeter(rapl_root=tmp_path, ledger=ledger, key="k") as meter:
        time.sleep(0.05)
    assert meter.cost.jobs == 1 and meter.cost.wall_s >= 0.15 and meter.attempt.wall_s < meter.cost.wall_s
    assert not ledger.exists()
    # attempts of other settings are not counted
    with pytest.raises(KeyboardInterrupt), CostMeter(rapl_root=tmp_path, ledger=ledger, key="old"):
        time.sleep(0.1)
        raise KeyboardInterrupt
    with CostMeter(rapl_root=tmp_path, ledger=ledger, key=arguments_key({"seed": 1})) as meter:
        pass
    assert meter.cost.wall_s < 0.1


# ---- benchmark files and sums -------------------------------------------------------------------------


def test_costs_from_benchmark_files_are_summed_per_stage_and_row(tmp_path):
    b = tmp_path / "benchmarks"
    bench(b / "decode_track/Track A.tsv", 3.0, 1.0)
    bench(b / "train_model/unet/seed1.tsv", 3600.0, 7200.0)
    bench(b / "train_model/unet/seed2.tsv", 1800.0, 3600.0)
    bench(b / "train_model/unet/seed3.tsv", 99.0)  # a seed no longer in the config
    bench(b / "train_model/gone/seed1.tsv", 99.0)  # a model no longer in the config
    bench(b / "separate_track/unet/seed1/Track A.tsv", 36.0, 36.0)
    bench(b / "separate_track/unet/seed2/Track A.tsv", 99.0, "NA")
    # a metered job: its cost record, not its benchmark file
    metered = Cost(jobs=1, wall_s=72.0, cpu_s=36.0, energy={"gpu": Energy(unused_jobs=1), "cpu": Energy(3600.0, 1)})
    write_cost(b / "separate_track/unet/seed2/Track A.costs.json", metered)
    bench(b / "separate_oracle/IRM2/Track A.tsv", 18.0)
    bench(b / "score_track/unet/seed1/Track A.tsv", 7.2, 7.2)
    bench(b / "score_run/IRM2/oracle.tsv", 3.6, 3.6)  # scoring as one job per run: the same stage
    stages = {"decode_track": "data", "train_model": "training", "separate_track": "separation"}
    stages |= {"separate_oracle": "separation", "score_track": "scoring", "score_run": "scoring"}
    summary = collect_costs(
        b, rows={"unet": ["seed1", "seed2"], "IRM2": ["oracle"]}, stages=stages, gpus={"train_model": 2}
    )
    unet = summary.rows["unet"]
    assert set(unet) == {"training", "separation", "scoring", "total"}
    assert unet["training"].jobs == 2 and unet["training"].wall_s == 5400.0 and unet["training"].cpu_s == 10800.0
    assert unet["training"].gpu_s == 2 * 5400.0
    assert unet["training"].energy["gpu"].not_measured == (NOT_METERED,)
    assert unet["separation"].wall_s == 36.0 + 72.0 and unet["separation"].cpu_s == 36.0 + 36.0
    assert unet["total"].jobs == 5 and unet["total"].wall_s == pytest.approx(5400 + 108 + 7.2)
    assert summary.rows["IRM2"]["total"].wall_s == pytest.approx(21.6) and "training" not in summary.rows["IRM2"]
    assert summary.stages["data"].wall_s == 3.0 and summary.stages["scoring"].jobs == 2
    assert summary.total.jobs == 8 and summary.total.wall_s == pytest.approx(5400 + 108 + 7.2 + 21.6 + 3)
    assert sorted(summary.left_out) == ["train_model/gone/seed1.tsv", "train_model/unet/seed3.tsv"]
    # one metered job measured its CPU energy, the other jobs did not: the total says so
    assert summary.total.energy["cpu"].measured_jobs == 1
    assert summary.total.energy_kwh == pytest.approx(0.001)
    record = summary.to_dict()
    assert record["rows"]["unet"]["total"]["wall_hours"] == pytest.approx((5400 + 108 + 7.2) / 3600)
    assert record["total"]["energy_complete"] is False
    assert "cpu measured in 1 of 8 jobs" in record["total"]["energy_text"]
    assert json.loads(json.dumps(record)) == record


def test_the_checkpoints_training_cost_replaces_its_benchmark_file(tmp_path):
    b = tmp_path / "benchmarks"
    bench(b / "train_model/unet/seed1.tsv", 10.0)
    bench(b / "train_model/unet/seed2.tsv", 20.0)
    recorded = Cost(jobs=1, wall_s=3600.0, cpu_s=1.0, gpu_s=3600.0, hardware=("a GPU box",))
    (tmp_path / "seed1").mkdir()
    (tmp_path / "seed1/model.json").write_text(json.dumps({"arch": "unet", "costs": recorded.to_dict()}))
    (tmp_path / "seed2").mkdir()
    (tmp_path / "seed2/model.json").write_text(json.dumps({"arch": "unet"}))  # trained before costs were kept
    training = {"unet": {"seed1": tmp_path / "seed1/model.json", "seed2": tmp_path / "seed2/model.json"}}
    summary = collect_costs(b, {"unet": ["seed1", "seed2"]}, {"train_model": "training"}, training=training)
    assert summary.rows["unet"]["training"].wall_s == 3620.0 and summary.rows["unet"]["training"].jobs == 2
    assert summary.stages["training"].hardware == ("a GPU box",)
    # a second clone: checkpoints pulled, no benchmark files
    only = collect_costs(tmp_path / "absent", {"unet": ["seed1", "seed2"]}, {}, training=training)
    assert only.total.wall_s == 3600.0 and only.rows["unet"]["total"].jobs == 1
    assert checkpoint_cost(tmp_path / "seed2/model.json") is None


def test_bad_cost_files_are_named_with_the_fix(tmp_path):
    bench(tmp_path / "b/score_track/x/seed1/t.tsv", 1.0)
    (tmp_path / "b/score_track/x/seed1/t.costs.json").write_text("{not json")
    with pytest.raises(CostError, match=r"t\.costs\.json: unreadable cost record .*delete it and rerun"):
        collect_costs(tmp_path / "b", {"x": ["seed1"]}, {"score_track": "scoring"})
    (tmp_path / "bad.tsv").write_text("wall\n1\n")
    with pytest.raises(CostError, match=r"bad\.tsv: not a Snakemake benchmark file"):
        read_benchmark(tmp_path / "bad.tsv")
    with pytest.raises(CostError, match="x.json: not a cost record"):
        Cost.from_dict({"jobs": 1}, "x.json")
    assert sum_costs([]).jobs == 0 and sum_costs([]).energy_text() == "not measured"


# ---- training: model.json -----------------------------------------------------------------------------


def test_model_json_holds_the_trainings_cost(tmp_path, decoded, small_splits, monkeypatch):
    from test_train import CONFIG, SPEC

    from demixbench.train.loop import train
    from demixbench.train.worker import measured_training

    monkeypatch.setitem(sys.modules, "pynvml", None)
    stats = (np.full(257, 0.1, dtype=np.float32), np.full(257, 0.2, dtype=np.float32))
    checkpoint = tmp_path / "run/model.safetensors"

    def run():
        train(
            SPEC,
            CONFIG,
            [decoded[t] for t in small_splits.train],
            [decoded[t] for t in small_splits.valid],
            checkpoint,
            tmp_path / "run/history.csv",
            input_stats=stats,
        )

    cost = measured_training(run, checkpoint, gpus=0, ledger=tmp_path / "work/costs.json", key="k")
    meta = json.loads((tmp_path / "run/model.json").read_text())
    assert meta["arch"] == "unet" and meta["steps"] == 6  # the checkpoint's own fields are kept
    assert meta["costs"] == cost.to_dict() and meta["costs"]["jobs"] == 1
    assert meta["costs"]["wall_hours"] > 0 and meta["costs"]["cpu_hours"] > 0 and meta["costs"]["gpu_hours"] == 0
    assert checkpoint_cost(tmp_path / "run/model.json").to_dict() == cost.to_dict()


# ---- provenance and the front page --------------------------------------------------------------------


def test_front_page_and_provenance_show_what_was_run_and_what_it_cost(tmp_path):
    from demixbench.report.front import headline_table, write_front_page
    from demixbench.report.run import write_run_provenance
    from demixbench.table.build import make_table
    from demixbench.table.model import Comparison, MethodRuns
    from table_helpers import seeded_runs

    rng = np.random.default_rng(0)
    base = seeded_runs(tmp_path / "scores", "unet", rng.normal(3, 1, size=(2, 3, 4)))
    gan = seeded_runs(tmp_path / "scores", "unet_gan", rng.normal(3, 1, size=(2, 3, 4)))
    paths = make_table(
        [MethodRuns("unet", base), MethodRuns("unet_gan", gan)],
        [Comparison("unet_gan", "unet")],
        tmp_path / "tables",
        n_resamples=50,
    )
    b = tmp_path / "benchmarks"
    for model in ("unet", "unet_gan"):
        for seed in (1, 2):
            bench(b / f"train_model/{model}/seed{seed}.tsv", 1800.0, 3600.0)
            bench(b / f"score_track/{model}/seed{seed}/t00.tsv", 36.0)
    costs = collect_costs(
        b,
        {"unet": ["seed1", "seed2"], "unet_gan": ["seed1", "seed2"]},
        {"train_model": "training", "score_track": "scoring"},
        gpus={"train_model": 1},
    )
    config = {"experiment": "tiny<x>", "seeds": [1, 2]}
    record = write_run_provenance(tmp_path / "provenance.json", tmp_path / "provenance.html", config, costs=costs)
    saved = json.loads((tmp_path / "provenance.json").read_text())
    assert saved["costs"]["rows"]["unet"]["total"]["gpu_hours"] == pytest.approx(1.0)
    assert saved["costs"]["total"]["wall_hours"] == pytest.approx(2.04) and saved["costs"]["total"]["jobs"] == 8
    assert "What the results cost" in (tmp_path / "provenance.html").read_text()
    out = write_front_page(
        tmp_path / "report/front_page.html",
        record,
        paths["html"],
        experiment="tiny<x>",
        seeds=[1, 2],
        models={
            "unet": {"arch": "unet", "discriminator": None, "baseline": None},
            "unet_gan": {"arch": "unet", "discriminator": "patchgan", "baseline": "unet"},
        },
        others=["IRM2"],
    )
    page = out.read_text()
    assert "<h1>tiny&lt;x&gt;: what was run</h1>" in page and "<script" not in page
    assert record["git"]["commit"] and record["git"]["commit"] in page
    assert "not recorded" in page  # no dataset report given
    assert "<td>1, 2</td>" in page and "unet + patchgan discriminator (variant of unet)" in page
    assert "2.04 h wall, 4 CPU-hours, 2 GPU-hours, energy not measured: " + NOT_METERED in page
    assert headline_table(paths["html"]) in page and page.count("<table>") >= 2
    assert "SDR: median over frames, median over tracks (SiSEC 2018)" in page
    assert "median over frames, mean over tracks" not in page  # the headline section only
    assert "<tr><th>unet_gan</th><td>4</td><td>1.02</td>" in page
    (tmp_path / "empty.html").write_text("<html></html>")
    with pytest.raises(ValueError, match=r"empty\.html: no <h2> heading and <table>.*rerun make_table"):
        headline_table(tmp_path / "empty.html")
