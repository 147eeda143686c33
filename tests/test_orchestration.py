"""The same numbers whichever command runs a study, and no refused or failed command loses an output.

One thread count (params.yaml's `threads`) for Snakemake, DVC and `rdml pipeline run`; one model.pt for one
set of weights; a study that cannot give its tables (a seed twice, at_best_val without a validation split,
a CUDA device this host lacks) refused when planned; tables replaced only once the new ones are complete,
one command at a time; a failed job never costs a finished run.
"""

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import BIN, SMOKE, make_project
from rdml.config import load_config
from rdml.keys import ConfigError
from rdml.pipeline.dvc import dvc_stages
from rdml.pipeline.jobs import job_threads, run_job
from rdml.report import write
from rdml.report.write import write_tables
from rdml.study.params import load_params, with_smoke_studies
from rdml.study.params import thread_count
from rdml.study import plan as plan_module
from rdml.study.plan import find_job, plan_jobs, plan_study
from rdml.train import loop
from rdml.train.loop import train
from test_tables import PARAMS as FABRICATED, fabricate


def tiny(**train) -> dict:
    """A study of two runs (Ind. and DML of an MLP), one epoch each."""
    params = copy.deepcopy(SMOKE)
    study = params["studies"]["smoke"]
    study.update(train={"epochs": 1, "batch_size": 64, **train}, rdml_table={"archs": ["mlp"], "alphas": []})
    for key in ("kd_table", "pair_table", "teacher"):
        del study[key]
    return params


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A working directory holding `tiny()` as params.yaml; torch's thread count restored afterwards."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny()))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RDML_LOCK_DIR", str(tmp_path / "locks"))
    threads = torch.get_num_threads()
    yield tmp_path
    torch.set_num_threads(threads)


def load_params_from(params: dict) -> dict:
    """`params` as rdml.study.params.load_params gives it: with the smoke variants."""
    return with_smoke_studies(params)


def files_under(*folders: Path) -> dict:
    return {p: p.read_bytes() for f in folders for p in ([f] if f.is_file() else sorted(f.rglob("*"))) if p.is_file()
            and p.name != ".rdml.lock"}


# ---- 1. threads ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0, -4, "two", True, 1.5])
@pytest.mark.bad_input
def test_a_thread_count_that_is_not_a_positive_integer_is_refused(value):
    with pytest.raises(ConfigError, match=f"threads={value!r} is not allowed; allowed: an integer >= 1"):
        thread_count({"threads": value})
    with pytest.raises(ConfigError, match="threads="):
        plan_jobs({**tiny(), "threads": value}, "smoke")
    assert thread_count({}) == 1


def test_a_job_without_threads_takes_params_threads_and_records_what_torch_used(project):
    """DVC's stage command gives no --threads: the job takes params.yaml's, not torch's every core."""
    torch.set_num_threads(2)  # what torch picks on a two-core host
    spec = find_job(load_params("params.yaml"), "smoke", "synthetic/independent-mlp-s0").spec()
    [record] = run_job(spec, gpus=0)
    assert record["environment"]["threads"] == 1 == job_threads(None)
    params = {**tiny(), "threads": 2}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert job_threads(None) == 2 and job_threads(3) == 3
    with pytest.raises(ConfigError, match="threads=-4 is not allowed"):
        run_job(spec, gpus=0, threads=-4)


def test_snakemake_and_dvc_hand_every_job_params_threads():
    """Snakemake's jobs read the count from the environment the Snakefile sets (no rule parameter, like the GPU
    slots), DVC's stage command gives none, so `rdml pipeline run` reads params.yaml: one number either way."""
    rules = (Path(__file__).parents[1] / "workflow/rules/train.smk").read_text()
    assert "--threads $RDML_THREADS" in rules and "{threads}" not in rules
    stages = dvc_stages(load_params_from(tiny()), ["smoke"])
    assert all("--threads" not in stage["cmd"] for stage in stages.values())


# ---- 2. model.pt bytes ------------------------------------------------------------------------------------

def test_one_set_of_weights_gives_one_model_file_through_rdml_train_and_through_a_spec(project):
    """Snakemake hands the job as JSON (["mlp", "mlp"]: two strings); `rdml train arch=mlp` repeats one string."""
    torch.set_num_threads(1)
    job = find_job(load_params("params.yaml"), "smoke", "synthetic/dml-mlp+mlp-a1-s0")
    [record] = run_job(json.loads(json.dumps(job.spec())), gpus=0, threads=1)
    alone = train(load_config(None, ["dataset=synthetic", "method=dml", "arch=mlp", "alpha=1", "seed=0", "epochs=1",
                                     "batch_size=64", "out=alone"]), progress=False)
    assert alone["config_sha256"] == record["config_sha256"]
    assert (project / "alone/model.pt").read_bytes() == (project / job.runs[0].directory / "model.pt").read_bytes()


