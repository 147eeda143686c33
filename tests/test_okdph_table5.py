"""OKDPH supplement Table 5 (the PAC-Bayes bound of Base, DML, KDCL and OKDPH per backbone): the `pac_bayes`
measurement of rdml.analysis.measure against rdml.analysis.pac_bayes called directly, the study's plan on
the real params.yaml against the supplement's Table 6 and okdph_table3's two-student runs, the claims'
direction against the paper's own numbers, the transcription's places, and a tiny study trained, measured
and tabulated end to end."""

import json
import math
import statistics
from pathlib import Path

import pytest
import torch
import yaml

from conftest import run
from rdml.analysis.measure import measure_run
from rdml.analysis.pac_bayes import PAC_BAYES_DEFAULTS, initial_students, pac_bayes_measures, training_accuracy
from rdml.data.base import load_dataset
from rdml.keys import ConfigError
from rdml.metrics import METRICS
from rdml.study.params import load_params
from rdml.study.plan import plan_jobs, plan_measurements, plan_study, plan_tables
from rdml.train.verified import verified_run

REPO = Path(__file__).resolve().parents[1]
STUDY = "okdph_table5"
ARCHS = ["okdph_resnet32", "okdph_resnet110", "okdph_vgg16", "okdph_densenet40_12", "okdph_wrn20_8"]  # Table 5's rows
METHODS = {"Base": "independent", "DML": "dml", "KDCL": "kdcl", "OKDPH": "okdph"}
# supplement Table 6, ω, β, γ, Δ of its two-student columns ResNet32, ResNet110, VGG16, DenseNet40-12, WRN20-8
TABLE_6 = {"cifar10": ("0.8 0.8 0.3 0.8 0.8", "0.8 0.8 0.3 0.8 0.8", "0.5 0.5 1.0 0.5 0.5", "1e 5b 1e 5b 1e"),
           "cifar100": ("1.0 0.8 0.3 1.0 0.5", "0.5 0.8 0.3 0.5 0.5", "1.0 0.5 1.0 0.5 0.5", "5b 5b 1e 5b 5b")}


def table_6(dataset: str, arch: str) -> tuple:
    """ω, β, γ, Δ of the backbone's column, read off the printed rows."""
    column = ARCHS.index(arch)
    return tuple(float(v) if i < 3 else v for i, v in enumerate(row.split()[column] for row in TABLE_6[dataset]))
PRINTED_NAMES = {"ResNet32": "okdph_resnet32", "VGG16": "okdph_vgg16", "DenseNet40-12": "okdph_densenet40_12",
                 "ResNet110": "okdph_resnet110", "WRN20-8": "okdph_wrn20_8"}


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


@pytest.fixture(scope="module")
def table(params):
    tables = plan_tables(params, STUDY)
    assert [t.name for t in tables] == ["okdph_pac_bayes_table"]
    return tables[0]


def reported_cells() -> list[dict]:
    cells = yaml.safe_load((REPO / "reported" / "okdph.yaml").read_text(encoding="utf-8"))["cells"]
    return [c for c in cells if c["study"] == STUDY]


def test_measure_run_writes_the_pac_bayes_measures_of_each_student(tmp_path):
    """`rdml pipeline measure`'s measure_run with `pac_bayes`: each student's values are what pac_bayes_measures
    gives for its trained and initial network, its noise seeded by the spec's seed + k."""
    run(tmp_path / "r", "method=dml", "arch=cnn,cnn", "epochs=1", "seed=3", "init_seed=9")
    spec = {**PAC_BAYES_DEFAULTS, "draws": 2, "search_depth": 4, "seed": 7}
    measured = measure_run(tmp_path / "r", {"pac_bayes": spec}, torch.device("cpu"))
    finished = verified_run(tmp_path / "r", "")
    data = load_dataset("synthetic", **{k: finished.record["config"][k] for k in ("split_seed", "test_fraction")})
    initial = initial_students(finished, data)
    assert set(measured["students"]) == {"student_0", "student_1"} and measured["measurements"] == {"pac_bayes": spec}
    for k in range(2):
        alone = pac_bayes_measures(finished.model(k, data), initial[k], lambda net: training_accuracy(net, data),
                                   len(data.y_train), {**spec, "seed": 7 + k})
        assert measured["students"][f"student_{k}"] == alone
        assert alone["pac_bayes_orig"] > alone["pac_bayes_init"] > 0  # ‖w‖² > ‖w − w₀‖² after one epoch
    json.dumps(measured)  # the measures file is JSON


