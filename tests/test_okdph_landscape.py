"""OKDPH supplement Figs. 2–5 (the loss landscape of a method's two students beside OKDPH's): the `landscape`
measurement of a run and its partner against rdml.analysis.landscape on the kept networks loaded on their own,
the rise at a trajectory's end against its closed form, the plan on the real params.yaml (the official README's
grids), the checks of a partner, and a tiny study trained, measured, tabulated and drawn."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import run
from rdml.analysis.landscape import (fit_projection, measure_landscape, parameter_names, training_loss,
                                     trajectory_ends, trajectory_matrix)
from rdml.analysis.measure import measure_run
from rdml.data.base import load_dataset
from rdml.keys import PARTNER, ConfigError
from rdml.report.records import measurement_problems
from rdml.study.params import load_params, with_smoke_studies
from rdml.study.plan import measurement_partners, plan_jobs, plan_measurements, plan_study, plan_tables
from rdml.train.checkpoint import load_kept_epoch
from rdml.train.integrity import read_record

from test_landscape import Quadratic

REPO = Path(__file__).resolve().parents[1]
STUDY = "okdph_landscape"
SPEC = {"x_bounds": [-1, 1], "y_bounds": [-1, 1], "step": 1, "offsets": [-0.5, 0.0, 0.5], "every": 1}


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two finished two-student runs side by side in one runs folder, each keeping every epoch of three."""
    runs = tmp_path_factory.mktemp("runs") / "synthetic"
    run(runs / "method", "method=dml", "arch=cnn,cnn", "keep_every=1", "seed=3")
    run(runs / "ours", "method=dml", "arch=cnn,cnn", "keep_every=1", "seed=4", "alpha=0.5")
    return runs


def test_a_run_and_its_partner_are_measure_landscape_on_their_kept_networks(pair):
    """The measurement is measure_landscape (float32 rows, as grid_loss.py's matrix) of the four students' kept
    networks, the run's students first, each loaded on its own; per student its end's loss and rise."""
    measured = measure_run(pair / "method", {"landscape": {**SPEC, PARTNER: "synthetic/ours"}}, torch.device("cpu"))
    record = read_record(pair / "ours" / "record.json")
    assert measured[PARTNER] == {"run": "synthetic/ours", "run_record_sha256": record["record_sha256"],
                                 "model_sha256": record["final_model"]["sha256"]}
    data = load_dataset("synthetic", **{k: record["config"][k] for k in ("split_seed", "test_fraction")})
    trajectories = {}
    for prefix, folder in (("", "method"), ("partner.", "ours")):
        cohorts = [load_kept_epoch(pair / folder, epoch, data)[0] for epoch in (1, 2, 3)]
        for k in range(2):
            trajectories[f"{prefix}student_{k}"] = [cohort[k].model.state_dict() for cohort in cohorts]
    model = load_kept_epoch(pair / "method", 1, data)[0][0].model
    alone = measure_landscape(model, trajectories, SPEC, lambda net: training_loss(net, data), dtype=np.float32)
    landscape = measured["landscape"]
    assert landscape["labels"] == ["student_0", "student_1", "partner.student_0", "partner.student_1"]
    for key in ("coordinates", "grid", "path", "ends", "explained_variance_ratio"):
        assert landscape[key] == alone[key], key
    assert len(landscape["grid"]) == 9 and all(math.isfinite(p["loss"]) for p in landscape["grid"])
    assert measured["students"] == {label: {"landscape_loss": end["loss"], "landscape_rise": end["rise"]}
                                    for label, end in alone["ends"].items()}
    json.dumps(measured, allow_nan=False)


def test_the_rise_at_a_trajectory_s_end_is_the_closed_form_of_a_quadratic():
    """loss = ‖w‖² + shift: moved by dx·pc1 + dy·pc2 (orthonormal), the loss rises by 2w·(dx pc1 + dy pc2) + dx² + dy²;
    over the 8 neighbours of (−1, 0, 1)² the linear terms cancel and the mean rise is (4·1 + 4·2)/8 = 1.5."""
    rng = np.random.default_rng(7)
    d = 5
    trajectories = {f"s{k}": [{"w": torch.tensor(rng.normal(size=d)), "shift": torch.tensor(float(k), dtype=torch.float64)}
                              for _ in range(4)] for k in range(3)}
    model = Quadratic(d)
    names = parameter_names(model)
    trajectory = trajectory_matrix(trajectories, names)
    projection = fit_projection(trajectory.matrix, range(12))
    ends = trajectory_ends(model, trajectory, projection, [-1.0, 0.0, 1.0], names,
                           lambda net: {"loss": float((net.w.detach().numpy() ** 2).sum() + net.shift)})
    for k, label in enumerate(trajectory.labels):
        last = trajectory.matrix[trajectory.rows_of(label)[-1]]
        assert ends[label]["row"] == 4 * k + 3
        assert ends[label]["loss"] == pytest.approx(float(last @ last) + k, rel=1e-12)
        assert ends[label]["rise"] == pytest.approx(1.5, rel=1e-9)
    with pytest.raises(ConfigError, match="needs a non-zero offset"):
        trajectory_ends(model, trajectory, projection, [0.0], names, lambda net: {"loss": 0.0})


