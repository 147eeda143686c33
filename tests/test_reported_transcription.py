"""The papers' reported numbers in reported/*.yaml: every stored cell names a study, table, row and
column rdml builds, says what kind of number it is, quotes the paper text it was read from, and
no cell is stored twice; a few key numbers are checked against the sentences that print them."""

import math
import re
from pathlib import Path

import pytest
import yaml

from rdml.study.params import load_params
from rdml.study.plan import plan_tables

REPO = Path(__file__).resolve().parents[1]
REPORTED = REPO / "reported"
FILES = ["rdml.yaml", "dml.yaml", "renyi_kd_thesis.yaml", "dml_vs_kd.yaml", "okdph.yaml"]
KINDS = {"value", "lower_bound", "upper_bound", "interval", "figure_only"}
KEYS = {"study", "table", "row", "column", "value", "kind", "source", "quote"}
NUMBER = re.compile(r"(?<![\d.])\d+(?:\.\d+)?(?![\d.]*\d)")


def load(name: str) -> dict:
    return yaml.safe_load((REPORTED / name).read_text(encoding="utf-8"))


PAPERS = REPO.parent / "shared" / "papers"  # beside the repository where rdml is developed; a user's clone has none
NO_PAPERS = "the paper texts are not here: they live in ../shared/papers beside the repository, which a user's clone lacks"


def paper_text(doc: dict) -> str:
    if not PAPERS.is_dir():
        pytest.skip(NO_PAPERS)
    return (REPO / doc["file"]).read_text(encoding="utf-8")


def squash(text: str) -> str:
    return " ".join(text.split())


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def tables() -> dict:
    """(study, table) → (rows, columns) of every study the files name."""
    params = load_params(REPO / "params.yaml")
    studies = {c["study"] for name in FILES for c in load(name)["cells"]}
    missing = sorted(studies - set(params["studies"]))
    assert not missing, f"studies not in params.yaml: {missing}"
    return {(s, t.name): (list(t.rows), list(t.columns)) for s in studies for t in plan_tables(params, s)}


def cells_of(name: str) -> list[dict]:
    return load(name)["cells"]


def find(name: str, study: str, table: str, row: str, column: str) -> dict:
    found = [c for c in cells_of(name) if (c["study"], c["table"], c["row"], c["column"]) == (study, table, row, column)]
    assert len(found) == 1, f"{name}: {(study, table, row, column)} stored {len(found)} times"
    return found[0]


@pytest.mark.parametrize("name", FILES)
def test_file_names_its_paper(name):
    doc = load(name)
    assert set(doc) == {"paper", "file", "cells"}, sorted(doc)
    assert isinstance(doc["paper"], str) and doc["paper"].strip()
    assert doc["file"].startswith("../shared/papers/") and doc["file"].endswith(".md")
    assert isinstance(doc["cells"], list) and doc["cells"]


@pytest.mark.skipif(not PAPERS.is_dir(), reason=NO_PAPERS)
@pytest.mark.parametrize("name", FILES)
def test_the_named_paper_is_there(name):
    doc = load(name)
    assert (REPO / doc["file"]).is_file(), f"{name}: no paper file {doc['file']}"


@pytest.mark.parametrize("name", FILES)
def test_every_cell_is_a_cell_rdml_builds(name, tables):
    for cell in cells_of(name):
        where = f"{name}: {cell.get('study')} / {cell.get('table')} / {cell.get('row')!r} / {cell.get('column')!r}"
        assert KEYS <= set(cell) <= KEYS | {"note"}, f"{where}: keys {sorted(cell)}"
        assert (cell["study"], cell["table"]) in tables, f"{where}: the study has no such table"
        rows, columns = tables[cell["study"], cell["table"]]
        assert cell["row"] in rows, f"{where}: row not in {rows}"
        assert cell["column"] in columns, f"{where}: column not in {columns}"
        assert cell["kind"] in KINDS, f"{where}: kind {cell['kind']!r}"
        if cell["kind"] == "figure_only":
            assert cell["value"] is None, f"{where}: a figure_only cell has value null"
        elif cell["kind"] == "interval":  # "between 87 % and 89 %": [low, high]
            ends = cell["value"]
            assert isinstance(ends, list) and len(ends) == 2 and all(map(is_number, ends)) and ends[0] <= ends[1], \
                f"{where}: an interval's value is [low, high] with low <= high, not {ends!r}"
        else:
            assert is_number(cell["value"]), f"{where}: value {cell['value']!r} is not a number"
        for key in ("source", "quote") + (("note",) if "note" in cell else ()):
            assert isinstance(cell[key], str) and cell[key].strip(), f"{where}: empty {key}"


