# The command of both training rules (the same job runner; a cohort's job launches its ranks itself).
TRAIN_COMMAND = "exec rdml pipeline run {wildcards.study:q} {wildcards.job:q} --gpus $RDML_GPUS --jobs-per-gpu $RDML_JOBS_PER_GPU --threads $RDML_THREADS --die-with-parent --spec-file results/{wildcards.study:q}/specs/{wildcards.job:q}.json --log {log:q}"


rule prepare_data:
    """A data set (or a resource data sets share, e.g. GloVe), downloaded where that applies, loaded once."""
    input:
        lambda w: [paths.data_stamp(name) for name in (DATASETS[w.dataset].needs if w.dataset in DATASETS else ())],
    output:
        paths.data_stamp("{dataset}"),
    params:
        code=lambda w: data_code(w.dataset).sha256,
    shell:
        "rdml pipeline prepare {wildcards.dataset:q}"


rule fetch_weights:
    """An architecture's published weights, fetched once (timm: the Hugging Face hub) into data/weights."""
    output:
        paths.weights_stamp("{arch}"),
    params:
        code=CODE["weights"],
    shell:
        "rdml pipeline weights {wildcards.arch:q}"


rule train_job:
    """The runs of one job (one run, or several seeds of one configuration) on one GPU slot (CPU where there is none).

    The job trains exactly what this DAG planned (its spec, `params.spec`, written to `--spec-file` when
    Snakemake starts: rdml.pipeline.specs), so --config and --configfile reach it. A change of any key
    its runs train with (or of the code they run) reruns exactly this job. Its per-epoch lines and any
    warning go to its log; the console gets one line per finished run and the study's progress.
    """
    input:
        data=lambda w: paths.data_stamp(planned(w).dataset),
        teachers=lambda w: sorted({JOB_OF[w.study][teacher.id].file for teacher in planned(w).teachers}),
        weights=lambda w: [paths.weights_stamp(arch) for arch in planned(w).weights],
    output:
        paths.job_file("{study}", "{job}"),
    wildcard_constraints:
        job=SINGLE_JOB,  # a distributed cohort's job is train_cohort_job's (common.smk)
    params:
        spec=lambda w: spec_text(planned(w).spec()),  # what reruns the job when the plan changes
        code=lambda w: planned(w).code.sha256,
    resources:
        gpu=1,
        mem_mb=job_mem_mb,  # rdml.pipeline.requests: measured by `make gpu-check`, else estimated
        runtime=job_runtime,
    log:
        job_log("{study}", "{job}"),
    threads: THREADS
    shell:
        # exec: the job's parent is Snakemake itself, and the job ends when Snakemake dies. --spec-file: where
        # rdml.pipeline.specs.spec_file puts the spec (onstart: common.smk), spelled here, not as a rule
        # parameter, so that parameters stay what they were (a test holds the two spellings together).
        TRAIN_COMMAND


rule train_cohort_job:
    """The runs of one job of a distributed cohort (distributed=true), one process and one whole GPU per student.

    The same command as train_job's. Locally it holds K whole GPUs (K × jobs_per_gpu slots of `--resources gpu`)
    and launches the ranks with torchrun. Under SLURM it asks for K tasks, one GPU each (sbatch --gpus=K
    --ntasks-per-gpu=1 --ntasks=K); `mpi` tells the SLURM plugin to run the command once on the allocation's first
    node instead of inside `srun -n1`, and rdml starts the ranks with `srun --ntasks=K --gpus-per-task=1
    --kill-on-bad-exit=1` (rdml.train.distributed), on one node or several.
    """
    input:
        data=lambda w: paths.data_stamp(planned(w).dataset),
        teachers=lambda w: sorted({JOB_OF[w.study][teacher.id].file for teacher in planned(w).teachers}),
        weights=lambda w: [paths.weights_stamp(arch) for arch in planned(w).weights],
    output:
        paths.job_file("{study}", "{job}"),
    wildcard_constraints:
        job=COHORT_JOB,
    params:
        spec=lambda w: spec_text(planned(w).spec()),
        code=lambda w: planned(w).code.sha256,
    resources:
        gpu=lambda w: planned(w).ranks * JOBS_PER_GPU,
        tasks=lambda w: planned(w).ranks,
        tasks_per_gpu=1,
        mpi="srun",
        mem_mb=job_mem_mb,
        runtime=job_runtime,
    log:
        job_log("{study}", "{job}"),
    threads: THREADS
    shell:
        TRAIN_COMMAND
