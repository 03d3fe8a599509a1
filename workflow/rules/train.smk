"""Training stage: one job per {model} and {seed}."""

# The optional trackers of config tracking.tracker (tensorboard, wandb, mlflow) need their packages:
# with --sdm conda, the training jobs then run in the environment that has them.
_trackers = config["tracking"]["tracker"]
TRAIN_ENV = (
    "../../envs/trackers.yaml"
    if set([_trackers] if isinstance(_trackers, str) else _trackers) - {"dvclive", "none"}
    else "../../envs/demixbench.yaml"
)


rule train_model:
    """Train one model for one seed; keep the best-on-validation weights."""
    input:
        train=lambda wildcards: decoded(splits().train),
        valid=lambda wildcards: decoded(splits().valid),
        stats=rules.compute_input_stats.output[0],
        dataset=DATASET_REPORT,  # its fingerprint goes into the checkpoint's provenance
        code=code("train", "models", "data/cache.py", "data/layout.py", "data/stats.py", "audio.py"),
    output:
        weights=checkpoint_file(f"{RESULTS}/models/{{model}}/seed{{seed}}/model.safetensors"),
        meta=checkpoint_file(f"{RESULTS}/models/{{model}}/seed{{seed}}/model.json"),
        history=f"{RESULTS}/models/{{model}}/seed{{seed}}/history.csv",
        curves=f"{RESULTS}/models/{{model}}/seed{{seed}}/history.png",
    params:
        model=model_params,
        seed=lambda wildcards: int(wildcards.seed),
        # Rolling state for resuming after preemption or kill; deliberately not an output, so
        # Snakemake does not delete it when the job fails.
        work_dir=lambda wildcards: f"{RESULTS}/work/train_model/{wildcards.model}/seed{wildcards.seed}",
        stft=config["stft"],
        sample_rate=DATA["sample_rate"],
        tracking=config["tracking"],  # the tracker's files and progress.json go beside the weights
    threads: config["resources"]["train"]["threads"]
    resources:
        mem_mb=config["resources"]["train"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
        gpu=config["resources"]["train"]["gpu"],
    log:
        f"{LOGS}/train_model/{{model}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_model/{{model}}/seed{{seed}}.tsv"
    conda:
        TRAIN_ENV
    script:
        "../scripts/train_model.py"


rule trained_models:
    """Every model and seed trained: the target of the DVC stage `train` (dvc.yaml). A target
    rule rather than `--until train_model`, which plans nothing once the dataset checkpoint has
    run in an earlier invocation."""
    input:
        expand(rules.train_model.output, model=MODELS, seed=SEEDS),
