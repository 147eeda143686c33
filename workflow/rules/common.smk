# The plan of every study, from Snakemake's config (params.yaml, with any --config / --configfile
# overrides) through rdml.study.plan, the same code dvc.yaml is written by. Planning never imports torch.
import json
import shutil
import sys
from pathlib import Path

from rdml import paths
from rdml.study.dependencies import DATA_CODE, REPORTING_CODE, TRAINING_CODE, code_sha256
from rdml.study.params import studies_to_build, with_smoke_studies
from rdml.study.plan import plan_jobs

config.update(with_smoke_studies(config))  # every study also has a <study>_smoke variant
BUILD = studies_to_build(config)
JOBS = {study: {job.id: job for job in plan_jobs(config, study)} for study in BUILD}
JOB_OF = {study: {run.id: job for job in jobs.values() for run in job.runs} for study, jobs in JOBS.items()}
GPUS = config.get("gpus", "auto")
# What can change a result, by content: a table-code edit retrains nothing, a loss edit every job.
CODE = {"data": code_sha256(DATA_CODE), "training": code_sha256(TRAINING_CODE), "reporting": code_sha256(REPORTING_CODE)}


# A job file vouches for its runs, and the tables for every job. When a run is gone from disk (record
# or weights), its job file and its study's tables are stale: they are removed here, so that Snakemake
# rebuilds the run and then the tables (it would not rerun a job for a missing intermediate file).
for _study, _jobs in JOBS.items():
    for _job in _jobs.values():
        if Path(_job.file).is_file() and not all(
                (Path(run.directory) / name).is_file() for run in _job.runs for name in ("record.json", "model.pt")):
            print(f"rdml: a run of job {_job.id} is missing on disk: {_job.file} and the tables of {_study} "
                  "removed, so that both are rebuilt", file=sys.stderr)
            Path(_job.file).unlink()
            shutil.rmtree(paths.tables_dir(_study), ignore_errors=True)


wildcard_constraints:
    study="[^/]+",
    dataset="[^/]+",
    job="[^/]+/[^/]+",


def planned(wildcards):
    return JOBS[wildcards.study][wildcards.job]
