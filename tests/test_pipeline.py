"""The pipeline end to end on a small synthetic study: Snakemake, DVC, tables, audit, push/pull.

Every test works in a copy of the project in a temporary directory, never in the repository's own
results/, .snakemake/ or dvc.lock. The tests that share the `project` directory run in order: build,
no-op repro, code edits, change a parameter, push/pull, audit (which corrupts a file last).
"""

import contextlib
import copy
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import BIN, REPO, SMOKE, copy_project, make_project, sh
from rdml.config import ConfigError, config_from_mapping
from rdml.pipeline.jobs import run_job
from rdml.study.params import load_params
from rdml.study.plan import find_job, plan_jobs, plan_study
from rdml.train.loop import train

pytestmark = pytest.mark.system  # Snakemake and DVC on a copy of the project, end to end


def scheduled(cwd, *extra):
    """The commands a Snakemake dry run would run."""
    return sh(str(BIN / "snakemake"), "all_tables", "-n", "-p", "--cores", "2", *extra, cwd=cwd).stdout


def scheduled_jobs(cwd, *extra):
    """Job ids a Snakemake dry run would train, read from the commands it prints."""
    return set(re.findall(r"rdml pipeline run \S+ (\S+) --gpus", scheduled(cwd, *extra)))


def records(project):
    return {p.parent.relative_to(project / "results/smoke/runs").as_posix(): json.loads(p.read_text())
            for p in (project / "results/smoke/runs").glob("*/*/record.json")}


@pytest.fixture(scope="module")
def project(tmp_path_factory, smoke_build):
    """This module's copy of the session's smoke build (conftest.smoke_build: dvc_project(SMOKE), then
    `snakemake all_tables --cores 2`), which the tests below change in turn."""
    return copy_project(smoke_build.root, tmp_path_factory.mktemp("project") / "smoke")


def test_committed_dvc_yaml_is_generated_from_params_and_matches_snakemake(tmp_path):
    generated = sh(str(BIN / "rdml"), "pipeline", "dvc-yaml", "--out", "-", cwd=REPO).stdout
    assert (REPO / "dvc.yaml").read_text() == generated, "dvc.yaml is stale: run `rdml pipeline dvc-yaml`"
    params = load_params(REPO / "params.yaml")
    jobs = [job for study in params["build"] for job in plan_jobs(params, study)]
    in_dvc = {stage["cmd"].split()[-1] for stage in yaml.safe_load(generated)["stages"].values()
              if stage["cmd"].startswith("rdml pipeline run")}
    assert {job.id for job in jobs} == in_dvc == scheduled_jobs(make_project(tmp_path))
    assert len(jobs) == 16 and sum(len(job.runs) for job in jobs) == 46  # 3 seeds per job, one teacher


def test_resources_after_the_target_works_before_it_crashes(tmp_path):
    project = make_project(tmp_path)
    good = sh(str(BIN / "snakemake"), "all_tables", "--cores", "8", "--resources", "gpu=4", "-n", cwd=project, check=False)
    bad = sh(str(BIN / "snakemake"), "--cores", "8", "--resources", "gpu=4", "all_tables", "-n", cwd=project, check=False)
    assert good.returncode == 0 and bad.returncode != 0


def test_snakemake_builds_the_tables_and_dvc_then_has_nothing_to_do(project, smoke_build):
    planned = {r.id for r in plan_study(load_params(project / "params.yaml"), "smoke")}
    # the dry run before the build, and the build (`sh`: it failed the fixture unless it exited 0), are the session's
    before_build = set(re.findall(r"rdml pipeline run \S+ (\S+) --gpus", smoke_build.dry_run))
    assert before_build == planned and len(planned) == 8  # one seed: a job is a run
    assert smoke_build.build.returncode == 0
    tables = project / "results/smoke/tables"
    for name in ("rdml_table", "kd_table", "pair_table"):
        for suffix in ("md", "tex", "csv", "cells.json"):
            assert (tables / f"{name}.{suffix}").is_file()
    before = records(project)
    assert set(before) == planned and all(r["status"] == "ok" for r in before.values())
    assert "up to date" in sh(str(BIN / "dvc"), "status", cwd=project).stdout
    sh(str(BIN / "dvc"), "repro", cwd=project)
    assert records(project) == before
    assert scheduled_jobs(project) == set()


