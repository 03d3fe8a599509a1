"""Config validation, the dataset's track lists, and the paths and params shared by the rules."""

import inspect
import os
import threading
from pathlib import Path

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import min_version, validate

from demixbench import TARGETS, constraints
from demixbench.data.layout import STEMS, DatasetError, Splits, dataset_layout, list_tracks, track_files
from demixbench.data.synthetic import SyntheticSpec, track_names
from demixbench.data.verify import read_report
from demixbench.separate import external

min_version("9.0")

# Snakemake already runs one job per core; native BLAS/OpenMP pools default to one thread per job
# so parallel jobs do not oversubscribe the cores. Training sets torch's thread count to the
# rule's `threads` explicitly. An explicit setting in the environment wins.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")


# ---- configuration ---------------------------------------------------------------------------


def check_config(config, schema_file):
    """Stop with one line naming the offending key and the allowed values, then fill defaults."""
    with open(schema_file) as f:
        schema = yaml.safe_load(f)
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        hint = ""
        if error.validator == "additionalProperties" and isinstance(error.schema.get("properties"), dict):
            hint = f"; allowed keys: {', '.join(error.schema['properties'])}"
        elif error.validator == "required":
            hint = "; see config.yaml for every key with a comment"
        message = error.message
        if error.validator == "not" and "enum" in error.validator_value:
            message = f"{error.instance!r} is reserved; not one of {', '.join(error.validator_value['enum'])}"
        raise WorkflowError(f"config key {key}: {message}{hint}")
    validate(config, schema_file)  # Snakemake's validation also fills in the schema's defaults


check_config(config, workflow.source_path("../schemas/config.schema.yaml"))


# Cross-key constraints: the checks each job's library code runs on its settings
# (demixbench.constraints), run here on the config so that a config a job would reject stops
# before any job, with the key named.


def _refuse(key, problem):
    raise WorkflowError(f"config key {key}: {problem}")


def _arguments(key, registry, name, args):
    """The complete constructor arguments of registry[name] (a demixbench.constraints mirror), checked."""
    try:
        return registry[name](**args)
    except TypeError:
        allowed = list(inspect.signature(registry[name]).parameters)
        unknown = sorted(set(args) - set(allowed))
        _refuse(key, f"unknown argument(s) {', '.join(unknown) or args} for {name!r}; allowed: {', '.join(allowed)}")
    except ValueError as err:
        _refuse(key, err)


def _samples(key, seconds):
    try:
        return constraints.samples(seconds, DATA["sample_rate"])
    except ValueError as err:
        _refuse(key, err)


try:
    constraints.check_stft(config["stft"]["n_fft"], config["stft"]["hop_length"])
except ValueError as err:
    _refuse("stft", err)

#: The experiment this config describes. Each experiment has its own trees: every output, log,
#: benchmark, work directory and the dataset report live under RESULTS and LOGS, so two configs
#: never read or overwrite each other's files (docs/architecture.md, "Experiments").
EXPERIMENT = config["experiment"]
RESULTS = f"results/{EXPERIMENT}"
LOGS = f"logs/{EXPERIMENT}"

MODELS = list(config["models"])
ORACLES = list(config["oracles"])
#: Methods the pipeline does not train (config `external`), by kind (demixbench.separate.external).
EXTERNAL = config["external"]
ESTIMATES = [name for name, entry in EXTERNAL.items() if entry["kind"] == "estimates"]
COMMANDS = [name for name, entry in EXTERNAL.items() if entry["kind"] == "command"]
CHECKPOINTS = [name for name, entry in EXTERNAL.items() if entry["kind"] == "checkpoint"]
#: Every method with a row of its own: trained models, oracles, external methods.
METHODS = MODELS + ORACLES + list(EXTERNAL)
SEEDS = [int(seed) for seed in config["seeds"]]
DATA = config["data"]
# Generator settings; n_validation only decides the split, not the audio.
SYNTHETIC = {key: value for key, value in DATA["synthetic"].items() if key != "n_validation"}

for _name, _entry in config["models"].items():
    if "baseline" in _entry and _entry["baseline"] not in config["models"]:
        raise WorkflowError(
            f"config key models.{_name}.baseline: {_entry['baseline']!r} is not a model; allowed: {', '.join(MODELS)}"
        )
    if _entry["arch"] == "unet":
        for _key in ("n_fft", "hop_length"):
            if _entry["args"].get(_key, config["stft"][_key]) != config["stft"][_key]:
                raise WorkflowError(
                    f"config key models.{_name}.args.{_key}: {_entry['args'][_key]} differs from stft.{_key}: "
                    f"{config['stft'][_key]}; spectrogram models use the input statistics of `stft`"
                )