@pytest.mark.parametrize("method, keys", [("okdph", ["student_augment=crop_flip,none,crop_flip", "fusion_every=1b"]),
                                         ("kdcl", ["student_augment=crop_flip,none"]), ("independent", ["students=1"])])
def test_initial_students_of_table_5_s_methods_are_the_weights_training_started_from(tmp_path, monkeypatch, method,
                                                                                     keys):
    """pac_bayes_init's w₀: what training built for OKDPH (one initial state for both students), KDCL and Base."""
    import copy

    import rdml.train.loop as loop

    started, build = [], loop.build_cohort

    def recording(*args, **kwargs):
        cohort = build(*args, **kwargs)
        started.append([copy.deepcopy(s.model.state_dict()) for s in cohort])
        return cohort

    monkeypatch.setattr(loop, "build_cohort", recording)
    archs = "cnn" if method == "independent" else "cnn,cnn"
    run(tmp_path / "r", f"method={method}", f"arch={archs}", "epochs=1", "seed=2", *keys)
    finished = verified_run(tmp_path / "r", "")
    data = load_dataset("synthetic", **{k: finished.record["config"][k] for k in ("split_seed", "test_fraction")})
    rebuilt = initial_students(finished, data)
    assert started and len(rebuilt) == len(started[-1]) == len(archs.split(","))
    for model, weights in zip(rebuilt, started[-1]):
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    if method == "okdph":  # same_init: one initial state
        assert all(torch.equal(v, rebuilt[1].state_dict()[k]) for k, v in rebuilt[0].state_dict().items())


@pytest.mark.bad_input
def test_pac_bayes_settings_and_bound_are_checked_when_planned(params):
    section = params["studies"][STUDY]
    for change, match in [({"bound": "both"}, "bound='both' is not allowed; allowed: init, orig"),
                          ({"pac_bayes": {"draws": 0}}, "draws=0"),
                          ({"views": {**section["okdph_pac_bayes_table"]["views"], "cifar10": ["crop_flip"]}},
                           r"views.cifar10=\['crop_flip'\] is not allowed; it must list 3")]:
        broken = {**params, "studies": {STUDY: {**section, "okdph_pac_bayes_table": {
            **section["okdph_pac_bayes_table"], **change}}}}
        with pytest.raises(ConfigError, match=match):
            plan_tables(broken, STUDY)


def test_plan_rows_columns_runs_and_measurements(params, table):
    assert table.rows == ARCHS
    assert table.columns == [f"{d}: {m}" for d in ("cifar10", "cifar100") for m in METHODS]
    assert table.measurements == {"pac_bayes": PAC_BAYES_DEFAULTS}  # the released code's settings
    assert table.scale == 1e-6 and "·10^6" in table.caption and "orig" in table.caption
    cells = {}
    for entry in table.entries:
        assert entry.measure == "pac_bayes_orig" and not entry.best and not entry.ranked
        cells.setdefault((entry.row, entry.columns), []).append(entry)
    assert set(cells) == {(a, (c,)) for a in ARCHS for c in table.columns}
    for (arch, (column,)), entries in cells.items():
        dataset, label = column.split(": ")
        runs = [e.run for e in entries]
        assert sorted(r.seed for r in runs) == [42, 43, 44, 45, 46]
        assert {(r.dataset, r.method, r.archs) for r in runs} == \
            {(dataset, METHODS[label], (arch,) * (1 if label == "Base" else 2))}
        assert all(e.students == r.students and len(e.students) == len(r.archs) for e, r in zip(entries, runs))
        cfg = runs[0].config
        assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.weight_decay) == (300, 0.1, 128, 0.0005)
        baseline = {"cifar10": "crop_flip", "cifar100": "crop_flip_rotate"}[dataset]
        if label == "Base":
            assert cfg.augment == baseline and not cfg.student_augment
        elif label in ("DML", "KDCL"):
            assert list(cfg.student_augment) == [baseline] * 2
        else:
            assert (cfg.ce_weight, cfg.kd_weight, cfg.hybrid_weight, cfg.fusion_every) == table_6(dataset, arch)
            assert len(cfg.student_augment) == 3 and cfg.student_augment[0] == baseline
    measured = plan_measurements(params, STUDY)
    assert set(measured) == {r.id for r in plan_study(params, STUDY)} and len(measured) == 2 * 5 * 4 * 5
    assert all(wanted == {"pac_bayes": PAC_BAYES_DEFAULTS} for _, wanted in measured.values())


