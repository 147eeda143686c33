"""What Snakemake and DVC run: a study's jobs on GPU slots (`jobs`, `slots`), dvc.yaml and the code stamps
its stages depend on (`dvc`), and the jobs whose runs were deleted on disk (`stale`). Planned by
rdml.study; `dvc` and `stale` never import torch."""
