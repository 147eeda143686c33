"""`rdml audit` of tables built by the real code from a tiny study trained and measured in a temporary
project: every number of a cell recomputed from sealed records and sealed measurements, every tampering
named. The study: KD and the DML §4.8 analyses (entropy, flat minima) on synthetic data, 2 seeds."""

import json
import math
import os
import re
import shutil
import statistics
from pathlib import Path

import pytest
import torch
import yaml

from rdml.audit import audit_cell, evaluation_tolerance, replayed_divergence
from rdml.cli import main
from rdml.keys import ConfigError
from rdml.train.integrity import read_record, seal, summarise, write_record

pytestmark = pytest.mark.slow  # one study trained and measured per module (~30 s), each test on a copy

STUDY = "a"
PARAMS = {
    "build": [STUDY],
    "studies": {
        STUDY: {
            "datasets": ["synthetic"],
            "seeds": [0, 1],
            "metric": "final",
            "train": {"epochs": 2, "batch_size": 64},
            "teacher": {"arch": "mlp", "seed": 0},
            "kd_table": {"student": "mlp", "alphas": [1.0]},
            "entropy_table": {"arch": "mlp", "cohort": 3},
            "flat_minima_table": {"arch": "mlp", "sigmas": [0.01], "draws": 2, "noise_seed": 0},
        }
    },
}
TABLES = Path("results") / STUDY / "tables"
KD = "synthetic: α=1|Average accuracy"
KD_RUN = f"results/{STUDY}/runs/synthetic/kd-mlp-from-mlp-a1-s0"
IND = "synthetic: Ind.|Entropy"  # the cell of the false mismatch
IND_RUN = f"results/{STUDY}/runs/synthetic/independent-mlp-s0"


def build(root: Path) -> None:
    """Train, measure and tabulate the study in `root` as the pipeline does (jobs, measure jobs, tables)."""
    from rdml.pipeline.jobs import measure_job, run_job
    from rdml.report.write import write_tables
    from rdml.study.params import load_params
    from rdml.study.plan import plan_jobs, plan_measurements

    threads, cwd = torch.get_num_threads(), os.getcwd()
    os.chdir(root)
    try:
        params = load_params("params.yaml")
        for job in plan_jobs(params, STUDY):
            run_job(job.spec(), gpus=0, threads=1)
        for run, wanted in plan_measurements(params, STUDY).values():
            measure_job({"study": STUDY, "run": run.id, "directory": run.directory, "measurements": wanted}, gpus=0, threads=1)
        write_tables(STUDY, "params.yaml")
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)


def tables(root: Path) -> None:
    """`rdml tables` again in `root`: what an adversary who re-seals a file runs next."""
    from rdml.report.write import write_tables

    write_tables(STUDY, root / "params.yaml", root)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    build(root)
    return root


@pytest.fixture
def project(built, tmp_path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(built, copy)
    return copy


def audit(root: Path, table: str, cell: str, **kw) -> list[str]:
    return audit_cell(root / TABLES / f"{table}.cells.json", cell, root, out=lambda *_: None, **kw)


def sidecar(root: Path, table: str) -> tuple[Path, dict]:
    path = root / TABLES / f"{table}.cells.json"
    return path, json.loads(path.read_text())


def reseal(path: Path, edit) -> dict:
    """The sealed JSON at `path` edited by `edit` and sealed again, as rdml would have written it."""
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(seal(content)))
    return content


def measures(root: Path, run: str) -> Path:
    return root / "results" / STUDY / "measures" / (run.split("/runs/", 1)[1] + ".json")


# ---- item: the analysis tables audit clean, and their cells follow the measurement files --------------------

