"""DML Fig. 6's Market-1501 part (§4.10), the layout semi_identities_table: "For Market-1501, we randomly select M
identities as labelled in the training set, varying M from 100 to 751. Experiments are performed with 3 different
training strategies: 1) training on the labelled data only with single network; 2) training on labelled data only
with DML (DML-labelled). 3) training on all data with DML, where the classification loss is computed for labelled
data only, and KL loss is calculated for all the training data (DML-all)." (dml-deep-mutual-learning.md L292). Its
runs and cells, its claims, its smoke variant, refusals, and a tiny study trained and tabulated."""

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rdml.data.base import labelled_class_ids, load_dataset
from rdml.keys import ConfigError
from rdml.study.params import load_params
from rdml.study.plan import plan_jobs, plan_study, plan_tables

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO.parent / "shared" / "papers" / "dml-deep-mutual-learning.md"
STRATEGIES = ["Single (labelled)", "DML-labelled", "DML-all"]


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


def tables(params, study):
    return {spec.name: spec for spec in plan_tables(params, study)}


def cell_runs(spec) -> dict:
    """(row, column) → the runs its entries read, each with the students read."""
    cells: dict = {}
    for e in spec.entries:
        cells.setdefault((e.row, e.columns[0]), []).append((e.run, e.students))
    return cells


def test_dml_market_plots_the_paper_s_range_of_m_with_mobilenets(params):
    """The text gives M's range alone ("varying M from 100 to 751"), so the ends are the paper's, the points between
    rdml's; 751 is every training identity of Market-1501."""
    section = params["studies"]["dml_market"]["semi_identities_table"]
    assert section == {"arch": "mobilenetv1_100", "identities": [100, 250, 500, 751]}
    if PAPER.is_file():
        text = " ".join(PAPER.read_text(encoding="utf-8").split())
        low, high = map(int, re.search(r"varying \$M\$ from (\d+) to (\d+)", text).groups())
        assert (low, high) == (min(section["identities"]), max(section["identities"]))


def test_every_cell_reads_its_strategy_s_runs_with_both_networks(params):
    spec = tables(params, "dml_market")["semi_identities_table"]
    market = tables(params, "dml_market")["market_table"]
    assert spec.rows == [f"market1501: M={m}" for m in (100, 250, 500, 751)] and spec.columns == STRATEGIES
    assert spec.metric == "map" and spec.figures == ("curves",) and spec.curves == "columns"
    scratch = {(e.row.split(", ")[0], e.run.seed): e.run for e in market.entries if e.row.endswith("scratch")}  # Table 3's
    for (row, column), runs in cell_runs(spec).items():
        m = int(row.split("M=")[1])
        assert sorted(run.seed for run, _ in runs) == [0, 1, 2]
        for run, students in runs:
            cfg = run.config
            assert students == ("student_0", "student_1") and cfg.arch == ["mobilenetv1_100"] * 2
            assert cfg.method == ("independent" if column == "Single (labelled)" else "dml") and not cfg.pretrained
            if m == 751:  # every identity labelled: Table 3's scratch runs, plain Ind. and DML
                name = "mobilenetv1_100" if cfg.method == "independent" else "mobilenetv1_100+DML"
                assert run == scratch[f"market1501: {name}", run.seed]
                assert (cfg.labelled_classes, cfg.unlabelled) == (0, "mimic")
            else:  # DML-all: cross-entropy on the labelled rows, mimicry on all; the others train on the labelled alone
                assert (cfg.labelled_classes, cfg.unlabelled) == (m, "mimic" if column == "DML-all" else "drop")
                assert cfg.method == "independent" or cfg.update_order == "sequential"  # the study's Algorithm 1


def test_the_table_adds_only_its_partly_labelled_runs(params):
    """Three strategies × three M below 751 × three seeds: 27 runs of its own; every other run is another table's."""
    without = {**params, "studies": {**params["studies"], "dml_market": {
        k: v for k, v in params["studies"]["dml_market"].items() if k != "semi_identities_table"}}}
    before = {r.id for r in plan_study(without, "dml_market")}
    after = {r.id: r for r in plan_study(params, "dml_market")}
    added = set(after) - before
    assert before <= set(after) and len(added) == 27
    assert {(after[i].config.labelled_classes, after[i].config.unlabelled, after[i].method) for i in added} == {
        (m, mode, method) for m in (100, 250, 500)
        for method, mode in (("independent", "drop"), ("dml", "drop"), ("dml", "mimic"))}


def test_claims_are_the_cifar_layout_s_at_every_m(params):
    """§4.10: "(1) Training two networks with DML consistently performs better than training a single network";
    "(2) ... DML-all further improves the performance by exploiting the unlabelled data" (no unlabelled data at 751)."""
    spec = tables(params, "dml_market")["semi_identities_table"]
    cifar = tables(params, "dml_semi_supervised")["semi_table"]
    assert {c.says for c in spec.claims} == {c.says for c in cifar.claims}
    assert [(c.says, c.better, c.worse, c.family) for c in spec.claims] == [
        claim for m in (100, 250, 500, 751) for claim in
        [("DML-labelled > Single", (f"market1501: M={m}", "DML-labelled"), (f"market1501: M={m}", "Single (labelled)"),
          "market1501: DML vs single")]
        + ([("DML-all > DML-labelled", (f"market1501: M={m}", "DML-all"), (f"market1501: M={m}", "DML-labelled"),
             "market1501: DML-all vs DML-labelled")] if m < 751 else [])]