def test_no_cell_is_stored_twice():
    seen: dict[tuple, str] = {}
    for name in FILES:
        for cell in cells_of(name):
            key = (cell["study"], cell["table"], cell["row"], cell["column"])
            assert key not in seen, f"{key} stored in {seen[key]} and {name}"
            seen[key] = name


@pytest.mark.parametrize("name", FILES)
def test_quotes_are_the_papers_words_and_print_the_value(name):
    """Each quote occurs in the paper (whitespace aside), and a number the cell stores is printed in it."""
    doc = load(name)
    text = squash(paper_text(doc))
    for cell in doc["cells"]:
        where = f"{name}: {cell['study']} / {cell['row']!r} / {cell['column']!r}"
        assert squash(cell["quote"]) in text, f"{where}: quote not in {doc['file']}: {cell['quote']!r}"
        if cell["value"] is not None:
            printed = [float(n) for n in NUMBER.findall(cell["quote"])]
            for value in cell["value"] if cell["kind"] == "interval" else [cell["value"]]:  # an interval: both ends
                assert any(math.isclose(n, value, abs_tol=1e-9) for n in printed), \
                    f"{where}: {value} is not among the numbers its quote prints {printed}"


def printed_in_place(cell: dict, columns: list[str]) -> float:
    """The number a table row (the quote) prints in the cell's column: the papers' tables list their
    numbers in the order of rdml's columns (RDML Table 1: Ind. once per data set × architecture)."""
    numbers = [float(n) for n in NUMBER.findall(re.sub(r"<sub>.*?</sub>", "", cell["quote"]))]
    if cell["table"] == "rdml_table":
        groups = list(dict.fromkeys(c.rsplit("/", 1)[0] for c in columns))  # data set / architecture
        group, student = cell["column"].rsplit("/", 1)
        index = groups.index(group) if cell["row"] == "Ind." else 2 * groups.index(group) + int(student)
        return numbers[-(len(groups) if cell["row"] == "Ind." else 2 * len(groups)):][index]
    if cell["table"] == "pair_table":  # CIFAR-10's six columns, then CIFAR-100's
        return numbers[-12:][6 * cell["row"].startswith("cifar100") + columns.index(cell["column"])]
    if cell["table"] in ("cohort_table", "semi_table"):  # Ind. at every K, single at 100 % labelled: Table 2's
        return numbers[-12:][6]                          # ResNet-32 pair row, CIFAR-100 Independent
    if cell["table"] == "text_table":  # RDML Table 3: the data set's name, then rdml's eight columns in order
        return numbers[-len(columns):][columns.index(cell["column"])]
    if cell["table"] == "kd_vs_dml_table":
        return numbers[-5:][columns.index(cell["column"])]
    if cell["table"] == "market_table":  # DML Table 3: single-query mAP, rank-1, then multi-query's (a study may lack those)
        return numbers[-4:][["SQ mAP", "SQ rank-1", "MQ mAP", "MQ rank-1"].index(cell["column"])]
    if cell["table"] == "settings_table":  # DML Table 5: mAP, rank-1
        return numbers[-2:][columns.index(cell["column"])]
    if cell["table"] == "kd_table":  # thesis Table 3.2: α, Average Accuracy, Improvement
        return numbers[["Average accuracy", "Improvement"].index(cell["column"]) + 1]
    okdph = ["DML", "ONE", "KDCL", "OKDDip", "FFL", "PCL", "OKDPH"]  # OKDPH supplement: "Ours" is OKDPH
    if cell["table"] == "okdph_table":  # supplement Table 3: ResNet32's seven methods, then VGG16's
        arch, method = cell["column"].split(": ")
        archs = list(dict.fromkeys(c.split(": ")[0] for c in columns))
        return numbers[-14:][7 * archs.index(arch) + okdph.index(method)]
    if cell["table"] == "okdph_data_table":  # supplement Table 4: the seven methods after the setting
        return numbers[-7:][okdph.index(cell["column"])]
    raise AssertionError(cell["table"])