def test_every_cell_of_a_clean_build_audits_with_its_models_evaluated_and_measured_again(built):
    """The DML §4.8 cells read measurements, not accuracies: no false mismatch (issue 27), and with
    --evaluate every model scores exactly its recorded accuracy and measures exactly its file's values
    on the CPU that trained and measured it."""
    for table in ("entropy_table", "flat_minima_table", "kd_table"):
        _, content = sidecar(built, table)
        assert content["spec"] == PARAMS["studies"][STUDY]
        for cell in content["cells"]:
            lines = []
            assert audit_cell(built / TABLES / f"{table}.cells.json", cell, built, out=lines.append) == [], (table, cell)
            assert lines[-1] == "OK: every hash matches the files on disk"
    lines = []
    assert audit_cell(built / TABLES / "entropy_table.cells.json", IND, built, out=lines.append, evaluate=True) == []
    assert any(line.startswith("  measured again") and "exact" in line for line in lines)
    assert any(line.startswith("  evaluated") and "(tolerance exact" in line for line in lines)
    assert audit(built, "flat_minima_table", "synthetic: DML|σ = 0.01", evaluate=True) == []
    assert audit(built, "kd_table", KD, evaluate=True) == []


def test_a_measured_cell_names_its_measurements_file_and_the_file_names_the_model(built):
    _, content = sidecar(built, "flat_minima_table")
    items = content["cells"]["synthetic: Ind.|σ = 0.01"]["runs"]
    assert {(item["measure"], item["index"]) for item in items} == {("loss@0.01", 0), ("loss@0.01", 1)}
    measured = json.loads((built / items[0]["measures"]).read_text())
    record = json.loads((built / items[0]["run"] / "record.json").read_text())
    assert measured["model_sha256"] == record["final_model"]["sha256"]
    assert measured["run_record_sha256"] == record["record_sha256"]
    assert measured["measured_on"]["device"] == "cpu" and measured["measured_on"]["threads"] == 1


def _entropy(value):
    def edit(content):
        content["students"]["student_0"]["entropy"] = value
    return edit


@pytest.mark.parametrize("tampering, found", [
    ("edited", "does not hash to its record_sha256"),
    ("edited and re-sealed", "student_0 entropy[0] is 0.123, the table used"),
    ("edited, re-sealed and tabulated", "student_0 entropy measures"),  # only measuring again tells
    ("other weights", "measured other weights"),
    ("another run's", "not the measurements of the record"),
    ("missing", "the measurements file of"),
])
@pytest.mark.tamper
def test_a_tampered_measurement_is_caught(project, tampering, found):
    path = measures(project, IND_RUN)
    evaluate = tampering == "edited, re-sealed and tabulated"
    if tampering == "edited":
        content = json.loads(path.read_text())
        _entropy(0.123)(content)
        path.write_text(json.dumps(content))
    elif tampering.startswith("edited and"):
        reseal(path, _entropy(0.123))
    elif evaluate:
        reseal(path, _entropy(0.123))
        tables(project)
        _, content = sidecar(project, "entropy_table")
        assert content["cells"][IND]["runs"][0]["value"] == 0.123  # the forgery reached the table …
        assert audit(project, "entropy_table", IND) == []  # … consistent with every hash
    elif tampering == "other weights":
        reseal(path, lambda c: c.update(model_sha256="0" * 64))
    elif tampering == "another run's":
        shutil.copy(measures(project, IND_RUN.replace("-s0", "-s1")), path)
    else:
        path.unlink()
    problems = audit(project, "entropy_table", IND, evaluate=evaluate)
    assert any(found in p for p in problems), problems


# ---- item: a cell's statistics recomputed from its runs ------------------------------------------------------

@pytest.mark.parametrize("field, forged", [("mean", 0.99), ("std", 0.0), ("n", 3), ("diverged", 1)])
@pytest.mark.tamper
def test_an_edited_statistic_of_a_cell_is_caught(project, field, forged):
    path, content = sidecar(project, "kd_table")
    true = content["cells"][KD][field]
    assert true != forged
    content["cells"][KD][field] = forged
    path.write_text(json.dumps(content))
    assert audit(project, "kd_table", KD) == [f"{path}: cell {KD!r} says {field} {forged}, its runs give {true}"]


