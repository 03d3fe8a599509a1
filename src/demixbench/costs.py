"""What a result cost: the wall time, CPU time, GPU-hours and energy of a job, measured around it
(:class:`CostMeter`) or read from Snakemake's benchmark files, and summed per stage and per table
row (:func:`collect_costs`).

What is measured, and how:

- **wall time**: a monotonic clock around the job's work;
- **CPU time**: user + system time of the process and of its children that ended (``getrusage``:
  torch's threads, data-loader workers, torchrun's worker processes);
- **GPU-hours**: wall time x the GPUs the job used (those it was given, whether busy or not);
- **GPU energy**: NVML's ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded;
  Volta or newer) before and after, on the GPUs the job used: those named by
  ``CUDA_VISIBLE_DEVICES`` (NVML indices or UUIDs; set ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` when
  indices should mean the same to CUDA and NVML), else the first ones. A whole GPU's energy:
  another process on the same GPU is counted too;
- **CPU energy**: RAPL's package counters (``/sys/class/powercap/intel-rapl:N/energy_uj``,
  also on AMD CPUs with Linux >= 5.8), sampled every ``sample_seconds`` in a background thread
  so that the counter's wraparound (``max_energy_range_uj``, every few minutes to an hour) is
  counted each time. Whole sockets: other processes and parallel jobs on the same CPUs are
  counted too, so energies of jobs that ran side by side on one machine overlap.

Anything that cannot be read is ``None`` with the reason (``"not measured: ..."``), never a
guess: no NVIDIA GPU or no nvidia-ml-py, a GPU without an energy counter, no RAPL, or RAPL
counters readable by root only (Linux >= 5.10). A job that only has Snakemake's benchmark file
(``s`` and ``cpu_time``, which Snakemake samples, so very short jobs show 0 CPU time) has no
energy, and its GPU-hours come from the GPUs its rule asks for.

stdlib only; pynvml (package nvidia-ml-py) is imported when a job uses GPUs. Nothing here knows
Snakemake's rules or the config: the caller says which rule is which stage.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import json
import logging
import math
import os
import platform
import re
import resource
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from demixbench.devices import available_cpus
from demixbench.fileio import atomic_write_text

log = logging.getLogger(__name__)

#: Where Linux exposes RAPL (Intel, and AMD since Linux 5.8).
RAPL_ROOT = Path("/sys/class/powercap")
#: The energy sources measured; every cost record has one entry per source.
SOURCES = ("gpu", "cpu")
#: The stages whose jobs belong to one table row (the first folder of their benchmark path names
#: the row's method); the other stages (e.g. decoding) are shared by every row.
ROW_STAGES = ("training", "separation", "scoring")
#: The suffix of a metered job's cost record, beside its Snakemake benchmark file.
SIDECAR_SUFFIX = ".costs.json"
#: What a job read from a Snakemake benchmark file alone lacks.
NOT_METERED = "the job was not metered (Snakemake benchmark file only)"
#: A seed run's name: such runs of seeds no longer in a row are left out of its cost.
_SEED_RUN = re.compile(r"seed\d+")
_JOULES_PER_KWH = 3.6e6


class CostError(ValueError):
    """A cost or benchmark file that cannot be read; the message names the file and the fix."""


# ---- the record -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Energy:
    """The energy of one source (GPU or CPU package) over one or more jobs.

    joules: the sum over the jobs where it was measured.
    measured_jobs: how many jobs it was measured in.
    not_measured: why it was not measured in the others (distinct reasons).
    unused_jobs: how many jobs did not use the source (GPU energy of a job without GPUs): nothing
        to measure, neither measured nor missing.
    """

    joules: float = 0.0
    measured_jobs: int = 0
    not_measured: tuple[str, ...] = ()
    unused_jobs: int = 0

    def __add__(self, other: Energy) -> Energy:
        reasons = self.not_measured + tuple(r for r in other.not_measured if r not in self.not_measured)
        return Energy(
            self.joules + other.joules,
            self.measured_jobs + other.measured_jobs,
            reasons,
            self.unused_jobs + other.unused_jobs,
        )


@dataclass(frozen=True)
class Cost:
    """What one job or a sum of jobs cost. Add two with ``+``; :meth:`to_dict` is the stored form
    (hours and kWh)."""

    jobs: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    gpu_s: float = 0.0
    energy: Mapping[str, Energy] = field(default_factory=lambda: {source: Energy() for source in SOURCES})
    hardware: tuple[str, ...] = ()

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            jobs=self.jobs + other.jobs,
            wall_s=self.wall_s + other.wall_s,
            cpu_s=self.cpu_s + other.cpu_s,
            gpu_s=self.gpu_s + other.gpu_s,
            energy={source: self.energy[source] + other.energy[source] for source in SOURCES},
            hardware=self.hardware + tuple(h for h in other.hardware if h not in self.hardware),
        )

    @property
    def energy_kwh(self) -> float | None:
        """The measured energy in kWh (the sources measured, summed), None where nothing was."""
        if not any(self.energy[source].measured_jobs for source in SOURCES):
            return None
        return sum(self.energy[source].joules for source in SOURCES) / _JOULES_PER_KWH

    @property
    def energy_complete(self) -> bool:
        """Whether every source was measured in every job that used it."""
        return all(e.measured_jobs + e.unused_jobs == self.jobs for e in self.energy.values())

    def energy_text(self) -> str:
        """The energy in words: ``"0.123 kWh"``, ``"0.123 kWh measured (cpu not measured: ...)"``
        or ``"not measured: ..."``."""
        kwh = self.energy_kwh
        if kwh is None:
            reasons = dict.fromkeys(r for source in SOURCES for r in self.energy[source].not_measured)
            return "not measured: " + "; ".join(reasons) if reasons else "not measured"
        gaps = []
        for source, energy in self.energy.items():
            using = self.jobs - energy.unused_jobs
            if energy.measured_jobs < using:
                how = f"measured in {energy.measured_jobs} of {using} jobs" if energy.measured_jobs else "not measured"
                gaps.append(f"{source} {how}" + (f": {'; '.join(energy.not_measured)}" if energy.not_measured else ""))
        return f"{kwh:.3g} kWh" + (f" measured ({'; '.join(gaps)})" if gaps else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"jobs", "wall_hours", "cpu_hours", "gpu_hours", "energy_kwh" (None: not
        measured), "energy_complete", "energy_text", "energy": {source: {"kwh", "measured_jobs",
        "not_measured"}}, "hardware"}``."""
        return {
            "jobs": self.jobs,
            "wall_hours": self.wall_s / 3600,
            "cpu_hours": self.cpu_s / 3600,
            "gpu_hours": self.gpu_s / 3600,
            "energy_kwh": self.energy_kwh,
            "energy_complete": self.energy_complete,
            "energy_text": self.energy_text(),
            "energy": {
                source: {
                    "kwh": energy.joules / _JOULES_PER_KWH if energy.measured_jobs else None,
                    "measured_jobs": energy.measured_jobs,
                    "unused_jobs": energy.unused_jobs,
                    "not_measured": [f"not measured: {reason}" for reason in energy.not_measured],
                }
                for source, energy in self.energy.items()
            },
            "hardware": list(self.hardware),
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], origin: str | Path = "cost record") -> Cost:
        """The inverse of :meth:`to_dict`; raises CostError naming `origin` when a field is missing."""
        try:
            energy = {
                source: Energy(
                    joules=(record["energy"][source]["kwh"] or 0.0) * _JOULES_PER_KWH,
                    measured_jobs=int(record["energy"][source]["measured_jobs"]),
                    not_measured=tuple(
                        str(reason).removeprefix("not measured: ")
                        for reason in record["energy"][source]["not_measured"]
                    ),
                    unused_jobs=int(record["energy"][source].get("unused_jobs", 0)),
                )
                for source in SOURCES
            }
            return cls(
                jobs=int(record["jobs"]),
                wall_s=float(record["wall_hours"]) * 3600,
                cpu_s=float(record["cpu_hours"]) * 3600,
                gpu_s=float(record["gpu_hours"]) * 3600,
                energy=energy,
                hardware=tuple(record.get("hardware", ())),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CostError(
                f"{origin}: not a cost record ({type(error).__name__}: {error}); "
                "delete it and rerun the job that wrote it"
            ) from None


def sum_costs(costs: Iterable[Cost]) -> Cost:
    """The sum of `costs` (an empty sum: no jobs, nothing spent)."""
    total = Cost()
    for cost in costs:
        total = total + cost
    return total


def write_cost(path: Path, cost: Cost) -> Path:
    """Write `cost` (:meth:`Cost.to_dict`) as JSON, atomically; returns `path`."""
    return atomic_write_text(Path(path), json.dumps(cost.to_dict(), indent=1) + "\n")


def read_cost(path: Path) -> Cost:
    """A cost record written by :func:`write_cost`; raises CostError naming the file."""
    path = Path(path)
    record = _read_json(path, "cost record", "delete it and rerun the job that wrote it")
    return Cost.from_dict(record, path)


def _read_json(path: Path, what: str, fix: str) -> Any:
    """The JSON in `path`; a missing or malformed file raises CostError naming it, `what` it is
    and the `fix`."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CostError(f"{path}: unreadable {what} ({error}); {fix}") from None


# ---- measuring ------------------------------------------------------------------------------------


class _NotMeasured(Exception):
    """Why an energy counter cannot be read (the message is the reason)."""


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except PermissionError:
        raise _NotMeasured(
            f"RAPL counter {path} is not readable (root only since Linux 5.10; "
            "an administrator can grant read access to energy_uj)"
        ) from None
    except (OSError, ValueError) as error:
        raise _NotMeasured(f"RAPL counter {path} is not readable ({error})") from None


class RaplCounters:
    """The CPU packages' RAPL energy counters under `root` (``intel-rapl:N``, N a package), summed
    across reads with their wraparound: call :meth:`update` at least once per wrap period (a few
    minutes under full load) and read :attr:`joules`. Raises _NotMeasured when there are none or
    they cannot be read."""

    def __init__(self, root: Path = RAPL_ROOT) -> None:
        root = Path(root)
        domains = sorted(p for p in root.glob("intel-rapl:*") if re.fullmatch(r"intel-rapl:\d+", p.name))
        packages = []
        for domain in domains:
            try:
                name = (domain / "name").read_text().strip()
            except OSError:
                name = "package"  # unnamed top-level domains are packages
            if name.startswith("package"):
                packages.append(domain)
        if not packages:
            raise _NotMeasured(f"no RAPL package counters (no {root}/intel-rapl:N with a package name)")
        self._ranges = {domain: _read_int(domain / "max_energy_range_uj") for domain in packages}
        self._last = {domain: _read_int(domain / "energy_uj") for domain in packages}
        self._microjoules = 0
        self._lock = threading.Lock()

    def update(self) -> None:
        """Add what each counter advanced since the previous read (one wraparound counted)."""
        with self._lock:
            for domain, last in self._last.items():
                now = _read_int(domain / "energy_uj")
                delta = now - last
                if delta < 0:  # wrapped around max_energy_range_uj
                    delta += self._ranges[domain]
                self._microjoules += delta
                self._last[domain] = now

    @property
    def joules(self) -> float:
        return self._microjoules / 1e6


class _RaplSampler(threading.Thread):
    """Reads the RAPL counters every `interval` seconds until stopped (a daemon thread)."""

    def __init__(self, counters: RaplCounters, interval: float) -> None:
        super().__init__(name="rapl-sampler", daemon=True)
        self.counters, self.interval = counters, interval
        self.stopped = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.counters.update()
            except _NotMeasured as error:
                self.error = str(error)
                return


def _gpu_handles(pynvml: Any, gpus: int) -> list[Any]:
    """NVML handles of the `gpus` GPUs this process uses: CUDA_VISIBLE_DEVICES's first entries
    (indices or UUIDs), else the first devices."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        ids = [str(index) for index in range(pynvml.nvmlDeviceGetCount())]
    else:
        ids = [entry.strip() for entry in visible.split(",") if entry.strip()]
    if len(ids) < gpus:
        raise _NotMeasured(f"{gpus} GPUs used but {len(ids)} visible (CUDA_VISIBLE_DEVICES={visible!r})")
    handles = []
    for ident in ids[:gpus]:
        if ident.startswith("MIG-"):
            raise _NotMeasured(f"GPU {ident} is a MIG instance; NVML counts energy per physical GPU")
        if ident.startswith("GPU-"):
            handles.append(pynvml.nvmlDeviceGetHandleByUUID(ident))
        elif ident.isdigit():
            handles.append(pynvml.nvmlDeviceGetHandleByIndex(int(ident)))
        else:
            raise _NotMeasured(f"CUDA_VISIBLE_DEVICES entry {ident!r} is neither an index nor a UUID")
    return handles


class _NvmlEnergy:
    """The total energy counters of the GPUs used, read at start and stop (NVML)."""

    def __init__(self, gpus: int) -> None:
        try:
            self._nvml = importlib.import_module("pynvml")
        except ImportError:
            raise _NotMeasured("nvidia-ml-py (pynvml) is not installed") from None
        error_type = getattr(self._nvml, "NVMLError", Exception)
        try:
            self._nvml.nvmlInit()
        except error_type as error:
            raise _NotMeasured(f"NVML is not available ({error})") from None
        try:
            self._handles = _gpu_handles(self._nvml, gpus)
            self.names = [self._name(handle) for handle in self._handles]
            self._start = self._read()
        except error_type as error:
            self.close()
            raise _NotMeasured(f"the GPUs do not report their energy (NVML: {error}; Volta or newer needed)") from None
        except _NotMeasured:
            self.close()
            raise

    def _name(self, handle: Any) -> str:
        name = self._nvml.nvmlDeviceGetName(handle)
        return name.decode() if isinstance(name, bytes) else str(name)

    def _read(self) -> list[int]:
        return [int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle)) for handle in self._handles]

    def stop(self) -> float:
        """Joules used since start, summed over the GPUs; closes NVML."""
        error_type = getattr(self._nvml, "NVMLError", Exception)
        try:
            end = self._read()
        except error_type as error:
            raise _NotMeasured(f"NVML energy counter unreadable at the end of the job ({error})") from None
        finally:
            self.close()
        return sum(e - s for s, e in zip(self._start, end)) / 1000.0

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - closing a library that failed to open
            pass


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def gpus_used(requested: int, on_gpu: bool) -> int:
    """The GPUs a job is charged for: those it was given (`requested`, e.g. Snakemake's
    resources.gpu), or 1 when it ran on a GPU it was not given (a local run)."""
    return int(requested) if requested and requested > 0 else (1 if on_gpu else 0)