def test_report_plots_and_metrics_show_what_was_built(project):
    """`snakemake --report` holds every table, the claims and the figures; `dvc plots show` draws one plot per
    panel of a table's curves, its methods as lines, in the table's unit; `dvc metrics show` lists one value
    per table cell under keys of letters, digits and underscores."""
    sh(str(BIN / "snakemake"), "all_tables", "--report", "report.html", cwd=project)
    report = (project / "report.html").read_text(errors="replace")
    assert all(name in report for name in ("claims.html", "rdml_table.html", "fig_curves_rdml_table.png", "fig_renyi.png"))
    (project / "report.html").unlink()
    plots = json.loads(sh(str(BIN / "dvc"), "plots", "show", "--json", cwd=project).stdout)
    assert not plots.get("errors"), plots["errors"]
    assert sorted(plots["data"]) == ["smoke/kd_table/Average_accuracy", "smoke/pair_table/synthetic_mlp_cnn",
                                     "smoke/rdml_table/synthetic_mlp"], sorted(plots["data"])
    [plot] = plots["data"]["smoke/rdml_table/synthetic_mlp"]
    values = plot["content"]["data"]["values"]
    assert {datum["field"] for datum in values} == {"Ind", "DML", "RDML_alpha_2"}
    figure = pd.read_csv(project / "results/smoke/tables/fig_curves_rdml_table.csv")
    dml = figure[figure.line == "DML"].groupby("epoch")["test_acc (%)"].mean()
    drawn = {int(d["epoch"]): float(d["dvc_inferred_y_value"]) for d in values if d["field"] == "DML"}
    assert drawn == pytest.approx(dml.to_dict(), abs=1e-6)  # the figure's mean line, in %
    assert "Ind., DML and RDML per α" in plot["content"]["title"]["text"]
    for definition in yaml.safe_load((project / "dvc.yaml").read_text())["plots"]:  # planned columns = written ones
        [(file, columns)] = next(iter(definition.values()))["y"].items()
        assert (project / file).read_text().splitlines()[0].split(",") == ["epoch", *columns]
    metrics = json.loads(sh(str(BIN / "dvc"), "metrics", "show", "--json", cwd=project).stdout)[""]["data"]
    summary = json.loads((project / "results/smoke/summary.json").read_text())
    cells = json.loads((project / "results/smoke/tables/rdml_table.cells.json").read_text())["cells"]
    assert summary["rdml_table"]["RDML_alpha_2"]["synthetic_mlp_1"] == pytest.approx(100 * cells["RDML α=2|synthetic/mlp/1"]["mean"])
    assert metrics["results/smoke/summary.json"]["data"] == summary


def edited(path: Path, line: str):
    """A context in which `path` has `line` appended (a new file: holds it); the file's own bytes (or its
    absence) come back afterwards."""
    import contextlib

    @contextlib.contextmanager
    def context():
        original = path.read_bytes() if path.exists() else None
        path.write_bytes((original or b"") + line.encode())
        try:
            yield
        finally:
            if original is None:
                path.unlink()
            else:
                path.write_bytes(original)

    return context()


@contextlib.contextmanager
def rewritten(path: Path, old: str, new: str):
    """A context in which the first `old` of `path` reads `new` (its module docstring, say)."""
    original = path.read_bytes()
    path.write_text(original.decode().replace(old, new, 1))
    try:
        yield
    finally:
        path.write_bytes(original)