@pytest.mark.tamper
def test_an_edited_value_of_a_measured_cell_is_caught_and_its_mean_recomputed(project):
    path, content = sidecar(project, "flat_minima_table")
    cell = content["cells"]["synthetic: DML|σ = 0"]
    cell["runs"][0]["value"] += 1.0
    cell["mean"] = sum(r["value"] for r in cell["runs"]) / len(cell["runs"])  # consistent with the forged value
    path.write_text(json.dumps(content))
    problems = audit(project, "flat_minima_table", "synthetic: DML|σ = 0")
    assert any("student_0 loss[0] is" in p for p in problems) and any("says mean" in p for p in problems), problems


# ---- item: statuses: finished, diverged by rdml's rule, every planned run listed -----------------------------

@pytest.mark.tamper
def test_a_running_record_behind_a_cell_fails_the_audit(project):
    write_record(project / KD_RUN / "record.json", {**read_record(project / KD_RUN / "record.json"), "status": "running"})
    assert any("the run has not finished (status 'running')" in p for p in audit(project, "kd_table", KD))


@pytest.mark.tamper
def test_a_record_turned_diverged_is_caught_whether_or_not_the_table_is_rebuilt(project):
    record_path = project / KD_RUN / "record.json"
    reseal(record_path, lambda r: r.update(status="diverged"))
    problems = audit(project, "kd_table", KD)
    assert any("the table lists student_0 as 'ok', its record says 'diverged'" in p for p in problems), problems
    assert any("status 'diverged', but its divergence entry is None" in p for p in problems), problems
    assert any("says diverged 0, its runs give 1" in p for p in problems), problems
    # with a divergence entry, and the table rebuilt: the run leaves the cell's mean, counted as diverged
    reason = {"epoch": 2, "reason": "student_0 fell back to chance accuracy", "stopped": False}
    reseal(record_path, lambda r: r.update(diverged=reason))
    tables(project)
    _, content = sidecar(project, "kd_table")
    assert content["cells"][KD]["diverged"] == 1 and content["cells"][KD]["n"] == 1
    problems = audit(project, "kd_table", KD)
    assert problems == [f"{record_path}: the epochs give divergence None, the record says {reason!r} (status 'diverged')"]


@pytest.mark.tamper
def test_a_forged_non_finite_loss_passes_the_epochs_but_not_the_weights(project):
    """Epochs, summary and seal forged alike (a NaN training loss in the last epoch): the rule finds it in the
    epochs; the weights, evaluated again, are finite."""
    record_path = project / KD_RUN / "record.json"

    def diverge(record):
        record["epochs"][-1]["train"] = {k: math.nan for k in record["epochs"][-1]["train"]}
        record["diverged"] = None
        record["diverged"] = replayed_divergence(record)
        record["status"] = "diverged"

    forged = reseal(record_path, diverge)
    assert forged["diverged"]["stopped"]
    tables(project)
    assert audit(project, "kd_table", KD) == []
    problems = audit(project, "kd_table", KD, evaluate=True)
    assert problems == [f"{project / KD_RUN / 'model.pt'}: its record says training stopped on a non-finite loss, but "
                        "its weights are finite and evaluate to finite test losses"]


def test_a_genuinely_diverged_run_audits_with_its_weights(tmp_path):
    from conftest import lone_run, one_cell_table, run

    record = run(tmp_path / "r", "lr=1e4", "epochs=3")
    assert record["status"] == "diverged" and record["diverged"]["stopped"]
    assert replayed_divergence(record) == record["diverged"]
    path = one_cell_table(tmp_path, "r", record)
    content = json.loads(path.read_text())
    content["cells"]["DML|x"].update(mean=None, std=None, n=0, diverged=1)
    content["cells"]["DML|x"]["runs"][0]["status"] = "diverged"
    path.write_text(json.dumps(content))
    assert audit_cell(path, "DML|x", tmp_path, out=lambda *_: None, evaluate=True) == lone_run(tmp_path)


