# The plan of every study, from Snakemake's config (params.yaml, with any --config / --configfile
# overrides) through rdml.study.plan, the same code dvc.yaml is written by. Planning never imports torch.
import json
import os
import shutil
import sys
from pathlib import Path

from rdml import paths
from rdml.data.catalog import DATASETS
from rdml.dependencies import data_code, measure_code, reporting_code, weights_code
from rdml.study.params import load_params, studies_to_build, with_smoke_studies
from rdml.study.plan import plan_jobs, plan_measurements

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
# What can change a result: the code it runs (rdml.dependencies), each a rule parameter. A table-code
# edit retrains nothing, a DML-loss edit reruns the DML jobs, a docstring or a new method nothing.
CODE = {"weights": weights_code().sha256, "reporting": reporting_code().sha256}


def measured_code(study, run_id):
    run = MEASURED[study][run_id][0]
    return measure_code(run.method, run.archs, run.dataset, run.teacher_archs).sha256


# A job file vouches for its runs, and the tables for every job. When a run is gone from disk (record
# or weights), its job file and its study's tables are stale: a run of the workflow removes them, so
# that Snakemake rebuilds the run and then the tables (it would not rerun a job for a missing
# intermediate file). A dry run, --unlock, --list and the like only say so.
_ONLY_LOOKING = {"--dry-run", "--dryrun", "--unlock", "--list", "--list-target-rules", "--summary", "--detailed-summary",
                 "--dag", "--rulegraph", "--filegraph", "--lint", "--cleanup-metadata", "--delete-all-output"}
_LOOKING = any(a in _ONLY_LOOKING or (a.startswith("-") and not a.startswith("--") and "n" in a[1:]) for a in sys.argv[1:])
for _study, _jobs in JOBS.items():
    for _job in _jobs.values():
        if Path(_job.file).is_file() and not all(
                (Path(run.directory) / name).is_file() for run in _job.runs for name in ("record.json", "model.pt")):
            if _LOOKING or not workflow.is_main_process:
                print(f"rdml: a run of job {_job.id} is missing on disk; `snakemake all_tables` rebuilds it and the "
                      f"tables of {_study}", file=sys.stderr)
                continue
            print(f"rdml: a run of job {_job.id} is missing on disk: {_job.file} and the tables of {_study} "
                  "removed, so that both are rebuilt", file=sys.stderr)
            Path(_job.file).unlink()
            shutil.rmtree(paths.tables_dir(_study), ignore_errors=True)


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