# ---- 3. refused or failed commands keep outputs -----------------------------------------------------------

@pytest.mark.bad_input
def test_at_best_val_without_a_validation_split_is_refused_when_planned():
    params = tiny()
    params["studies"]["smoke"]["metric"] = "at_best_val"
    with pytest.raises(ConfigError, match="studies.smoke: metric=at_best_val, which reads the validation split of "
                                          "run synthetic/.*, but it has val_fraction=0"):
        plan_study(params, "smoke")
    params["studies"]["smoke"]["train"]["val_fraction"] = 0.2
    assert len(plan_study(params, "smoke")) == 2


@pytest.mark.bad_input
def test_alpha_chosen_by_validation_without_a_validation_split_is_refused_when_planned():
    """text_table picks α by the students' best validation accuracy: with val_fraction 0 `rdml tables`
    would find no validation accuracy to pick by, after every run had trained."""
    params = tiny()
    params["studies"]["smoke"]["text_table"] = {"archs": ["mlp"], "alphas": [2.0]}
    with pytest.raises(ConfigError, match=r"studies.smoke: table text_table chooses synthetic/mlp/val by validation "
                                          r"accuracy, which reads the validation split of run synthetic/dml-mlp\+mlp-a1-s0, "
                                          r"but it has val_fraction=0 \(no validation split\)"):
        plan_study(params, "smoke")
    params["studies"]["smoke"]["train"]["val_fraction"] = 0.2
    assert plan_study(params, "smoke")


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
@pytest.mark.bad_input
def test_a_cuda_device_this_host_lacks_is_refused_when_planned(device, monkeypatch):
    monkeypatch.setattr(plan_module, "count_gpus", lambda: 0)
    for gpus in (0, "auto"):
        with pytest.raises(ConfigError, match=f"studies.smoke: run synthetic/.* asks for device={device}, but this host "
                                              f"has no CUDA GPU \\(gpus={gpus}\\)"):
            plan_jobs({**tiny(device=device), "gpus": gpus}, "smoke")
    assert len(plan_jobs({**tiny(device=device), "gpus": 2}, "smoke")) == 2  # GPUs where the jobs run (SLURM)


def kd_only() -> dict:
    """A study of a KD table alone: Ind., KD and teacher runs, no DML run."""
    params = copy.deepcopy(SMOKE)
    for key in ("rdml_table", "pair_table"):
        del params["studies"]["smoke"][key]
    return params


UNREAD_KEYS = {  # a key no run it reaches reads → the message's start
    "beta in train, no KD run": (lambda: tiny(beta=0.5), "studies.smoke.train.beta: no run it reaches reads beta "
                                 r"\(their methods: dml, independent\); beta is a key of kd"),
    "mimic_weight in train, no DML run": (lambda: kd_only() | {"_": {"train": {"mimic_weight": 0.5}}},
                                          "studies.smoke.train.mimic_weight: .* mimic_weight is a key of dml, dml_e"),
    "beta in teacher.train": (lambda: kd_only() | {"_": {"teacher": {"arch": "cnn", "train": {"beta": 0.5}}}},
                              r"studies.smoke.teacher.train.beta: no run it reaches reads beta \(their methods: teacher\)"),
    "kd_scale in train_where": (lambda: tiny() | {"_": {"train_where": [{"archs": ["mlp"], "train": {"kd_scale": False}}]}},
                                r"studies.smoke.train_where\[0\].train.kd_scale: .* kd_scale is a key of kd"),
}


def _spoilt(make) -> dict:
    params = make()
    params["studies"]["smoke"].update(params.pop("_", {}))
    return params


@pytest.mark.parametrize("case", UNREAD_KEYS)
@pytest.mark.bad_input
def test_a_study_key_no_planned_run_reads_is_refused_when_planned(case):
    """A method's key given to a study none of whose runs (there) is of that method would change the runs'
    identities (rdml.run/1 gave every run every such key) and nothing else; or, for a newer key, vanish."""
    make, message = UNREAD_KEYS[case]
    with pytest.raises(ConfigError, match=message):
        plan_study(_spoilt(make), "smoke")


def test_a_study_key_some_planned_run_reads_is_taken_by_all_runs_as_before():
    """`update_order: sequential` for a study with DML runs: DML reads it, its Ind. runs keep their identities."""
    for keys in ({"update_order": "sequential"}, {"mimic_weight": 0.5}, {"beta": 0.5}):
        params = tiny(**keys) if "beta" not in keys else _spoilt(lambda: kd_only() | {"_": {"train": keys}})
        assert plan_study(params, "smoke")


