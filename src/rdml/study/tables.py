"""Paper-style tables of a study, in Markdown, LaTeX and CSV, each with a sidecar of its cells' runs.

What each table holds comes from its layout (rdml.study.layouts); this module fills and writes it.

Every cell is the mean ± sample standard deviation over seeds of the study's metric (final, best or
mean of the last k epochs), with the number of seeds; diverged runs are left out of the mean and
counted in the cell. `<table>.cells.json` maps each cell to the runs it was computed from.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from rdml import paths
from rdml.io import atomic_write_bytes, atomic_write_json
from rdml.keys import ConfigError
from rdml.methods import METHODS
from rdml.study.layouts import Entry
from rdml.study.params import load_params, metric_of, summary_field
from rdml.study.plan import plan_tables
from rdml.study.runs import Run
from rdml.train.integrity import FINISHED, MEASURES_FORMAT, read_record, record_problems, seal_holds, sealed

__all__ = ["Cell", "Table", "build_tables", "write_tables"]


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)  # {"run", "student", "value", "status"}
    diverged: int = 0

    def add(self, run: Run, record: dict, student: str, value: float | None, epoch: int | None = None) -> None:
        if record["status"] == "diverged":
            self.diverged += 1
        elif value is not None and not math.isnan(value):  # NaN / None: never reached (epoch, last-k window)
            self.values.append(value)
        entry = {"run": run.directory, "student": student, "value": value, "status": record["status"]}
        self.runs.append(entry if epoch is None else {**entry, "epoch": epoch})

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else (0.0 if self.values else None)

    def text(self, bold: bool = False, latex: bool = False, scale: float = 100.0, digits: int = 2) -> str:
        if not self.runs:
            return ""
        pm = r"$\pm$" if latex else "±"
        value = "—" if self.mean is None else f"{scale * self.mean:.{digits}f} {pm} {scale * self.std:.{digits}f}"
        if bold and self.mean is not None:
            value = rf"\textbf{{{value}}}" if latex else f"**{value}**"
        note = f"n={len(self.values)}" + (f", {self.diverged} diverged" if self.diverged else "")
        return f"{value} ({note})"

    def sidecar(self) -> dict:
        return {"mean": self.mean, "std": self.std, "n": len(self.values), "diverged": self.diverged, "runs": self.runs}


@dataclass
class Table:
    name: str
    caption: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    bold_columns: list[str] = field(default_factory=list)  # column-wise best is set in bold
    derived: dict[tuple[str, str], float] = field(default_factory=dict)  # differences of means, in points
    scale: float = 100.0  # a cell prints value × scale with `digits` decimals
    digits: int = 2

    def best_row(self, column: str) -> str | None:
        means = [(c.mean, row) for row in self.rows if (c := self.cells.get((row, column))) and c.mean is not None]
        return max(means)[1] if means else None

    def grid(self, latex: bool = False) -> list[list[str]]:
        best = {col: self.best_row(col) for col in self.bold_columns}
        out = []
        for row in self.rows:
            line = [row]
            for col in self.columns:
                if (row, col) in self.derived:
                    line.append(f"{self.derived[(row, col)]:+.2f}")
                else:
                    cell = self.cells.get((row, col))
                    line.append(cell.text(bold=best.get(col) == row, latex=latex, scale=self.scale, digits=self.digits)
                                if cell else "")
            out.append(line)
        return out

    def markdown(self) -> str:
        head = ["", *self.columns]
        lines = [f"**{self.caption}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(line) + " |" for line in self.grid()]
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        escape = lambda s: s.replace("_", r"\_").replace("%", r"\%").replace("α", r"$\alpha$").replace("−", "-")
        lines = [r"\begin{table}", r"\centering", rf"\caption{{{escape(self.caption)}}}",
                 r"\begin{tabular}{l" + "c" * len(self.columns) + "}", r"\toprule",
                 " & ".join(["", *map(escape, self.columns)]) + r" \\", r"\midrule"]
        lines += [" & ".join(escape(v) if i == 0 else v for i, v in enumerate(line)) + r" \\" for line in self.grid(latex=True)]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["row", "column", "mean", "std", "n", "diverged"])
        for row in self.rows:
            for col in self.columns:
                if (row, col) in self.derived:
                    writer.writerow([row, col, self.derived[(row, col)] / 100, "", "", ""])
                elif (cell := self.cells.get((row, col))) and cell.runs:
                    writer.writerow([row, col, cell.mean, cell.std, len(cell.values), cell.diverged])
        return buffer.getvalue()

    def sidecar(self, study: str, metric: str) -> dict:
        return {
            "table": self.name, "study": study, "metric": metric, "caption": self.caption,
            "cells": {f"{row}|{col}": cell.sidecar() for (row, col), cell in self.cells.items() if cell.runs},
        }


def build_tables(params: dict, study: str, root: str | Path = ".") -> list[Table]:
    """Every table of the study, its cells filled from the run records under `root`."""
    metric = summary_field(metric_of(params, study))
    what = {"final_acc": "final test accuracy", "best_acc": "best test accuracy"}.get(
        metric, f"mean test accuracy of the last {metric[4:-4]} epochs")
    records: dict[str, dict] = {}

    def record_of(run: Run) -> dict:
        """The run's record, refused when it is damaged, edited outside rdml or not finished."""
        if run.id not in records:
            path = Path(root) / run.directory / "record.json"
            if not path.is_file():
                raise ConfigError(f"{path} is missing: run {run.id} of study {study} has no record (rerun the pipeline)")
            record = read_record(path)
            problems = record_problems(record, path)
            if not sealed(record):
                problems.append(f"{path}: an unsealed record of {record.get('format')} (rerun the run with this rdml)")
            if record["status"] not in FINISHED:
                problems.append(f"{path}: the run has not finished (status {record['status']!r})")
            if record.get("config_sha256") != run.config_sha256:
                problems.append(f"{path}: the run there was trained with other keys than the study now plans")
            if problems:
                raise ConfigError("no table is written from a record that does not hold: " + "; ".join(problems))
            records[run.id] = record
        return records[run.id]

    measures: dict[str, dict] = {}

    def measures_of(run: Run, record: dict, wanted: dict) -> dict:
        """The run's measurements (rdml.analysis.measure), refused unless they are rdml's, of this record's weights, as asked."""
        if run.id not in measures:
            path = Path(root) / paths.measures_file(study, run.id)
            if not path.is_file():
                raise ConfigError(f"{path} is missing: run {run.id} of study {study} has not been measured (rerun the pipeline)")
            measured = read_record(path, "measurements file", ("format", "students"))
            problems = [] if seal_holds(measured) else [f"{path}: does not hash to its record_sha256 (edited outside rdml?)"]
            if measured.get("format") != MEASURES_FORMAT or measured.get("run_record_sha256") != record.get("record_sha256"):
                problems.append(f"{path}: not the measurements of the record at {run.directory}")
            elif record["status"] == "ok" and measured.get("model_sha256") != record["final_model"]["sha256"]:
                problems.append(f"{path}: measured other weights than {run.directory}/model.pt")
            if any((measured.get("measurements") or {}).get(name) != value for name, value in wanted.items()):
                problems.append(f"{path}: measured with {measured.get('measurements')}, but the table asks for {wanted}")
            if problems:
                raise ConfigError("no table is written from measurements that do not hold: " + "; ".join(problems))
            measures[run.id] = measured
        return measures[run.id]

    def values_of(entry: Entry, record: dict, student: str, wanted: dict) -> list[float]:
        if entry.measure is None:
            return [value(entry, record, student)]
        measured = measures_of(entry.run, record, wanted)["students"].get(student, {})
        found = measured.get(entry.measure, math.nan)  # a diverged run has no measurements
        return [float(v) for v in found] if isinstance(found, list) else [float(found)]

    def value(entry: Entry, record: dict, student: str) -> float:
        if entry.epoch is None:
            return record["summary"][student][metric]
        history = record["epochs"]  # NaN: the epoch asked for was never reached
        return history[entry.epoch - 1]["test"][student]["acc"] if len(history) >= entry.epoch else math.nan

    tables = []
    for spec in plan_tables(params, study):
        cells: dict[tuple[str, str], Cell] = {}
        for entry in spec.entries:
            record = record_of(entry.run)
            values = [(student, v) for student in entry.students
                      for v in values_of(entry, record, student, spec.measurements)]
            order = sorted(values, key=lambda p: (p[1] is not None and not math.isnan(p[1]), p[1] or 0.0))
            if entry.ranked:  # the i-th lowest student goes into the i-th column (a value never reached first)
                placed = [(column, [pair]) for column, pair in zip(entry.columns, order)]
            elif entry.best:
                placed = [(entry.columns[0], order[-1:])]
            else:
                placed = [(entry.columns[0], values)]
            for column, pairs in placed:
                cell = cells.setdefault((entry.row, column), Cell())
                for student, v in pairs:
                    cell.add(entry.run, record, student, v, entry.epoch)
        derived = {}
        for d in spec.derived:
            minuend, subtrahend = cells.get(d.minuend), cells.get(d.subtrahend)
            if minuend and subtrahend and minuend.mean is not None and subtrahend.mean is not None:
                derived[(d.row, d.column)] = 100 * (minuend.mean - subtrahend.mean)
        notes = dict.fromkeys(note for entry in spec.entries
                              for note in METHODS[entry.run.config.method].caption_notes(entry.run.config))
        caption = " ".join([spec.caption.replace("{what}", what), *notes])
        tables.append(Table(spec.name, caption, spec.rows, spec.columns, cells,
                            spec.bold_columns, derived, spec.scale, spec.digits))
    return tables


def write_tables(study: str, params_path: str = "params.yaml", root: str | Path = ".", spec: dict | None = None) -> list[Path]:
    """Write every table of the study to results/<study>/tables/; returns the files written.

    `spec`: the study's section as Snakemake planned it (overrides included); else read from params.yaml.
    """
    params = {"studies": {study: spec}} if spec is not None else load_params(params_path)
    out = Path(root) / paths.tables_dir(study)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    metric = metric_of(params, study)
    for table in build_tables(params, study, root):
        for suffix, text in (("md", table.markdown()), ("tex", table.latex()), ("csv", table.csv())):
            path = out / f"{table.name}.{suffix}"
            atomic_write_bytes(path, text.encode())
            written.append(path)
        atomic_write_json(out / f"{table.name}.cells.json", table.sidecar(study, metric))
        written.append(out / f"{table.name}.cells.json")
    return written
