"""Config validation, the dataset's track lists, and the paths and params shared by the rules."""

from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from demixbench import TARGETS
from demixbench.data import STEMS, DatasetError, Splits, list_tracks
from demixbench.synthetic import SyntheticSpec, track_names

min_version("9.0")


# ---- configuration ---------------------------------------------------------------------------

validate(config, workflow.source_path("../schemas/config.schema.yaml"))

MODELS = list(config["models"])
ORACLES = list(config["oracles"])
SEEDS = [int(seed) for seed in config["seeds"]]
DATA = config["data"]

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


# ---- the dataset -----------------------------------------------------------------------------


def synthetic_spec():
    return SyntheticSpec(**{k: v for k, v in DATA["synthetic"].items() if k != "n_validation"}, sample_rate=DATA["sample_rate"])


def dataset_splits() -> Splits:
    """Track names per split, known when the DAG is built (synthetic names are deterministic;
    a local MUSDB18 copy is listed, without reading audio)."""
    if DATA["source"] == "synthetic":
        n_valid = DATA["synthetic"]["n_validation"]
        names = track_names(synthetic_spec())
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
    try:
        return list_tracks(DATA["source"], Path(DATA["root"]), DATA["validation_tracks"])
    except DatasetError as err:
        raise WorkflowError(f"data.root: {err}") from None


SPLITS = dataset_splits()
TRAIN_TRACKS, VALID_TRACKS, TEST_TRACKS = SPLITS.train, SPLITS.valid, SPLITS.test

wildcard_constraints:
    model="|".join(MODELS),
    oracle="|".join(ORACLES) or "(?!)",
    method="|".join(MODELS + ORACLES),
    seed=r"\d+",
    run=r"seed\d+|oracle",


# ---- paths -----------------------------------------------------------------------------------

DECODED = "results/decoded/{track}"
CHECKPOINT = "results/models/{model}/seed{seed}"
SEPARATED = "results/separated/{method}/{run}/{track}"
SCORES = "results/scores/{method}/{run}"


PACKAGE_DIR = Path(workflow.basedir) / "src" / "demixbench"


def code(*modules):
    """Library modules a rule's output depends on: declared as inputs so editing one re-runs the rule."""
    return [str(PACKAGE_DIR / module) for module in modules]


def decoded(tracks, stem="mixture"):
    return [f"{DECODED.format(track=t)}/{stem}.npy" for t in tracks]


def dataset_inputs(wildcards):
    """What decoding one track reads: the generated dataset, or the track's files in a local copy."""
    root = Path(DATA["root"])
    if DATA["source"] == "synthetic":
        return [str(root)]
    subset = SPLITS.subset_of(wildcards.track)
    if DATA["source"] == "musdb18":
        return [str(root / subset / f"{wildcards.track}.stem.mp4")]
    return [str(root / subset / wildcards.track / f"{stem}.wav") for stem in STEMS]


def model_params(wildcards):
    """The parts of a model's config entry that change its weights (not `baseline`)."""
    entry = config["models"][wildcards.model]
    return {key: entry[key] for key in ("arch", "args", "train", "gan") if key in entry}


def runs(method):
    """Run directories of a method: one per seed for models, a single 'oracle' run for oracles."""
    return ["oracle"] if method in ORACLES else [f"seed{seed}" for seed in SEEDS]


def all_scores(wildcards=None):
    return [
        f"{SCORES.format(method=method, run=run)}/{track}.json.gz"
        for method in MODELS + ORACLES
        for run in runs(method)
        for track in TEST_TRACKS
    ]


def table_rows():
    """Rows of the SDR table: models (one score directory per seed) then oracles."""
    rows = [{"name": m, "kind": "model", "seed_dirs": [SCORES.format(method=m, run=r) for r in runs(m)]} for m in MODELS]
    rows += [{"name": o, "kind": "oracle", "seed_dirs": [SCORES.format(method=o, run="oracle")]} for o in ORACLES]
    return rows


def table_comparisons():
    return [{"variant": m, "baseline": e["baseline"]} for m, e in config["models"].items() if "baseline" in e]