@pytest.mark.parametrize("change", ["dropped", "foreign"])
@pytest.mark.tamper
def test_a_cell_lists_every_run_its_study_plans_and_no_other(project, change):
    path, content = sidecar(project, "kd_table")
    cell = content["cells"][KD]
    if change == "dropped":  # the run left out, the statistics made to agree
        cell["runs"] = [r for r in cell["runs"] if r["run"] != KD_RUN]
        cell.update(mean=cell["runs"][0]["value"], std=0.0, n=1)
        expected = f"cell {KD!r} does not list run {KD_RUN}, which study {STUDY} plans for it"
    else:  # another run's true value added, the statistics made to agree
        value = read_record(project / IND_RUN / "record.json")["summary"]["student_0"]["final_acc"]
        cell["runs"].append({**cell["runs"][0], "run": IND_RUN, "value": value})
        values = [r["value"] for r in cell["runs"]]
        cell.update(mean=statistics.fmean(values), std=statistics.stdev(values), n=3)
        expected = f"cell {KD!r} lists run {IND_RUN}, which study {STUDY} does not plan for it"
    path.write_text(json.dumps(content))
    assert audit(project, "kd_table", KD) == [expected]


# ---- item: --evaluate's tolerance per device -------------------------------------------------------------------

def _off_by(examples: int, device: str | None = None):
    """The record's last accuracy of student_0 moved by `examples` test examples, summary and seal made to agree;
    `device`: the record says it trained there."""
    def edit(record):
        test = record["epochs"][-1]["test"]["student_0"]
        test["acc"] += (examples if test["acc"] < 0.5 else -examples) / _test_size(record)
        record["summary"] = summarise(record["epochs"], record["config"]["summary_last"])
        if device:
            record["environment"].update(device=device, device_name="NVIDIA H100 80GB HBM3")
    return edit


def _test_size(record) -> int:
    from rdml.config import data_keys
    from rdml.data.base import load_dataset

    return load_dataset(record["config"]["dataset"], **data_keys(record["config"])).split_size("test")


@pytest.mark.parametrize("examples, device, caught", [pytest.param(1, None, True, marks=pytest.mark.tamper), (1, "cuda:0", False),
                                                       pytest.param(2, "cuda:0", True, marks=pytest.mark.tamper)])
def test_evaluation_is_exact_on_the_training_cpu_and_within_one_example_across_devices(project, examples, device, caught):
    reseal(project / KD_RUN / "record.json", _off_by(examples, device))
    tables(project)
    assert audit(project, "kd_table", KD) == []  # the numbers agree with each other …
    problems = audit(project, "kd_table", KD, evaluate=True)  # … and the weights tell, as tight as the device allows
    assert any("student_0 evaluates to accuracy" in p for p in problems) == caught, problems


@pytest.mark.parametrize("relative, device, caught", [pytest.param(1e-6, None, True, marks=pytest.mark.tamper), (5e-4, "cuda:0", False),
                                                      pytest.param(5e-3, "cuda:0", True, marks=pytest.mark.tamper)])
def test_measuring_again_is_exact_on_the_measuring_cpu_and_within_tolerance_elsewhere(project, relative, device, caught):
    def edit(content):
        content["students"]["student_0"]["entropy"] *= 1 + relative
        if device:
            content["measured_on"].update(device=device, device_name="NVIDIA H100 80GB HBM3")

    reseal(measures(project, IND_RUN), edit)
    tables(project)
    assert audit(project, "entropy_table", IND) == []
    problems = audit(project, "entropy_table", IND, evaluate=True)
    assert any("student_0 entropy measures" in p for p in problems) == caught, problems