@pytest.mark.bad_input
def test_a_partner_that_kept_other_epochs_or_is_missing_is_refused(pair, tmp_path):
    with pytest.raises(ConfigError, match=r"landscape: run .*method kept epochs \[1, 2, 3\], not every 2 from the first"):
        measure_run(pair / "method", {"landscape": {**SPEC, "every": 2, PARTNER: "synthetic/ours"}}, torch.device("cpu"))
    with pytest.raises(ConfigError, match="landscape.partner=None: allowed: the run id"):
        measure_run(pair / "method", {"landscape": SPEC}, torch.device("cpu"))
    with pytest.raises(ConfigError, match="landscape partner"):
        measure_run(pair / "method", {"landscape": {**SPEC, PARTNER: "synthetic/absent"}}, torch.device("cpu"))
    with pytest.raises(ConfigError, match="a landscape is measured alone"):
        measure_run(pair / "method", {"landscape": {**SPEC, PARTNER: "synthetic/ours"}, "predictions": {}}, torch.device("cpu"))


@pytest.mark.tamper
def test_a_measurement_is_refused_once_its_partner_is_another_run_or_was_retrained(pair):
    measured = measure_run(pair / "method", {"landscape": {**SPEC, PARTNER: "synthetic/ours"}}, torch.device("cpu"))
    record = read_record(pair / "method" / "record.json")
    root, run_dir = pair.parent, "synthetic/method"
    wanted = {"landscape": {**SPEC, PARTNER: "synthetic/ours"}}
    assert measurement_problems("m.json", measured, record, run_dir, measured["measurements"], root) == []
    other = {"landscape": {**SPEC, PARTNER: "synthetic/method"}}
    problems = measurement_problems("m.json", measured, record, run_dir, other, root)
    assert any("measured beside run 'synthetic/ours', but the table pairs it with 'synthetic/method'" in p for p in problems)
    retrained = {**measured, PARTNER: {**measured[PARTNER], "model_sha256": "0" * 64}}
    problems = measurement_problems("m.json", retrained, record, run_dir, wanted, root)
    assert any("measured beside another record or other weights" in p for p in problems)


def test_the_plan_is_the_official_readme_s_grids_on_runs_that_keep_every_fifth_epoch(params):
    (table,) = plan_tables(params, STUDY)
    assert table.columns == ["S1", "S2", "OKDPH S1", "OKDPH S2"] and table.figures == ("landscape",)
    assert len(table.rows) == 2 * 5 * 3 and table.rows[0] == "cifar10, okdph_resnet32: Base"
    runs = plan_study(params, STUDY)
    assert len(runs) == 2 * 5 * 4 and all(r.config.keep_every == 5 and r.config.epochs == 300 for r in runs)
    assert {r.method for r in runs} == {"independent", "dml", "kdcl", "okdph"}
    assert all(len(r.archs) == 2 for r in runs)  # Base: two networks alone, as grid_loss.py reads net0_, net1_
    measured = plan_measurements(params, STUDY)
    assert len(measured) == 30 and all(run.method != "okdph" for run, _ in measured.values())
    by_row = {entry.row: entry for entry in table.entries}
    for row, x, y, step, fit in [("cifar10, okdph_resnet32: Base", [-25, 30], [-25, 35], 1.0, [0, 1, 2]),
                                 ("cifar10, okdph_resnet110: DML", [-10, 10], [-25, 35], [0.5, 1.0], [1, 2]),
                                 ("cifar10, okdph_wrn20_8: KDCL", [-20, 20], [-15, 40], 1.0, [0, 1]),
                                 ("cifar10, okdph_vgg16: KDCL", [-20, 20], [-25, 25], 1.0, [0, 1, 2, 3]),
                                 ("cifar100, okdph_vgg16: Base", [-50, 50], [-30, 40], 1.0, [0, 1, 2]),
                                 ("cifar100, okdph_resnet110: DML", [-30, 35], [-40, 40], 1.0, [0, 1, 2, 3])]:
        entry = by_row[row]
        wanted = measured[entry.run.id][1]["landscape"]
        assert (wanted["x_bounds"], wanted["y_bounds"], wanted["step"], wanted["fit"]) == (x, y, step, fit)
        assert wanted["every"] == 5 and wanted["offsets"] == [-1.0, 0.0, 1.0] and wanted["candidates"] == [0, 1, 2]
        assert measurement_partners(measured[entry.run.id][1]) == [entry.partner.id]
        assert entry.partner.method == "okdph" and entry.partner.archs == entry.run.archs
    # the same students as okdph_table5's two-student runs, keep_every aside
    def keyed(runs, methods):
        return {(r.dataset, r.method, r.archs, r.seed): {**json.loads(r.options), "keep_every": 5}
                for r in runs if r.method in methods}
    methods = {"dml", "kdcl", "okdph"}
    assert keyed(runs, methods) == {k: v for k, v in keyed(plan_study(params, "okdph_table5"), methods).items() if k[3] == 42}


