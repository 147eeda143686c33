"""Reported cells with two ends ("lies between 87 % and 89 %", kind interval, value [low, high]): refused
when malformed, with a message naming the cell; judged against rdml's mean and 95 % t-interval as a hand
computation says; shown as "87–89". And the DML cells that are Table 2's independent ResNet-32 all carry
its printed number."""

import csv
import io
import math
import re
import statistics
from pathlib import Path

import pytest
import yaml

from rdml.keys import ConfigError
from rdml.report.cells import Cell
from rdml.report.paper import PAPER_COLUMNS, paper_check, paper_comparison
from rdml.report.table import Table
from rdml.study.params import load_params
from rdml.study.reported import Reported, load_reported

REPO = Path(__file__).resolve().parents[1]
PAPERS = REPO.parent / "shared" / "papers"  # beside the repository where rdml is developed; a user's clone has none
T_975_DF2 = 4.302652729749464  # Student's t, 0.975 quantile, 2 degrees of freedom (printed t-tables: 4.303)
CELL = "{study: s, table: t, row: 'r 1', column: c, kind: %s, value: %s, source: S}"


def write_cells(root: Path, *cells: str) -> Path:
    (root / "reported").mkdir(exist_ok=True)
    (root / "reported" / "p.yaml").write_text("paper: P\ncells:\n" + "".join(f"  - {c}\n" for c in cells))
    return root


def interval_cell(low: float, high: float, row: str = "r") -> Reported:
    return Reported("P", "s", "methods_table", row, "Accuracy", (low, high), "interval", "S")


def test_an_interval_loads_as_its_two_ends_and_prints_as_a_range(tmp_path):
    cells = load_reported(write_cells(tmp_path, CELL % ("interval", "[87, 89]"), CELL % ("interval", "[88.5, 88.5]")))
    assert [(c.kind, c.value, c.printed) for c in cells] == [("interval", (87, 89), "87–89"),
                                                             ("interval", (88.5, 88.5), "88.5–88.5")]


@pytest.mark.bad_input
@pytest.mark.parametrize("value, problem", [
    ("[89, 87]", r"the interval's low end 89 is above its high end 87"),
    ("[87.5, 87.4]", r"the interval's low end 87.5 is above its high end 87.4"),
    ("[87]", r"an interval gives both ends as two numbers \[low, high\] \(an end is missing or not a number\)"),
    ("[87, null]", r"an end is missing"),
    ("[null, 89]", r"an end is missing"),
    ("[]", r"an end is missing"),
    ("87", r"an end is missing"),
    ("null", r"an end is missing"),
    ("[87, 88, 89]", r"an interval gives both ends as two numbers"),
    ("[87, '89']", r"an interval gives both ends as two numbers"),
    ("[87, .inf]", r"an interval gives both ends as two numbers"),
], ids=["reversed", "reversed-by-a-tenth", "one-end", "high-null", "low-null", "empty", "a-number", "null",
        "three-ends", "a-string-end", "infinite-end"])
def test_a_malformed_interval_is_refused_naming_the_cell_and_what_is_allowed(tmp_path, value, problem):
    with pytest.raises(ConfigError) as refused:
        load_reported(write_cells(tmp_path, CELL % ("value", "1"), CELL % ("interval", value)))
    message = str(refused.value)
    assert re.search(r"p\.yaml: cell 1 \(s / t / r 1 / c\): value=", message), message  # the second cell, by name
    assert re.search(problem, message), message
    assert "[low, high], two numbers with low <= high, for interval" in message and "null for figure_only" in message


@pytest.mark.bad_input
@pytest.mark.parametrize("kind, value", [("value", "[87, 89]"), ("lower_bound", "[87, 89]"), ("upper_bound", "null"),
                                         ("figure_only", "87"), ("value", "true")])
def test_a_value_that_does_not_fit_its_kind_is_refused(tmp_path, kind, value):
    with pytest.raises(ConfigError, match=r"cell 0 \(s / t / r 1 / c\): value=.*allowed: a number for value, "
                                          r"lower_bound and upper_bound; \[low, high\]"):
        load_reported(write_cells(tmp_path, CELL % (kind, value)))


@pytest.mark.bad_input
def test_an_unknown_kind_names_the_allowed_ones_with_interval(tmp_path):
    with pytest.raises(ConfigError, match=r"cell 0 \(s / t / r 1 / c\): kind='range' is not allowed; allowed: value, "
                                          r"lower_bound, upper_bound, interval, figure_only"):
        load_reported(write_cells(tmp_path, CELL % ("range", "[87, 89]")))


@pytest.mark.parametrize("ours, verdict", [
    ((87.5, 88.5), "inside interval"),
    ((87.0, 89.0), "inside interval"),    # the paper's ends belong to it ("between 87 % and 89 %")
    ((85.0, 86.9), "below interval"),
    ((89.1, 90.0), "above interval"),
    ((86.5, 87.5), "undecided"),          # across the low end
    ((88.5, 89.5), "undecided"),          # across the high end
    ((86.0, 90.0), "undecided"),          # ours holds the whole of the paper's range
    ((85.0, 87.0), "undecided"),          # touches the low end
])
def test_an_interval_is_judged_by_where_our_interval_lies(ours, verdict):
    assert paper_check(interval_cell(87, 89), ours) == verdict


def test_values_and_bounds_keep_their_verdicts():
    value = Reported("P", "s", "t", "r", "c", 89.5, "value", "S")
    lower = Reported("P", "s", "t", "r", "c", 87, "lower_bound", "S")
    assert [paper_check(value, ci) for ci in [(89.0, 90.0), (88.0, 89.4)]] == ["inside", "**outside**"]
    assert [paper_check(lower, ci) for ci in [(87.1, 88.0), (85.0, 86.0), (86.0, 88.0)]] == [
        "meets bound", "below bound", "undecided"]
    assert paper_check(interval_cell(87, 89), None) == "no interval (n < 2)"