def test_student_runs_are_okdph_table3_s_two_student_runs(params, table):
    """DML, KDCL and OKDPH train as okdph_table3's 2-student row (the same keys), on each backbone both share."""
    def keyed(runs):
        return {(r.dataset, r.method, r.archs, r.seed): (r.options, r.alpha, r.variant) for r in runs}

    ours = keyed(e.run for e in table.entries if e.run.method != "independent")
    theirs = keyed(e.run for t in plan_tables(params, "okdph_table3") for e in t.entries)
    shared = [k for k in ours if k[2][0] in ("okdph_resnet32", "okdph_vgg16")]
    assert len(shared) == 2 * 2 * 3 * 5
    assert all(ours[k] == theirs[k] for k in shared)


def test_claims_say_okdph_is_lowest_as_the_paper_s_numbers_do(table):
    """Each claim's higher cell is another method's and its lower OKDPH's: the table's metric counts higher as
    better, so a supported claim is OKDPH's bound below the other's; on the paper's printed numbers every
    claim holds."""
    assert METRICS[table.metric].direction == "higher"
    assert len(table.claims) == 5 * 2 * 3
    printed = {(c["row"], c["column"]): c["value"] for c in reported_cells()}
    for claim in table.claims:
        (row, high), (low_row, low) = claim.better, claim.worse
        assert row == low_row and low.endswith(": OKDPH") and not high.endswith(": OKDPH")
        assert high.split(": ")[0] == low.split(": ")[0] and claim.says == f"OKDPH < {high.split(': ')[1]}"
        assert printed[claim.better] > printed[claim.worse]


def test_transcription_reads_each_cell_from_its_place_in_the_printed_row(table):
    cells = reported_cells()
    assert len(cells) == len(table.rows) * len(table.columns)
    for cell in cells:
        name, *numbers = cell["quote"].split()
        assert PRINTED_NAMES[name] == cell["row"] and len(numbers) == 8
        assert float(numbers[table.columns.index(cell["column"])]) == cell["value"]
        assert cell["source"] == "Supplement Table 5" and cell["kind"] == "value"


SYNTHETIC = {
    "datasets": ["synthetic"],
    "seeds": [0, 1],
    "metric": "final",
    "train": {"epochs": 1, "batch_size": 64},
    "okdph_pac_bayes_table": {
        "archs": ["cnn"], "bound": "orig",
        "baseline": {"synthetic": "crop_flip"},
        "views": {"synthetic": ["crop_flip", "none", "crop_flip"]},
        "hybrid": [{"dataset": "synthetic", "arch": "cnn", "ce_weight": 0.8, "kd_weight": 0.8, "hybrid_weight": 0.5,
                    "fusion_every": "1e"}],
        "pac_bayes": {"draws": 2, "search_depth": 3},
    },
}


@pytest.mark.slow
def test_a_tiny_study_is_trained_measured_and_tabulated(tmp_path, monkeypatch):
    """Train, measure and tabulate as the pipeline does: each cell the mean over students and seeds of the
    measures files' pac_bayes_orig, printed × 10⁻⁶, and the claims put OKDPH's cell low."""
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
            measure_job({"study": "t", "run": run_.id, "directory": run_.directory, "measurements": wanted}, gpus=0,
                        threads=1)
        write_tables("t", "params.yaml")
    finally:
        torch.set_num_threads(threads)
    tables = tmp_path / "results" / "t" / "tables"
    sidecar = json.loads((tables / "okdph_pac_bayes_table.cells.json").read_text())
    assert sidecar["measurements"]["pac_bayes"]["draws"] == 2
    markdown = (tables / "okdph_pac_bayes_table.md").read_text()
    shown = []
    for label, method in METHODS.items():
        values = []
        for path in sorted((tmp_path / "results" / "t" / "measures" / "synthetic").glob(f"{method}-cnn*.json")):
            values += [s["pac_bayes_orig"] for s in json.loads(path.read_text())["students"].values()]
        assert len(values) == 2 * (1 if label == "Base" else 2) and all(math.isfinite(v) and v > 0 for v in values)
        cell = sidecar["cells"][f"cnn|synthetic: {label}"]
        assert cell["mean"] == pytest.approx(statistics.mean(values), rel=1e-12) and cell["n"] == len(values)
        shown.append(f"{statistics.mean(values) * 1e-6:.2f} ± {statistics.stdev(values) * 1e-6:.2f} (n={len(values)})")
    assert f"| cnn | {' | '.join(shown)} |" in markdown.splitlines()
    assert "PAC-Bayes bound (·10^6" in markdown and "uses orig" in markdown
    claims = json.loads((tables / "claims.json").read_text())["claims"]
    assert {(c["claim"], c["low"][1]) for c in claims} == {(f"OKDPH < {m}", "synthetic: OKDPH") for m in ("Base", "DML", "KDCL")}
