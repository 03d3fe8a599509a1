"""Adapter for rule train_model: train one {model} for one {seed}."""

from pathlib import Path

from demixbench.audio import STFTConfig
from demixbench.logs import setup_logging
from demixbench.stats import load_input_stats
from demixbench.train import GANConfig, ModelSpec, TrainConfig, train

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
setup_logging(snakemake.log[0])

entry = snakemake.params.model
gan = entry.get("gan")
config = TrainConfig(
    seed=snakemake.params.seed,
    threads=snakemake.threads,
    sample_rate=snakemake.params.sample_rate,
    **entry["train"],
)
train(
    model_spec=ModelSpec(arch=entry["arch"], args=dict(entry["args"])),
    config=config,
    train_dirs=[Path(p).parent for p in snakemake.input.train],
    valid_dirs=[Path(p).parent for p in snakemake.input.valid],
    checkpoint=Path(snakemake.output.weights),
    history_csv=Path(snakemake.output.history),
    input_stats=load_input_stats(Path(snakemake.input.stats), STFTConfig(**snakemake.params.stft)),
    gan=GANConfig(**{**gan, "betas": tuple(gan.get("betas", (0.5, 0.9)))}) if gan else None,
    record={"model_name": snakemake.wildcards.model, "stft": dict(snakemake.params.stft)},
    work_dir=Path(snakemake.params.work_dir),
)
