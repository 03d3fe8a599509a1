"""Table stage: every run's scores (and imported results) aggregated into one table per metric."""


rule make_table:
    """Median over frames, median over tracks, mean +/- s.e. over seeds; difference rows with
    paired-bootstrap intervals and Wilcoxon p-values; also mean over tracks and nSDR."""
    input:
        scores=all_scores,
        imported=imported_scores,
        code=code("table", "score/scorefile.py", "htmlpage.py"),
    output:
        markdown="results/tables/{metric}.md",
        csv="results/tables/{metric}.csv",
        json="results/tables/{metric}.json",
        metrics="results/tables/{metric}.metrics.json",
        latex="results/tables/{metric}.tex",
        html=report(
            "results/tables/{metric}.html",
            caption="../report/tables.rst",
            category="Tables",
            labels={"table": "{metric}"},
        ),
    params:
        rows=table_rows(),
        comparisons=table_comparisons(),
        metric=lambda wildcards: wildcards.metric.upper(),
        bootstrap={key: config["table"][key] for key in ("bootstrap_resamples", "bootstrap_seed", "confidence")},
    log:
        "logs/make_table/{metric}.log",
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/make_table.py"


rule tables:
    """Every metric's table only: `make table` runs this with --allowed-rules make_table tables,
    so pulled scores are used as they are and nothing upstream can run."""
    input:
        expand(rules.make_table.output, metric=METRICS),
