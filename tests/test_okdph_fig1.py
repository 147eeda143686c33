"""OKDPH supplement Fig. 1 (the PAC-Bayes bound of VGG16 per epoch for Base, DML, KDCL and OKDPH): the
`pac_bayes_epochs` measurement against rdml.analysis.pac_bayes called on each kept epoch's networks loaded
on their own, the study's plan on the real params.yaml (runs keeping their networks every 25 epochs, each
measured), the figure object a reviewer reads, and a tiny study trained, measured, tabulated and drawn."""

import json
import math
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from matplotlib.colors import to_hex

from conftest import run
from rdml.analysis.measure import measure_run
from rdml.analysis.pac_bayes import PAC_BAYES_DEFAULTS, initial_students, pac_bayes_measures, training_accuracy
from rdml.data.base import load_dataset
from rdml.keys import ConfigError
from rdml.report.cells import Cell
from rdml.report.figures import PALETTE, TABLE_FIGURES
from rdml.study.params import load_params
from rdml.study.plan import plan_jobs, plan_measurements, plan_study, plan_tables
from rdml.train.checkpoint import load_kept_epoch
from rdml.train.verified import verified_run

REPO = Path(__file__).resolve().parents[1]
STUDY = "okdph_fig1"
METHODS = {"Base": "independent", "DML": "dml", "KDCL": "kdcl", "OKDPH": "okdph"}  # Fig. 1's four methods
# rdml epochs 1, 26, …, 276 (keep_every 25: the official 0-based 0, 25, …, 275) and the last, 300
EPOCHS = [1 + 25 * i for i in range(12)] + [300]


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


@pytest.fixture(scope="module")
def table(params):
    tables = plan_tables(params, STUDY)
    assert [t.name for t in tables] == ["okdph_pac_bayes_epochs_table"]
    return tables[0]


def synthetic_data(finished):
    return load_dataset("synthetic", **{k: finished.record["config"][k] for k in ("split_seed", "test_fraction")})


def test_measure_run_gives_pac_bayes_measures_of_each_kept_epoch_and_the_last(tmp_path):
    """Each student's bound at kept epochs 1 and 3 is pac_bayes_measures of that epoch's networks, loaded on their
    own, against the initial ones, its noise seeded by the spec's seed + k as the final weights' is; epoch 4, not
    kept, is model.pt's."""
    run(tmp_path / "r", "method=dml", "arch=cnn,cnn", "epochs=4", "keep_every=2", "seed=3", "init_seed=9")
    spec = {**PAC_BAYES_DEFAULTS, "draws": 2, "search_depth": 4, "seed": 7}
    measured = measure_run(tmp_path / "r", {"pac_bayes_epochs": spec}, torch.device("cpu"))
    finished = verified_run(tmp_path / "r", "")
    data = synthetic_data(finished)
    initial = initial_students(finished, data)
    networks = {e: [s.model for s in load_kept_epoch(tmp_path / "r", e, data)[0]] for e in (1, 3)}
    networks[4] = [finished.model(k, data) for k in range(2)]
    assert measured["measurements"] == {"pac_bayes_epochs": spec}
    for k in range(2):
        student = measured["students"][f"student_{k}"]
        assert set(student["pac_bayes_epochs"]) == {"1", "3", "4"}
        bounds = []
        for epoch, models in networks.items():
            alone = pac_bayes_measures(models[k], initial[k], lambda net: training_accuracy(net, data),
                                       len(data.y_train), {**spec, "seed": 7 + k})
            assert student["pac_bayes_epochs"][str(epoch)] == alone
            assert student[f"pac_bayes_orig@{epoch}"] == alone["pac_bayes_orig"]
            assert student[f"pac_bayes_init@{epoch}"] == alone["pac_bayes_init"]
            bounds.append(alone["pac_bayes_orig"])
        assert len(set(bounds)) == 3  # three different networks
    json.dumps(measured)


@pytest.mark.bad_input
def test_a_run_that_kept_no_epochs_is_refused(tmp_path):
    run(tmp_path / "r", "method=independent", "arch=cnn", "epochs=1")
    with pytest.raises(ConfigError, match=r"pac_bayes_epochs: run .* kept no epochs \(keep_every=0\).*keep_every >= 1"):
        measure_run(tmp_path / "r", {"pac_bayes_epochs": {"draws": 1, "search_depth": 1}}, torch.device("cpu"))