@pytest.mark.bad_input
@pytest.mark.parametrize("change, match", [
    (lambda p: p[:-1], r"okdph_landscape_table.panels: no grid for \[\('cifar100', 'okdph_resnet110', 'kdcl'\)\]"),
    (lambda p: p + p[:1], r"panels\[30\]: a second panel for \('cifar10', 'okdph_resnet32', 'independent'\)"),
    (lambda p: [{**p[0], "method": "one"}] + p[1:], r"panels\[0\]: \('cifar10', 'okdph_resnet32', 'one'\) is not a panel"),
    (lambda p: [{**p[0], "step": 0.7}] + p[1:], "not a whole number of steps"),
    (lambda p: [{**p[0], "fit": [4]}] + p[1:], r"landscape.fit=\[4\]"),
])
def test_the_section_is_checked_when_planned(params, change, match):
    section = params["studies"][STUDY]
    inner = section["okdph_landscape_table"]
    broken = {**params, "studies": {STUDY: {**section, "okdph_landscape_table": {**inner, "panels": change(inner["panels"])}}}}
    with pytest.raises(ConfigError, match=match):
        plan_tables(broken, STUDY)


def test_the_smoke_variant_has_a_coarse_grid(params):
    smoke = with_smoke_studies(params)["studies"][f"{STUDY}_smoke"]["okdph_landscape_table"]
    assert smoke["every"] == 1 and smoke["offsets"] == [0.0, 1.0] and len(smoke["panels"]) == 30
    assert all(p["x_bounds"] == [-1, 1] and p["step"] == 2 and "fit" not in p for p in smoke["panels"])


SYNTHETIC = {
    "datasets": ["synthetic"],
    "seeds": [0],
    "metric": "final",
    "paper": "OKDPH supplement Figs. 2-5",
    "train": {"epochs": 3, "batch_size": 64},
    "okdph_landscape_table": {
        "archs": ["cnn"], "methods": ["dml"], "every": 1, "offsets": [-0.5, 0.0, 0.5],
        "baseline": {"synthetic": "crop_flip"},
        "views": {"synthetic": ["crop_flip", "none", "crop_flip"]},
        "hybrid": [{"dataset": "synthetic", "arch": "cnn", "ce_weight": 0.8, "kd_weight": 0.8, "hybrid_weight": 0.5,
                    "fusion_every": "1e"}],
        "panels": [{"dataset": "synthetic", "arch": "cnn", "method": "dml", "x_bounds": [-2, 2], "y_bounds": [-1, 1]}],
    },
}


@pytest.mark.slow
def test_a_tiny_study_is_trained_measured_tabulated_and_drawn(tmp_path, monkeypatch):
    """Train, measure and tabulate as the pipeline does: each cell a student's rise from the measures file, the
    OKDPH students' from the DML run's measurement beside the OKDPH run; the figure drawn from its grid."""
    import pandas as pd

    from rdml.pipeline.jobs import measure_job, run_job
    from rdml.report.write import write_tables

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"build": ["t"], "studies": {"t": SYNTHETIC}}, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    try:
        params = load_params("params.yaml")
        assert len(plan_jobs(params, "t")) == 2
        for job in plan_jobs(params, "t"):
            run_job(job.spec(), gpus=0, threads=1)
        (measured,) = plan_measurements(params, "t").values()
        run_, wanted = measured
        assert run_.method == "dml" and wanted["landscape"][PARTNER].startswith("synthetic/okdph-cnn+cnn")
        measure_job({"study": "t", "run": run_.id, "directory": run_.directory, "measurements": wanted}, gpus=0, threads=1)
        write_tables("t", "params.yaml")
    finally:
        torch.set_num_threads(threads)
    tables = tmp_path / "results" / "t" / "tables"
    measures = json.loads((tmp_path / "results" / "t" / "measures" / f"{run_.id}.json").read_text())
    sidecar = json.loads((tables / "okdph_landscape_table.cells.json").read_text())
    for student, column in [("student_0", "S1"), ("student_1", "S2"), ("partner.student_0", "OKDPH S1"),
                            ("partner.student_1", "OKDPH S2")]:
        cell = sidecar["cells"][f"synthetic, cnn: DML|{column}"]
        assert cell["mean"] == measures["students"][student]["landscape_rise"] and cell["n"] == 1
        assert cell["runs"][0]["wanted"] == wanted
    assert "| synthetic, cnn: DML |" in (tables / "okdph_landscape_table.md").read_text()
    drawn = pd.read_csv(tables / "fig_landscape_okdph_landscape_table.csv")
    assert len(drawn[drawn.kind == "grid"]) == 5 * 3 and len(drawn[drawn.kind == "trajectory"]) == 4 * 3
    assert all((tables / f"fig_landscape_okdph_landscape_table.{s}").stat().st_size > 0 for s in ("png", "pdf"))


