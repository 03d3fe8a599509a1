"""Table stage: every run's scores (and imported results) aggregated into one table per metric."""


rule make_table:
    """Median over frames, median over tracks, mean +/- s.e. over seeds; difference rows paired by
    seed, with seed- and track-aware t intervals, Holm-adjusted p-values and minimum detectable
    differences (docs/statistics.md); also mean over tracks and nSDR."""
    input:
        scores=all_scores,
        imported=imported_scores,
        code=code("table", "score/scorefile.py", "htmlpage.py"),
    output:
        markdown=f"{RESULTS}/tables/{{metric}}.md",
        csv=f"{RESULTS}/tables/{{metric}}.csv",
        json=f"{RESULTS}/tables/{{metric}}.json",
        metrics=f"{RESULTS}/tables/{{metric}}.metrics.json",
        latex=f"{RESULTS}/tables/{{metric}}.tex",
        html=report(
            f"{RESULTS}/tables/{{metric}}.html",
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
        f"{LOGS}/make_table/{{metric}}.log",
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/make_table.py"


rule tables:
    """Every metric's table only: `make table` runs this with --allowed-rules make_table tables,
    so pulled scores are used as they are and nothing upstream can run."""
    input:
        expand(rules.make_table.output, metric=METRICS),
