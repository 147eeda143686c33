rule prepare_data:
    input:
        SRC,
    output:
        "results/data/{dataset}.json",
    shell:
        "rdml pipeline prepare {wildcards.dataset}"


rule train_job:
    """The runs of one job (one run, or several seeds of one configuration) on one GPU slot (CPU where there is none)."""
    input:
        code=SRC,
        data=lambda w: f"results/data/{planned(w).dataset}.json",
        teachers=lambda w: [JOB_OF[w.study][teacher].file for teacher in planned(w).teachers],
    output:
        "results/{study}/jobs/{job,[^/]+/(?!teacher-)[^/]+}.json",
    params:
        # A change of any key these runs train with reruns exactly this job (rerun trigger "params").
        train_keys=lambda w: json.dumps([run.keys for run in planned(w).runs], sort_keys=True),
    resources:
        gpu=1,
    threads: 1
    shell:
        "rdml pipeline run {wildcards.study} {wildcards.job} --threads {threads}"


use rule train_job as pretrain_teacher with:
    output:
        "results/{study}/jobs/{job,[^/]+/teacher-[^/]+}.json",
