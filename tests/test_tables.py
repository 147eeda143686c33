"""Tables from fabricated run records: statistics, re-indexing, diverged runs, layouts, sidecars."""

import json
import re
import statistics
from pathlib import Path

import pytest

from rdml.study.plan import plan_study
from rdml.study.tables import build_tables, write_tables
from rdml.train.integrity import summarise, write_record

PARAMS = {
    "build": ["t"],
    "studies": {
        "t": {
            "datasets": ["synthetic"],
            "seeds": [0, 1, 2],
            "metric": "last5",
            "teacher": {"arch": "cnn_wide"},
            "rdml_table": {"archs": ["mlp"], "alphas": [2.0]},
            "kd_table": {"student": "mlp", "alphas": [1.0]},
            "pair_table": {"pairs": [["mlp", "cnn"]]},
        }
    },
}


def fabricate(root: Path, values: dict[str, list[float]], diverged: set[str] = frozenset(), params=PARAMS) -> None:
    """A sealed record per planned run whose students (then its ensemble) score the given accuracies in each of 5 epochs."""
    for run in plan_study(params, "t"):
        accs = values.get(run.id, [0.5] * (len(run.archs) + (len(run.archs) > 1)))
        names = [*run.students, "ensemble"][: len(accs)]
        epochs = [{"test": {name: {"acc": a, "loss": 1.0} for name, a in zip(names, accs)}} for _ in range(5)]
        record = {"format": "rdml.run/2", "status": "diverged" if run.id in diverged else "ok",
                  "config_sha256": run.config_sha256,
                  "config": {"summary_last": [5]}, "epochs": epochs, "summary": summarise(epochs, [5])}
        write_record(root / run.directory / "record.json", record)


def test_rdml_table_reindexes_students_ascending_and_excludes_diverged(tmp_path):
    fabricate(tmp_path, {
        "synthetic/dml-mlp+mlp-a2-s0": [0.90, 0.80],
        "synthetic/dml-mlp+mlp-a2-s1": [0.70, 0.95],
        "synthetic/dml-mlp+mlp-a2-s2": [0.10, 0.11],
        "synthetic/independent-mlp-s0": [0.6],
        "synthetic/independent-mlp-s1": [0.7],
        "synthetic/independent-mlp-s2": [0.8],
    }, diverged={"synthetic/dml-mlp+mlp-a2-s2"})
    table = {t.name: t for t in build_tables(PARAMS, "t", tmp_path)}["rdml_table"]
    assert table.rows == ["Ind.", "DML", "RDML α=2"]
    low, high = table.cells[("RDML α=2", "synthetic/mlp/0")], table.cells[("RDML α=2", "synthetic/mlp/1")]
    assert low.values == [0.80, 0.70] and high.values == [0.90, 0.95]
    assert low.diverged == high.diverged == 1 and len(low.runs) == 3
    assert high.mean == pytest.approx(0.925) and high.std == pytest.approx(statistics.stdev([0.90, 0.95]))
    assert table.cells[("RDML α=2", "synthetic/mlp/1")].text() == "92.50 ± 3.54 (n=2, 1 diverged)"
    ind = table.cells[("Ind.", "synthetic/mlp/0")]
    assert ind.text() == "70.00 ± 10.00 (n=3)" and ("Ind.", "synthetic/mlp/1") not in table.cells
    assert table.best_row("synthetic/mlp/1") == "RDML α=2"
    assert "**92.50 ± 3.54** (n=2, 1 diverged)" in table.markdown()
    assert r"\textbf{92.50 $\pm$ 3.54}" in table.latex()


def test_kd_and_pair_tables_report_differences_of_means(tmp_path):
    fabricate(tmp_path, {
        **{f"synthetic/independent-mlp-s{s}": [0.60] for s in range(3)},
        **{f"synthetic/independent-cnn-s{s}": [0.70] for s in range(3)},
        **{f"synthetic/kd-mlp-from-cnn_wide-a1-s{s}": [0.65] for s in range(3)},
        **{f"synthetic/dml-mlp+cnn-a1-s{s}": [0.62, 0.75] for s in range(3)},
    })
    tables = {t.name: t for t in build_tables(PARAMS, "t", tmp_path)}
    kd = tables["kd_table"]
    assert kd.derived[("synthetic: α=1", "Improvement")] == pytest.approx(5.0)
    pair = tables["pair_table"]
    assert pair.derived[("synthetic: mlp, cnn", "DML − Ind. Net 1")] == pytest.approx(2.0)
    assert pair.derived[("synthetic: mlp, cnn", "DML − Ind. Net 2")] == pytest.approx(5.0)
    assert pair.cells[("synthetic: mlp, cnn", "Ind. Net 2")].mean == pytest.approx(0.70)


def test_written_files_and_sidecar_name_every_run(tmp_path):
    fabricate(tmp_path, {})
    params_path = tmp_path / "params.yaml"
    params_path.write_text(json.dumps(PARAMS))
    written = write_tables("t", params_path, tmp_path)
    assert {p.name for p in written} == {f"{n}.{s}" for n in ("rdml_table", "kd_table", "pair_table")
                                         for s in ("md", "tex", "csv", "cells.json")}
    sidecar = json.loads((tmp_path / "results/t/tables/rdml_table.cells.json").read_text())
    cell = sidecar["cells"]["DML|synthetic/mlp/0"]
    assert sidecar["metric"] == "last5" and cell["n"] == 3
    assert {r["run"] for r in cell["runs"]} == {f"results/t/runs/synthetic/dml-mlp+mlp-a1-s{s}" for s in range(3)}
    assert "mean test accuracy of the last 5 epochs" in sidecar["caption"]