def test_code_edits_rerun_exactly_the_results_that_run_that_code(project):
    """Snakemake (a rule parameter) and DVC (a code stamp, refreshed by the `code` stage) rerun a job when
    the code its runs execute changed (rdml.dependencies): a comment, a docstring or a new method module
    reruns nothing, a table edit the tables only, a DML-loss edit exactly the DML jobs."""
    plan = plan_jobs(load_params(project / "params.yaml"), "smoke")
    dml = [job for job in plan if job.runs[0].method == "dml"]
    assert dml and len(dml) < len(plan)
    src = project / "src/rdml"

    def dvc_stale() -> set[str]:
        sh(str(BIN / "dvc"), "repro", "--single-item", "code", cwd=project)
        return set(re.findall(r"^(\S+):$", sh(str(BIN / "dvc"), "status", cwd=project).stdout, re.M))

    with edited(src / "report/table.py", "\n\ndef _unused():\n    return 0\n"):
        assert scheduled_jobs(project) == set() and "rdml tables smoke" in scheduled(project)
        assert dvc_stale() == {"tables-smoke"}
    method = '@METHODS.register("throwaway")\nclass Throwaway(Method):\n    name = "throwaway"\n'
    with edited(src / "core/mutual.py", "# a comment\n"), rewritten(src / "train/loop.py", '"""', '"""Trains a run. '), \
            edited(src / "methods/throwaway.py", "from rdml.methods.base import METHODS, Method\n" + method), \
            edited(src / "methods/__init__.py", "from rdml.methods import throwaway  # noqa: F401\n"):
        assert scheduled_jobs(project) == set() and "rdml tables" not in scheduled(project)
        assert dvc_stale() == set()
    with edited(src / "core/mutual.py", "\n\ndef _unused():\n    return 0\n"):
        assert scheduled_jobs(project) == {job.id for job in dml}
        assert dvc_stale() == {job.stage for job in dml}
    assert dvc_stale() == set()  # the files as they were: the stamps as they were, nothing to rerun
    assert scheduled_jobs(project) == set() and "up to date" in sh(str(BIN / "dvc"), "status", cwd=project).stdout


def test_where_jobs_run_is_no_reason_to_retrain(project):
    """GPU slots and jobs per GPU reach the jobs through the environment, not as rule parameters."""
    assert scheduled_jobs(project, "--config", "gpus=3", "jobs_per_gpu=2") == set()
    assert "--gpus $RDML_GPUS --jobs-per-gpu $RDML_JOBS_PER_GPU" in (project / "workflow/rules/train.smk").read_text()


