"""Scoring stage: BSS Eval v4 per test track, one job per run and track."""


rule score_track:
    """Score the four targets of one track jointly; museval-format JSON (gzipped)."""
    input:
        estimates=expand(
            f"{RESULTS}/separated/{{method}}/{{run}}/{{track}}/{{target}}.wav", target=TARGETS, allow_missing=True
        ),
        references=expand(f"{RESULTS}/decoded/{{track}}/{{target}}.npy", target=TARGETS, allow_missing=True),
        code=code("score", "separate/estimates.py", "data/cache.py", "data/layout.py"),
    output:
        f"{RESULTS}/scores/{{method}}/{{run}}/{{track}}.json.gz",
    params:
        scoring=config["scoring"],
        sample_rate=DATA["sample_rate"],
    # Thousands of short jobs on a cluster: the profile bundles them (--group-components score=N)
    # into a few scheduler jobs; a local run ignores groups.
    group:
        "score"
    threads: config["resources"]["score"]["threads"]
    resources:
        mem_mb=config["resources"]["score"]["mem_mb"],
        runtime=config["resources"]["score"]["runtime"],
    log:
        f"{LOGS}/score_track/{{method}}/{{run}}/{{track}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/score_track/{{method}}/{{run}}/{{track}}.tsv"
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/score_track.py"


rule scored_runs:
    """Every run (models, seeds, oracles) scored on every test track: the target of the DVC
    stage `score` (dvc.yaml)."""
    input:
        all_scores,
