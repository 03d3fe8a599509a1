"""Data stage: the dataset acquired and verified once, decoded once into a per-track cache, and the
input statistics."""

if ACQUIRE:

    checkpoint prepare_dataset:
        """Generate (synthetic), download or extract (musdb18-7s, data.origin, data.url_env) the
        dataset into data.root, verified against checksums and the lock file before it is moved
        into place."""
        output:
            root=directory(DATA["root"]),
            report=DATASET_REPORT,
        input:
            code=code(
                "data/acquire",
                "data/synthetic",
                "data/verify.py",
                "data/probe.py",
                "data/layout.py",
                "data/musdb18.py",
            ),
        params:
            data={key: DATA[key] for key in DATA if key not in ("sample_rate", "mixture_check")},
            synthetic=SYNTHETIC,
            sample_rate=DATA["sample_rate"],
            # synthetic data have no official split: the validation tracks are checked as given
            validation=list(splits().valid) if DATA["source"] == "synthetic" else DATA["validation_tracks"],
        log:
            f"{LOGS}/prepare_dataset.log",
        conda:
            "../../envs/demixbench.yaml"
        script:
            "../scripts/prepare_dataset.py"

else:

    rule verify_dataset:
        """Verify a local copy at data.root in place (tracks, stems, lengths, sample rates) and
        fingerprint it; the fingerprint is checked against (or recorded in) the lock file."""
        output:
            report=DATASET_REPORT,
        input:
            code=code(
                "data/acquire",
                "data/synthetic",
                "data/verify.py",
                "data/probe.py",
                "data/layout.py",
                "data/musdb18.py",
            ),
        params:
            data={key: DATA[key] for key in DATA if key not in ("sample_rate", "mixture_check")},
            validation=DATA["validation_tracks"],
        log:
            f"{LOGS}/verify_dataset.log",
        conda:
            "../../envs/demixbench.yaml"
        script:
            "../scripts/verify_dataset.py"


rule decode_track:
    """Decode one track into float32 (channels, samples) arrays, one per stem, after checking it."""
    input:
        dataset=dataset_inputs,
        code=code("data/decode.py", "data/cache.py", "data/probe.py", "data/layout.py"),
    output:
        stems=expand(f"{RESULTS}/decoded/{{track}}/{{stem}}.npy", stem=STEMS, allow_missing=True),
        meta=f"{RESULTS}/decoded/{{track}}/meta.json",
    params:
        source=DATA["source"],
        root=DATA["root"],
        subset=lambda wildcards: splits().subset_of(wildcards.track),
        sample_rate=DATA["sample_rate"],
        mixture_check=DATA["mixture_check"],
    log:
        f"{LOGS}/decode_track/{{track}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/decode_track/{{track}}.tsv"
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/decode_track.py"


rule compute_input_stats:
    """Per-bin mean/std of the training mixtures' STFT magnitude (validation and test excluded)."""
    input:
        mixtures=lambda wildcards: decoded(splits().train),
        code=code("data/stats.py", "audio.py"),
    output:
        f"{RESULTS}/stats/input_stats.npz",
    params:
        stft=config["stft"],
        sample_rate=DATA["sample_rate"],
    log:
        f"{LOGS}/compute_input_stats.log",
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/compute_input_stats.py"


rule decoded_dataset:
    """Every track decoded and the input statistics: the target of the DVC stage `data`
    (dvc.yaml), whose outputs must be complete before training and separation read them."""
    input:
        lambda wildcards: decoded([*splits().train, *splits().valid, *splits().test]),
        rules.compute_input_stats.output,
