# demixbench: MUSDB18 -> decoded cache -> trained separators (per model and seed) -> separated test
# set -> BSS Eval v4 scores -> comparison tables, figures and a report. See README.md; the config is
# config.yaml.


from pathlib import Path

from snakemake.exceptions import WorkflowError

from demixbench.yamlfile import YAMLFileError, load_yaml

if Path("config.yaml").is_file():
    try:  # Snakemake's own message for an unparsable config.yaml names neither line nor column
        load_yaml("config.yaml")
    except YAMLFileError as error:
        raise WorkflowError(str(error)) from None


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/separate.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/table.smk"
include: "workflow/rules/report.smk"


localrules:
    all,
    decoded_dataset,
    trained_models,
    scored_runs,
    make_table,
    tables,
    plot_scores,
    plot_learning_curves,
    make_listening_page,
    record_provenance,


rule all:
    input:
        expand(rules.make_table.output, metric=METRICS),
        expand(rules.plot_scores.output, metric=METRICS),
        rules.plot_learning_curves.output,
        rules.make_listening_page.output if config["report"]["excerpt_tracks"] else [],
        rules.record_provenance.output,
    default_target: True