def test_table_cells_are_read_from_their_column(tables):
    """Where the paper prints a table row, the cell's value sits at its column's place in that row."""
    checked = 0
    for name in FILES:
        for cell in cells_of(name):
            if cell["source"] in ("Table 1", "Table 2", "Table 3", "Table 4", "Table 5", "Table 3.2", "Supplement Table 3",
                                  "Supplement Table 4"):
                columns = tables[cell["study"], cell["table"]][1]
                assert printed_in_place(cell, columns) == cell["value"], (name, cell["study"], cell["row"], cell["column"])
                checked += 1
    # RDML Table 1 twice, Table 2, Table 3 twice, DML Tables 2 and 4 (CIFAR-100 and Market-1501 rows), thesis 3.2, cohort
    # Ind. at K = 2, 3, 4, the semi-supervised single network at 100 %, OKDPH supplement Tables 3 and 4 (all seven
    # methods: DML, ONE, KDCL, OKDDip, FFL, PCL and OKDPH; 12 rows × 7 in Table 3, 6 × 7 in Table 4), DML Table 3
    # (4 rows × 4, and the as-released study's 2 rows × 2) and Table 5 (4 rows × 2) on Market-1501
    assert checked == 2 * 54 + 54 + 2 * 18 + 72 + 10 + 10 + 32 + 3 + 1 + 84 + 42 + 16 + 4 + 8


def test_rdml_table3_is_transcribed_in_the_alpha_by_test_rows(tables):
    """RDML Table 3's caption chooses α "based on the mean accuracy of K models on each test set": its 18 numbers
    go to the "α by test" rows, every Independent and student cell of the three data sets × two networks; the α it
    prints is a label, named in each student cell's note, and that α is the one its row prints in the α column."""
    cells = [c for c in cells_of("rdml.yaml") if c["study"] == "rdml_table3"]
    rows, columns = tables["rdml_table3", "text_table"]
    expected = {(row, column) for row in rows if row.endswith(", α by test") for column in columns
                if not column.endswith(": α")}
    assert {(c["row"], c["column"]) for c in cells} == expected and len(cells) == 18
    for c in cells:
        if c["column"].endswith(("-0", "-1")):
            arch = c["column"][:-2]
            printed = NUMBER.findall(c["quote"])[-len(columns):][columns.index(f"{arch}: α")]
            assert re.search(rf"α = {re.escape(printed)}\b", c["note"]), (c["row"], c["column"], printed, c["note"])


def test_rdml_table3_students_are_not_sorted_as_printed():
    """Table 3 prints AG News CharCNN 89.632 before 89.171: its students are not re-indexed ascending, and the
    transcription keeps the printed order (rdml.study.layouts.text keeps the students as trained)."""
    charcnn = [find("rdml.yaml", "rdml_table3", "text_table", "ag_news, α by test", f"charcnn-{i}")["value"] for i in (0, 1)]
    assert charcnn == [89.632, 89.171]
    assert squash("<b>89.632</b> 89.171") in squash(paper_text(load("rdml.yaml")))


def test_as_released_table_copies_the_paper_table():
    """rdml_table1_as_released and rdml_table3_as_released run the same paper tables: their cells are those of
    rdml_table1 and rdml_table3, GoogLeNet and CharCNN renamed."""
    def cells(study, gn):
        return {(c["row"], c["column"].replace(gn, "GN")): (c["value"], c["kind"])
                for c in cells_of("rdml.yaml") if c["study"] == study}

    paper = cells("rdml_table1", "googlenet")
    assert len(paper) == 5 * 12 - 6  # Ind. has one number per data set and architecture
    assert cells("rdml_table1_as_released", "googlenet_as_released") == paper
    paper = cells("rdml_table3", "charcnn")  # RDML Table 3 and its as-released run (CharCNN evaluated with dropout on)
    assert len(paper) == 18 and cells("rdml_table3_as_released", "charcnn_as_released") == paper


