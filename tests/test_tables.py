"""Tables from fabricated run records: statistics, re-indexing, diverged runs, layouts, sidecars."""

import json
import math
import re
import statistics
from pathlib import Path

import pytest

from rdml.study.plan import plan_study
from rdml.report.claims import claim_results
from rdml.report.formats import latex, markdown
from rdml.report.table import build_tables
from rdml.report.write import write_tables
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
    # its lead over DML (0.5 at both seeds) is +40 and +45 points: paired t = 17, p = 0.037 with n = 2
    assert "**92.50 ± 3.54**ˢ (n=2, 1 diverged)" in markdown(table)
    assert r"\textbf{92.50 $\pm$ 3.54}" in latex(table)


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
    tables = {p.name for p in written if p.parent.name == "tables" and not p.name.startswith("fig_")}
    assert tmp_path / "results/t/summary.json" in written
    curves = {p.relative_to(tmp_path / "results/t/curves").as_posix() for p in written if "curves" in p.parts}
    assert curves == {"rdml_table/synthetic_mlp.csv", "kd_table/Average_accuracy.csv",
                      "pair_table/synthetic_mlp_cnn.csv"}, curves  # one per panel of each table's curves
    assert tables == {f"{n}.{s}" for n in ("rdml_table", "kd_table", "pair_table") for s in ("md", "tex", "csv", "cells.json", "html")
                      } | {"claims.md", "claims.csv", "claims.json", "claims.html", "runs.csv", "compute.md", "compute.csv",
                                                                                          "compute.html"}
    sidecar = json.loads((tmp_path / "results/t/tables/rdml_table.cells.json").read_text())
    cell = sidecar["cells"]["DML|synthetic/mlp/0"]
    assert sidecar["metric"] == "last5" and cell["n"] == 3
    assert {r["run"] for r in cell["runs"]} == {f"results/t/runs/synthetic/dml-mlp+mlp-a1-s{s}" for s in range(3)}
    assert "mean test accuracy of the last 5 epochs" in sidecar["caption"]


@pytest.mark.parametrize("forge", ["one epoch", "summary and epochs alike", "unfinished", "seal removed", "other keys"])
@pytest.mark.tamper
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


def test_paired_statistics_against_a_hand_computation_and_scipy():
    """Differences 1, 2, 3, 6: mean 3, sd √(14/3), t = 3/(sd/2) = 2.777…, df 3; scipy's ttest_rel agrees."""
    from scipy import stats as sp

    from rdml.report.stats import holm, paired, t_interval

    high, low = {0: 11.0, 1: 12.0, 2: 13.0, 3: 16.0, 9: 99.0}, {0: 10.0, 1: 10.0, 2: 10.0, 3: 10.0}
    result = paired(high, low)
    sd = (14 / 3) ** 0.5
    half = 3.182446305284263 * sd / 2  # t_{0.975, 3}
    assert result.n == 4 and result.mean == pytest.approx(3.0)
    assert result.interval == pytest.approx((3 - half, 3 + half))
    t = 3 / (sd / 2)
    assert result.p == pytest.approx(2 * sp.t.sf(t, 3)) == pytest.approx(sp.ttest_rel([11, 12, 13, 16], [10] * 4).pvalue)
    assert t_interval([1.0]) is None and paired({0: 1.0}, {0: 0.5}).p is None
    assert paired({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0}).p == 0.0  # constant difference: scipy gives NaN
    # Holm: sorted p 0.01, 0.03, 0.04 → 0.03, 0.06, 0.06 (monotone), order kept, None left alone
    adjusted = holm([0.04, None, 0.01, 0.03])
    assert adjusted[1] is None and [adjusted[i] for i in (0, 2, 3)] == pytest.approx([0.06, 0.03, 0.06])


def claims_of(tmp_path, values):
    fabricate(tmp_path, values)
    tables = {t.name: t for t in build_tables(PARAMS, "t", tmp_path)}
    return {(r["table"], r["claim"], r["high"][1]): r for t in tables.values() for r in claim_results(t)}