def test_the_figure_draws_each_row_s_plane_trajectories_and_first_checkpoints(params):
    """One panel per row that has a landscape (its first seed's run), titled by the row; the four trajectories in
    the table's column names, their first checkpoints in crimson; the axes the grid's bounds, labelled with the
    share of the variance each component explains; every number in the data file."""
    from types import SimpleNamespace

    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    from rdml.report.figures import TABLE_FIGURES

    (spec,) = plan_tables(params, STUDY)
    rows = spec.rows[:2]
    labels = ["student_0", "student_1", "partner.student_0", "partner.student_1"]
    measured = {}
    for i, row in enumerate(rows):
        run_id = next(e.run.id for e in spec.entries if e.row == row)
        grid = [{"x": x, "y": y, "row": 0, "loss": 0.1 * (x * x + y * y) + i, "accuracy": 1.0}
                for x in (-2.0, 0.0, 2.0) for y in (-1.0, 0.0, 1.0)]
        measured[run_id] = {"landscape": {
            "spec": {"x_bounds": [-2.0, 2.0], "y_bounds": [-1.0, 1.0]}, "grid": grid, "path": [],
            "coordinates": {label: [[0.1 * k, -0.1 * k], [0.5 * k, 0.2]] for k, label in enumerate(labels)},
            "explained_variance_ratio": [0.625, 0.25]}}
    table = SimpleNamespace(name=spec.name, rows=spec.rows, columns=spec.columns, measured=measured,
                            study={"paper": "OKDPH supplement Figs. 2-5"})
    drawn = TABLE_FIGURES["landscape"](spec, table, None)
    panels = [ax for ax in drawn.figure.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in panels] == rows
    for ax in panels:
        assert ax.get_xlim() == (-2.0, 2.0) and ax.get_ylim() == (-1.0, 1.0)
        assert ax.get_xlabel() == "PC1 (62.5 % of the variance)" and ax.get_ylabel() == "PC2 (25.0 %)"
        lines = ax.get_lines()
        assert [line.get_label() for line in lines[::2]] == spec.columns
        assert all(to_hex(line.get_color()) == to_hex("crimson") for line in lines[1::2])
        assert list(lines[4].get_xdata()) == [0.2, 1.0] and list(lines[5].get_xdata()) == [0.2]
    legend = [t.get_text() for t in drawn.figure.legends[0].get_texts()]
    assert legend == [*spec.columns, "first checkpoint"]
    assert len(drawn.data[drawn.data.kind == "grid"]) == 2 * 9 and len(drawn.data[drawn.data.kind == "trajectory"]) == 2 * 8
    plt.close(drawn.figure)


def test_the_measuring_step_of_a_panel_depends_on_both_runs_in_dvc_and_asks_for_its_estimated_time(params):
    """DVC reruns a landscape when either run's weights change; SLURM gets the grid's estimated minutes."""
    from rdml import paths
    from rdml.pipeline.dvc import dvc_stages
    from rdml.pipeline.requests import ESTIMATE_SECONDS_PER_PASS, MEASURE_MINUTES, RUNTIME_SAFETY, measure_runtime

    study = {"studies": {"t": SYNTHETIC}}
    stages = dvc_stages(study, ["t"])
    ((run_, wanted),) = plan_measurements(study, "t").values()
    (stage,) = [s for name, s in stages.items() if name.startswith("measure-")]
    assert stage["deps"][1:] == [f"{run_.directory}/model.pt", f"{paths.run_dir('t', wanted['landscape'][PARTNER])}/model.pt"]
    assert measure_runtime(wanted) == MEASURE_MINUTES and measure_runtime({"noise": {}}) == MEASURE_MINUTES
    resnet110 = plan_measurements(params, STUDY)
    (wanted,) = [w for r, w in resnet110.values() if r.archs[0] == "okdph_resnet110" and r.dataset == "cifar10" and r.method == "dml"]
    points = 41 * 61  # [-10, 10] by 0.5, [-25, 35] by 1
    assert measure_runtime(wanted) == math.ceil(3 * points * ESTIMATE_SECONDS_PER_PASS / 60 * RUNTIME_SAFETY)