# per row: one student's accuracy at seeds 0, 1, 2
SEEDS = {"A": [0.879, 0.880, 0.881], "B": [0.860, 0.861, 0.862], "C": [0.895, 0.896, 0.897],
         "D": [0.870, 0.880, 0.890], "E": [0.888, 0.890, 0.892], "F": [0.864, 0.868, 0.872]}
# by hand, with [87, 89]: A's interval 88 ± 0.25 lies inside; B's and C's lie wholly below and above (their
# means 86.1 and 89.6 are 0.9 below 87 and 0.6 above 89); D (88 ± 2.48), E (89 ± 0.50) and F (86.8 ± 0.99) cross an end
EXPECTED = {"A": ("inside interval", "+0.00"), "B": ("below interval", "-0.90"), "C": ("above interval", "+0.60"),
            "D": ("undecided", "+0.00"), "E": ("undecided", "+0.00"), "F": ("undecided", "-0.20")}


def test_the_comparison_table_judges_fabricated_cells_as_a_hand_computation_does():
    cells = {}
    for row, values in SEEDS.items():
        cells[(row, "Accuracy")] = cell = Cell()
        for seed, value in enumerate(values):
            cell.add_value(f"runs/{row}-s{seed}", seed, "net1", value, "ok")
    table = Table("methods_table", "fabricated", list(SEEDS), ["Accuracy"], cells)
    reported = [interval_cell(87, 89, row) for row in SEEDS]
    markdown, text, page = paper_comparison(table, reported)
    lines = list(csv.DictReader(io.StringIO(text)))
    assert list(lines[0]) == PAPER_COLUMNS and [line["row"] for line in lines] == list(SEEDS)
    for line in lines:
        values = [100 * v for v in SEEDS[line["row"]]]
        mean, half = statistics.fmean(values), T_975_DF2 * statistics.stdev(values) / math.sqrt(3)
        assert line["paper"] == "87–89"
        assert line["95% CI of ours"] == f"[{mean - half:.2f}, {mean + half:.2f}]"
        assert (line["check"], line["ours − paper"]) == EXPECTED[line["row"]], line
    assert "| A | Accuracy | 87–89 | 88.00 ± 0.10 (n=3) | +0.00 | [87.75, 88.25] | inside interval | S |" in markdown
    assert re.search(r"<td [^>]*>87–89</td>", page)  # the styled page (rdml.report.render.html_table) gives a cell its classes


def test_the_articles_range_is_stored_with_both_ends_each_printed_in_its_quote():
    """DML vs KD, second setting: "The average accuracy of all algorithms now lies between 87 % and 89 %."
    Every cell the sentence covers holds [87, 89]; the best student's, which the sentence bounds only below
    (the best student is at least its cohort's mean), stays a lower bound of 87."""
    cells = {c.row: c for c in load_reported(REPO) if c.study == "dml_vs_kd_fmnist_b"}
    covered = ["fashion_mnist: baseline resnet18", "fashion_mnist: KD from resnet18", "fashion_mnist: KD from resnet50",
               "fashion_mnist: DML, 2 students"]
    assert {row: (cells[row].kind, cells[row].value) for row in covered} == {row: ("interval", (87, 89)) for row in covered}
    best = cells["fashion_mnist: DML, best of 2 students"]
    assert (best.kind, best.value) == ("lower_bound", 87)
    if PAPERS.is_dir():
        article = " ".join((PAPERS / "dml-vs-kd-instability-fashion-mnist.md").read_text(encoding="utf-8").split())
        assert "The average accuracy of all algorithms now lies between 87 % and 89 %." in article


def test_every_interval_quotes_both_its_ends():
    intervals = [c for c in load_reported(REPO) if c.kind == "interval"]
    assert intervals
    for c in intervals:
        printed = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", c.quote)]
        assert all(any(math.isclose(end, n) for n in printed) for end in c.value), (c.study, c.row, c.quote)


def test_the_independent_resnet32_of_table2_carries_one_number_wherever_rdml_trains_it_so():
    """DML Table 2 prints ResNet-32 trained alone on CIFAR-100 (68.99); cohort Ind. at every K and the
    semi-supervised single network with every image labelled train that network with the same settings."""
    params = load_params(REPO / "params.yaml")["studies"]
    same = ["dml_table2", "dml_cohort_size", "dml_semi_supervised"]
    assert all(params[s]["train"] == params["dml_table2"]["train"] for s in same)
    assert all(params[s][t]["arch"] == "resnet32" for s, t in [("dml_cohort_size", "cohort_table"),
                                                               ("dml_semi_supervised", "semi_table")])
    reported = {(c.study, c.row, c.column): c for c in load_reported(REPO)}
    table2 = reported[("dml_table2", "cifar100: resnet32, resnet32", "Ind. Net 1")]
    sizes = params["dml_cohort_size"]["cohort_table"]["sizes"]
    alone = [reported[("dml_cohort_size", f"cifar100: K={k}", "Ind.")] for k in sizes]
    alone.append(reported[("dml_semi_supervised", "Single (labelled)", "cifar100: 100% labelled")])
    assert table2.value == 68.99
    assert [(c.kind, c.value, c.source, c.quote) for c in alone] == [("value", 68.99, "Table 2", table2.quote)] * len(alone)
    raw = yaml.safe_load((REPO / "reported" / "dml.yaml").read_text(encoding="utf-8"))["cells"]
    partial = [c for c in raw if c["study"] == "dml_semi_supervised" and not c["column"].endswith("100% labelled")]
    assert partial and all(c["kind"] == "figure_only" for c in partial)  # the text prints no number below 100 %