for _name in set(MODELS) & set(ORACLES):
    raise WorkflowError(f"config key models.{_name}: the name is taken by an oracle; rename the model")
for _name in set(EXTERNAL) & set(MODELS + ORACLES):
    raise WorkflowError(f"config key external.{_name}: the name is taken by a model or oracle; rename it")

for _name, _entry in config["models"].items():
    _key = f"models.{_name}"
    _args = _arguments(f"{_key}.args", constraints.ARCHITECTURE_ARGS, _entry["arch"], _entry["args"])
    if _args["audio_channels"] != 2:
        _refuse(f"{_key}.args.audio_channels", f"{_args['audio_channels']}; the decoded tracks are stereo: 2")
    if sorted(_args["targets"]) != sorted(TARGETS):
        _refuse(
            f"{_key}.args.targets",
            f"{list(_args['targets'])}; every model separates (and is scored on) each of {', '.join(TARGETS)} once",
        )
    _segment = _samples(f"{_key}.train.segment_seconds", _entry["train"]["segment_seconds"])
    _samples(f"{_key}.train.valid_segment_seconds", _entry["train"]["valid_segment_seconds"])
    if config["resources"]["train"]["gpu"] > 1:
        try:
            constraints.check_batch_split(_entry["train"]["batch_size"], config["resources"]["train"]["gpu"])
        except ValueError as err:
            _refuse(f"{_key}.train.batch_size (with resources.train.gpu)", err)
    if "gan" in _entry:
        _gan = _entry["gan"]
        try:
            constraints.check_discriminator_domain(_gan["discriminator"], _entry["arch"])
        except ValueError as err:
            _refuse(f"{_key}.gan.discriminator", err)
        _disc = _arguments(
            f"{_key}.gan.discriminator_args",
            constraints.DISCRIMINATOR_ARGS,
            _gan["discriminator"],
            _gan["discriminator_args"],
        )
        for _check, _at, _values in (
            (
                constraints.check_discriminator_channels,
                "gan.discriminator_args.in_channels",
                (_disc["in_channels"], len(_args["targets"]), _args["audio_channels"]),
            ),
            (
                constraints.check_discriminator_length,
                "train.segment_seconds",
                (_gan["discriminator"], constraints.discriminator_min_length(_gan["discriminator"], _disc), _segment),
            ),
        ):
            try:
                _check(*_values)
            except ValueError as err:
                _refuse(f"{_key}.{_at}", err)
_samples("separation.segment_seconds", config["separation"]["segment_seconds"])
for _name, _entry in EXTERNAL.items():
    _key = f"external.{_name}"
    if _entry["kind"] == "command":
        try:
            external.check_template(_entry["command"])
        except ValueError as err:
            _refuse(f"{_key}.command", err)
    if _entry["kind"] == "checkpoint":
        _unknown = sorted(set(_entry.get("separation", {})) - set(config["separation"]))
        if _unknown:
            _refuse(
                f"{_key}.separation",
                f"unknown key(s) {', '.join(_unknown)}; allowed: {', '.join(config['separation'])}",
            )
    # What a method brings in from outside (released weights, a conda environment, folders of
    # estimates) is needed until it is scored: a reviewer who pulled the scores has none of it.
    if Path(f"{RESULTS}/scores/{_name}").is_dir():
        continue
    if _entry["kind"] == "command" and _entry.get("conda") and not Path(_entry["conda"]).is_file():
        _refuse(f"{_key}.conda", f"{_entry['conda']}: no such conda environment file")
    if _entry["kind"] == "checkpoint":
        if not Path(_entry["file"]).is_file():
            _refuse(f"{_key}.file", f"{_entry['file']}: no such file (the released weights to convert)")
_win = _samples("scoring.win_seconds", config["scoring"]["win_seconds"])
_hop = _samples("scoring.hop_seconds", config["scoring"]["hop_seconds"])
try:
    constraints.check_scoring_frames(_win, _hop)
except ValueError as err:
    _refuse("scoring.hop_seconds", f"{err}; use at most scoring.win_seconds: {config['scoring']['win_seconds']}")