@pytest.mark.parametrize("forge", ["one epoch", "summary and epochs alike", "unfinished", "seal removed", "other keys"])
def test_no_table_is_built_from_a_forged_or_unfinished_record(tmp_path, forge):
    from rdml.keys import ConfigError

    fabricate(tmp_path, {})
    run = next(r for r in plan_study(PARAMS, "t") if r.method == "dml")
    path = tmp_path / run.directory / "record.json"
    record = json.loads(path.read_text())
    record["epochs"][-1]["test"]["student_0"]["acc"] = 0.99
    if forge == "summary and epochs alike":  # consistent, but not sealed by rdml
        record["summary"] = summarise(record["epochs"], [5])
    original = json.loads(path.read_text())
    if forge == "unfinished":
        write_record(path, {**original, "status": "running"})
    elif forge == "seal removed":  # passed off as a record of the format before seals
        record["summary"] = summarise(record["epochs"], [5])
        path.write_text(json.dumps({k: v for k, v in {**record, "format": "rdml.run/1"}.items() if k != "record_sha256"}))
    elif forge == "other keys":  # a genuine record, but of a run trained before the study's keys changed
        write_record(path, {**original, "config_sha256": "0" * 64})
    else:
        path.write_text(json.dumps(record))
    message = {"unfinished": "has not finished", "seal removed": "an unsealed record of rdml.run/1",
               "other keys": "trained with other keys than the study now plans"}.get(forge, re.escape(f"{path}: the record does not hash"))
    with pytest.raises(ConfigError, match=message):
        build_tables(PARAMS, "t", tmp_path)


def test_a_run_that_diverged_before_the_metric_window_is_counted_not_a_crash(tmp_path):
    fabricate(tmp_path, {})
    run = next(r for r in plan_study(PARAMS, "t") if r.method == "dml" and r.alpha == 2.0 and r.seed == 0)
    path = tmp_path / run.directory / "record.json"
    record = json.loads(path.read_text())
    record["epochs"] = record["epochs"][:2]  # stopped by a NaN loss at epoch 2: no mean of the last 5
    record.update(status="diverged", summary=summarise(record["epochs"], [5]))
    write_record(path, record)
    table = {t.name: t for t in build_tables(PARAMS, "t", tmp_path)}["rdml_table"]
    cell = table.cells[("RDML α=2", "synthetic/mlp/0")]
    assert cell.diverged == 1 and cell.values == [0.5, 0.5] and [r["value"] for r in cell.runs][0] is None


def test_cohort_table_reads_every_student_and_the_ensemble(tmp_path):
    params = {"studies": {"t": {"datasets": ["synthetic"], "seeds": [0, 1], "metric": "last5",
                                "cohort_table": {"arch": "mlp", "sizes": [2, 3]}}}}
    fabricate(tmp_path, {
        **{f"synthetic/dml-mlp+mlp+mlp-a1-s{s}": [0.6, 0.7, 0.8, 0.9] for s in (0, 1)},
        **{f"synthetic/independent-mlp+mlp+mlp-s{s}": [0.5, 0.5, 0.5, 0.55] for s in (0, 1)},
    }, params=params)
    table = build_tables(params, "t", tmp_path)[0]
    assert table.cells[("synthetic: K=3", "DML")].mean == pytest.approx(0.7) and len(table.cells[("synthetic: K=3", "DML")].values) == 6
    assert table.cells[("synthetic: K=3", "DML ensemble")].values == [0.9, 0.9]
    assert table.cells[("synthetic: K=3", "Ind. ensemble")].mean == pytest.approx(0.55)
    assert table.cells[("synthetic: K=2", "DML_e")].runs == table.cells[("synthetic: K=2", "DML")].runs  # K = 2: DML_e is DML


def test_methods_table_has_each_cohort_s_best_student(tmp_path):
    params = {"studies": {"t": {"datasets": ["synthetic"], "seeds": [0, 1], "metric": "last5",
                                "methods_table": {"student": "mlp", "teachers": ["cnn"], "students": 2}}}}
    fabricate(tmp_path, {"synthetic/dml-mlp+mlp-a1-s0": [0.6, 0.8, 0.9], "synthetic/dml-mlp+mlp-a1-s1": [0.75, 0.7, 0.9]},
              params=params)
    table = build_tables(params, "t", tmp_path)[0]
    assert table.rows[-1] == "synthetic: DML, best of 2 students"
    assert table.cells[(table.rows[-1], "Accuracy")].values == [0.8, 0.75]
    assert table.cells[("synthetic: DML, 2 students", "Accuracy")].values == [0.6, 0.8, 0.75, 0.7]


def test_a_clamped_rdml_loss_is_said_in_the_caption(tmp_path):
    """rdml_table1_as_released runs the released clamped Rényi loss; its table must say so."""
    params = {"studies": {"t": {**PARAMS["studies"]["t"], "train": {"probability_floor": 1e-8}}}}
    fabricate(tmp_path, {}, params=params)
    tables = {t.name: t for t in build_tables(params, "t", tmp_path)}
    note = "clamps both distributions to [1e-08, 1] before D_α, as the released RDML code does"
    assert note in tables["rdml_table"].caption and note in tables["pair_table"].caption
    assert note not in tables["kd_table"].caption
    fabricate(tmp_path / "exact", {})
    assert all(note not in t.caption for t in build_tables(PARAMS, "t", tmp_path / "exact"))
