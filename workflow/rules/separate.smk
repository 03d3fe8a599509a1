"""Separation stage: estimates of the four targets for every test track, per trained run and oracle."""


rule separate_track:
    """Separate one test track with one trained model and seed."""
    input:
        weights=rules.train_model.output.weights,
        meta=rules.train_model.output.meta,
        mixture=f"{RESULTS}/decoded/{{track}}/mixture.npy",
        code=code(
            "separate/track.py",
            "separate/apply.py",
            "separate/wiener.py",
            "separate/estimates.py",
            "models",
            "data/cache.py",
            "data/layout.py",
            "audio.py",
        ),
    output:
        expand(
            f"{RESULTS}/separated/{{model}}/seed{{seed}}/{{track}}/{{target}}.wav", target=TARGETS, allow_missing=True
        ),
    params:
        arch=lambda wildcards: config["models"][wildcards.model]["arch"],
        separation=config["separation"],
        sample_rate=DATA["sample_rate"],
    threads: config["resources"]["separate"]["threads"]
    resources:
        mem_mb=config["resources"]["separate"]["mem_mb"],
        runtime=config["resources"]["separate"]["runtime"],
        gpu=config["resources"]["separate"]["gpu"],
    log:
        f"{LOGS}/separate_track/{{model}}/seed{{seed}}/{{track}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/separate_track/{{model}}/seed{{seed}}/{{track}}.tsv"
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/separate_track.py"


rule separate_oracle:
    """Oracle estimates of one test track, computed from its true stems."""
    input:
        stems=expand(f"{RESULTS}/decoded/{{track}}/{{stem}}.npy", stem=STEMS, allow_missing=True),
        code=code("separate/oracles.py", "separate/estimates.py", "data/cache.py", "data/layout.py", "audio.py"),
    output:
        expand(f"{RESULTS}/separated/{{oracle}}/oracle/{{track}}/{{target}}.wav", target=TARGETS, allow_missing=True),
    params:
        stft=config["stft"],
        sample_rate=DATA["sample_rate"],
    threads: 1
    resources:
        mem_mb=config["resources"]["separate"]["mem_mb"],
        runtime=config["resources"]["separate"]["runtime"],
    log:
        f"{LOGS}/separate_oracle/{{oracle}}/{{track}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/separate_oracle/{{oracle}}/{{track}}.tsv"
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/separate_oracle.py"