if config["scoring"]["device"] == "cuda" and config["scoring"]["backend"] != "fast":
    # as ScoringConfig refuses it (demixbench.score.track imports scipy, too heavy for the DAG)
    _refuse("scoring.device", "'cuda' needs scoring.backend 'fast' (museval runs on the CPU)")
if config["report"]["excerpt_tracks"]:
    _samples("report.excerpt_seconds", config["report"]["excerpt_seconds"])


# ---- the dataset -----------------------------------------------------------------------------

#: The dataset report of prepare_dataset or verify_dataset (counts, files, fingerprint); the
#: experiment's own, so another experiment's listing is never taken for this one's.
DATASET_REPORT = f"{RESULTS}/datasets/report.json"
#: True when the pipeline puts the dataset at data.root itself (generated, downloaded, extracted
#: or copied) instead of verifying a local copy in place.
ACQUIRE = DATA["source"] in ("synthetic", "musdb18-7s") or bool(DATA["origin"] or DATA["url_env"])


def _inside(path, folder) -> bool:
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


for _key in ("root", "archive_dir"):
    if DATA[_key] and _inside(DATA[_key], "results") and not _inside(DATA[_key], RESULTS):
        raise WorkflowError(
            f"config key data.{_key}: {DATA[_key]} is inside another experiment's results tree; "
            f"put it under {RESULTS}/ (experiment {EXPERIMENT!r}) or outside results/"
        )
_OLD_LAYOUT = [
    path
    for path in ("results/datasets/report.json", "results/decoded", "results/models", "results/scores")
    if Path(path).exists()
]
if _OLD_LAYOUT:
    logger.warning(
        f"{', '.join(_OLD_LAYOUT)}: a results tree of the layout before experiments, read by no experiment; "
        "move it under results/<experiment>/ (see CHANGELOG.md) or delete it"
    )


def _synthetic_splits() -> Splits:
    """Synthetic track names are deterministic: known before the data exist."""
    n_valid = DATA["synthetic"]["n_validation"]
    try:
        names = track_names(SyntheticSpec(**SYNTHETIC, sample_rate=DATA["sample_rate"]))
    except ValueError as err:
        raise WorkflowError(f"config key data.synthetic: {err}") from None
    if n_valid >= len(names["train"]):
        raise WorkflowError(
            f"config key data.synthetic.n_validation: {n_valid} must be smaller than data.synthetic.n_train: "
            f"{len(names['train'])} (some train tracks must remain for training)"
        )
    validation = DATA["validation_tracks"] or names["train"][-n_valid:]
    unknown = sorted(set(validation) - set(names["train"]))
    if unknown:
        raise WorkflowError(f"config key data.validation_tracks: {unknown} are not synthetic train tracks")
    return Splits(
        train=tuple(t for t in names["train"] if t not in validation),
        valid=tuple(validation),
        test=tuple(names["test"]),
    )


def _listed_splits() -> Splits:
    """Track names of the dataset at data.root, listed without reading audio."""
    try:
        listed = list_tracks(DATA["source"], Path(DATA["root"]), DATA["validation_tracks"])
    except DatasetError as err:
        raise WorkflowError(f"data.root: {err}") from None
    if not listed.valid:
        raise WorkflowError(
            f"data.validation_tracks: no validation tracks in {DATA['root']}; list some train tracks there "
            "(musdb's official validation tracks are missing from this copy)"
        )
    return listed


_SPLITS = []


def _reported_splits() -> Splits:
    """The split recorded in the dataset report: what a reviewer who pulled the scores (and the
    report) but not the audio builds the tables from."""
    recorded = read_report(Path(DATASET_REPORT))
    if recorded["source"] != DATA["source"]:
        raise WorkflowError(
            f"data.root: {DATA['root']}: dataset directory does not exist, and the dataset report "
            f"{DATASET_REPORT} describes a {recorded['source']!r} dataset, not data.source {DATA['source']!r}"
        )
    valid = tuple(DATA["validation_tracks"] or recorded["validation"])
    return Splits(
        train=tuple(t for t in recorded["subsets"]["train"] if t not in valid),
        valid=valid,
        test=tuple(recorded["subsets"]["test"]),
    )


