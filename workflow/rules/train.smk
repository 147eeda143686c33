rule prepare_data:
    input:
        SRC,
    output:
        "results/data/{dataset}.json",
    shell:
        "rdml pipeline prepare {wildcards.dataset}"


rule train_run:
    """One run of a study on one GPU slot (CPU where there is none)."""
    input:
        code=SRC,
        data=lambda w: f"results/data/{planned(w).dataset}.json",
        teacher=lambda w: [f"{planned(w).teacher_directory}/model.pt"] if planned(w).teacher else [],
    output:
        record="results/{study}/runs/{run,[^/]+/(?!teacher-)[^/]+}/record.json",
        model="results/{study}/runs/{run,[^/]+/(?!teacher-)[^/]+}/model.pt",
        metrics="results/{study}/metrics/{run,[^/]+/(?!teacher-)[^/]+}.json",
    params:
        # A change of any key this run trains with reruns exactly this run (rerun trigger "params").
        train_keys=lambda w: json.dumps(planned(w).keys, sort_keys=True),
    resources:
        gpu=1,
    threads: 1
    shell:
        "rdml pipeline run {wildcards.study} {wildcards.run} --threads {threads}"


use rule train_run as pretrain_teacher with:
    output:
        record="results/{study}/runs/{run,[^/]+/teacher-[^/]+}/record.json",
        model="results/{study}/runs/{run,[^/]+/teacher-[^/]+}/model.pt",
        metrics="results/{study}/metrics/{run,[^/]+/teacher-[^/]+}.json",
