# The plan of every study, from Snakemake's config (params.yaml, with any --config / --configfile
# overrides) through rdml.study.plan, the same code dvc.yaml is written by. Planning never imports torch.
import os
import re
import sys
from pathlib import Path

from rdml import paths
from rdml.data.catalog import DATASETS
from rdml.dependencies import data_code, measure_code, reporting_code, weights_code
from rdml.study.params import load_params, studies_to_build, thread_count, with_smoke_studies
from rdml.study.plan import measurement_partners, plan_jobs, plan_measurements
from rdml.pipeline.requests import ESTIMATE_MEM_MB, describe, job_request, load_measurements, measure_runtime, planned_run, resolve_jobs_per_gpu
from rdml.pipeline.stale import stale_jobs
from rdml.pipeline.console import job_log
from rdml.pipeline.specs import measure_spec_file, spec_text, tables_spec_file, write_spec, write_spec_files

config.update(with_smoke_studies(config))  # every study also has a <study>_smoke variant
BUILD = studies_to_build(config)
JOBS = {study: {job.id: job for job in plan_jobs(config, study)} for study in BUILD}
MEASURED = {study: plan_measurements(config, study) for study in BUILD}  # runs the analysis tables measure
JOB_OF = {study: {run.id: job for job in jobs.values() for run in job.runs} for study, jobs in JOBS.items()}
# A distributed cohort (distributed=true: one process and one GPU per student, rdml.train.distributed) is trained by
# train_cohort_job, which asks for its GPUs and, under SLURM, one task per student; every other job by train_job.
# The job's id says which: these patterns match exactly the cohort jobs' ids, and exactly the others'.
_COHORT_IDS = sorted({job_id for jobs in JOBS.values() for job_id, job in jobs.items() if job.ranks > 1})
_JOB_SUFFIX = re.escape(paths.job_file("s", "d/j").split("d/j", 1)[1])  # what follows a job id in its file's path
COHORT_JOB = "|".join(re.escape(job_id) for job_id in _COHORT_IDS) or "(?!)"
SINGLE_JOB = f"(?!(?:{COHORT_JOB}){_JOB_SUFFIX}$)[^/]+/[^/]+"
# Where a job runs is not what it computes: the GPU slots reach the jobs through the environment, not
# as rule parameters, so a change of `gpus` or `jobs_per_gpu` retrains nothing. With jobs_per_gpu N,
# --resources gpu= counts GPUs × N slots. `jobs_per_gpu: auto` is the packing `make gpu-check` measured on
# this host's GPU (benchmarks/results/gpu_check_<device>.json), else 1, said here once; the jobs get the number.
os.environ["RDML_GPUS"] = str(config.get("gpus", "auto"))
JOBS_PER_GPU, _said = resolve_jobs_per_gpu(config.get("jobs_per_gpu", 1))
if _said:
    print(f"rdml: {_said}", file=sys.stderr)
os.environ["RDML_JOBS_PER_GPU"] = str(JOBS_PER_GPU)
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


# What a cluster job asks for (SLURM reads mem_mb and runtime; a local run ignores them, and neither is a
# rule parameter, so a new measurement retrains nothing): rdml.pipeline.requests, from the GPUs `make
# gpu-check` measured (benchmarks/results/gpu_check_<device>.json, full mode) where they measured every
# network of the job, else the estimate of 2 minutes per epoch and 8000 MB. Override per rule with
# --set-resources.
GPU_MEASURED = load_measurements(Path(workflow.basedir) / "benchmarks" / "results")
JOB_MEM_MB = ESTIMATE_MEM_MB  # the measuring jobs (tables.smk): host memory of one process, estimated
_REQUESTS = {}


def job_request_of(study, job_id):
    """A training job's requests and where they came from (rdml.pipeline.requests.job_request)."""
    if (study, job_id) not in _REQUESTS:
        runs = [planned_run(run) for run in JOBS[study][job_id].runs]
        _REQUESTS[study, job_id] = job_request(runs, GPU_MEASURED)
    return _REQUESTS[study, job_id]


def job_mem_mb(wildcards):
    return job_request_of(wildcards.study, wildcards.job).mem_mb


def job_runtime(wildcards):
    return job_request_of(wildcards.study, wildcards.job).runtime


if GPU_MEASURED:  # say once where the cluster requests of this plan come from
    _planned = [job_request_of(study, job_id) for study in BUILD for job_id in JOBS[study]]
    print(f"rdml: cluster requests: {describe(_planned)}", file=sys.stderr)


def measure_spec(study, run_id):
    """What the measure rule hands `rdml pipeline measure` for one run of a study."""
    run, wanted = MEASURED[study][run_id]
    return {"study": study, "run": run.id, "directory": run.directory, "measurements": wanted}


onstart:
    # Each planned job's spec as a file (rdml.pipeline.specs), written once jobs are about to run (not on a
    # dry run), where its text changed; the jobs read it (--spec-file) instead of kilobytes on the command
    # line: training jobs, measurements and each built study's tables.
    write_spec_files(job for jobs in JOBS.values() for job in jobs.values())
    for study in BUILD:
        write_spec(tables_spec_file(study), config["studies"][study])
        for run_id in MEASURED[study]:
            write_spec(measure_spec_file(study, run_id), measure_spec(study, run_id))