def splits() -> Splits:
    """Track names per split. Known when the DAG is built for synthetic data and for a dataset
    already at data.root (so a missing or malformed copy stops the run before any job); for a
    dataset still to be downloaded or extracted, known once the prepare_dataset checkpoint ran.
    Without the audio but with this experiment's report (DATASET_REPORT, e.g. pulled by a
    reviewer), the report's split. Another experiment's report is never read: a config whose
    dataset is missing and which has no report of its own stops here, before any job."""
    if not _SPLITS:
        if DATA["source"] == "synthetic":
            _SPLITS.append(_synthetic_splits())
        elif not Path(DATA["root"]).exists() and Path(DATASET_REPORT).is_file():
            _SPLITS.append(_reported_splits())
        else:
            if ACQUIRE and not Path(DATASET_REPORT).is_file():
                checkpoints.prepare_dataset.get()  # until it has run: Snakemake re-evaluates later
            _SPLITS.append(_listed_splits())
    return _SPLITS[0]


if DATA["source"] == "synthetic" or not ACQUIRE or Path(DATASET_REPORT).is_file():
    splits()  # fail early, before any job, on a bad dataset or split


for _row in config["table"]["imported"]:
    if _row["name"] in METHODS:
        raise WorkflowError(
            f"config key table.imported: the name {_row['name']!r} is taken by a model, oracle or external method; "
            "rename the row"
        )
    for _folder in _row["dirs"]:
        if not Path(_folder).is_dir():
            raise WorkflowError(
                f"config key table.imported ({_row['name']}): {_folder} is not a directory of per-track museval JSON files"
            )

#: Metrics with a table (lower case in paths); the first is the headline table.
METRICS = [metric.lower() for metric in config["table"]["metrics"]]


def excerpt_tracks():
    """Test tracks whose excerpts go on the listening page of the report."""
    return list(splits().test[: config["report"]["excerpt_tracks"]])


wildcard_constraints:
    metric="sdr|isr|sir|sar",
    model="|".join(MODELS + CHECKPOINTS),
    oracle="|".join(ORACLES) or "(?!)",
    external="|".join(ESTIMATES + COMMANDS) or "(?!)",
    command="|".join(COMMANDS) or "(?!)",
    method="|".join(METHODS),
    seed=r"\d+",
    run="|".join([r"seed\d+", "oracle", *external.RUNS.values()]),


# ---- paths and params shared by the rules -----------------------------------------------------

PACKAGE_DIR = Path(workflow.basedir) / "src" / "demixbench"


# Source files of the package: Python modules, and the C of the fast scorer's loops (setup.py).
CODE_SUFFIXES = (".py", ".c")


def code(*paths):
    """Library code that decides a rule's output, as inputs, so that editing it re-runs the rule
    (and what depends on it). `paths` are modules or stage folders (every source file under them)
    relative to src/demixbench. Modules that only log, place files or measure (fileio, logs,
    devices, provenance; separate.apply and score.track where training uses them for validation
    metrics) are left out, so that, e.g., editing the scorer does not retrain the models;
    tests/test_layout.py checks each rule's list against what its adapter imports."""
    files = []
    for path in paths:
        full = PACKAGE_DIR / path
        if not full.exists():
            raise WorkflowError(f"code(): {full} does not exist")
        files += (
            sorted(str(source) for source in full.rglob("*") if source.suffix in CODE_SUFFIXES)
            if full.is_dir()
            else [str(full)]
        )
    return files


def checkpoint_file(path):
    """A trained checkpoint's file, write-protected once written where config protect_checkpoints
    says so (the paper preset: days of GPU time per file)."""
    return protected(path) if config["protect_checkpoints"] else path


def decoded(tracks, stem="mixture"):
    return [f"{RESULTS}/decoded/{track}/{stem}.npy" for track in tracks]


def dataset_inputs(wildcards):
    """What decoding one track reads: the data rule's report and the track's own files (so that
    replacing a file of a local copy re-decodes that track)."""
    if DATA["source"] == "synthetic":
        return [DATASET_REPORT]
    subset = splits().subset_of(wildcards.track)  # first: waits for the prepare_dataset checkpoint
    if not Path(DATA["root"]).is_dir() and not Path(f"{RESULTS}/decoded/{wildcards.track}/meta.json").is_file():
        # the split came from this experiment's dataset report (splits()); decoding needs the audio
        raise WorkflowError(
            f"data.root: {DATA['root']}: dataset directory does not exist; the dataset report {DATASET_REPORT} "
            "is enough to rebuild the tables (make table), decoding needs the audio"
        )
    layout = dataset_layout(DATA["source"])
    return [DATASET_REPORT, *map(str, track_files(layout, Path(DATA["root"]), subset, wildcards.track))]


