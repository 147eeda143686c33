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

    The job trains exactly what this DAG planned (`--spec`), so --config and --configfile reach it.
    A change of any key its runs train with (or of the code they run) reruns exactly this job.
    """
    input:
        data=lambda w: paths.data_stamp(planned(w).dataset),
        teachers=lambda w: sorted({JOB_OF[w.study][teacher.id].file for teacher in planned(w).teachers}),
        weights=lambda w: [paths.weights_stamp(arch) for arch in planned(w).weights],
    output:
        paths.job_file("{study}", "{job}"),
    params:
        spec=lambda w: json.dumps(planned(w).spec(), sort_keys=True),
        code=lambda w: planned(w).code.sha256,
    resources:
        gpu=1,
        mem_mb=job_mem_mb,  # rdml.pipeline.requests: measured by `make gpu-check`, else estimated
        runtime=job_runtime,
    threads: THREADS
    shell:
        # exec: the job's parent is Snakemake itself, and the job ends when Snakemake dies.
        "exec rdml pipeline run {wildcards.study:q} {wildcards.job:q} --gpus $RDML_GPUS --jobs-per-gpu $RDML_JOBS_PER_GPU --threads $RDML_THREADS --die-with-parent --spec {params.spec:q}"