def test_the_tolerance_is_stated_per_device():
    from rdml.train.record import cpu_name

    here = f"exact: trained on this CPU model ({cpu_name()}) with torch {torch.__version__}"
    assert evaluation_tolerance({"device": "cpu", "device_name": cpu_name()}, 500) == (0.0, here)
    assert evaluation_tolerance({"device": "cpu", "device_name": cpu_name(), "torch": torch.__version__}, 500) == (0.0, here)
    tolerance, why = evaluation_tolerance({"device": "cuda:0", "device_name": "NVIDIA H100"}, 500)
    assert tolerance == pytest.approx(1 / 500) and why.startswith("1 test example: trained on cuda:0 (NVIDIA H100)")
    assert evaluation_tolerance({"device": "cpu", "device_name": "another CPU"}, 500)[0] == pytest.approx(1 / 500)
    tolerance, why = evaluation_tolerance({"device": "cpu", "device_name": cpu_name(), "precision": "bf16"}, 500)
    assert tolerance == pytest.approx(1 / 500) and "precision bf16" in why  # not the float32 path the audit runs


def test_the_sidecar_names_the_study_section_in_one_order_whoever_planned_it(project):
    """Snakemake passes the section as sorted JSON, `rdml tables` alone reads params.yaml's order: one sidecar."""
    from rdml.report.write import write_tables

    path, _ = sidecar(project, "kd_table")
    before = path.read_bytes()
    reordered = dict(reversed(list(PARAMS["studies"][STUDY].items())))
    write_tables(STUDY, root=project, spec=reordered)
    assert path.read_bytes() == before


# ---- item: a malformed sidecar is bad input ------------------------------------------------------------------

@pytest.mark.parametrize("table, cell, where, field", [
    ("kd_table", KD, "cell", "mean"), ("kd_table", KD, "cell", "runs"), ("kd_table", KD, "run", "value"),
    ("kd_table", KD, "run", "status"), ("entropy_table", IND, "run", "measures"), ("entropy_table", IND, "run", "index"),
])
@pytest.mark.tamper
def test_a_sidecar_missing_a_field_is_an_error_naming_the_cell_and_the_field(project, capsys, table, cell, where, field):
    path, content = sidecar(project, table)
    del (content["cells"][cell] if where == "cell" else content["cells"][cell]["runs"][0])[field]
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigError, match=re.escape(f"cell {cell!r}") + f".* has no field {field!r}"):
        audit(project, table, cell)
    assert main(["audit", str(path), cell]) == 2
    assert f"rdml: error: {path}: cell {cell!r}" in capsys.readouterr().err


# ---- item: a cell is planned from params.yaml, not from the sidecar's own `spec` -----------------------------

def _drop_worse_seed(project: Path) -> dict:
    """kd_table's KD cell less its worse seed, mean/std/n made to agree: what a forger keeps."""
    path, content = sidecar(project, "kd_table")
    cell = content["cells"][KD]
    cell["runs"] = [max(cell["runs"], key=lambda r: r["value"])]
    cell.update(mean=cell["runs"][0]["value"], std=0.0, n=1)
    path.write_text(json.dumps(content))
    return content


@pytest.mark.parametrize("spec", ["deleted", "seeds edited"])
@pytest.mark.parametrize("evaluate", [False, True])
@pytest.mark.tamper
def test_a_seed_dropped_from_a_cell_and_its_spec_is_caught(project, spec, evaluate):
    content = _drop_worse_seed(project)
    dropped = ({KD_RUN, KD_RUN[:-1] + "1"} - {content["cells"][KD]["runs"][0]["run"]}).pop()
    path, _ = sidecar(project, "kd_table")
    kept_seed = int(content["cells"][KD]["runs"][0]["run"][-1])
    if spec == "deleted":
        del content["spec"]
        expected = "kd_table.cells.json names no study section (`spec`)"
    else:
        content["spec"]["seeds"] = [kept_seed]
        expected = (f"the table was built from other study keys than params.yaml's: seeds [{kept_seed}] in the table, "
                    "[0, 1] in params.yaml")
    path.write_text(json.dumps(content))
    problems = audit(project, "kd_table", KD, evaluate=evaluate)
    assert any(p.startswith(expected) for p in problems), problems
    assert f"cell {KD!r} does not list run {dropped}, which study {STUDY} plans for it" in problems, problems