def model_params(wildcards):
    """The parts of a model's config entry that change its weights (not `baseline`)."""
    entry = config["models"][wildcards.model]
    return {key: entry[key] for key in ("arch", "args", "train", "gan") if key in entry}


def _estimate_dirs():
    """The folders of each `estimates` method (one per seed), resolved once. Without them (a
    reviewer who pulled only the scores), the seeds are those scored."""
    folders = {}
    for name in ESTIMATES:
        try:
            folders[name] = external.estimate_dirs(EXTERNAL[name]["dirs"])
        except ValueError as err:
            scored = sorted(Path(f"{RESULTS}/scores/{name}").glob("seed*"))
            if not scored:
                _refuse(f"external.{name}.dirs", err)
            folders[name] = scored
    return folders


ESTIMATE_DIRS = _estimate_dirs()


def runs(method):
    """Run directories of a method: one per seed for models and per folder for estimates
    (seed1, ... in the folders' sorted order), a single 'oracle' run for oracles, and a single
    run named after the kind for commands and checkpoints."""
    if method in ORACLES:
        return ["oracle"]
    if method in ESTIMATES:
        return [f"seed{index}" for index in range(1, len(ESTIMATE_DIRS[method]) + 1)]
    if method in EXTERNAL:
        return [external.RUNS[EXTERNAL[method]["kind"]]]
    return [f"seed{seed}" for seed in SEEDS]


def all_scores(wildcards=None):
    return [
        f"{RESULTS}/scores/{method}/{run}/{track}.json.gz"
        for method in METHODS
        for run in runs(method)
        for track in splits().test
    ]


def _kind(method):
    if method in ORACLES:
        return "oracle"
    return EXTERNAL[method]["kind"] if method in EXTERNAL else "model"


def table_rows():
    """Rows of the tables: models (one score directory per seed), oracles, external methods, then
    imported results; each with what it was trained on (docs/leaderboard.md)."""
    trained_on = {method: "musdb18-train" for method in MODELS} | {method: "oracle" for method in ORACLES}
    own = [
        {
            "name": method,
            "kind": _kind(method),
            "seed_dirs": [f"{RESULTS}/scores/{method}/{run}" for run in runs(method)],
            "note": EXTERNAL.get(method, {}).get("note", ""),
            "trained_on": EXTERNAL[method]["trained_on"] if method in EXTERNAL else trained_on[method],
        }
        for method in METHODS
    ]
    imported = [
        {
            "name": row["name"],
            "kind": "imported",
            "seed_dirs": list(row["dirs"]),
            "note": row.get("note", ""),
            "trained_on": row.get("trained_on", "undeclared"),
        }
        for row in config["table"]["imported"]
    ]
    return own + imported


def estimate_files(wildcards):
    """The files an `estimates` run brings in for one track: the folder's <target>.wav (inputs,
    so that replacing one re-scores the track)."""
    folder = ESTIMATE_DIRS[wildcards.external][int(wildcards.run.removeprefix("seed")) - 1]
    root = external.estimates_root(folder, "test", splits().test)
    return [str(root / wildcards.track / f"{target}.wav") for target in TARGETS]


def estimates_source(wildcards):
    """Where the estimates of one external run and track come from: a folder of an `estimates`
    method, or the output folder of a `command` method's job."""
    if wildcards.external in COMMANDS:
        return [directory_of_command(wildcards.external, wildcards.track)]
    return estimate_files(wildcards)


def directory_of_command(name, track):
    """The output folder of one `command` job (rule run_command); called with "{command}" and
    "{track}" it is that rule's output pattern, so the path is spelled once."""
    return f"{RESULTS}/work/run_command/{name}/{track}"


def checkpoint_weights(wildcards):
    """The weights one run of a separating method uses: a trained seed's, or a converted checkpoint's."""
    if wildcards.model in CHECKPOINTS:
        return {"weights": f"{RESULTS}/external/{wildcards.model}/model.safetensors"}
    if not wildcards.run.startswith("seed"):
        raise WorkflowError(f"{wildcards.model}: a trained model has runs seed<N>, not {wildcards.run!r}")
    folder = f"{RESULTS}/models/{wildcards.model}/{wildcards.run}"
    return {"weights": f"{folder}/model.safetensors", "meta": f"{folder}/model.json"}


