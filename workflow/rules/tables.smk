# The report (`snakemake --report`): its landing page, and each output's place in it (report_kind) with a
# caption per output (workflow/report/). Writing tables takes seconds: the tables and scorecard rules run
# on the host that runs Snakemake.
from rdml.report.scorecard import SCORECARD, write_scorecard

report: "../report/workflow.rst"


def report_kind(wildcards):
    """The subcategory of a file of a study's tables folder, from its name (`fig_<name>.png`, `<table>.paper.html`,
    `claims.html`, `compute.html`, else `<table>.html`), as workflow/report/tables.rst tells them apart."""
    if wildcards.name.startswith("fig_"):
        return "Figures"
    if wildcards.name.endswith(".paper"):
        return "Paper comparison"
    return {"claims": "Claims", "compute": "Compute"}.get(wildcards.name, "Tables")


rule measure:
    """Measurements of one trained run's final models that the study's analysis tables read (DML §4.8)."""
    input:
        lambda w: JOB_OF[w.study][w.run].file,
        # the runs its measurements read beside it (a landscape's OKDPH run, rdml.keys.PARTNER)
        lambda w: [JOB_OF[w.study][partner].file for partner in measurement_partners(MEASURED[w.study][w.run][1])],
    output:
        paths.measures_file("{study}", "{run}"),
    params:
        spec=lambda w: spec_text(measure_spec(w.study, w.run)),  # what reruns it; it travels as a file (onstart)
        code=lambda w: measured_code(w.study, w.run),
    resources:
        gpu=1,
        mem_mb=JOB_MEM_MB,
        runtime=lambda w: measure_runtime(MEASURED[w.study][w.run][1]),  # rdml.pipeline.requests: an estimate
    log:
        job_log("{study}", "measure/{run}"),  # its output, as a training job's (rdml.pipeline.console)
    threads: THREADS
    shell:
        "exec rdml pipeline measure {wildcards.study:q} {wildcards.run:q} --gpus $RDML_GPUS --jobs-per-gpu $RDML_JOBS_PER_GPU --threads $RDML_THREADS --die-with-parent --spec-file results/{wildcards.study:q}/specs/measure/{wildcards.run:q}.json --log {log:q}"


rule tables:
    input:
        lambda w: [job.file for job in JOBS[w.study].values()],
        lambda w: [paths.measures_file(w.study, run_id) for run_id in MEASURED[w.study]],
        sorted(Path("reported").glob("*.yaml")),  # the papers' numbers the tables are compared with
    output:
        # `snakemake all_tables --report report.zip` shows every table, paper comparison, claims
        # table, figure and compute summary of the built studies, one category per study (report_kind).
        # update(): Snakemake neither removes the old tables before the job nor keeps the remains of a job
        # that failed; it restores the old ones (and `rdml tables` replaces them only once all is written).
        update(report(directory(paths.tables_dir("{study}")), patterns=["{name}.html", "{name}.png"],
                      caption="../report/tables.rst", category="{study}", subcategory=report_kind)),
        update(directory(paths.curves_dir("{study}"))),
        update(paths.summary_file("{study}")),
    params:
        spec=lambda w: spec_text(config["studies"][w.study]),  # what reruns it; it travels as a file (onstart)
        code=CODE["reporting"],
    shell:
        "rdml tables {wildcards.study:q} --spec-file results/{wildcards.study:q}/specs/tables.json"


rule scorecard:
    """The reproduction scorecard (rdml.report.scorecard): per paper and built study, the papers' printed
    numbers against our intervals, the claims' verdicts and the compute measured, read from the tables
    `rdml tables` wrote (which rewrites it too: this rule declares it, for the report and for a target)."""
    input:
        [paths.tables_dir(study) for study in BUILD],
        sorted(Path("reported").glob("*.yaml")),  # which paper printed each number
    output:
        report(f"{SCORECARD}.html", caption="../report/scorecard.rst", category="All studies", subcategory="Scorecard"),
        f"{SCORECARD}.md",
    params:
        code=CODE["reporting"],
    localrule: True
    run:
        write_scorecard(".")


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
