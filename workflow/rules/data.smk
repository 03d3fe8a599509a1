"""Data stage: the dataset, decoded once into a per-track cache, and the input statistics."""


if DATA["source"] == "synthetic":

    rule prepare_dataset:
        """Generate the synthetic MUSDB18 (MUSDB18-HQ layout) at data.root."""
        output:
            directory(DATA["root"]),
        params:
            synthetic=SYNTHETIC,
            sample_rate=DATA["sample_rate"],
        input:
            code=code("synthetic.py"),
        log:
            "logs/prepare_dataset.log",
        conda:
            "../../envs/demixbench.yaml"
        script:
            "../scripts/prepare_dataset.py"


rule decode_track:
    """Decode one track through musdb into float32 (channels, samples) arrays, one per stem."""
    input:
        dataset=dataset_inputs,
        code=code("data.py"),
    output:
        stems=expand("results/decoded/{track}/{stem}.npy", stem=STEMS, allow_missing=True),
        meta="results/decoded/{track}/meta.json",
    params:
        source=DATA["source"],
        root=DATA["root"],
        subset=lambda wildcards: SPLITS.subset_of(wildcards.track),
        sample_rate=DATA["sample_rate"],
    log:
        "logs/decode_track/{track}.log",
    benchmark:
        "results/benchmarks/decode_track/{track}.tsv"
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/decode_track.py"


rule compute_input_stats:
    """Per-bin mean/std of the training mixtures' STFT magnitude (validation and test excluded)."""
    input:
        mixtures=decoded(TRAIN_TRACKS),
        code=code("stats.py", "audio.py"),
    output:
        "results/stats/input_stats.npz",
    params:
        stft=config["stft"],
        sample_rate=DATA["sample_rate"],
    log:
        "logs/compute_input_stats.log",
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/compute_input_stats.py"
