# rdml workflow: params.yaml → prepare data → teachers → training runs → paper-style tables.
# Run:  snakemake all_tables --cores 8 --resources gpu=4   (targets before --resources; see README)
from snakemake.utils import min_version, validate

min_version("9.0")  # the update() output flag (workflow/rules/tables.smk)


configfile: "params.yaml"


# rdml's own reader first: duplicate keys, and aliases that expand without bound, which Snakemake's
# reader lets through and its schema check would walk for ever (rdml.yamlfile).
from rdml.study.params import load_params

load_params("params.yaml")
validate(config, "workflow/schemas/params.schema.yaml")


# Downloads and table writing run on the host that runs Snakemake, never as cluster jobs: compute
# nodes often have no internet, and writing tables takes seconds.
localrules:
    prepare_data,
    fetch_weights,
    tables,


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/tables.smk"


rule all_tables:
    default_target: True
    input:
        [out for study in BUILD for out in (paths.tables_dir(study), paths.curves_dir(study), paths.summary_file(study))],
        f"{SCORECARD}.md",  # rule scorecard: the papers' numbers, claims and compute of every built study
