"""Report stage: figures and a listening page for `snakemake --report` (see workflow/report/)."""


rule plot_scores:
    """Per-target boxplots of per-track scores and the per-seed scatter of "All", for one metric."""
    input:
        scores=all_scores,
        code=code("report/plots.py", "report/figures.py", "table", "score/scorefile.py", "htmlpage.py"),
    output:
        boxplots=report(
            f"{RESULTS}/figures/{{metric}}_boxplots.png",
            caption="../report/boxplots.rst",
            category="Figures",
            labels={"figure": "per-track boxplots", "metric": "{metric}"},
        ),
        boxplots_svg=f"{RESULTS}/figures/{{metric}}_boxplots.svg",
        seeds=report(
            f"{RESULTS}/figures/{{metric}}_seeds.png",
            caption="../report/seeds.rst",
            category="Figures",
            labels={"figure": "per-seed scatter", "metric": "{metric}"},
        ),
        seeds_svg=f"{RESULTS}/figures/{{metric}}_seeds.svg",
    params:
        rows=table_rows(),
        comparisons=table_comparisons(),
        metric=lambda wildcards: wildcards.metric.upper(),
    log:
        f"{LOGS}/plot_scores/{{metric}}.log",
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/plot_scores.py"


rule plot_learning_curves:
    """Training and validation curves of every model and seed on shared axes."""
    input:
        histories=expand(f"{RESULTS}/models/{{model}}/seed{{seed}}/history.csv", model=MODELS, seed=SEEDS),
        code=code("report/curves.py", "report/figures.py"),
    output:
        png=report(
            f"{RESULTS}/figures/learning_curves.png",
            caption="../report/learning_curves.rst",
            category="Figures",
            labels={"figure": "learning curves", "metric": "loss, nSDR"},
        ),
        svg=f"{RESULTS}/figures/learning_curves.svg",
    params:
        histories={model: [f"{RESULTS}/models/{model}/seed{seed}/history.csv" for seed in SEEDS] for model in MODELS},
    log:
        f"{LOGS}/plot_learning_curves.log",
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/plot_learning_curves.py"


rule make_listening_page:
    """Short excerpts of a few test tracks: mixture, references and every method's estimates."""
    input:
        stems=lambda wildcards: expand(f"{RESULTS}/decoded/{{track}}/{{stem}}.npy", track=excerpt_tracks(), stem=STEMS),
        estimates=lambda wildcards: expand(
            f"{RESULTS}/separated/{{source}}/{{track}}/{{target}}.wav",
            source=[f"{method}/{runs(method)[0]}" for method in MODELS + ORACLES],
            track=excerpt_tracks(),
            target=TARGETS,
        ),
        code=code("report/listening.py", "report/excerpts.py", "htmlpage.py", "data/cache.py", "data/layout.py"),
    output:
        report(f"{RESULTS}/report/listening.html", caption="../report/listening.rst", category="Listening"),
    params:
        tracks=lambda wildcards: {track: f"{RESULTS}/decoded/{track}" for track in excerpt_tracks()},
        methods=[
            {"name": method, "estimates_root": f"{RESULTS}/separated/{method}/{runs(method)[0]}"}
            for method in MODELS + ORACLES
        ],
        seconds=config["report"]["excerpt_seconds"],
        sample_rate=DATA["sample_rate"],
    log:
        f"{LOGS}/make_listening_page.log",
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/make_listening_page.py"


#: Which stage each rule with a benchmark file belongs to, for the costs (demixbench.costs): the
#: jobs of training, separation and scoring belong to the table row named by the first folder of
#: their benchmark path; the other rules' jobs are shared.
COST_STAGES = {
    "decode_track": "data",
    "train_model": "training",
    "separate_track": "separation",
    "separate_oracle": "separation",
    "run_command": "separation",
    "score_track": "scoring",
    "score_run": "scoring",
}


rule record_provenance:
    """Git commit, config hash, dataset fingerprint, packages, machine, wall time per stage and
    what the results cost (per stage, per table row); and the report's front page."""
    input:
        tables=expand(f"{RESULTS}/tables/{{metric}}.json", metric=METRICS),
        headline=f"{RESULTS}/tables/{METRICS[0]}.html",
        dataset=DATASET_REPORT,
        code=code(
            "report/run.py",
            "report/front.py",
            "costs.py",
            "htmlpage.py",
            "provenance.py",
            "data/verify.py",
            "data/probe.py",
            "data/layout.py",
        ),
    output:
        json=f"{RESULTS}/provenance.json",
        html=report(f"{RESULTS}/report/provenance.html", caption="../report/provenance.rst", category="Provenance"),
        # "0. Overview" sorts before the other categories in the report's menu
        front=report(f"{RESULTS}/report/front_page.html", caption="../report/front_page.rst", category="0. Overview"),
    params:
        config=config,
        experiment=config["experiment"],
        benchmarks=f"{RESULTS}/benchmarks",
        stages=COST_STAGES,
        rows={method: runs(method) for method in METHODS},
        # GPUs per job of the rules whose jobs have only Snakemake's benchmark file
        gpus={
            "train_model": config["resources"]["train"]["gpu"],
            "separate_track": config["resources"]["separate"]["gpu"],
            "score_track": config["resources"]["score"]["gpu"],
            "score_run": config["resources"]["score"]["gpu"],
        },
        # the training costs travel with each checkpoint (model.json "costs")
        checkpoints={
            model: {f"seed{seed}": f"{RESULTS}/models/{model}/seed{seed}/model.json" for seed in SEEDS}
            for model in MODELS
        },
        seeds=SEEDS,
        models={
            name: {
                "arch": entry["arch"],
                "discriminator": (entry.get("gan") or {}).get("discriminator"),
                "baseline": entry.get("baseline"),
            }
            for name, entry in config["models"].items()
        },
        others=ORACLES + list(EXTERNAL),
    log:
        f"{LOGS}/record_provenance.log",
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/record_provenance.py"
