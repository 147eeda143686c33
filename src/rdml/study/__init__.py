"""Studies of params.yaml: their checks, the runs and jobs they plan from their tables' layouts, the
papers' reported numbers, and (for now) the pipeline steps Snakemake and DVC call and GPU slots. The
planning modules (`params`, `runs`, `plan`, `layouts`, `reported`, `dvc`) never import torch; the
tables are written by rdml.report, the audit is rdml.audit."""