def test_the_smoke_variant_labels_3_and_all_12_tiny_identities(params):
    spec = tables(params, "dml_market_smoke")["semi_identities_table"]
    market = tables(params, "dml_market_smoke")["market_table"]
    assert spec.rows == ["tiny_market1501: M=3", "tiny_market1501: M=12"]
    cells = cell_runs(spec)
    assert {run.config.arch[0] for runs in cells.values() for run, _ in runs} == {"reid_tiny"}
    assert {run.config.labelled_classes for run, _ in cells["tiny_market1501: M=3", "DML-all"]} == {3}
    plain = {e.run.id for e in market.entries if e.row.endswith("scratch")}
    assert {run.id for column in STRATEGIES for run, _ in cells["tiny_market1501: M=12", column]} == plain


STUDY = {"datasets": ["tiny_market1501"], "seeds": [0, 1], "metric": "final", "paper": "DML Fig. 6",
         "train": {"epochs": 1, "batch_size": 16, "optimizer": "adam", "lr": 0.001, "normalize": "inception",
                   "device": "cpu", "precision": "fp32", "memory_format": "contiguous"},
         "semi_identities_table": {"arch": "reid_tiny", "identities": [4, 12]}}


@pytest.mark.bad_input
@pytest.mark.parametrize("identities, match", [
    ([4, 13], r"identities=\[4, 13\]: dataset tiny_market1501 has 12 training classes; give M in \[1, 12\]"),
    ([4, 4], r"identities=\[4, 4\]: give distinct numbers of labelled classes, each an integer >= 1"),
    ([0, 4], r"identities=\[0, 4\]: give distinct"),
    ([True, 4], r"identities=\[True, 4\]: give distinct"),
    ([2.5], r"identities=\[2.5\]: give distinct"),
    ([], r"identities=\[\]: give distinct"),
    (100, r"identities=100: give distinct"),
])
def test_identities_outside_the_classes_or_repeated_are_refused(identities, match):
    study = {**STUDY, "semi_identities_table": {"arch": "reid_tiny", "identities": identities}}
    with pytest.raises(ConfigError, match=match):
        plan_tables({"studies": {"t": study}}, "t")


@pytest.mark.bad_input
def test_a_section_without_identities_is_refused():
    study = {**STUDY, "semi_identities_table": {"arch": "reid_tiny"}}
    with pytest.raises(ConfigError, match=r"studies.t.semi_identities_table: missing key 'identities'"):
        plan_tables({"studies": {"t": study}}, "t")


def test_a_tiny_study_is_trained_and_tabulated(tmp_path, monkeypatch):
    """As the pipeline runs it: each cell's mean is the mean of both networks' final mAP over its runs' records, and
    the DML-labelled and Single runs trained on the labelled identities' rows alone, DML-all on every row."""
    from rdml.pipeline.jobs import run_job
    from rdml.report.write import write_tables

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"build": ["t"], "studies": {"t": STUDY}}, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    try:
        params = load_params("params.yaml")
        runs = plan_study(params, "t")
        assert len(runs) == 2 * (2 + 3)  # per seed: plain Ind. and DML (M = 12), and three runs at M = 4
        for job in plan_jobs(params, "t"):
            run_job(job.spec(), gpus=0, threads=1)
        write_tables("t", "params.yaml")
    finally:
        torch.set_num_threads(threads)
    sidecar = json.loads((tmp_path / "results" / "t" / "tables" / "semi_identities_table.cells.json").read_text())
    assert (sidecar["metric"], sidecar["score"]) == ("final", "map")
    labels = load_dataset("tiny_market1501", split_seed=0, test_fraction=0.25, normalize="inception").y_train.numpy()
    kept = np.isin(labels, labelled_class_ids(12, 4, 0))  # the study's split_seed: 0; no test or validation rows drawn
    for run in runs:
        split = json.loads((tmp_path / run.directory / "record.json").read_text())["data"]["split"]
        mask = kept if run.config.labelled_classes else np.ones_like(kept)
        assert split["sha256"] == hashlib.sha256(mask.tobytes()).hexdigest()  # official split: the labelled mask alone
        assert split["labelled_size"] == mask.sum() == (4 if run.config.labelled_classes else 12) * 6  # 6 crops each
        assert split.get("labelled_classes") == (run.config.labelled_classes or None)
        assert split.get("unlabelled") == ("drop" if run.config.unlabelled == "drop" and run.config.labelled_classes else None)
    for m in (4, 12):
        for column in STRATEGIES:
            cell = sidecar["cells"][f"tiny_market1501: M={m}|{column}"]
            values = []
            for item in cell["runs"]:
                record = json.loads((tmp_path / item["run"] / "record.json").read_text())
                assert record["config"]["labelled_classes"] == (m if m < 12 else 0)
                values.append(record["epochs"][-1]["test"][item["student"]]["map"])  # metric final: the last epoch
            assert cell["n"] == 4 and sorted(i["student"] for i in cell["runs"]) == ["student_0"] * 2 + ["student_1"] * 2
            assert cell["mean"] == pytest.approx(sum(values) / 4, rel=1e-12)
