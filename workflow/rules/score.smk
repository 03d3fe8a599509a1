"""Scoring stage: BSS Eval v4 of every test track, one job per run (method and run)."""

#: The wildcards of one scoring job (one per run, or per track where the test tracks are not known
#: when the workflow is parsed: see SCORE_PER_RUN in common.smk), in its log and benchmark paths.
SCORE_JOB = "{method}/{run}" if SCORE_PER_RUN else "{method}/{run}/{track}"


rule score_run:
    """Score every test track of one run (the four targets of a track jointly) in a pool of
    `threads` workers, resumable per track; museval-format JSON (gzipped) per track."""
    input:
        unpack(score_inputs),
        code=code("score", "separate/estimates.py", "data/cache.py", "data/layout.py"),
    output:
        (
            expand(f"{RESULTS}/scores/{{method}}/{{run}}/{{track}}.json.gz", track=splits().test, allow_missing=True)
            if SCORE_PER_RUN
            else f"{RESULTS}/scores/{{method}}/{{run}}/{{track}}.json.gz"
        ),
    params:
        scoring=config["scoring"],
        sample_rate=DATA["sample_rate"],
        # not an output: Snakemake deletes the outputs of a failed job, the staged tracks survive it
        work_dir=lambda wildcards: f"{RESULTS}/work/score_run/{wildcards.method}/{wildcards.run}",
    threads: config["resources"]["score"]["threads"]
    resources:
        mem_mb=score_mem_mb,
        runtime=score_runtime,
        gpu=config["resources"]["score"]["gpu"],
    log:
        f"{LOGS}/score_run/{SCORE_JOB}.log",
    benchmark:
        f"{RESULTS}/benchmarks/score_run/{SCORE_JOB}.tsv"
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/score_run.py"


rule scored_runs:
    """Every run (models, seeds, oracles) scored on every test track: the target of the DVC
    stage `score` (dvc.yaml)."""
    input:
        all_scores,