@pytest.mark.parametrize("params", ["missing", "without the study", "not loading"])
@pytest.mark.tamper
def test_a_cell_whose_study_is_not_in_params_yaml_cannot_be_vouched_for(project, params):
    path = project / "params.yaml"
    if params == "missing":
        path.unlink()
    elif params == "without the study":
        path.write_text(yaml.safe_dump({"studies": {"other": PARAMS["studies"][STUDY]}}))
    else:
        path.write_text("studies: [")
    problems = audit(project, "kd_table", KD)
    assert len(problems) == 1 and problems[0].startswith(str(path)), problems
    assert problems[0].endswith("the audit cannot vouch for the runs planned for the cell"), problems


def test_the_audit_plans_from_params_yaml_and_names_what_the_sidecar_spec_changed(project):
    """A spec edited where params.yaml is not: the cell planned from params.yaml holds; the difference is named."""
    path, content = sidecar(project, "kd_table")
    content["spec"]["train"]["batch_size"] = 32
    path.write_text(json.dumps(content))
    assert audit(project, "kd_table", KD) == [
        "the table was built from other study keys than params.yaml's: train.batch_size 32 in the table, 64 in params.yaml"]


# ---- item: exactness only with the same CPU model and the same torch ------------------------------------------

def test_exactness_needs_the_same_torch_as_well_as_the_same_cpu():
    from rdml.audit import same_device
    from rdml.train.record import cpu_name

    here = {"device": "cpu", "device_name": cpu_name(), "torch": torch.__version__}
    assert same_device(here)
    other = {**here, "torch": "0.0.1"}
    assert not same_device(other)
    tolerance, why = evaluation_tolerance(other, 500)
    assert tolerance == pytest.approx(1 / 500) and "torch 0.0.1" in why, why
    assert not same_device({"device": "cpu", "torch": torch.__version__})  # the CPU model must be named


@pytest.mark.tamper
def test_a_record_trained_with_another_torch_is_evaluated_within_one_example(project):
    """One example off is caught on this CPU with this torch (the tolerance test above), but not when the
    record says another torch trained it: then only the one-example tolerance is claimed."""
    def edit(record):
        _off_by(1)(record)
        record["environment"]["torch"] = "0.0.1"

    reseal(project / KD_RUN / "record.json", edit)
    tables(project)
    assert audit(project, "kd_table", KD, evaluate=True) == []
    reseal(project / KD_RUN / "record.json", _off_by(1))  # a further example off: past one example
    tables(project)
    assert any("student_0 evaluates to accuracy" in p for p in audit(project, "kd_table", KD, evaluate=True))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_a_model_trained_in_either_layout_evaluates_exactly_in_that_layout(tmp_path, layout):
    """memory_format (chosen by timing where auto) changes the order of float32 sums: the audit evaluates in
    the layout the record names, so a model is held to its exact accuracy on the CPU model that trained it."""
    from rdml.audit import _evaluated
    from rdml.config import config_from_mapping, data_keys
    from rdml.data.base import load_dataset
    from rdml.train.loop import train

    record = train(config_from_mapping({"method": "dml", "arch": ["cnn", "cnn"], "dataset": "digits", "epochs": 1,
                                        "memory_format": layout, "out": str(tmp_path / "run")}), progress=False)
    lines = []
    data = load_dataset("digits", **data_keys(record["config"]))
    assert _evaluated(tmp_path / "run" / "model.pt", record, data, lines.append) == []
    assert "(tolerance exact" in lines[-1]
    assert evaluation_tolerance({**record["environment"], "memory_format": "packed"}, 500)[0] == pytest.approx(1 / 500)
