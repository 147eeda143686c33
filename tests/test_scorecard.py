"""The reproduction scorecard (rdml.report.scorecard) on fabricated studies: its counts against a hand
count of the fabricated numbers, its links, a study without paper numbers, and that a failed build leaves
the old scorecard."""

import copy
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from test_tables import PARAMS
from rdml.keys import ConfigError
from rdml.report.claims import claim_results
from rdml.report.scorecard import NO_PAPER, paper_outcome, write_scorecard
from rdml.report.table import build_tables
from rdml.report.write import write_tables
from rdml.study.plan import plan_study
from rdml.train.integrity import summarise, write_record

SPEC = copy.deepcopy(PARAMS["studies"]["t"])  # test_tables' study: every layout of the default study on the synthetic data

# Students' accuracies per run (by seed); every other run scores 0.5. RDML α=2 beats DML (0.5) in both
# columns; in the pair table DML's cnn (62 ± 2) loses to the independent cnn (71 ± 1).
ACCURACIES = {
    "synthetic/dml-mlp+mlp-a2-s0": [0.60, 0.70], "synthetic/dml-mlp+mlp-a2-s1": [0.61, 0.72],
    "synthetic/dml-mlp+mlp-a2-s2": [0.62, 0.71],
    "synthetic/dml-mlp+cnn-a1-s0": [0.5, 0.60], "synthetic/dml-mlp+cnn-a1-s1": [0.5, 0.62],
    "synthetic/dml-mlp+cnn-a1-s2": [0.5, 0.64],
    "synthetic/independent-cnn-s0": [0.70], "synthetic/independent-cnn-s1": [0.71], "synthetic/independent-cnn-s2": [0.72],
}
GPU_RUN = "synthetic/independent-mlp-s0"  # 5 epochs of 720 s on a GPU: 1 GPU-hour; every other run 5 × 36 s on a CPU


def params(study: str) -> dict:
    return {"build": [study], "studies": {study: SPEC}}


def fabricate(root: Path, study: str) -> int:
    """A sealed record per planned run of `study` (ACCURACIES, else 0.5 per model, in each of 5 epochs),
    with the device it ran on and its epochs' seconds; returns the number of runs."""
    runs = plan_study(params(study), study)
    for run in runs:
        students = len(run.archs)
        accs = ACCURACIES.get(run.id, [0.5] * students)
        names = [*run.students, "ensemble"][: students + (students > 1)]
        accs = accs + [sum(accs) / len(accs)] * (len(names) - len(accs))
        epochs = [{"test": {name: {"acc": a, "loss": 1.0} for name, a in zip(names, accs)}} for _ in range(5)]
        gpu = run.id == GPU_RUN
        write_record(root / run.directory / "record.json", {
            "format": "rdml.run/2", "status": "ok", "config_sha256": run.config_sha256, "config": {"summary_last": [5]},
            "epochs": epochs, "summary": summarise(epochs, [5]),
            "environment": {"device": "cuda:0" if gpu else "cpu", "device_name": "H100" if gpu else "Xeon"},
            "epoch_seconds": [720.0 if gpu else 36.0] * 5})
    return len(runs)


def cell(study, table, row, column, kind, value, source):
    return {"study": study, "table": table, "row": row, "column": column, "kind": kind, "value": value, "source": source}


PAIR = "synthetic: mlp, cnn"
# Paper P on study t, each cell's outcome by hand from the fabricated numbers (ours: mean, 95 % t-interval):
P_CELLS = [
    cell("t", "rdml_table", "DML", "synthetic/mlp/0", "value", 50, "T1"),  # ours [50, 50]: inside
    cell("t", "rdml_table", "Ind.", "synthetic/mlp/0", "value", 90, "T1"),  # ours [50, 50]: outside
    cell("t", "rdml_table", "RDML α=2", "synthetic/mlp/0", "lower_bound", 40, "T1"),  # ours 61 ± 2.5: met
    cell("t", "rdml_table", "RDML α=2", "synthetic/mlp/1", "lower_bound", 75, "T1"),  # ours 71 ± 2.5: missed
    cell("t", "rdml_table", "DML", "synthetic/mlp/1", "upper_bound", 50, "T1"),  # ours [50, 50] on the bound: undecided
    cell("t", "rdml_table", "Ind.", "synthetic/mlp/1", "value", 50, "T1"),  # no such cell (not run): not judged
    cell("t", "pair_table", PAIR, "Ind. Net 1", "interval", [40, 60], "T2"),  # ours [50, 50]: inside the interval
    cell("t", "pair_table", PAIR, "Ind. Net 2", "interval", [80, 90], "T2"),  # ours 71 ± 2.5: below
    cell("t", "pair_table", PAIR, "DML Net 1", "interval", [30, 40], "T2"),  # ours [50, 50]: above
    cell("t", "pair_table", PAIR, "DML Net 2", "interval", [60, 70], "T2"),  # ours 62 ± 5.0 across 60: undecided
    cell("t", "kd_table", "synthetic: α=1", "Average accuracy", "figure_only", None, "F1"),  # not judged
]
P_COUNT = {"printed cells": "11", "inside our 95 % CI": "1", "outside": "1", "bounds met / missed / undecided": "1 / 1 / 1",
           "intervals inside / below / above / undecided": "1 / 1 / 1 / 1", "not judged": "2"}
