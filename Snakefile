# demixbench: MUSDB18 -> decoded cache -> trained separators (per model and seed) -> separated test
# set -> BSS Eval v4 scores -> SDR comparison table. See README.md; the config is config.yaml.

configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/separate.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/table.smk"


localrules:
    all,
    make_sdr_table,


rule all:
    input:
        rules.make_sdr_table.output,
    default_target: True
