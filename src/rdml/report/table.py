"""A paper-style table from its layout (rdml.study.layouts): cells filled from the run records,
differences of means, the caption, and which row of a column is best.

Every cell is the mean ± sample standard deviation over seeds of the study's statistic (final, best,
mean of the last k epochs, at the best validation epoch) of the table's metric (rdml.metrics), with
the number of values; diverged runs are left out of the mean and counted in the cell.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rdml.methods import METHODS
from rdml.metrics import METRICS, PRIMARY, Metric
from rdml.report.cells import Cell, choose, fill_cells
from rdml.report.records import Records
from rdml.report.stats import Paired, paired
from rdml.study.layouts import Claim, TableSpec
from rdml.study.params import metric_of
from rdml.study.plan import plan_tables

__all__ = ["Table", "describe", "build_table", "build_tables"]


@dataclass
class Table:
    name: str
    caption: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    bold_columns: list[str] = field(default_factory=list)  # column-wise best is set in bold
    derived: dict[tuple[str, str], float] = field(default_factory=dict)  # differences of means, × scale
    scale: float = 100.0  # a cell prints value × scale with `digits` decimals
    digits: int = 2
    claims: list[Claim] = field(default_factory=list)
    notes: dict[tuple[str, str], str] = field(default_factory=dict)  # text cells: the option a Choice kept
    choices: dict[str, dict] = field(default_factory=dict)  # group → by, the option kept, every option's score
    metric: Metric = METRICS[PRIMARY]  # what its cells report: which way is better
    measurements: dict = field(default_factory=dict)  # what its measured cells asked of each run (rdml.analysis.measure)
    study: dict | None = None  # the study's section it was planned from: the audit plans its cells again from it
    measured: dict = field(default_factory=dict)  # run id → its checked measurements file, for figures (a landscape)

    def ranked(self, column: str) -> list[str]:
        """The rows of a column by their mean, best first (highest, or lowest where lower is better)."""
        sign = self.metric.sign
        means = [(sign * c.mean, row) for row in self.rows if (c := self.cells.get((row, column))) and c.mean is not None]
        return [row for _, row in sorted(means, reverse=True)]

    def best_row(self, column: str) -> str | None:
        ranked = self.ranked(column)
        return ranked[0] if ranked else None

    def lead(self, column: str) -> Paired | None:
        """The bold row's lead over the runner-up, paired over their shared seeds."""
        ranked = self.ranked(column)
        if len(ranked) < 2:
            return None
        first, second = (self.cells[(row, column)].per_seed() for row in ranked[:2])
        return paired(first, second)

    @property
    def legend(self) -> str:
        """What ± and the marks mean, for the caption."""
        text = (" ± is the sample standard deviation over the n values of a cell (every student of every run in it; "
                "a seed fixes a run's initialisation and batch order); diverged runs are counted, not averaged.")
        if self.bold_columns:
            best = "highest" if self.metric.direction == "higher" else "lowest"
            text += (f" Bold: the {best} mean of a column; s: its lead over the runner-up is significant, ns: it is "
                     "not (paired t-test over matched seeds, p < 0.05).")
        return text

    def sidecar(self, study: str, metric: str) -> dict:
        """The cells and their runs (`<table>.cells.json`, what `rdml audit` reads); `metric`: the study's
        statistic; `score`: the table's metric, where it is not top-1 accuracy; `measurements`: what measured
        cells asked of their runs; `spec`: the study's section, from which the audit plans each cell's runs."""
        score = {} if self.metric.name == PRIMARY else {"score": self.metric.name}
        return {
            "table": self.name, "study": study, "metric": metric, **score, "caption": self.caption,
            "cells": {f"{row}|{col}": cell.sidecar() for (row, col), cell in self.cells.items() if cell.runs},
            **({"choices": self.choices} if self.choices else {}),
            **({"measurements": self.measurements} if self.measurements else {}),
            **({"spec": self.study} if self.study is not None else {}),
        }


def describe(statistic: str, metric: str = PRIMARY) -> str:
    """What a cell holds, for captions: the study's statistic (final, best, last<k>, at_best_val) of a metric."""
    label, primary = METRICS[metric].label, METRICS[PRIMARY].label
    return {"final": f"final test {label}", "best": f"best test {label}",
            "at_best_val": f"test {label} at the epoch of best validation {primary}"}.get(
        statistic, f"mean test {label} of the last {statistic[4:]} epochs")


def build_table(spec: TableSpec, records: Records, statistic: str) -> Table:
    """The table a layout declares, its cells holding `statistic` of the layout's metric."""
    choices = choose(spec, records, statistic)
    cells = fill_cells(spec, records, statistic, choices)
    derived = {}
    for d in spec.derived:
        minuend, subtrahend = cells.get(d.minuend), cells.get(d.subtrahend)
        if minuend and subtrahend and minuend.mean is not None and subtrahend.mean is not None:
            derived[(d.row, d.column)] = spec.scale * (minuend.mean - subtrahend.mean)
    notes = dict.fromkeys(note for entry in spec.entries  # what a method's keys make worth saying (a clamped loss)
                          for note in METHODS[entry.run.config.method].caption_notes(entry.run.config))
    caption = " ".join([spec.caption.replace("{what}", describe(statistic, spec.metric)), *notes])
    kept = {where: choices[group]["chosen"] or "—" for group, where in spec.choice_cells.items() if group in choices}
    table = Table(spec.name, caption, spec.rows, spec.columns, cells, spec.bold_columns, derived, spec.scale,
                  spec.digits, spec.claims, kept, choices, METRICS[spec.metric], spec.measurements)
    table.caption = table.caption.rstrip(".") + "." + table.legend
    table.measured = {entry.run.id: records.measured[entry.run.id] for entry in spec.entries if entry.run.id in records.measured}
    return table


def build_tables(params: dict, study: str, root: str | Path = ".", records: dict[str, dict] | None = None) -> list[Table]:
    """Every table of the study, its cells filled from the run records under `root` (or from `records`,
    run id → checked record, when the caller has read them already)."""
    statistic = metric_of(params, study)
    source = Records(root, study, records)
    tables = [build_table(spec, source, statistic) for spec in plan_tables(params, study)]
    section = json.loads(json.dumps(params["studies"][study], sort_keys=True))  # one order, whoever planned it
    for table in tables:
        table.study = section
    return tables
