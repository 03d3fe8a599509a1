"""Separation stage: estimates of the four targets for every test track, per trained run, oracle
and external method (config `external`: released checkpoints, external commands, folders of
estimates; docs/leaderboard.md)."""


rule separate_track:
    """Separate one test track with one trained run (model and seed) or converted checkpoint."""
    input:
        unpack(checkpoint_weights),
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
        expand(f"{RESULTS}/separated/{{model}}/{{run}}/{{track}}/{{target}}.wav", target=TARGETS, allow_missing=True),
    params:
        arch=lambda wildcards: arch_of(wildcards.model),
        separation=lambda wildcards: separation_of(wildcards.model),
        sample_rate=DATA["sample_rate"],
        # what the job cost (demixbench.costs), beside its benchmark file; record_provenance sums them
        costs=f"{RESULTS}/benchmarks/separate_track/{{model}}/{{run}}/{{track}}.costs.json",
    threads: config["resources"]["separate"]["threads"]
    resources:
        mem_mb=config["resources"]["separate"]["mem_mb"],
        runtime=config["resources"]["separate"]["runtime"],
        gpu=config["resources"]["separate"]["gpu"],
    log:
        f"{LOGS}/separate_track/{{model}}/{{run}}/{{track}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/separate_track/{{model}}/{{run}}/{{track}}.tsv"
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


rule convert_checkpoint:
    """Released weights of a registered architecture (config external, kind checkpoint) as a
    checkpoint of this project: model.safetensors and model.json, loaded without running code."""
    input:
        file=lambda wildcards: EXTERNAL[wildcards.model]["file"],
        code=code("models", "audio.py"),
    output:
        weights=f"{RESULTS}/external/{{model}}/model.safetensors",
        meta=f"{RESULTS}/external/{{model}}/model.json",
    wildcard_constraints:
        model="|".join(CHECKPOINTS) or "(?!)",
    params:
        arch=lambda wildcards: EXTERNAL[wildcards.model]["arch"],
        format=lambda wildcards: EXTERNAL[wildcards.model]["format"],
        trained_on=lambda wildcards: EXTERNAL[wildcards.model]["trained_on"],
    log:
        f"{LOGS}/convert_checkpoint/{{model}}.log",
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/convert_checkpoint.py"


rule export_mixture:
    """A test track's mixture as a wav file, for external separators (config external, kind command)."""
    input:
        mixture=f"{RESULTS}/decoded/{{track}}/mixture.npy",
        code=code("separate/estimates.py", "data/cache.py", "data/layout.py"),
    output:
        temp(f"{RESULTS}/work/export_mixture/{{track}}.wav"),
    params:
        sample_rate=DATA["sample_rate"],
    log:
        f"{LOGS}/export_mixture/{{track}}.log",
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/export_mixture.py"


rule run_command:
    """An external separator on one test track: the method's command template with the mixture
    file and an output folder filled in (demixbench.separate.external.format_command)."""
    input:
        mixture=rules.export_mixture.output[0],
    output:
        # removed once imported: import_estimates keeps the checked copy
        temp(directory(directory_of_command("{command}", "{track}"))),
    params:
        command=lambda wildcards, input, output, threads: external.format_command(
            EXTERNAL[wildcards.command]["command"],
            mixture=input.mixture,
            outdir=output[0],
            track=wildcards.track,
            sample_rate=DATA["sample_rate"],
            threads=threads,
        ),
    threads: lambda wildcards: command_resources(wildcards.command)["threads"]
    resources:
        mem_mb=lambda wildcards: command_resources(wildcards.command)["mem_mb"],
        runtime=lambda wildcards: command_resources(wildcards.command)["runtime"],
        gpu=lambda wildcards: command_resources(wildcards.command)["gpu"],
    log:
        f"{LOGS}/run_command/{{command}}/{{track}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/run_command/{{command}}/{{track}}.tsv"
    conda:
        lambda wildcards: conda_of(wildcards.command)
    shell:
        "mkdir -p {output:q} && ({params.command}) > {log:q} 2>&1"


rule import_estimates:
    """Estimates made outside the pipeline (a folder of an `estimates` method, or a `command`
    method's output), checked (every target, sample rate, channels, length) and copied into the
    pipeline's layout; only the four targets are taken, so they are scored jointly."""
    input:
        estimates=estimates_source,
        mixture=f"{RESULTS}/decoded/{{track}}/mixture.npy",
        code=code("separate/estimates.py", "data/cache.py", "data/layout.py"),
    output:
        expand(f"{RESULTS}/separated/{{external}}/{{run}}/{{track}}/{{target}}.wav", target=TARGETS, allow_missing=True),
    params:
        source=lambda wildcards, input: (
            input.estimates[0] if wildcards.external in COMMANDS else str(Path(input.estimates[0]).parent)
        ),
        sample_rate=DATA["sample_rate"],
    log:
        f"{LOGS}/import_estimates/{{external}}/{{run}}/{{track}}.log",
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/import_estimates.py"