@pytest.mark.slow  # ~7 s
def test_printed_differences_agree_with_the_printed_cells():
    """DML Table 2's DML-Ind columns and the thesis's improvements are differences of printed cells."""
    for c in cells_of("dml.yaml"):
        if c["table"] == "pair_table" and c["column"].startswith("DML − Ind."):
            net = c["column"][-5:]
            dml = find("dml.yaml", c["study"], c["table"], c["row"], f"DML {net}")["value"]
            ind = find("dml.yaml", c["study"], c["table"], c["row"], f"Ind. {net}")["value"]
            assert c["value"] == pytest.approx(dml - ind, abs=0.0051), (c["row"], c["column"])
    vanilla = find("renyi_kd_thesis.yaml", "renyi_kd_thesis", "kd_table", "cifar100: vanilla timm_resnet18", "Average accuracy")
    improvements = [c for c in cells_of("renyi_kd_thesis.yaml") if c["column"] == "Improvement"]
    assert len(improvements) == 16
    for c in improvements:
        accuracy = find("renyi_kd_thesis.yaml", c["study"], c["table"], c["row"], "Average accuracy")["value"]
        assert c["value"] == pytest.approx(accuracy - vanilla["value"], abs=0.00051), c["row"]


# (file, study, table, row, column, kind, value, the sentence or table row that prints it)
KEY_NUMBERS = [
    # RDML, Table 1: "Top-1 accuracy (%) results for CIFAR10 and CIFAR100 ... the same models are reindexed by
    # their values in an ascending order" — row "RDML 2.0 ... <b>78.31</b> <b>78.5</b> ..." (CIFAR100, RN0 RN1).
    ("rdml.yaml", "rdml_table1", "rdml_table", "RDML α=2", "cifar100/resnet34/1", "value", 78.5, "<b>78.31</b> <b>78.5</b>"),
    # Table 1, row "Ind. 91.87 92.56 90.71 69.61 76.26 72.21": GoogLeNet alone on CIFAR10.
    ("rdml.yaml", "rdml_table1", "rdml_table", "Ind.", "cifar10/googlenet/0", "value", 91.87, "Ind. 91.87"),
    # "vanilla DML obtains the best accuracy with VGG16" — row "DML ... <b>91.22</b> <b>91.33</b> ..." (CIFAR10).
    ("rdml.yaml", "rdml_table1", "rdml_table", "DML", "cifar10/vgg16_bn/0", "value", 91.22, "<b>91.22</b> <b>91.33</b>"),
    # DML, Table 2, "Resnet-32 Resnet-32 92.47 92.47 92.68 92.80 0.21 0.33 68.99 68.99 71.19 70.75 2.20 1.76".
    ("dml.yaml", "dml_table2", "pair_table", "cifar100: resnet32, resnet32", "DML Net 1", "value", 71.19,
     "68.99 68.99 71.19 70.75 2.20 1.76"),
    # DML, Table 4, "CIFAR-100 WRN-28-10 ResNet-32 78.69 68.99 69.48 78.96 70.73" (1 distills 2: 69.48).
    ("dml.yaml", "dml_table4", "kd_vs_dml_table", "cifar100: wrn_28_10 → resnet32", "1 distills 2 (Net 2)", "value", 69.48,
     "78.69 68.99 69.48 78.96 70.73"),
    # DML §4.8: "the entropy values averaged over all training samples of the DML trained model and the
    # independently trained model, which are 1.7099 and 0.2602 respectively".
    ("dml.yaml", "dml_analyses", "entropy_table", "cifar100: DML", "Entropy", "value", 1.7099, "which are 1.7099 and 0.2602"),
    ("dml.yaml", "dml_analyses", "entropy_table", "cifar100: Ind.", "Entropy", "value", 0.2602, "which are 1.7099 and 0.2602"),
    # Thesis §3.2: "Starting with the standard knowledge distillation, i.e., α=1, the average accuracy is
    # 64.200%, which is 1.590% better than the vanilla model."
    ("renyi_kd_thesis.yaml", "renyi_kd_thesis", "kd_table", "cifar100: α=1", "Average accuracy", "value", 64.200, "1 64.200 1.590"),
    ("renyi_kd_thesis.yaml", "renyi_kd_thesis", "kd_table", "cifar100: α=1", "Improvement", "value", 1.590, "1 64.200 1.590"),
    # "with α=1.25 achieving the best mean accuracy of 64.277%".
    ("renyi_kd_thesis.yaml", "renyi_kd_thesis", "kd_table", "cifar100: α=1.25", "Average accuracy", "value", 64.277,
     "1.25 64.277 1.667"),
    # "compared to the vanilla model, which ended training with an accuracy of 62.61%".
    ("renyi_kd_thesis.yaml", "renyi_kd_thesis", "kd_table", "cifar100: vanilla timm_resnet18", "Average accuracy", "value",
     62.61, "an accuracy of 62.61%"),
    # DML vs KD, first setting: "The best models are both KD variants, with a ResNet-18 and a ResNet-50 teacher,
    # which achieve 89.5 % accuracy."
    ("dml_vs_kd.yaml", "dml_vs_kd_fmnist_a", "methods_table", "fashion_mnist: KD from resnet50", "Accuracy", "value", 89.5,
     "which achieve 89.5 % accuracy"),
    # "the best student in the cohort does not reach as good results as the other models, scoring 82.6 %
    # accuracy on average."
    ("dml_vs_kd.yaml", "dml_vs_kd_fmnist_a", "methods_table", "fashion_mnist: DML, best of 2 students", "Accuracy", "value",
     82.6, "scoring 82.6 % accuracy on average"),
    # "In the first hyperparameter setting, the baseline and KD surpass 89 % accuracy."
    ("dml_vs_kd.yaml", "dml_vs_kd_fmnist_a", "methods_table", "fashion_mnist: baseline resnet18", "Accuracy", "lower_bound",
     89, "the baseline and KD surpass 89 % accuracy"),
    # Second setting: "The average accuracy of all algorithms now lies between 87 % and 89 %."
    ("dml_vs_kd.yaml", "dml_vs_kd_fmnist_b", "methods_table", "fashion_mnist: DML, 2 students", "Accuracy", "interval",
     [87, 89], "now lies between 87 % and 89 %"),
]


