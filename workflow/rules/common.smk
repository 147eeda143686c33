# The plan of every study, from Snakemake's config (params.yaml, with any --config / --configfile
# overrides) through rdml.study.plan, the same code dvc.yaml is written by. Planning never imports torch.
import json
import os
import sys
from pathlib import Path

from rdml import paths
from rdml.data.catalog import DATASETS
from rdml.dependencies import data_code, measure_code, reporting_code, weights_code
from rdml.study.params import load_params, studies_to_build, thread_count, with_smoke_studies
from rdml.study.plan import plan_jobs, plan_measurements
from rdml.pipeline.stale import stale_jobs

config.update(with_smoke_studies(config))  # every study also has a <study>_smoke variant
BUILD = studies_to_build(config)
JOBS = {study: {job.id: job for job in plan_jobs(config, study)} for study in BUILD}
MEASURED = {study: plan_measurements(config, study) for study in BUILD}  # runs the analysis tables measure
JOB_OF = {study: {run.id: job for job in jobs.values() for run in job.runs} for study, jobs in JOBS.items()}
# Where a job runs is not what it computes: the GPU slots reach the jobs through the environment, not
# as rule parameters, so a change of `gpus` or `jobs_per_gpu` retrains nothing. With jobs_per_gpu N,
# --resources gpu= counts GPUs × N slots.
os.environ["RDML_GPUS"] = str(config.get("gpus", "auto"))
os.environ["RDML_JOBS_PER_GPU"] = str(config.get("jobs_per_gpu", 1))
# torch's threads in every job: params.yaml's `threads`, as under DVC and `rdml pipeline run` (intra-op
# threads change float32 sums). The jobs read it from here, not from the rule's `threads:`, which
# Snakemake lowers to --cores; like the GPU slots it is no rule parameter, so a change retrains nothing.
THREADS = thread_count(config)
os.environ["RDML_THREADS"] = str(THREADS)
# What can change a result: the code it runs (rdml.dependencies), each a rule parameter. A table-code
# edit retrains nothing, a DML-loss edit reruns the DML jobs, a docstring or a new method nothing.
CODE = {"weights": weights_code().sha256, "reporting": reporting_code().sha256}


def measured_code(study, run_id):
    run = MEASURED[study][run_id][0]
    return measure_code(run.method, run.archs, run.dataset, run.teacher_archs).sha256


# A run deleted on disk behind a finished job: said here, removed by `rdml pipeline prune` (rdml.pipeline.stale).
for _job in stale_jobs(job for jobs in JOBS.values() for job in jobs.values()):
    print(f"rdml: a run of job {_job.id} is missing on disk; `rdml pipeline prune` removes the job's file and the "
          f"tables of {_job.study} so that `snakemake all_tables` rebuilds both (`make run` prunes first)", file=sys.stderr)


wildcard_constraints:
    study="[^/]+",
    dataset="[^/]+",
    arch="[A-Za-z0-9_]+",
    job="[^/]+/[^/]+",
    run="[^/]+/[^/]+",


def planned(wildcards):
    return JOBS[wildcards.study][wildcards.job]


# What a cluster job asks for (SLURM reads mem_mb and runtime; a local run ignores them). runtime is an
# upper estimate, 2 minutes per epoch of each run (the slowest paper network, WRN-28-10, takes ~1.5 min
# per CIFAR epoch on one V100-class GPU in fp32); override per rule with --set-resources.
MINUTES_PER_EPOCH = 2
JOB_MEM_MB = 8000  # host memory of one training process: torch, CUDA context, a data set as uint8 tensors


def job_runtime(wildcards):
    return max(10, MINUTES_PER_EPOCH * sum(run.config.epochs for run in planned(wildcards).runs))
