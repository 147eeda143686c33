"""Studies of params.yaml: the runs and jobs they plan, the tables they write, the pipeline steps
Snakemake and DVC call, GPU slots, and the audit of a table's numbers. The planning modules
(`params`, `runs`, `plan`, `layouts`, `dvc`) never import torch."""