def test_changing_one_parameter_reruns_only_the_runs_it_affects(project):
    before = records(project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["studies"]["smoke"]["kd_table"]["temperature"] = 2.0
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    kd_runs = {k for k in before if "/kd-" in k}
    assert scheduled_jobs(project) == kd_runs
    sh(str(BIN / "dvc"), "repro", cwd=project)
    after = records(project)
    retrained = {k for k in after if after[k]["started_at"] != before[k]["started_at"] or after[k]["config_sha256"] != before[k]["config_sha256"]}
    assert retrained == kd_runs
    assert all(after[k]["config"]["temperature"] == 2.0 for k in kd_runs)
    cells = json.loads((project / "results/smoke/tables/kd_table.cells.json").read_text())
    assert cells["cells"]["synthetic: α=2|Average accuracy"]["mean"] == after["synthetic/kd-mlp-from-cnn-a2-s0"]["summary"]["student_0"]["final_acc"]


@contextlib.contextmanager
def params_edited(project: Path, edit):
    """params.yaml changed by `edit` for the duration; the original comes back afterwards."""
    path = project / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    edit(params["studies"]["smoke"])
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        yield
    finally:
        path.write_text(original)


def files_of(project: Path) -> dict:
    return {p: p.read_bytes() for p in (project / "results/smoke").rglob("*") if p.is_file() and p.name != ".rdml.lock"}


@pytest.mark.fault
def test_a_bad_value_in_params_is_refused_at_plan_time_and_destroys_nothing(project):
    before = files_of(project)
    with params_edited(project, lambda s: s["train"].update(lr=-0.1)):
        dry = sh(str(BIN / "snakemake"), "all_tables", "-n", cwd=project, check=False)
        assert dry.returncode != 0 and "lr=-0.1 is not allowed" in dry.stdout + dry.stderr
        generate = sh(str(BIN / "rdml"), "pipeline", "dvc-yaml", "--out", "-", cwd=project, check=False)
        assert generate.returncode == 2 and "lr=-0.1 is not allowed" in generate.stderr
        assert sh(str(BIN / "dvc"), "repro", cwd=project, check=False).returncode != 0
    assert files_of(project) == before  # the teacher and every run survived, byte for byte


@pytest.mark.bad_input
def test_a_misspelt_study_key_is_refused_at_plan_time():
    params = copy.deepcopy(SMOKE)
    params["studies"]["smoke"]["rdml_tabel"] = params["studies"]["smoke"].pop("rdml_table")
    with pytest.raises(ConfigError, match="studies.smoke: unknown key.s. rdml_tabel; allowed: "):
        plan_study(params, "smoke")


@pytest.mark.parametrize("edit,message", [
    (lambda s: s["kd_table"].update(temprature=1.0), "studies.smoke.kd_table: unknown key(s) temprature; allowed: student"),
    (lambda s: s["teacher"].update(seeed=5), "studies.smoke.teacher: unknown key(s) seeed; allowed: arch, seed, train"),
    (lambda s: s.update(metric="last5"), "metric=last5 needs summary_last to hold 5 and epochs >= 5"),
])
@pytest.mark.bad_input
def test_a_study_that_cannot_give_its_tables_is_refused_at_plan_time(edit, message):
    params = copy.deepcopy(SMOKE)
    edit(params["studies"]["smoke"])
    with pytest.raises(ConfigError, match=re.escape(message)):
        plan_study(params, "smoke")


@pytest.mark.bad_input
def test_a_bad_gpus_value_is_refused(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**SMOKE, "gpus": "two"}))
    with pytest.raises(ConfigError, match="gpus='two' is not allowed; allowed: auto or an integer >= 0"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.bad_input
def test_a_name_that_reaches_a_shell_is_validated(project):
    with params_edited(project, lambda s: s["rdml_table"].update(archs=["x||touch PWNED;#"])):
        dry = sh(str(BIN / "snakemake"), "all_tables", "-n", "-p", cwd=project, check=False)
        assert dry.returncode != 0 and "arch='x||touch PWNED;#' is not allowed" in dry.stdout + dry.stderr
        assert sh(str(BIN / "rdml"), "pipeline", "dvc-yaml", "--out", "-", cwd=project, check=False).returncode == 2
    assert not (project / "PWNED").exists()


@pytest.mark.fault
def test_a_run_deleted_on_disk_is_rebuilt(project):
    sh(str(BIN / "snakemake"), "all_tables", "--cores", "2", cwd=project)  # Snakemake catches up with `dvc repro` above
    before = records(project)
    shutil.rmtree(project / "results/smoke/runs/synthetic/independent-mlp-s0")
    job = project / "results/smoke/jobs/synthetic/independent-mlp-s0.json"
    looked = sh(str(BIN / "snakemake"), "all_tables", "-n", "--cores", "2", cwd=project)  # says so, removes nothing
    assert "rdml pipeline prune" in looked.stderr and job.is_file() and (project / "results/smoke/tables").is_dir()
    pruned = sh(str(BIN / "rdml"), "pipeline", "prune", cwd=project).stdout
    assert f"removed {job.relative_to(project)}" in pruned and not (project / "results/smoke/tables").exists()
    sh(str(BIN / "snakemake"), "all_tables", "--cores", "2", cwd=project)
    after = records(project)
    assert after["synthetic/independent-mlp-s0"]["epochs"] == before["synthetic/independent-mlp-s0"]["epochs"]
    assert {k for k in after if after[k]["started_at"] != before[k]["started_at"]} == {"synthetic/independent-mlp-s0"}
    assert scheduled_jobs(project) == set() and (project / "results/smoke/tables/rdml_table.md").is_file()


@pytest.mark.fault
def test_jobs_die_with_a_killed_snakemake_and_the_rerun_finishes(tmp_path):
    params = copy.deepcopy(SMOKE)
    study = params["studies"]["smoke"]
    study.update(train={"epochs": 400}, rdml_table={"archs": ["cnn"], "alphas": []})
    for key in ("kd_table", "pair_table", "teacher"):
        del study[key]
    (tmp_path / "p").mkdir()
    project = make_project(tmp_path / "p", params)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    snakemake = subprocess.Popen([str(BIN / "snakemake"), "all_tables", "--cores", "2"], cwd=project, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    jobs = lambda: subprocess.run(["pgrep", "-f", f"rdml pipeline run smoke"], capture_output=True, text=True).stdout.split()
    deadline = time.monotonic() + 60
    while not jobs() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert jobs(), "no training job started"
    time.sleep(2)
    snakemake.kill()
    snakemake.wait()
    deadline = time.monotonic() + 20
    while jobs() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not jobs(), "training jobs outlived Snakemake"
    params["studies"]["smoke"]["train"]["epochs"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(str(BIN / "snakemake"), "--unlock", cwd=project)  # Snakemake's own lock is left by a SIGKILL
    sh(str(BIN / "snakemake"), "all_tables", "--cores", "2", cwd=project)
    assert (project / "results/smoke/tables/rdml_table.md").is_file()


def test_dvc_push_and_pull_through_a_local_remote(project, tmp_path):
    sh(str(BIN / "dvc"), "remote", "add", "-d", "store", str(tmp_path / "remote"), cwd=project)
    sh(str(BIN / "dvc"), "push", cwd=project)
    model = project / "results/smoke/runs/synthetic/teacher-cnn-s0/model.pt"
    expected = records(project)["synthetic/teacher-cnn-s0"]["final_model"]["sha256"]
    shutil.rmtree(project / "results/smoke/runs")
    shutil.rmtree(project / ".dvc/cache")
    sh(str(BIN / "dvc"), "pull", cwd=project)
    import hashlib

    assert hashlib.sha256(model.read_bytes()).hexdigest() == expected
    assert "up to date" in sh(str(BIN / "dvc"), "status", cwd=project).stdout


@pytest.mark.tamper
def test_audit_verifies_every_hash_and_names_a_corrupted_checkpoint(project):
    table = "results/smoke/tables/kd_table.cells.json"
    cell = "synthetic: α=1|Average accuracy"
    ok = sh(str(BIN / "rdml"), "audit", table, cell, cwd=project)
    assert "teacher run" in ok.stdout and "OK: every hash matches" in ok.stdout
    unknown = sh(str(BIN / "rdml"), "audit", table, "nope|x", cwd=project, check=False)
    assert unknown.returncode == 2 and "cells are" in unknown.stderr
    model = project / "results/smoke/runs/synthetic/teacher-cnn-s0/model.pt"
    model.chmod(0o644)
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    bad = sh(str(BIN / "rdml"), "audit", table, cell, cwd=project, check=False)
    assert bad.returncode == 1
    assert f"{model.relative_to(project)}: teacher checkpoint sha256 is" in bad.stdout


def test_jobs_group_the_seeds_of_one_configuration():
    params = copy.deepcopy(SMOKE)
    params["studies"]["smoke"].update(seeds=[2, 0, 1], seeds_per_job=2)
    jobs = plan_jobs(params, "smoke")
    assert jobs[0].id == "synthetic/teacher-cnn-s0" and len(jobs[0].runs) == 1  # one teacher, first
    by_id = {job.id: [run.id for run in job.runs] for job in jobs}
    assert by_id["synthetic/kd-mlp-from-cnn-a2-s0+1"] == ["synthetic/kd-mlp-from-cnn-a2-s0", "synthetic/kd-mlp-from-cnn-a2-s1"]
    assert by_id["synthetic/kd-mlp-from-cnn-a2-s2"] == ["synthetic/kd-mlp-from-cnn-a2-s2"]
    assert sorted(r for runs in by_id.values() for r in runs) == sorted(r.id for r in plan_study(params, "smoke"))
    params["studies"]["smoke"]["seeds_per_job"] = 0
    with pytest.raises(ConfigError, match="studies.smoke.seeds_per_job=0 is not allowed; it must be an integer >= 1"):
        plan_jobs(params, "smoke")


def test_each_run_of_a_job_is_what_it_would_be_alone(tmp_path, monkeypatch):
    """Runs that share a process do not share state: seed 1 after seed 0 equals seed 1 alone, bit for bit."""
    params = copy.deepcopy(SMOKE)
    study = params["studies"]["smoke"]
    study.update(seeds=[0, 1], seeds_per_job=2)
    for table in ("kd_table", "pair_table"):
        del study[table]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    records = run_job(find_job(load_params("params.yaml"), "smoke", "synthetic/dml-mlp+mlp-a2-s0+1").spec(), gpus=0, threads=1)
    assert [r["seed"] for r in records] == [0, 1]
    assert records[1]["command"] == ["rdml", "pipeline", "run", "smoke", "synthetic/dml-mlp+mlp-a2-s0+1"]
    job = json.loads((tmp_path / "results/smoke/jobs/synthetic/dml-mlp+mlp-a2-s0+1.json").read_text())
    run_dir = tmp_path / "results/smoke/runs/synthetic/dml-mlp+mlp-a2-s1"
    assert job["runs"]["synthetic/dml-mlp+mlp-a2-s1"]["model_sha256"] == records[1]["final_model"]["sha256"]
    alone = train(config_from_mapping({**records[1]["config"], "out": str(tmp_path / "alone")}), progress=False)
    assert alone["epochs"] == records[1]["epochs"]
    together, single = (torch.load(d / "model.pt", weights_only=True)["states"] for d in (run_dir, tmp_path / "alone"))
    for a, b in zip(together, single):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_snakemake_overrides_reach_the_jobs(tmp_path, monkeypatch):
    """One source of truth at run time: the job trains what the DAG planned from Snakemake's config,
    overrides included: `--config gpus=2` reaches the job, a `--configfile` with another grid runs."""
    params = copy.deepcopy(SMOKE)
    study = params["studies"]["smoke"]
    study.update(train={"epochs": 1, "batch_size": 64}, rdml_table={"archs": ["mlp"], "alphas": []})
    for table in ("kd_table", "pair_table"):
        del study[table]
    del study["teacher"]
    (tmp_path / "project").mkdir()
    project = make_project(tmp_path / "project", params)
    other = copy.deepcopy(params)
    other["studies"]["smoke"]["seeds"] = [7]
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    monkeypatch.setenv("RDML_LOCK_DIR", str(tmp_path / "locks"))
    sh(str(BIN / "snakemake"), "all_tables", "--cores", "1", "--configfile", str(tmp_path / "other.yaml"),
       "--config", "gpus=2", cwd=project)
    runs = sorted((project / "results/smoke/runs/synthetic").iterdir())
    assert [r.name for r in runs] == ["dml-mlp+mlp-a1-s7", "independent-mlp-s7"]  # params.yaml says seed 0
    for run in runs:
        record = json.loads((run / "record.json").read_text())
        assert record["environment"]["gpu_slot"].startswith("slot ") and "of 2" in record["environment"]["gpu_slot"]
        assert record["config"]["epochs"] == 1 and record["seed"] == 7


def test_dvc_compares_commits_in_a_clone_with_the_repositorys_own_gitignore(tmp_path):
    """In a git repository made from the project's files, its real .gitignore included: git keeps each study's
    summary, per-run metrics and curves (never the runs), so after a committed build and a changed learning
    rate `dvc metrics diff` names the moved cells, `dvc plots diff HEAD~1` and `dvc exp show` load both
    commits, and every metric key is one a shell and a Markdown table carry."""
    params = {"build": ["smoke"], "gpus": 0, "studies": {"smoke": {
        "datasets": ["synthetic"], "seeds": [0], "metric": "final", "train": {"epochs": 1, "batch_size": 64, "lr": 0.05},
        "rdml_table": {"archs": ["mlp"], "alphas": [2.0]}}}}
    root = make_project(tmp_path, params)
    shutil.copy(REPO / ".gitignore", root)
    git = ["git", "-c", "user.name=rdml", "-c", "user.email=rdml@example.org"]
    sh("git", "init", "-q", cwd=root)
    sh(str(BIN / "dvc"), "init", "-q", cwd=root)
    sh(str(BIN / "rdml"), "pipeline", "dvc-yaml", cwd=root)
    sh(str(BIN / "dvc"), "repro", "-q", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh(*git, "commit", "-q", "-m", "built", cwd=root)
    tracked = sh("git", "ls-files", "results", cwd=root).stdout.split()
    assert "results/smoke/summary.json" in tracked and "results/smoke/curves/rdml_table/synthetic_mlp.csv" in tracked
    assert "results/smoke/metrics/synthetic/dml-mlp+mlp-a1-s0.json" in tracked
    assert not [f for f in tracked if not re.match(r"results/smoke/(summary\.json|metrics/|curves/)", f)], tracked

    params["studies"]["smoke"]["train"]["lr"] = 0.2
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(str(BIN / "dvc"), "repro", "-q", cwd=root)
    diff = json.loads(sh(str(BIN / "dvc"), "metrics", "diff", "--json", cwd=root).stdout)
    moved = {key for key, change in diff["results/smoke/summary.json"].items() if change.get("diff")}
    assert "rdml_table.DML.synthetic_mlp_0" in moved, diff
    keys = [key for changes in diff.values() for key in changes]
    assert all(re.fullmatch(r"[A-Za-z0-9_.+-]+", key) for key in keys), [k for k in keys if not re.fullmatch(r"[\w.+-]+", k)]
    table = sh(str(BIN / "dvc"), "metrics", "diff", "--md", cwd=root).stdout.strip().splitlines()
    assert len(table) > 3 and len({line.count("|") for line in table}) == 1, table[:3]  # a well-formed Markdown table
    assert not json.loads(sh(str(BIN / "dvc"), "plots", "diff", "--json", cwd=root).stdout).get("errors")

    sh("git", "add", "-A", cwd=root)
    sh(*git, "commit", "-q", "-m", "lr 0.2", cwd=root)
    plots = json.loads(sh(str(BIN / "dvc"), "plots", "diff", "HEAD~1", "--json", cwd=root).stdout)
    assert not plots.get("errors"), plots["errors"]
    [plot] = plots["data"]["smoke/rdml_table/synthetic_mlp"]
    assert {d["rev"] for d in plot["content"]["data"]["values"]} == {"HEAD~1", "workspace"}
    shown = json.loads(sh(str(BIN / "dvc"), "exp", "show", "--json", cwd=root).stdout)
    assert len(shown) == 2 and not any(row["error"] for row in shown), shown  # the workspace and HEAD
    assert all(row["data"]["metrics"]["results/smoke/summary.json"]["data"]["rdml_table"]["DML"]["synthetic_mlp_0"]
               for row in shown)


def test_the_default_profile_is_picked_up_without_naming_it(tmp_path):
    """profiles/default gives --cores: a plain `snakemake <target>` runs instead of stopping with "cores have to
    be specified" (what it does without the profile)."""
    root = make_project(tmp_path, SMOKE)
    sh(str(BIN / "snakemake"), "results/data/synthetic.json", cwd=root)
    assert (root / "results/data/synthetic.json").is_file()
    shutil.rmtree(root / "profiles")
    result = sh(str(BIN / "snakemake"), "results/data/synthetic.json", "--forceall", cwd=root, check=False)
    assert result.returncode != 0 and "cores" in result.stdout + result.stderr


def test_a_jobs_shell_line_is_short_and_names_its_spec_file_and_log(tmp_path):
    """The job's spec (up to 1.6 KB of JSON) travels as a file Snakemake writes when it starts, not on the
    command line every job prints; its log is declared, so a failed job's message names it; a dry run writes
    no spec file."""
    from rdml.pipeline.console import job_log
    from rdml.pipeline.specs import spec_file, tables_spec_file

    project = make_project(tmp_path, SMOKE)
    lines = [line for line in scheduled(project).splitlines() if "rdml pipeline run" in line]
    assert len(lines) == 8 and not (project / "results").exists()
    [tables] = [line for line in scheduled(project).splitlines() if "rdml tables" in line]
    assert tables.endswith(f"rdml tables smoke --spec-file {tables_spec_file('smoke')}")  # the study's section, as a file too
    for line in lines:
        job = re.search(r"rdml pipeline run smoke (\S+) --gpus", line).group(1)
        assert line.endswith(f"--spec-file {spec_file('smoke', job)} --log {job_log('smoke', job)}")
        assert "{" not in line and len(line) < 320, line