@pytest.mark.bad_input
@pytest.mark.parametrize("change, match", [
    ({"every": 0}, "okdph_pac_bayes_epochs_table.every=0 is not allowed; it must be an integer >= 1"),
    ({"bound": "both"}, "okdph_pac_bayes_epochs_table.bound='both' is not allowed; allowed: init, orig"),
    ({"arch": ["okdph_vgg16"]}, r"okdph_pac_bayes_epochs_table.arch=\['okdph_vgg16'\] is not allowed; it must name one"),
    ({"pac_bayes": {"draws": 0}}, "draws=0"),
])
def test_the_section_is_checked_when_planned(params, change, match):
    section = params["studies"][STUDY]
    broken = {**params, "studies": {STUDY: {**section, "okdph_pac_bayes_epochs_table": {
        **section["okdph_pac_bayes_epochs_table"], **change}}}}
    with pytest.raises(ConfigError, match=match):
        plan_tables(broken, STUDY)


def test_plan_keeps_epochs_on_every_run_and_measures_each(params, table):
    assert table.rows == [f"epoch {e}" for e in EPOCHS]
    assert table.columns == [f"cifar100: {m}" for m in METHODS]
    assert table.figures == ("pac_bayes_epochs",)
    assert table.measurements == {"pac_bayes_epochs": PAC_BAYES_DEFAULTS}
    assert table.scale == 1e-6 and "·10^6" in table.caption and "orig" in table.caption
    runs = plan_study(params, STUDY)
    assert len(runs) == 4 * 5 and {r.seed for r in runs} == {42, 43, 44, 45, 46}
    assert all(r.config.keep_every == 25 and r.archs[0] == "okdph_vgg16" for r in runs)
    cells = {}
    for entry in table.entries:
        row, (column,) = entry.row, entry.columns
        assert entry.measure == f"pac_bayes_orig@{row.split()[1]}" and entry.students == entry.run.students
        assert entry.run.method == METHODS[column.split(": ")[1]]
        cells.setdefault((row, column), set()).add(entry.run.seed)
    assert cells == {(r, c): {42, 43, 44, 45, 46} for r in table.rows for c in table.columns}
    # the same runs as okdph_table5's VGG16 CIFAR-100 cells, keep_every aside
    def keyed(runs):
        return {(r.method, r.archs, r.seed): {**json.loads(r.options), "keep_every": 25}
                for r in runs if r.dataset == "cifar100" and r.archs[0] == "okdph_vgg16"}
    assert keyed(runs) == keyed(plan_study(params, "okdph_table5"))
    measured = plan_measurements(params, STUDY)
    assert set(measured) == {r.id for r in runs}
    assert all(wanted == {"pac_bayes_epochs": PAC_BAYES_DEFAULTS} for _, wanted in measured.values())


def fabricated_table(table, values):
    """okdph_fig1's table with each cell holding `values(row, column)`: what build_tables makes of the records."""
    cells = {}
    for row in table.rows:
        for column in table.columns:
            cell = Cell()
            for seed, value in enumerate(values(row, column)):
                cell.add_value(f"run{seed}", seed, "student_0", value, "ok")
            cells[(row, column)] = cell
    return SimpleNamespace(name=table.name, rows=table.rows, columns=table.columns, cells=cells, scale=table.scale,
                           study={"paper": "OKDPH supplement Fig. 1"})


def test_figure_title_axes_legend_and_epochs(table):
    def values(row, column):
        epoch, method = int(row.split()[1]), list(METHODS).index(column.split(": ")[1])
        return [3.1e9 - 1e6 * epoch - 1e7 * method, 3.1e9 - 1e6 * epoch - 1e7 * method + 2e6]

    drawn = TABLE_FIGURES["pac_bayes_epochs"](table, fabricated_table(table, values), None)
    fig = drawn.figure
    assert drawn.name == "pac_bayes_epochs_okdph_pac_bayes_epochs_table"
    assert fig._suptitle.get_text().startswith("OKDPH supplement Fig. 1: PAC-Bayes bound of Base, DML, KDCL and OKDPH per epoch")
    (ax,) = fig.axes
    assert ax.get_title() == "cifar100" and ax.get_xlabel() == "epoch"
    assert ax.get_ylabel() == "PAC-Bayes bound, orig (·10^6)"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [*METHODS, "± 1 sd over students and seeds"]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == list(METHODS)
    assert [to_hex(line.get_color()) for line in lines] == [c.lower() for c in PALETTE[:4]]
    for i, line in enumerate(lines):  # the table's units: mean × 10⁻⁶
        assert list(line.get_xdata()) == EPOCHS
        assert list(line.get_ydata()) == pytest.approx([3100 - e - 10 * i + 1 for e in EPOCHS])
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert drawn.data["sd PAC-Bayes bound, orig (·10^6)"].tolist() == pytest.approx([math.sqrt(2)] * len(drawn.data))
    import matplotlib.pyplot as plt

    plt.close(fig)