def arch_of(model):
    return (EXTERNAL[model] if model in CHECKPOINTS else config["models"][model])["arch"]


def separation_of(model):
    """The separation settings of a model: the config's `separation`, with a checkpoint's overrides."""
    return config["separation"] | (EXTERNAL[model].get("separation", {}) if model in CHECKPOINTS else {})


def conda_of(name):
    """A command method's conda environment file (absolute: it is the user's, not the workflow's), or None."""
    path = EXTERNAL[name].get("conda")
    return str(Path(path).resolve()) if path else None


def command_resources(name):
    return EXTERNAL[name].get("resources") or config["resources"]["separate"]


def imported_scores(wildcards=None):
    """The score files of the imported rows (inputs, so that replacing them rebuilds the tables)."""
    return [
        str(path)
        for row in config["table"]["imported"]
        for folder in row["dirs"]
        for path in sorted(Path(folder).glob("*.json*"))
    ]


def table_comparisons():
    return [{"variant": m, "baseline": e["baseline"]} for m, e in config["models"].items() if "baseline" in e]


# ---- scoring (score.smk) -----------------------------------------------------------------------

#: One scoring job per run, its outputs the per-track score files, needs the test tracks when the
#: workflow is parsed. They are known then (splits() above) except while the dataset is
#: still to be downloaded or extracted: only in that invocation the rule scores one track per job
#: (a {track} wildcard); the next invocation is per run again, and reuses those tracks' scores from
#: the shared work directory instead of scoring them again (demixbench.score.stage).
SCORE_PER_RUN = DATA["source"] == "synthetic" or not ACQUIRE or Path(DATASET_REPORT).is_file()


def scored_tracks(wildcards):
    """The test tracks one scoring job scores: the run's, or the one of its {track} wildcard."""
    return list(splits().test) if SCORE_PER_RUN else [wildcards.track]


def score_inputs(wildcards):
    """What scoring one job's tracks reads: the estimates and the decoded reference of each target."""
    tracks = scored_tracks(wildcards)
    return {
        "estimates": expand(
            f"{RESULTS}/separated/{wildcards.method}/{wildcards.run}/{{track}}/{{target}}.wav",
            track=tracks,
            target=TARGETS,
        ),
        "references": expand(f"{RESULTS}/decoded/{{track}}/{{target}}.npy", track=tracks, target=TARGETS),
    }


def score_runtime(wildcards, threads):
    """Minutes for one job: resources.score.runtime is per track, and `threads` tracks are scored
    at once."""
    return config["resources"]["score"]["runtime"] * -(-len(scored_tracks(wildcards)) // threads)


def score_mem_mb(wildcards, threads):
    """Memory for one job: resources.score.mem_mb is per track being scored, `threads` at once."""
    return config["resources"]["score"]["mem_mb"] * min(threads, len(scored_tracks(wildcards)))


# ---- the end of a run ----------------------------------------------------------------------------


def release_scheduler_timers():
    """Cancel the timer Snakemake's job rate limiter leaves behind, so that a Snakemake process
    ends with its last job.

    Snakemake 9 limits job submissions by default (--max-jobs-per-timespan 100/1s): after each
    round of job selection its scheduler starts a threading.Timer (not a daemon thread) that wakes
    the scheduler again a timespan later. Once the workflow is done nothing waits on that timer,
    but the interpreter does before it exits: every invocation that ran a job returned about a
    second after its last job (measured: 1.07 s of a 4.7-s scoring stage), and so did the
    Snakemake process inside every cluster job. The timer's only effect is that wake-up, so
    cancelling it at shutdown changes nothing else. Only the scheduler's own timers are cancelled
    (recognised by their function's name; under a Snakemake that names it differently this does
    nothing).
    """
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            if getattr(thread.function, "__qualname__", "").startswith("JobScheduler._schedule_reevalutation"):
                thread.cancel()


# Run at the interpreter's shutdown, just before it waits for the threads still running (the hook
# concurrent.futures uses): onsuccess/onerror handlers would miss the Snakemake process of a
# cluster job, which runs with --no-hooks.
threading._register_atexit(release_scheduler_timers)