@pytest.mark.parametrize("device", ["cuda:1", "cuda:7"])
@pytest.mark.bad_input
def test_a_cuda_device_other_than_the_jobs_one_is_refused_when_planned(device):
    """Each job is pinned to one GPU (CUDA_VISIBLE_DEVICES), which it sees as cuda:0: cuda:1 could never run."""
    with pytest.raises(ConfigError, match=f"studies.smoke: run synthetic/.* asks for device={device}, but the pipeline "
                                          "gives each job one GPU, which it sees as cuda \\(or cuda:0\\)"):
        plan_jobs({**tiny(device=device), "gpus": 2}, "smoke")


@pytest.mark.fault
def test_a_job_rerun_after_a_failure_keeps_its_finished_runs(project):
    """A failed job loses its job file (Snakemake removes it), so the job runs again once the failure is fixed:
    its finished runs, already what it would train, are kept, not trained again."""
    spec = find_job(load_params("params.yaml"), "smoke", "synthetic/independent-mlp-s0").spec()
    [first] = run_job(spec, gpus=0, threads=1)
    run_dir = project / "results/smoke/runs/synthetic/independent-mlp-s0"
    before = files_under(run_dir)
    [again] = run_job(spec, gpus=0, threads=1)
    assert again == first and files_under(run_dir) == before  # a retrained record would differ (its seconds)
    other = copy.deepcopy(spec)  # another configuration: trained anew
    other["runs"]["synthetic/independent-mlp-s0"]["lr"] = 0.2
    [changed] = run_job(other, gpus=0, threads=1)
    assert changed["config"]["lr"] == 0.2 and files_under(run_dir) != before
    before = files_under(run_dir)
    [threaded] = run_job(other, gpus=0, threads=2)  # other threads, other float32 sums: trained anew
    assert threaded["environment"]["threads"] == 2 and files_under(run_dir) != before


@pytest.mark.fault
def test_a_replacement_that_fails_before_training_keeps_the_finished_run(project, monkeypatch):
    """The old run's files go only once everything that can refuse the new one has passed."""
    spec = find_job(load_params("params.yaml"), "smoke", "synthetic/independent-mlp-s0").spec()
    run_job(spec, gpus=0, threads=1)
    run_dir = project / "results/smoke/runs/synthetic/independent-mlp-s0"
    before = files_under(run_dir)

    def refused(*args, **kwargs):
        raise ConfigError("no cohort here")

    monkeypatch.setattr(loop, "build_cohort", refused)
    spec["runs"]["synthetic/independent-mlp-s0"]["lr"] = 0.2
    with pytest.raises(ConfigError, match="no cohort here"):
        run_job(spec, gpus=0, threads=1)
    assert files_under(run_dir) == before


@pytest.fixture
def tables_project(tmp_path):
    """Fabricated sealed records of test_tables' study and its tables, written once."""
    fabricate(tmp_path, {})
    (tmp_path / "params.yaml").write_text(json.dumps(FABRICATED))
    write_tables("t", tmp_path / "params.yaml", tmp_path)
    return tmp_path


def outputs(root: Path) -> dict:
    return files_under(root / "results/t/tables", root / "results/t/curves", root / "results/t/summary.json")


@pytest.mark.fault
def test_tables_that_fail_half_way_leave_the_old_ones_whole(tables_project, monkeypatch):
    before = outputs(tables_project)
    params = copy.deepcopy(FABRICATED)
    params["studies"]["t"]["metric"] = "best"  # new tables differ from the old ones
    (tables_project / "params.yaml").write_text(json.dumps(params))

    def broken(*args):
        raise OSError(28, "No space left on device", "fig.png")

    monkeypatch.setattr(write, "write_figures", broken)
    with pytest.raises(ConfigError, match="cannot write the tables of t in .*No space left on device.*left as it was"):
        write_tables("t", tables_project / "params.yaml", tables_project)
    assert outputs(tables_project) == before
    assert [p.name for p in (tables_project / "results/t").iterdir() if p.name.startswith(".tables-")] == []
    monkeypatch.undo()
    del params["studies"]["t"]["pair_table"]  # a table the study no longer asks for is gone, as its runs' curves
    (tables_project / "params.yaml").write_text(json.dumps(params))
    write_tables("t", tables_project / "params.yaml", tables_project)
    tables = tables_project / "results/t/tables"
    assert not list(tables.glob("pair_table.*")) and (tables / "kd_table.md").is_file()
    assert json.loads((tables / "kd_table.cells.json").read_text())["metric"] == "best"


