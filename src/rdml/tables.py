"""Paper-style tables of a study, in Markdown, LaTeX and CSV, each with a sidecar of its cells' runs.

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

from rdml.plan import RESULTS, Run, load_params, metric_key, plan_study
from rdml.record import atomic_write_bytes, atomic_write_json, read_json

__all__ = ["Cell", "Table", "build_tables", "write_tables"]


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)  # {"run", "student", "value", "status"}
    diverged: int = 0

    def add(self, run: Run, record: dict, student: str, value: float, epoch: int | None = None) -> None:
        if record["status"] == "diverged":
            self.diverged += 1
        elif not math.isnan(value):  # NaN: the epoch asked for was never reached
            self.values.append(value)
        entry = {"run": run.directory, "student": student, "value": value, "status": record["status"]}
        self.runs.append(entry if epoch is None else {**entry, "epoch": epoch})

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else (0.0 if self.values else None)

    def text(self, bold: bool = False, latex: bool = False) -> str:
        if not self.runs:
            return ""
        pm = r"$\pm$" if latex else "±"
        value = "—" if self.mean is None else f"{100 * self.mean:.2f} {pm} {100 * self.std:.2f}"
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
                    line.append(cell.text(bold=best.get(col) == row, latex=latex) if cell else "")
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


def _alpha_label(alpha: float) -> str:
    return "DML" if alpha == 1 else f"RDML α={alpha:g}"


def build_tables(params: dict, study: str, root: str | Path = ".") -> list[Table]:
    spec = params["studies"][study]
    metric = metric_key(params, study)
    runs = plan_study(params, study)
    records = {r.id: read_json(Path(root) / r.directory / "record.json") for r in runs}
    by_id = {r.id: r for r in runs}
    what = {"final_acc": "final test accuracy", "best_acc": "best test accuracy"}.get(
        metric, f"mean test accuracy of the last {metric[4:-4]} epochs")
    seeds = spec["seeds"]

    def student_value(run_id: str, student: str) -> float:
        return records[run_id]["summary"][student][metric]

    def epoch_value(run_id: str, student: str, epoch: int) -> float:
        history = records[run_id]["epochs"]
        return history[epoch - 1]["test"][student]["acc"] if len(history) >= epoch else math.nan

    def collect(cell: Cell, run_id: str, students: list[str]) -> Cell:
        for student in students:
            cell.add(by_id[run_id], records[run_id], student, student_value(run_id, student))
        return cell

    tables = []
    if "rdml_table" in spec:
        t = spec["rdml_table"]
        alphas = sorted({1.0, *map(float, t["alphas"])})
        rows = ["Ind.", *(_alpha_label(a) for a in alphas)]
        columns = [f"{d}/{arch}/{i}" for d in spec["datasets"] for arch in t["archs"] for i in (0, 1)]
        cells: dict[tuple[str, str], Cell] = {}
        for d in spec["datasets"]:
            for arch in t["archs"]:
                for seed in seeds:
                    collect(cells.setdefault(("Ind.", f"{d}/{arch}/0"), Cell()), f"{d}/independent-{arch}-s{seed}",
                            ["student_0"])
                    for alpha in alphas:
                        run_id = f"{d}/dml-{arch}+{arch}-a{alpha:g}-s{seed}"
                        # Students re-indexed by their value, ascending, as the RDML tables do.
                        ranked = sorted(("student_0", "student_1"), key=lambda s: student_value(run_id, s))
                        for index, student in enumerate(ranked):
                            collect(cells.setdefault((_alpha_label(alpha), f"{d}/{arch}/{index}"), Cell()), run_id, [student])
        tables.append(Table(
            "rdml_table", f"Top-1 {what} (%), mean ± std over seeds; students re-indexed ascending "
            "(RDML Table 1 layout); column-wise best in bold", rows, columns, cells, bold_columns=columns))
    if "kd_table" in spec:
        t = spec["kd_table"]
        teacher_arch = spec["teacher"]["arch"]
        at_epochs = t.get("at_epochs", [])
        columns = ["Average accuracy", "Improvement"]
        for e in at_epochs:
            columns += [f"Average accuracy (epoch {e})", f"Improvement (epoch {e})"]
        rows, cells, derived = [], {}, {}
        for d in spec["datasets"]:
            vanilla_row = f"{d}: vanilla {t['student']}"
            rows.append(vanilla_row)
            runs_of = {vanilla_row: [f"{d}/independent-{t['student']}-s{seed}" for seed in seeds]}
            for alpha in map(float, t["alphas"]):
                rows.append(f"{d}: α={alpha:g}")
                runs_of[rows[-1]] = [f"{d}/kd-{t['student']}-from-{teacher_arch}-a{alpha:g}-s{seed}" for seed in seeds]
            for epoch in [None, *at_epochs]:
                suffix = "" if epoch is None else f" (epoch {epoch})"
                for row, run_ids in runs_of.items():
                    cell = cells[(row, "Average accuracy" + suffix)] = Cell()
                    for run_id in run_ids:
                        value = student_value(run_id, "student_0") if epoch is None else epoch_value(run_id, "student_0", epoch)
                        cell.add(by_id[run_id], records[run_id], "student_0", value, epoch)
                    vanilla = cells[(vanilla_row, "Average accuracy" + suffix)]
                    if row != vanilla_row and cell.mean is not None and vanilla.mean is not None:
                        derived[(row, "Improvement" + suffix)] = 100 * (cell.mean - vanilla.mean)
        tables.append(Table(
            "kd_table", f"Rényi KD, student {t['student']} from teacher {teacher_arch}: {what} (%) per α and "
            "improvement over vanilla in points (thesis Table 3.2 layout)", rows, columns,
            cells, bold_columns=[c for c in columns if c.startswith("Average")], derived=derived))
    if "pair_table" in spec:
        rows, cells, derived = [], {}, {}
        columns = ["Ind. Net 1", "Ind. Net 2", "DML Net 1", "DML Net 2", "DML − Ind. Net 1", "DML − Ind. Net 2"]
        for d in spec["datasets"]:
            for first, second in spec["pair_table"]["pairs"]:
                row = f"{d}: {first}, {second}"
                rows.append(row)
                for net, arch, student in ((1, first, "student_0"), (2, second, "student_1")):
                    ind, dml = Cell(), Cell()
                    for seed in seeds:
                        collect(ind, f"{d}/independent-{arch}-s{seed}", ["student_0"])
                        collect(dml, f"{d}/dml-{first}+{second}-a1-s{seed}", [student])
                    cells[(row, f"Ind. Net {net}")], cells[(row, f"DML Net {net}")] = ind, dml
                    if ind.mean is not None and dml.mean is not None:
                        derived[(row, f"DML − Ind. Net {net}")] = 100 * (dml.mean - ind.mean)
        tables.append(Table(
            "pair_table", f"DML of network pairs: {what} (%), and DML − Ind. in points (DML Table 2 layout)",
            rows, columns, cells, derived=derived))
    if "kd_vs_dml_table" in spec:
        rows, cells = [], {}
        columns = ["Ind. Net 1", "Ind. Net 2", "1 distills 2 (Net 2)", "DML Net 1", "DML Net 2"]
        for d in spec["datasets"]:
            for first, second in spec["kd_vs_dml_table"]["pairs"]:
                row = f"{d}: {first} → {second}"
                rows.append(row)
                for seed in seeds:
                    collect(cells.setdefault((row, "Ind. Net 1"), Cell()), f"{d}/independent-{first}-s{seed}", ["student_0"])
                    collect(cells.setdefault((row, "Ind. Net 2"), Cell()), f"{d}/independent-{second}-s{seed}", ["student_0"])
                    collect(cells.setdefault((row, "1 distills 2 (Net 2)"), Cell()),
                            f"{d}/kd-{second}-from-ind-{first}-a1-s{seed}", ["student_0"])
                    dml = f"{d}/dml-{first}+{second}-a1-s{seed}"
                    collect(cells.setdefault((row, "DML Net 1"), Cell()), dml, ["student_0"])
                    collect(cells.setdefault((row, "DML Net 2"), Cell()), dml, ["student_1"])
        tables.append(Table("kd_vs_dml_table", f"Distillation from a pretrained Net 1 versus DML: {what} (%) "
                            "(DML Table 4 layout)", rows, columns, cells, bold_columns=[]))
    if "methods_table" in spec:
        t = spec["methods_table"]
        k = t.get("students", 2)
        rows, cells = [], {}
        for d in spec["datasets"]:
            entries = [(f"{d}: baseline {t['student']}", f"independent-{t['student']}", 1)]
            entries += [(f"{d}: KD from {arch}", f"kd-{t['student']}-from-{arch}-a1", 1) for arch in t["teachers"]]
            entries += [(f"{d}: DML, {k} students", f"dml-{'+'.join([t['student']] * k)}-a1", k)]
            for row, stem, students in entries:
                rows.append(row)
                cell = cells[(row, "Accuracy")] = Cell()
                for seed in seeds:
                    collect(cell, f"{d}/{stem}-s{seed}", [f"student_{i}" for i in range(students)])
        tables.append(Table("methods_table", f"Baseline, KD and DML: {what} (%), every student of every run; "
                            "diverged runs counted, not averaged (DML-vs-KD study layout)", rows, ["Accuracy"], cells,
                            bold_columns=["Accuracy"]))
    if "cohort_table" in spec:
        t = spec["cohort_table"]
        rows, cells = [], {}
        for d in spec["datasets"]:
            for k in t["sizes"]:
                row = f"{d}: K={k}"
                rows.append(row)
                for seed in seeds:
                    students = [f"student_{i}" for i in range(k)]
                    dml = f"{d}/dml-{'+'.join([t['arch']] * k)}-a1-s{seed}"
                    collect(cells.setdefault((row, "DML"), Cell()), dml, students)
                    dml_e = dml.replace("/dml-", "/dml_e-") if k > 2 else dml
                    collect(cells.setdefault((row, "DML_e"), Cell()), dml_e, students)
        tables.append(Table("cohort_table", f"Cohort size, {t['arch']} students: {what} (%) over every student; "
                            "with K = 2 DML_e is DML (DML §4.7–4.8 layout)", rows, ["DML", "DML_e"], cells))
    return tables


def write_tables(study: str, params_path: str = "params.yaml", root: str | Path = ".") -> list[Path]:
    """Write every table of the study to results/<study>/tables/; returns the files written."""
    params = load_params(params_path)
    out = Path(root) / RESULTS / study / "tables"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    metric = params["studies"][study].get("metric", "final")
    for table in build_tables(params, study, root):
        for suffix, text in (("md", table.markdown()), ("tex", table.latex()), ("csv", table.csv())):
            path = out / f"{table.name}.{suffix}"
            atomic_write_bytes(path, text.encode())
            written.append(path)
        atomic_write_json(out / f"{table.name}.cells.json", table.sidecar(study, metric))
        written.append(out / f"{table.name}.cells.json")
    return written