class CostMeter:
    """Measures what the block it wraps costs (module docstring)::

        with CostMeter(gpus=1) as meter:
            train(...)
        meter.cost  # Cost of this job

    Args:
        gpus: how many GPUs the job uses (:func:`gpus_used`); 0: no GPU energy to measure.
        rapl_root: where the RAPL counters are (tests point it at a fake tree).
        sample_seconds: how often the RAPL counters are read while the job runs.
        ledger: a file keeping the cost of earlier attempts of the same job that were interrupted
            (e.g. a training preempted and resumed): an attempt that raises adds its cost there,
            one that succeeds adds theirs to its own (:attr:`cost`) and deletes the file. A job
            killed outright (SIGKILL, out of memory) leaves no record of that attempt.
        key: what the ledger's attempts must have been doing (e.g. :func:`arguments_key` of the
            job's arguments); attempts of another key are dropped with a warning.
    """

    def __init__(
        self,
        gpus: int = 0,
        *,
        rapl_root: Path = RAPL_ROOT,
        sample_seconds: float = 60.0,
        ledger: Path | None = None,
        key: str = "",
    ) -> None:
        if gpus < 0:
            raise ValueError(f"gpus must be >= 0, got {gpus}")
        if sample_seconds <= 0:
            raise ValueError(f"sample_seconds must be > 0, got {sample_seconds}")
        self.gpus, self.rapl_root, self.sample_seconds = int(gpus), Path(rapl_root), sample_seconds
        self.ledger, self.key = (Path(ledger) if ledger is not None else None), key
        self._cost: Cost | None = None
        self.attempt: Cost | None = None

    def __enter__(self) -> CostMeter:
        self._gpu_reason: str | None = None
        self._cpu_reason: str | None = None
        self._nvml: _NvmlEnergy | None = None
        self._gpu_names: list[str] = []
        if self.gpus:
            try:
                self._nvml = _NvmlEnergy(self.gpus)
                self._gpu_names = self._nvml.names
            except _NotMeasured as error:
                self._gpu_reason = str(error)
                log.info("GPU energy not measured: %s", error)
        self._sampler: _RaplSampler | None = None
        try:
            self._rapl: RaplCounters | None = RaplCounters(self.rapl_root)
            self._sampler = _RaplSampler(self._rapl, self.sample_seconds)
            self._sampler.start()
        except _NotMeasured as error:
            self._rapl, self._cpu_reason = None, str(error)
            log.info("CPU energy not measured: %s", error)
        self._usage = _cpu_seconds()
        self._started = time.monotonic()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        wall = time.monotonic() - self._started
        cpu = _cpu_seconds() - self._usage
        gpu_energy = self._stop_gpu()
        cpu_energy = self._stop_cpu()
        hardware = f"{cpu_model()} ({available_cpus()} CPUs)"
        if self._gpu_names:
            hardware += ", " + ", ".join(f"{n} x {name}" for name, n in _counted(self._gpu_names).items())
        elif self.gpus:
            hardware += f", {self.gpus} GPU{'s' if self.gpus > 1 else ''}"
        self.attempt = Cost(
            jobs=1,
            wall_s=wall,
            cpu_s=cpu,
            gpu_s=wall * self.gpus,
            energy={"gpu": gpu_energy, "cpu": cpu_energy},
            hardware=(hardware,),
        )
        previous, attempts = self._read_ledger()
        if exc_type is not None:
            if self.ledger is not None:
                self._write_ledger(_as_attempt(self.attempt, previous), attempts + 1)
            return
        self._cost = self.attempt if previous is None else _as_attempt(self.attempt, previous)
        if self.ledger is not None:
            self.ledger.unlink(missing_ok=True)
        if attempts:
            log.info("cost includes %d earlier interrupted attempt(s) from %s", attempts, self.ledger)

    def _stop_gpu(self) -> Energy:
        if not self.gpus:
            return Energy(unused_jobs=1)  # nothing to measure
        if self._nvml is None:
            return Energy(0.0, 0, (self._gpu_reason or "no GPU energy counter",))
        try:
            return Energy(self._nvml.stop(), 1)
        except _NotMeasured as error:
            return Energy(0.0, 0, (str(error),))

    def _stop_cpu(self) -> Energy:
        if self._rapl is None or self._sampler is None:
            return Energy(0.0, 0, (self._cpu_reason or "no RAPL counters",))
        self._sampler.stopped.set()
        self._sampler.join()
        if self._sampler.error is None:
            try:
                self._rapl.update()
            except _NotMeasured as error:
                self._sampler.error = str(error)
        if self._sampler.error is not None:
            return Energy(0.0, 0, (self._sampler.error,))
        return Energy(self._rapl.joules, 1)

    def _read_ledger(self) -> tuple[Cost | None, int]:
        if self.ledger is None or not self.ledger.is_file():
            return None, 0
        try:
            record = json.loads(self.ledger.read_text())
            if record.get("key") != self.key:
                log.warning("%s: earlier attempts of other settings; their cost is not counted", self.ledger)
                return None, 0
            return Cost.from_dict(record["cost"], self.ledger), int(record["attempts"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            log.warning("%s: unreadable record of earlier attempts (%s); not counted", self.ledger, error)
            return None, 0

    def _write_ledger(self, cost: Cost, attempts: int) -> None:
        assert self.ledger is not None
        record = {"key": self.key, "attempts": attempts, "cost": cost.to_dict()}
        atomic_write_text(self.ledger, json.dumps(record, indent=1) + "\n")
        log.info("cost of %d interrupted attempt(s) kept in %s", attempts, self.ledger)

    @property
    def cost(self) -> Cost:
        """The job's cost (earlier interrupted attempts included); once the block ended without error."""
        if self._cost is None:
            raise RuntimeError("CostMeter.cost is known once the measured block has ended without error")
        return self._cost


def _as_attempt(cost: Cost, previous: Cost | None = None) -> Cost:
    """`cost` plus `previous` counted as one job (attempts of one job add up, not their job count)."""
    if previous is None:
        return cost
    total = previous + cost
    return Cost(
        jobs=cost.jobs,
        wall_s=total.wall_s,
        cpu_s=total.cpu_s,
        gpu_s=total.gpu_s,
        energy={source: _one_job(previous.energy[source], cost.energy[source]) for source in SOURCES},
        hardware=total.hardware,
    )


def _one_job(first: Energy, second: Energy) -> Energy:
    """Two attempts' energy as one job's: measured only when measured in both."""
    if first.unused_jobs and second.unused_jobs:
        return Energy(unused_jobs=1)
    if first.measured_jobs and second.measured_jobs:
        return Energy(first.joules + second.joules, 1)
    return Energy(0.0, 0, (first + second).not_measured or ("not measured in every attempt",))


def _counted(names: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return counts


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have been waited for."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def arguments_key(arguments: Mapping[str, Any]) -> str:
    """sha256 of JSON-able job arguments (canonical JSON), a :class:`CostMeter` ledger key."""
    text = json.dumps(arguments, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# ---- Snakemake's benchmark files and the sums -----------------------------------------------------


def _number(value: str | None) -> float:
    try:
        number = float(value) if value not in (None, "", "NA", "-") else 0.0
    except ValueError:
        return 0.0
    return number if math.isfinite(number) else 0.0


def read_benchmark(path: Path, gpus: int = 0) -> Cost:
    """The cost of one job from its Snakemake benchmark file (tab-separated: ``s``, ``cpu_time``,
    ``max_rss``, ...; the last line when the job was repeated): wall and CPU time, GPU-hours =
    wall x `gpus` (what its rule asks for), no energy. Raises CostError naming the file when it
    has no ``s`` column."""
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "s" not in rows[-1]:
        raise CostError(
            f"{path}: not a Snakemake benchmark file (no line with column 's'); delete it and rerun its job"
        )
    wall = _number(rows[-1]["s"])
    gpu_energy = Energy(unused_jobs=1) if not gpus else Energy(0.0, 0, (NOT_METERED,))
    return Cost(
        jobs=1,
        wall_s=wall,
        cpu_s=_number(rows[-1].get("cpu_time")),
        gpu_s=wall * gpus,
        energy={"gpu": gpu_energy, "cpu": Energy(0.0, 0, (NOT_METERED,))},
    )


@dataclass(frozen=True)
class CostSummary:
    """The costs of an experiment's jobs: per stage, per table row and stage, and in total.

    stages: stage -> the cost of its jobs (a row's jobs and shared ones).
    rows: row -> stage (of :data:`ROW_STAGES`, those with jobs) -> cost, plus "total".
    total: every job counted (rows' jobs and the shared stages').
    left_out: benchmark files of methods or seeds that are no row's (an earlier config's).
    """

    stages: Mapping[str, Cost]
    rows: Mapping[str, Mapping[str, Cost]]
    total: Cost
    left_out: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "stages": {stage: cost.to_dict() for stage, cost in self.stages.items()},
            "rows": {row: {stage: cost.to_dict() for stage, cost in costs.items()} for row, costs in self.rows.items()},
            "total": self.total.to_dict(),
            "left_out": list(self.left_out),
        }


def _job_files(benchmarks_dir: Path) -> dict[tuple[str, ...], Path]:
    """(rule, folders..., job name) -> the job's cost record, else its benchmark file."""
    jobs: dict[tuple[str, ...], Path] = {}
    for path in sorted(benchmarks_dir.glob("*/**/*")):
        if not path.is_file():
            continue
        parts = path.relative_to(benchmarks_dir).parts
        if path.name.endswith(SIDECAR_SUFFIX):
            jobs[(*parts[:-1], path.name.removesuffix(SIDECAR_SUFFIX))] = path
        elif path.suffix == ".tsv":
            jobs.setdefault((*parts[:-1], path.stem), path)
    return jobs


def collect_costs(
    benchmarks_dir: Path | None,
    rows: Mapping[str, Sequence[str]],
    stages: Mapping[str, str],
    gpus: Mapping[str, int] | None = None,
    training: Mapping[str, Mapping[str, Path]] | None = None,
) -> CostSummary:
    """Sum what every job cost, per stage and per table row.

    Every job under ``benchmarks_dir/<rule>/...`` counts once: its cost record
    (``<name>.costs.json``, :func:`write_cost`, written by a metered job) where it has one, else
    its Snakemake benchmark file (:func:`read_benchmark`).

    Args:
        benchmarks_dir: Snakemake's benchmark tree (None or absent: training costs only).
        rows: each table row (a method) -> its runs (``seed1``, ..., ``oracle``, ...).
        stages: rule -> stage; a rule's jobs in one of :data:`ROW_STAGES` belong to the row named
            by the first folder of their path, and to its run named by the second (where that is
            a seed run: ``seed<N>``, those of seeds the row does not have are left out). Rules not
            listed are stages of their own, shared by every row.
        gpus: rule -> GPUs per job, for jobs that only have a benchmark file (default 0).
        training: row -> run -> the checkpoint metadata (model.json) whose ``"costs"`` (see
            :func:`demixbench.train.worker.measured_training`) replace that run's training job
            (it travels with the checkpoint, so it is there when the benchmark files are not).
    Raises:
        CostError naming a file that is not a benchmark or cost record.
    """
    gpus = gpus or {}
    per_stage: dict[str, list[Cost]] = {}
    per_row: dict[str, dict[str, list[Cost]]] = {row: {} for row in rows}
    left_out: list[str] = []
    replaced = {}  # (row, run) -> the training cost its checkpoint records
    for row, runs in (training or {}).items():
        for run, path in runs.items():
            recorded = checkpoint_cost(path) if Path(path).is_file() else None
            if recorded is not None:
                replaced[(row, run)] = recorded
    base = Path(benchmarks_dir) if benchmarks_dir is not None else None
    for key, path in (_job_files(base) if base is not None and base.is_dir() else {}).items():
        rule, parts = key[0], key[1:]
        stage = stages.get(rule, rule)
        row = parts[0] if stage in ROW_STAGES and len(parts) > 1 else None
        run = parts[1] if row is not None and len(parts) > 1 else None
        if stage in ROW_STAGES:
            if row not in rows or (run is not None and _SEED_RUN.fullmatch(run) and run not in rows[row]):
                left_out.append(str(path.relative_to(base)))
                continue
            if stage == "training" and (row, run) in replaced:
                continue  # the checkpoint's own record, below
        cost = read_cost(path) if path.name.endswith(SIDECAR_SUFFIX) else read_benchmark(path, gpus.get(rule, 0))
        per_stage.setdefault(stage, []).append(cost)
        if row is not None:
            per_row[row].setdefault(stage, []).append(cost)
    for (row, _), cost in replaced.items():
        per_stage.setdefault("training", []).append(cost)
        per_row.setdefault(row, {}).setdefault("training", []).append(cost)
    if left_out:
        log.info("%d benchmark files of methods or seeds that are no row's left out of the costs", len(left_out))
    stage_costs = {stage: sum_costs(costs) for stage, costs in per_stage.items()}
    row_costs = {}
    for row, by_stage in per_row.items():
        summed = {stage: sum_costs(by_stage[stage]) for stage in ROW_STAGES if stage in by_stage}
        row_costs[row] = {**summed, "total": sum_costs(summed.values())}
    return CostSummary(stage_costs, row_costs, sum_costs(stage_costs.values()), tuple(left_out))


def checkpoint_cost(meta_file: Path) -> Cost | None:
    """The training cost stored in a checkpoint's metadata (model.json ``"costs"``), None when it
    has none (trained before costs were recorded, or converted from released weights)."""
    meta_file = Path(meta_file)
    meta = _read_json(meta_file, "checkpoint metadata", "fetch it again (dvc pull) or retrain")
    return Cost.from_dict(meta["costs"], f"{meta_file} (costs)") if isinstance(meta.get("costs"), dict) else None