@pytest.mark.parametrize("blocked", ["tables", "curves", "summary.json"])
@pytest.mark.fault
def test_a_file_or_folder_in_the_way_of_the_tables_is_a_message(tables_project, blocked):
    place = tables_project / "results/t" / blocked
    shutil.rmtree(place) if place.is_dir() else place.unlink()
    if blocked == "summary.json":
        (place / "x").mkdir(parents=True)
    else:
        place.write_text("mine")
    before = outputs(tables_project)
    with pytest.raises(ConfigError, match=f"results/t/{blocked} is a (file|directory), where the .* of the study belong"):
        write_tables("t", tables_project / "params.yaml", tables_project)
    assert outputs(tables_project) == before


@pytest.mark.fault
def test_a_file_where_the_study_folder_belongs_is_a_message(tmp_path):
    fabricate(tmp_path, {})
    (tmp_path / "results/t/tables").parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp_path / "results/t/runs")  # the records are not read: the place is refused first
    blocker = tmp_path / "results/t"
    shutil.rmtree(blocker)
    blocker.write_text("mine")
    (tmp_path / "params.yaml").write_text(json.dumps(FABRICATED))
    with pytest.raises(ConfigError, match="cannot create .*results/t for the tables"):
        write_tables("t", tmp_path / "params.yaml", tmp_path)
    assert blocker.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.fault
def test_read_only_tables_are_a_message_and_left_alone(tables_project):
    tables = tables_project / "results/t/tables"
    before = outputs(tables_project)
    tables.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match="results/t/tables is read-only"):
            write_tables("t", tables_project / "params.yaml", tables_project)
    finally:
        tables.chmod(0o755)
    assert outputs(tables_project) == before


@pytest.mark.slow
@pytest.mark.fault
def test_concurrent_tables_commands_of_one_study_take_turns(tables_project):
    """Three `rdml tables` at once: each finishes, and the tables are those one alone writes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    before = outputs(tables_project)
    commands = [subprocess.Popen([sys.executable, "-m", "rdml.cli", "tables", "t", "--params", "params.yaml"],
                                 cwd=tables_project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(3)]
    for command in commands:
        _, err = command.communicate(timeout=300)
        assert command.returncode == 0, err.decode()
    after = outputs(tables_project)
    assert after.keys() == before.keys()
    timed = {"compute.md", "compute.csv", "compute.html"}  # the records' seconds: none fabricated, all equal here
    assert {p for p in after if after[p] != before[p] and p.name not in timed} == set()


# ---- 4. a seed listed twice -------------------------------------------------------------------------------

@pytest.mark.bad_input
def test_a_seed_listed_twice_is_refused_when_planned():
    params = tiny()
    params["studies"]["smoke"]["seeds"] = [0, 0, 1]
    with pytest.raises(ConfigError, match=r"studies.smoke.seeds lists seed 0 more than once \(\[0, 0, 1\]\)"):
        plan_study(params, "smoke")


@pytest.mark.parametrize("table,key", [("rdml_table", "alphas"), ("kd_table", "student"), ("pair_table", "pairs")])
@pytest.mark.bad_input
def test_a_table_missing_a_key_it_needs_is_refused_when_planned(table, key):
    params = copy.deepcopy(SMOKE)
    del params["studies"]["smoke"][table][key]
    with pytest.raises(ConfigError, match=f"studies.smoke.{table}: missing key '{key}', which this table needs; its keys: "):
        plan_study(params, "smoke")


# ---- DVC: every output kept while its stage runs; the smoke variants' dvc.yaml ------------------------------

def test_every_dvc_output_persists_while_its_stage_runs():
    stages = dvc_stages(load_params_from(SMOKE), ["smoke"])
    for name, stage in stages.items():
        for kind in ("outs", "metrics", "plots"):
            for out in stage.get(kind, []):
                [(path, options)] = out.items() if isinstance(out, dict) else [(out, {})]
                assert options.get("persist") is True, f"{name}: {kind} {path} is deleted before its stage runs"


def test_a_smoke_variant_in_dvc_yaml_reads_its_parents_keys_and_stamps_its_own_code():
    params = load_params_from(SMOKE)
    stages = dvc_stages(params, ["smoke_smoke"], declared={"smoke"})
    assert stages["code"]["cmd"] == "rdml pipeline code --study smoke_smoke"
    declared = {p for stage in stages.values() for p in stage.get("params", [])}
    assert declared and all(p.startswith("studies.smoke.") or p == "studies.smoke" for p in declared), declared
    assert dvc_stages(params, ["smoke"])["code"]["cmd"] == "rdml pipeline code"


# ---- end to end ---------------------------------------------------------------------------------------------

def run_here(*args, cwd, env_threads="2", check=True):
    """A command with the virtual environment first on PATH and torch free to take two threads (as a user's
    shell leaves it), unlike conftest.sh, which pins one."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "OMP_NUM_THREADS": env_threads}
    result = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def built_tables(root: Path, study: str = "smoke") -> dict:
    return {p.relative_to(root).as_posix(): b for p, b in files_under(root / f"results/{study}/tables").items()}