def test_a_large_effect_is_supported_a_null_one_not_and_a_reversed_one_contradicted(tmp_path):
    """Fabricated records: DML beats Ind. by 10 points at every seed (±1), RDML α=2 ties DML (noise only)."""
    ind = {f"synthetic/independent-mlp-s{s}": [0.60 + 0.01 * s] for s in range(3)}
    dml = {f"synthetic/dml-mlp+mlp-a1-s{s}": [0.70 + 0.01 * s, 0.80] for s in range(3)}
    rdml = {f"synthetic/dml-mlp+mlp-a2-s{s}": [0.70 + 0.01 * s + d, 0.80 - d] for s, d in enumerate([0.004, -0.006, 0.002])}
    kd = {f"synthetic/kd-mlp-from-teacher-cnn_wide-a1-s{s}": [0.50 - 0.05 * s - 0.01] for s in range(3)}
    claims = claims_of(tmp_path, {**ind, **dml, **rdml, **kd})
    big = claims[("rdml_table", "DML > Ind.", "synthetic/mlp/0")]
    assert big["verdict"] == "supported" and big["difference"] == pytest.approx(10.0) and big["n"] == 3
    null = claims[("rdml_table", "RDML α=2 > DML", "synthetic/mlp/0")]
    assert null["verdict"] == "not significant" and null["interval"][0] < 0 < null["interval"][1]
    reversed_ = claims[("kd_table", "α=1 > vanilla", "Average accuracy")]
    assert reversed_["verdict"] == "contradicted" and reversed_["difference"] < 0


def test_claims_and_paper_comparison_are_written(tmp_path):
    fabricate(tmp_path, {})
    (tmp_path / "reported").mkdir()
    (tmp_path / "reported" / "p.yaml").write_text(
        "paper: P\ncells:\n"
        "  - {study: t, table: rdml_table, row: DML, column: synthetic/mlp/0, value: 50, kind: value, source: T1}\n"
        "  - {study: t, table: rdml_table, row: Ind., column: synthetic/mlp/0, value: 90, kind: value, source: T1}\n"
        "  - {study: t, table: pair_table, row: 'synthetic: mlp, cnn', column: DML Net 1, value: null, kind: figure_only,"
        " source: F2}\n")
    write_tables("t", root=tmp_path, spec=PARAMS["studies"]["t"])
    out = tmp_path / "results" / "t" / "tables"
    claims = json.loads((out / "claims.json").read_text())["claims"]
    assert {c["table"] for c in claims} == {"rdml_table", "kd_table", "pair_table"}
    assert "| rdml_table | synthetic/mlp/0 | DML > Ind. | 3 |" in (out / "claims.md").read_text()
    paper = (out / "rdml_table.paper.md").read_text()
    # every fabricated value is 0.5: sd 0 → interval [50, 50]; 50 inside, 90 outside
    assert "| DML | synthetic/mlp/0 | 50 | 50.00 ± 0.00 (n=3) | +0.00 | [50.00, 50.00] | inside | T1 |" in paper
    assert "| Ind. | synthetic/mlp/0 | 90 | 50.00 ± 0.00 (n=3) | -40.00 | [50.00, 50.00] | **outside** | T1 |" in paper
    assert "figure only" in (out / "pair_table.paper.md").read_text() and not (out / "kd_table.paper.md").exists()


