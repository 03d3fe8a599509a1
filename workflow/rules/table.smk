"""Table stage: every run's scores aggregated into the SDR comparison table."""


rule make_sdr_table:
    """Median over frames, median over tracks, mean +/- s.e. over seeds; difference rows per baseline."""
    input:
        scores=all_scores,
        code=code("table.py"),
    output:
        markdown="results/tables/sdr.md",
        csv="results/tables/sdr.csv",
        json="results/tables/sdr.json",
    params:
        rows=table_rows(),
        comparisons=table_comparisons(),
        metric=config["table"]["metric"],
    log:
        "logs/make_sdr_table.log",
    conda:
        "../../envs/demixbench.yaml"
    script:
        "../scripts/make_sdr_table.py"
