"""Adapter for rule train_model: train one {model} for one {seed}; on more than one GPU
(resources.gpu > 1), as one torchrun process per GPU with the JSON arguments next to the log.
What it cost (interrupted attempts included) goes into model.json's "costs"."""

from pathlib import Path

from demixbench.costs import arguments_key, gpus_used
from demixbench.data.verify import dataset_summary
from demixbench.devices import resolve_device
from demixbench.logs import setup_logging
from demixbench.train.distributed import launch
from demixbench.train.loop import train
from demixbench.train.worker import measured_training, train_arguments, write_arguments

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
log_file = Path(snakemake.log[0])
entry = snakemake.params.model
stft = dict(snakemake.params.stft)
arguments = {
    "model": {"arch": entry["arch"], "args": dict(entry["args"])},
    "train": {
        "seed": snakemake.params.seed,
        "threads": snakemake.threads,
        "sample_rate": snakemake.params.sample_rate,
        **entry["train"],
    },
    "gan": entry.get("gan"),
    "train_dirs": [str(Path(p).parent) for p in snakemake.input.train],
    "valid_dirs": [str(Path(p).parent) for p in snakemake.input.valid],
    "checkpoint": snakemake.output.weights,
    "history_csv": snakemake.output.history,
    "input_stats": snakemake.input.stats,
    "stft": stft,
    "record": {"model_name": snakemake.wildcards.model, "stft": stft},
    "work_dir": snakemake.params.work_dir,
    "provenance": {"dataset_fingerprint": dataset_summary(Path(snakemake.input.dataset))},
    "run_dir": str(Path(snakemake.output.weights).parent),  # progress.json and the tracker's files
    "tracking": dict(snakemake.params.tracking),
}
gpus = int(getattr(snakemake.resources, "gpu", 0) or 0)
ledger = {"ledger": Path(snakemake.params.work_dir) / "costs.json", "key": arguments_key(arguments)}
if gpus > 1:
    setup_logging()  # the launcher appends what torchrun and the workers print to the log
    args_file = write_arguments(log_file.with_suffix(".args.json"), arguments)
    measured_training(lambda: launch(args_file, nproc=gpus, log=log_file), arguments["checkpoint"], gpus, **ledger)
else:
    setup_logging(log_file)
    kwargs = train_arguments(arguments)
    used = gpus_used(gpus, on_gpu=resolve_device(kwargs["config"].device).type == "cuda")
    measured_training(lambda: train(**kwargs), arguments["checkpoint"], used, **ledger)