SYNTHETIC = {
    "datasets": ["synthetic"],
    "seeds": [0, 1],
    "metric": "final",
    "paper": "OKDPH supplement Fig. 1",
    "train": {"epochs": 4, "batch_size": 64},
    "okdph_pac_bayes_epochs_table": {
        "arch": "cnn", "bound": "orig", "every": 2,  # kept: epochs 1 and 3; the last, 4, from model.pt
        "baseline": {"synthetic": "crop_flip"},
        "views": {"synthetic": ["crop_flip", "none", "crop_flip"]},
        "hybrid": [{"dataset": "synthetic", "arch": "cnn", "ce_weight": 0.8, "kd_weight": 0.8, "hybrid_weight": 0.5,
                    "fusion_every": "1e"}],
        "pac_bayes": {"draws": 2, "search_depth": 3},
    },
}


@pytest.mark.slow
def test_a_tiny_study_is_trained_measured_tabulated_and_drawn(tmp_path, monkeypatch):
    """Train, measure and tabulate as the pipeline does: each cell the mean over students and seeds of the
    measures files' pac_bayes_orig@<epoch>, printed × 10⁻⁶; the figure written beside its data."""
    import pandas as pd

    from rdml.pipeline.jobs import measure_job, run_job
    from rdml.report.write import write_tables

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"build": ["t"], "studies": {"t": SYNTHETIC}}, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    try:
        params = load_params("params.yaml")
        for job in plan_jobs(params, "t"):
            run_job(job.spec(), gpus=0, threads=1)
        measured = plan_measurements(params, "t")
        assert len(measured) == 4 * 2
        for run_, wanted in measured.values():
            assert sorted(json.loads((tmp_path / run_.directory / "record.json").read_text())["kept_epochs"]) == ["1", "3"]
            measure_job({"study": "t", "run": run_.id, "directory": run_.directory, "measurements": wanted}, gpus=0,
                        threads=1)
        write_tables("t", "params.yaml")
    finally:
        torch.set_num_threads(threads)
    tables = tmp_path / "results" / "t" / "tables"
    sidecar = json.loads((tables / "okdph_pac_bayes_epochs_table.cells.json").read_text())
    markdown = (tables / "okdph_pac_bayes_epochs_table.md").read_text().splitlines()
    drawn = pd.read_csv(tables / "fig_pac_bayes_epochs_okdph_pac_bayes_epochs_table.csv")
    assert all((tables / f"fig_pac_bayes_epochs_okdph_pac_bayes_epochs_table.{s}").stat().st_size > 0 for s in ("png", "pdf"))
    for epoch in (1, 3, 4):
        shown = []
        for label, method in METHODS.items():
            values = []
            for path in sorted((tmp_path / "results" / "t" / "measures" / "synthetic").glob(f"{method}-cnn*.json")):
                values += [s[f"pac_bayes_orig@{epoch}"] for s in json.loads(path.read_text())["students"].values()]
            assert len(values) == 2 * (1 if label == "Base" else 2) and all(math.isfinite(v) and v > 0 for v in values)
            cell = sidecar["cells"][f"epoch {epoch}|synthetic: {label}"]
            assert cell["mean"] == pytest.approx(statistics.mean(values), rel=1e-12) and cell["n"] == len(values)
            shown.append(f"{statistics.mean(values) * 1e-6:.2f} ± {statistics.stdev(values) * 1e-6:.2f} (n={len(values)})")
            point = drawn[(drawn.epoch == epoch) & (drawn.method == label)]
            assert point["mean PAC-Bayes bound, orig (·10^6)"].item() == pytest.approx(statistics.mean(values) * 1e-6)
        assert f"| epoch {epoch} | {' | '.join(shown)} |" in markdown
    assert len(drawn) == 3 * 4
