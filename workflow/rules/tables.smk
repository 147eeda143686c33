rule measure:
    """Measurements of one trained run's final models that the study's analysis tables read (DML §4.8)."""
    input:
        lambda w: JOB_OF[w.study][w.run].file,
    output:
        paths.measures_file("{study}", "{run}"),
    params:
        spec=lambda w: json.dumps({"study": w.study, "run": w.run, "directory": MEASURED[w.study][w.run][0].directory,
                                   "measurements": MEASURED[w.study][w.run][1]}, sort_keys=True),
        code=lambda w: measured_code(w.study, w.run),
    resources:
        gpu=1,
        mem_mb=JOB_MEM_MB,
        runtime=30,
    threads: THREADS
    shell:
        "exec rdml pipeline measure {wildcards.study:q} {wildcards.run:q} --gpus $RDML_GPUS --jobs-per-gpu $RDML_JOBS_PER_GPU --threads $RDML_THREADS --die-with-parent --spec {params.spec:q}"


rule tables:
    input:
        lambda w: [job.file for job in JOBS[w.study].values()],
        lambda w: [paths.measures_file(w.study, run_id) for run_id in MEASURED[w.study]],
        sorted(Path("reported").glob("*.yaml")),  # the papers' numbers the tables are compared with
    output:
        # `snakemake --report report.html` shows every table, claims table and figure of the built studies.
        # update(): Snakemake neither removes the old tables before the job nor keeps the remains of a job
        # that failed; it restores the old ones (and `rdml tables` replaces them only once all is written).
        update(report(directory(paths.tables_dir("{study}")), patterns=["{name}.html", "{name}.png"], category="{study}")),
        update(directory(paths.curves_dir("{study}"))),
        update(paths.summary_file("{study}")),
    params:
        spec=lambda w: json.dumps(config["studies"][w.study], sort_keys=True),
        code=CODE["reporting"],
    shell:
        "rdml tables {wildcards.study:q} --spec {params.spec:q}"


onsuccess:
    # Snakemake runs jobs in parallel, DVC does not: record the DVC state once, here, never per job,
    # and only when what ran is what params.yaml says (not under --config / --configfile overrides).
    if Path("dvc.yaml").is_file() and Path(".dvc").is_dir() and load_params("params.yaml") != config:
        print("rdml: Snakemake ran with overrides of params.yaml; dvc.lock is left as it was")
    elif Path("dvc.yaml").is_file() and Path(".dvc").is_dir():
        try:
            shell("rdml pipeline code")  # the code stamps of what was built: DVC's `code` stage outputs
            shell("dvc commit --force --quiet")
        except Exception:
            print("rdml: `dvc commit` failed (are all stages of dvc.yaml built? see `rdml pipeline dvc-yaml`)")