@pytest.mark.parametrize("name, study, table, row, column, kind, value, printed", KEY_NUMBERS,
                         ids=[f"{k[0]}:{k[3]}:{k[4]}" for k in KEY_NUMBERS])
def test_key_numbers_as_printed(name, study, table, row, column, kind, value, printed):
    cell = find(name, study, table, row, column)
    assert (cell["kind"], cell["value"]) == (kind, value)
    assert squash(printed) in squash(paper_text(load(name))), f"the paper no longer prints {printed!r}"


def test_studies_without_paper_numbers_are_figure_only():
    """DML's semi-supervised (Fig. 6) and flat-minima (Figs. 4a/4b) cells are figures: no value is read off them;
    the cohort-size cells are Fig. 3's Market-1501 counterpart. Save the cells that are a ResNet-32 trained alone
    on all of CIFAR-100, which Table 2 prints (68.99): cohort Ind. at every K and the single network at 100 %."""
    cells = cells_of("dml.yaml")
    semi = [c for c in cells if c["study"] == "dml_semi_supervised"]
    flat = [c for c in cells if c["table"] == "flat_minima_table"]
    cohort = [c for c in cells if c["study"] == "dml_cohort_size"]
    assert len(semi) == 15 and len(flat) == 12 and cohort
    assert all(c["kind"] == "figure_only" for c in flat)
    assert [(c["row"], c["column"], c["value"]) for c in semi if c["kind"] != "figure_only"] == [
        ("Single (labelled)", "cifar100: 100% labelled", 68.99)]
    assert [(c["row"], c["column"], c["value"]) for c in cohort if c["kind"] != "figure_only"] == [
        (f"cifar100: K={k}", "Ind.", 68.99) for k in (2, 3, 4)]
    epoch_10 = [c for c in cells_of("renyi_kd_thesis.yaml") if "(epoch 10)" in c["column"]]
    assert len(epoch_10) == 17 + 16 and all(c["kind"] == "figure_only" for c in epoch_10)
