# The plan of every study, from params.yaml through rdml.plan (the same code dvc.yaml is written by).
import json
from pathlib import Path

from rdml.plan import plan_jobs, studies_to_build, with_smoke_studies

config.update(with_smoke_studies(config))  # every study also has a <study>_smoke variant
BUILD = studies_to_build(config)
JOBS = {study: {job.id: job for job in plan_jobs(config, study)} for study in BUILD}
JOB_OF = {study: {run.id: job for job in jobs.values() for run in job.runs} for study, jobs in JOBS.items()}
SRC = sorted(str(p) for p in Path("src/rdml").rglob("*.py"))


wildcard_constraints:
    study="[^/]+",
    dataset="[^/]+",
    job="[^/]+/[^/]+",


def planned(wildcards):
    return JOBS[wildcards.study][wildcards.job]