Q_CELLS = [cell("t", "rdml_table", "Ind.", "synthetic/mlp/0", "value", 50, "Q1")]  # the cell P puts at 90: inside


def reported(root: Path) -> None:
    (root / "reported").mkdir()
    for paper, cells in (("P", P_CELLS), ("Q", Q_CELLS)):
        (root / "reported" / f"{paper.lower()}.yaml").write_text(json.dumps({"paper": paper, "cells": cells}))


def parsed(markdown: str) -> list[dict]:
    """The scorecard's table as one dict per line, by column."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split(" | ")]
    return [dict(zip(head, (c.strip() for c in line.strip("|").split(" | ")))) for line in lines[1:]]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Study t (papers P and Q report on it) and study u (no paper numbers), both written by `rdml tables`
    (a test that changes them works on a copy)."""
    root = tmp_path_factory.mktemp("built")
    reported(root)
    runs = {study: fabricate(root, study) for study in ("t", "u")}
    for study in runs:
        write_tables(study, root=root, spec=SPEC)
    return root, runs


def test_the_scorecard_counts_what_a_hand_count_of_the_fabricated_numbers_gives(built):
    root, runs = built
    lines = {(line["paper"], line["study"]): line for line in parsed((root / "results/scorecard.md").read_text())}
    assert set(lines) == {("P", "t"), ("Q", "t"), (NO_PAPER, "u")}
    assert {k: lines["P", "t"][k] for k in P_COUNT} == P_COUNT
    assert lines["Q", "t"]["printed cells"] == "1" and lines["Q", "t"]["inside our 95 % CI"] == "1"
    assert lines["Q", "t"]["outside"] == "0"
    # the claims' verdicts, from the tables themselves (not from the written files the scorecard reads)
    verdicts = Counter(r["verdict"] for t in build_tables(params("t"), "t", root) for r in claim_results(t))
    assert verdicts["supported"] == 2 and verdicts["contradicted"] == 1  # RDML α=2 > DML twice; DML cnn < Ind. cnn
    expected = f"{verdicts['supported']} / {verdicts['not significant']} / {verdicts['contradicted']}"
    claims = "claims supported / not significant / contradicted"
    assert lines["P", "t"][claims] == lines["Q", "t"][claims] == lines[NO_PAPER, "u"][claims] == expected
    # compute: one run of 5 × 720 s on a GPU, every other run 5 × 36 s on a CPU
    cpu = (runs["u"] - 1) * 5 * 36 / 3600
    assert lines[NO_PAPER, "u"]["compute measured"] == f"1.00 GPU-h, {cpu:.2f} CPU-h"
    # the study without paper numbers says so, and counts no printed cell
    assert lines[NO_PAPER, "u"]["printed cells"] == "—" and lines[NO_PAPER, "u"]["outside"] == "—"
    summary = (root / "results/scorecard.md").read_text()
    assert "2 studies built; 12 printed cells compared (10 judged): 2 inside our 95 % interval, 1 outside" in summary
    assert f"Compute measured: 2.00 GPU-hours, {2 * cpu:.2f} CPU-hours" in summary


def test_every_link_of_the_scorecard_opens_a_written_table_file(built):
    root, _ = built
    results = root / "results"
    lines = {(line["paper"], line["study"]): line for line in parsed((results / "scorecard.md").read_text())}
    links = {key: re.findall(r"\[([^]]+)\]\(([^)]+)\)", line["files"]) for key, line in lines.items()}
    assert [text for text, _ in links["P", "t"]] == ["kd_table vs paper", "pair_table vs paper", "rdml_table vs paper",
                                                     "claims", "compute"]  # the tables by name
    assert [path for _, path in links["Q", "t"]] == ["t/tables/rdml_table.paper.md", "t/tables/claims.md",
                                                     "t/tables/compute.md"]
    assert [path for _, path in links[NO_PAPER, "u"]] == ["u/tables/claims.md", "u/tables/compute.md"]
    for target in (path for found in links.values() for _, path in found):
        assert (results / target).is_file(), target
    page = (results / "scorecard.html").read_text()
    hrefs = re.findall(r'href="([^"]+)"', page)
    assert len(hrefs) == sum(len(found) for found in links.values())
    assert all((results / href).is_file() and href.endswith(".html") for href in hrefs)
    # the paper comparison the scorecard counted says the same: its check column, cell by cell
    checks = Counter(row.split(" | ")[6] for row in (results / "t/tables/rdml_table.paper.md").read_text().splitlines()
                     if row.startswith("| ") and not row.startswith("| row"))
    assert checks == {"inside": 2, "**outside**": 1, "meets bound": 1, "below bound": 1, "undecided": 1,
                      "no interval (n < 2)": 1}