def test_every_figure_is_drawn_from_fabricated_records_with_its_data(tmp_path):
    """Accuracy 0.5 + 0.01·epoch + 0.001·seed for every model; the learning rate halves each epoch."""
    for run in plan_study(PARAMS, "t"):
        names = [*run.students, "ensemble"][: len(run.archs) + (len(run.archs) > 1)]
        epochs = [{"lr": [0.1 / 2**e] * len(run.archs),
                   "test": {n: {"acc": 0.5 + 0.01 * e + 0.001 * run.seed, "loss": 1.0 / (e + 1)} for n in names}}
                  for e in range(1, 6)]
        write_record(tmp_path / run.directory / "record.json", {
            "format": "rdml.run/2", "status": "ok", "config_sha256": run.config_sha256, "config": {"summary_last": [5]},
            "epochs": epochs, "summary": summarise(epochs, [5])})
    write_tables("t", root=tmp_path, spec=PARAMS["studies"]["t"])
    out = tmp_path / "results" / "t" / "tables"
    expected = ["curves_rdml_table", "best_alpha_rdml_table", "curves_kd_table", "box_kd_table",
                "alpha_difference_kd_table", "curves_pair_table", "renyi", "lr"]
    assert all((out / f"fig_{name}.{suffix}").stat().st_size > 1000 for name in expected for suffix in ("png", "pdf"))
    import pandas as pd

    curves = pd.read_csv(out / "fig_curves_rdml_table.csv")
    assert set(curves.panel) == {"synthetic/mlp"} and set(curves.line) == {"Ind.", "DML", "RDML α=2"}
    expected_percent = 100 * (0.5 + 0.01 * curves.epoch + 0.001 * curves.run.str[-1].astype(int))  # in %, as the table
    assert (curves["test_acc (%)"] - expected_percent).abs().max() < 1e-10
    box = pd.read_csv(out / "fig_box_kd_table.csv")
    assert sorted(box[box.row == "synthetic: α=1"].value) == pytest.approx([53.0, 53.1, 53.2])  # last5: epochs 1–5
    lr = pd.read_csv(out / "fig_lr.csv")
    assert (lr.lr - 0.1 / 2 ** lr.epoch).abs().max() < 1e-15 and lr.configuration.nunique() == len(
        {r.configuration for r in plan_study(PARAMS, "t")})
    renyi = pd.read_csv(out / "fig_renyi.csv")
    row = renyi[(renyi.alpha == 2.0)].iloc[50]
    p, q = row.x, 0.4
    assert row.fixed_q_over_p == pytest.approx(math.log((p**2 / q + (1 - p) ** 2 / (1 - q))), rel=1e-9)
    frame = pd.read_csv(out / "runs.csv")
    assert set(frame.metric) == {"test_acc", "test_loss", "lr"} and len(frame.run.unique()) == len(plan_study(PARAMS, "t"))


def test_compute_summary_adds_the_recorded_epoch_seconds_per_device():
    from rdml.report.compute import compute_summary

    runs = {r.id: r for r in plan_study(PARAMS, "t")}
    dml = [r for r in runs.values() if r.method == "dml"][:2]
    gpu = {"environment": {"device": "cuda:0", "device_name": "NVIDIA H200"}, "epoch_seconds": [1800.0, 1800.0],
           "started_at": "2026-01-01T00:00:00+00:00", "ended_at": "2026-01-01T01:06:00+00:00"}
    cpu = {"environment": {"device": "cpu", "device_name": "Xeon"}, "epoch_seconds": [360.0],
           "started_at": "2026-01-01T00:00:00+00:00", "ended_at": "2026-01-01T00:06:00+00:00"}
    markdown, text, _ = compute_summary([(dml[0], gpu), (dml[1], gpu), (dml[0], cpu)])
    assert "2.00 GPU-hours and 0.10 CPU-hours" in markdown
    archs = "+".join(dml[0].archs)
    assert dml[0].archs == dml[1].archs and f"| dml | {archs} | 2 | GPU | NVIDIA H200 | 2.0 | 2.2 | 1.0 |" in markdown
    assert f"| dml | {archs} | 1 | CPU | Xeon | 0.1 | 0.1 | 0.1 |" in markdown and text.count("\n") == 3


TEXT_PARAMS = {"build": ["t"], "studies": {"t": {
    "datasets": ["synthetic"], "seeds": [0, 1], "metric": "at_best_val", "train": {"val_fraction": 0.2},
    "text_table": {"archs": ["mlp"], "alphas": [2.0]}}}}


def test_summary_reads_the_test_accuracy_at_the_last_best_validation_epoch():
    """The released text code keeps a checkpoint when `val_acc >= best`: of equal best epochs, the last."""
    epochs = [{"test": {"student_0": {"acc": t, "loss": 1.0}}, "val": {"student_0": {"acc": v, "loss": 1.0}}}
              for v, t in zip([0.5, 0.8, 0.8, 0.6, 0.7], [0.1, 0.2, 0.3, 0.4, 0.5])]
    summary = summarise(epochs, [5])["student_0"]
    assert (summary["best_val_acc"], summary["best_val_epoch"], summary["at_best_val_acc"]) == (0.8, 3, 0.3)