# compute.*: the measured seconds of each run, no result (Snakemake also marks a folder it made: .snakemake_timestamp)
TIMED = {"compute.md", "compute.csv", "compute.html"}


def kd_study() -> dict:
    params = copy.deepcopy(SMOKE)
    study = params["studies"]["smoke"]
    study.update(kd_table={"student": "mlp", "alphas": [1.0], "temperature": 4.0})
    del study["pair_table"]
    return params


@pytest.mark.system
@pytest.mark.slow
@pytest.mark.fault
def test_snakemake_and_dvc_write_the_same_tables_and_a_refused_repro_keeps_them(tmp_path):
    """One study built by `snakemake all_tables` and, in another copy, by `dvc repro`: byte-identical tables
    (the compute tables excepted: they hold each run's measured seconds) from runs that used one thread each.
    Then params.yaml holds a metric that does not exist: `dvc repro` refuses and every output is kept."""
    built = {}
    for tool in ("snakemake", "dvc"):
        (tmp_path / tool).mkdir()
        root = make_project(tmp_path / tool, kd_study())
        if tool == "snakemake":
            run_here(str(BIN / "snakemake"), "all_tables", "--cores", "2", cwd=root)
        else:
            run_here(str(BIN / "dvc"), "init", "--no-scm", "-q", cwd=root)
            run_here(str(BIN / "rdml"), "pipeline", "dvc-yaml", cwd=root)
            run_here(str(BIN / "dvc"), "repro", cwd=root)
        records = [json.loads(p.read_text()) for p in (root / "results/smoke/runs").glob("*/*/record.json")]
        assert len(records) == len(plan_study(kd_study(), "smoke")), tool
        assert {r["environment"]["threads"] for r in records} == {1}, tool
        built[tool] = {k: v for k, v in built_tables(root).items() if Path(k).name not in TIMED | {".snakemake_timestamp"}}
    assert built["snakemake"].keys() == built["dvc"].keys() and len(built["dvc"]) > 20
    differ = sorted(k for k in built["dvc"] if built["dvc"][k] != built["snakemake"][k])
    assert differ == [], differ

    root = tmp_path / "dvc"
    before = files_under(root / "results")
    text = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(text.replace("metric: final", "metric: median", 1))
    refused = run_here(str(BIN / "dvc"), "repro", cwd=root, check=False)
    assert refused.returncode != 0 and "metric" in refused.stdout + refused.stderr
    assert files_under(root / "results") == before  # tables, curves, summary, runs and code stamps alike


@pytest.mark.system
@pytest.mark.slow
@pytest.mark.fault
def test_a_failed_tables_job_under_snakemake_leaves_the_old_tables(tmp_path):
    root = make_project(tmp_path, tiny())
    run_here(str(BIN / "snakemake"), "all_tables", "--cores", "2", cwd=root)
    kept = [root / "results/smoke/tables", root / "results/smoke/curves", root / "results/smoke/summary.json"]
    before = files_under(*kept)
    record = root / "results/smoke/runs/synthetic/independent-mlp-s0/record.json"
    record.write_text(record.read_text().replace('"status": "ok"', '"status": "running"', 1))  # its seal now fails
    failed = run_here(str(BIN / "snakemake"), "all_tables", "--cores", "2", "--forcerun", "tables", cwd=root, check=False)
    assert failed.returncode != 0
    assert files_under(*kept) == before


@pytest.mark.system
@pytest.mark.slow
def test_the_dvc_yaml_of_a_smoke_variant_runs(tmp_path):
    root = make_project(tmp_path, {**tiny(), "build": ["smoke"]})
    run_here(str(BIN / "dvc"), "init", "--no-scm", "-q", cwd=root)
    run_here(str(BIN / "rdml"), "pipeline", "dvc-yaml", "--study", "smoke_smoke", cwd=root)
    run_here(str(BIN / "dvc"), "repro", cwd=root, env_threads="1")
    assert (root / "results/smoke_smoke/tables/rdml_table.md").is_file()
    assert "up to date" in run_here(str(BIN / "dvc"), "status", cwd=root).stdout