def test_the_scorecard_covers_the_studies_built_so_far(tmp_path):
    (tmp_path / "reported").mkdir()
    fabricate(tmp_path, "u")
    fabricate(tmp_path, "t")
    write_tables("u", root=tmp_path, spec=SPEC)
    lines = parsed((tmp_path / "results/scorecard.md").read_text())
    assert [(line["paper"], line["study"]) for line in lines] == [(NO_PAPER, "u")]
    assert "1 study built; 0 printed cells compared" in (tmp_path / "results/scorecard.md").read_text()
    write_tables("t", root=tmp_path, spec=SPEC)
    lines = parsed((tmp_path / "results/scorecard.md").read_text())
    assert [(line["paper"], line["study"]) for line in lines] == [(NO_PAPER, "t"), (NO_PAPER, "u")]
    assert "2 studies built; 0 printed cells compared" in (tmp_path / "results/scorecard.md").read_text()


@pytest.mark.fault
def test_a_failed_build_leaves_the_old_scorecard(built, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(built[0], root)
    before = {name: (root / "results" / name).read_bytes() for name in ("scorecard.md", "scorecard.html")}
    run = next(r for r in plan_study(params("t"), "t") if r.method == "dml")
    record = root / run.directory / "record.json"
    record.write_text(record.read_text().replace('"acc": 0.5', '"acc": 0.99', 1))  # a forged record: refused
    with pytest.raises(ConfigError):
        write_tables("t", root=root, spec=SPEC)
    assert {name: (root / "results" / name).read_bytes() for name in before} == before
    # a scorecard that cannot be written (a directory in its place) leaves the other file as it was too,
    # though it would now say one study less
    shutil.rmtree(root / "results/u/tables")
    (root / "results/scorecard.html").unlink()
    (root / "results/scorecard.html").mkdir()
    with pytest.raises(ConfigError, match="scorecard.html is a directory"):
        write_scorecard(root)
    assert (root / "results/scorecard.md").read_bytes() == before["scorecard.md"]
    assert not list((root / "results").glob(".scorecard*.tmp"))


def test_an_unknown_check_is_refused_by_name():
    assert paper_outcome("undecided", "> 89") == "bound undecided"
    assert paper_outcome("undecided", "87–89") == "interval undecided"
    with pytest.raises(ConfigError, match="check='maybe'"):
        paper_outcome("maybe", "89")


def report_kind(name: str) -> str:
    """The subcategory a file of a tables folder belongs in, by its name (as docs/reporting.md lists them)."""
    if name.startswith("fig_"):
        return "Figures"
    if name.endswith(".paper.html"):
        return "Paper comparison"
    return {"claims.html": "Claims", "compute.html": "Compute"}.get(name, "Tables")


CAPTIONS = {"Tables": "names the runs behind every cell", "Paper comparison": "beside the paper",
            "Claims": "comparisons the papers draw", "Compute": "cost, measured", "Figures": "drawn from the runs",
            "Scorecard": "The reproduction scorecard"}


@pytest.mark.system
def test_the_snakemake_report_has_a_landing_page_and_each_kind_in_its_place_with_its_caption(tmp_path):
    """`snakemake --report` of a project whose tables are written (fabricated runs, `--touch`): the landing
    page names the study and how to read each kind; every file sits under its study and kind, captioned."""
    import zipfile

    from conftest import BIN, make_project, sh

    (tmp_path / "project").mkdir()
    project = make_project(tmp_path / "project", {"build": ["t"], "gpus": 0, "studies": {"t": SPEC}})
    shutil.rmtree(project / "reported")
    reported(project)
    fabricate(project, "t")
    write_tables("t", root=project, spec=SPEC)
    sh(str(BIN / "snakemake"), "all_tables", "scorecard", "--cores", "1", "--touch", cwd=project)
    sh(str(BIN / "snakemake"), "all_tables", "scorecard", "--report", "report.zip", cwd=project)
    with zipfile.ZipFile(project / "report.zip") as archive:
        page = archive.read("report/report.html").decode()
    data = {name: json.loads(text) for name, text in
            re.findall(r'<script id="[\w-]+">\s*var (results|categories|workflow_desc) = (.+?);\n', page)}
    landing = data["workflow_desc"]
    assert "Studies built" in landing and "<strong>t</strong>" in landing and 'id="how-to-read-it"' in landing
    assert all(f"<strong>{kind}</strong>" in landing for kind in ("Tables", "Paper comparison", "Claims", "Figures",
                                                                   "Compute"))
    tables = project / "results/t/tables"
    expected = {"t": {}, "All studies": {"Scorecard": ["results/scorecard.html"]}}
    for path in sorted(tables.glob("*.html")) + sorted(tables.glob("*.png")):
        expected["t"].setdefault(report_kind(path.name), []).append(f"results/t/tables/{path.name}")
    assert {cat: {sub: sorted(files) for sub, files in subs.items()} for cat, subs in data["categories"].items()} \
        == {cat: {sub: sorted(files) for sub, files in subs.items()} for cat, subs in expected.items()}
    assert set(expected["t"]) == {"Tables", "Paper comparison", "Claims", "Compute", "Figures"}
    for category in expected.values():
        for kind, files in category.items():
            for file in files:
                assert CAPTIONS[kind] in data["results"][file]["caption"], (file, kind)
