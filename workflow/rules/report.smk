"""Report stage: figures and a listening page for `snakemake --report` (see workflow/report/)."""


rule plot_scores:
    """Per-target boxplots of per-track scores and the per-seed scatter of "All", for one metric."""
    input:
        scores=all_scores,
        code=code("report/plots.py", "report/figures.py", "table", "score/scorefile.py", "htmlpage.py"),
    output:
        boxplots=report(
            "results/figures/{metric}_boxplots.png",
            caption="../report/boxplots.rst",
            category="Figures",
            labels={"figure": "per-track boxplots", "metric": "{metric}"},
        ),
        boxplots_svg="results/figures/{metric}_boxplots.svg",
        seeds=report(
            "results/figures/{metric}_seeds.png",
            caption="../report/seeds.rst",
            category="Figures",
            labels={"figure": "per-seed scatter", "metric": "{metric}"},
        ),
        seeds_svg="results/figures/{metric}_seeds.svg",
    params:
        rows=table_rows(),
        comparisons=table_comparisons(),
        metric=lambda wildcards: wildcards.metric.upper(),
    log:
        "logs/plot_scores/{metric}.log",
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/plot_scores.py"


rule plot_learning_curves:
    """Training and validation curves of every model and seed on shared axes."""
    input:
        histories=expand("results/models/{model}/seed{seed}/history.csv", model=MODELS, seed=SEEDS),
        code=code("report/curves.py", "report/figures.py"),
    output:
        png=report(
            "results/figures/learning_curves.png",
            caption="../report/learning_curves.rst",
            category="Figures",
            labels={"figure": "learning curves", "metric": "loss, nSDR"},
        ),
        svg="results/figures/learning_curves.svg",
    params:
        histories={model: [f"results/models/{model}/seed{seed}/history.csv" for seed in SEEDS] for model in MODELS},
    log:
        "logs/plot_learning_curves.log",
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/plot_learning_curves.py"


rule make_listening_page:
    """Short excerpts of a few test tracks: mixture, references and every method's estimates."""
    input:
        stems=lambda wildcards: expand("results/decoded/{track}/{stem}.npy", track=excerpt_tracks(), stem=STEMS),
        estimates=lambda wildcards: expand(
            "results/separated/{source}/{track}/{target}.wav",
            source=[f"{method}/{runs(method)[0]}" for method in MODELS + ORACLES],
            track=excerpt_tracks(),
            target=TARGETS,
        ),
        code=code("report/listening.py", "report/excerpts.py", "htmlpage.py", "data/cache.py", "data/layout.py"),
    output:
        report("results/report/listening.html", caption="../report/listening.rst", category="Listening"),
    params:
        tracks=lambda wildcards: {track: f"results/decoded/{track}" for track in excerpt_tracks()},
        methods=[
            {"name": method, "estimates_root": f"results/separated/{method}/{runs(method)[0]}"}
            for method in MODELS + ORACLES
        ],
        seconds=config["report"]["excerpt_seconds"],
        sample_rate=DATA["sample_rate"],
    log:
        "logs/make_listening_page.log",
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/make_listening_page.py"


rule record_provenance:
    """Git commit, config hash, dataset fingerprint, packages, machine and wall time per stage."""
    input:
        tables=expand("results/tables/{metric}.json", metric=METRICS),
        dataset=DATASET_REPORT,
        code=code("report/run.py", "htmlpage.py", "provenance.py", "data/verify.py", "data/probe.py", "data/layout.py"),
    output:
        json="results/provenance.json",
        html=report("results/report/provenance.html", caption="../report/provenance.rst", category="Provenance"),
    params:
        config=config,
        benchmarks="results/benchmarks",
    log:
        "logs/record_provenance.log",
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/record_provenance.py"