def test_text_table_chooses_alpha_on_validation_and_on_test(tmp_path):
    """RDML Table 3: α "chosen based on the mean accuracy of K models on each test set" (its caption) and, with
    the validation split of §5.2, on validation; here validation prefers α = 2 and the test set α = 1."""
    val_test = {"independent-mlp": (0.5, 0.6), "dml-mlp+mlp-a1": (0.6, 0.9), "dml-mlp+mlp-a2": (0.8, 0.7)}
    for run in plan_study(TEXT_PARAMS, "t"):
        val, test = val_test[run.configuration]
        scores = lambda a: {name: {"acc": a + 0.01 * k, "loss": 1.0} for k, name in enumerate(run.students)}
        epochs = [{"test": scores(test), "val": scores(val)} for _ in range(5)]
        write_record(tmp_path / run.directory / "record.json",
                     {"format": "rdml.run/2", "status": "ok", "config_sha256": run.config_sha256, "config": {"summary_last": [5]},
                      "epochs": epochs, "summary": summarise(epochs, [5])})
    table = build_tables(TEXT_PARAMS, "t", tmp_path)[0]
    assert table.notes == {("synthetic, α by validation", "mlp: α"): "2", ("synthetic, α by test", "mlp: α"): "1"}
    assert table.choices["synthetic/mlp/val"]["scores"] == {"1": pytest.approx(0.605), "2": pytest.approx(0.805)}
    assert table.cells[("synthetic, α by validation", "mlp-1")].values == [pytest.approx(0.71)] * 2  # α = 2's test accuracy
    assert table.cells[("synthetic, α by test", "mlp-1")].values == [pytest.approx(0.91)] * 2
    assert table.cells[("synthetic, α by test", "mlp: Independent")].values == [0.6, 0.6]
    assert "| 2 |" in markdown(table) and [c.better[0] for c in table.claims] == ["synthetic, α by validation"] * 2
    assert table.sidecar("t", "at_best_val")["choices"]["synthetic/mlp/test"]["chosen"] == "1"


def test_text_table_keeps_the_students_in_training_order(tmp_path):
    """RDML Table 3 prints its students unsorted (AG News, CharCNN: 89.632, 89.171): mlp-0 is student_0 and mlp-1
    student_1 even where student_0 scores higher, and a paper cell of the "α by test" rows is joined to ours."""
    from rdml.report.paper import paper_comparison
    from rdml.study.reported import Reported

    test = {"independent-mlp": 0.6, "dml-mlp+mlp-a1": 0.7, "dml-mlp+mlp-a2": 0.9}
    for run in plan_study(TEXT_PARAMS, "t"):
        accuracy = {name: test[run.configuration] + 0.02 * (len(run.students) - 1 - k) + 0.001 * run.seed
                    for k, name in enumerate(run.students)}  # student_0 ahead of student_1 by 2 points
        epochs = [{"test": {n: {"acc": a, "loss": 1.0} for n, a in accuracy.items()},
                   "val": {n: {"acc": a, "loss": 1.0} for n, a in accuracy.items()}} for _ in range(5)]
        write_record(tmp_path / run.directory / "record.json",
                     {"format": "rdml.run/2", "status": "ok", "config_sha256": run.config_sha256, "config": {"summary_last": [5]},
                      "epochs": epochs, "summary": summarise(epochs, [5])})
    table = build_tables(TEXT_PARAMS, "t", tmp_path)[0]
    row = "synthetic, α by test"
    assert table.notes[(row, "mlp: α")] == "2"
    assert table.cells[(row, "mlp-0")].values == [pytest.approx(0.92), pytest.approx(0.921)]  # not re-indexed
    assert table.cells[(row, "mlp-1")].values == [pytest.approx(0.90), pytest.approx(0.901)]
    assert [c.per_seed() for c in (table.cells[(row, "mlp-0")], table.cells[(row, "mlp-1")])] == [
        {0: pytest.approx(0.92), 1: pytest.approx(0.921)}, {0: pytest.approx(0.90), 1: pytest.approx(0.901)}]
    assert table.choices["synthetic/mlp/test"]["scores"]["2"] == pytest.approx((0.92 + 0.921 + 0.90 + 0.901) / 4)
    markdown_text, _, _ = paper_comparison(table, [Reported("P", "t", "text_table", row, "mlp-0", 92.05, "value", "Table 3")])
    assert f"| {row} | mlp-0 | 92.05 | 92.05 ± " in markdown_text
