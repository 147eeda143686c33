"""A table's cells from the run records: what each entry of a layout (rdml.study.layouts) reads of
its run's students, which option of a Choice is kept, and where each value goes. A cell keeps every
value and the run it came from, so that its mean, spread, per-seed values and sidecar agree."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from rdml import paths
from rdml.metrics import METRICS, PRIMARY
from rdml.report.records import Records
from rdml.study.layouts import Entry, TableSpec, entry_measurements
from rdml.study.runs import Run
from rdml.train.integrity import recorded_value

__all__ = ["Cell", "entry_values", "measured_values", "measure_source", "choose", "fill_cells", "kept_entries", "entry_columns", "planned_runs"]


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)  # {"run", "seed", "student", "value", "status"}, and its "epoch"
    # or its measurement ("measures" file, "measure", "index") where the value is one
    diverged: int = 0
    by_seed: dict[int, list[float]] = field(default_factory=dict)

    def add(self, run: Run, record: dict, student: str, value: float | None, epoch: int | None = None,
            where: dict | None = None) -> None:
        self.add_value(run.directory, run.seed, student, value, record["status"], epoch, where)

    def add_value(self, directory: str, seed: int, student: str, value: float | None, status: str,
                  epoch: int | None = None, where: dict | None = None) -> None:
        """One value of a run: counted as diverged where the run diverged, else kept unless never reached.
        `where`: the measurement it was read from (`measure_source`). `rdml audit` refills a cell through
        this from the records, so its statistics are recomputed by the code that wrote them."""
        if status == "diverged":
            self.diverged += 1
        elif value is not None and not math.isnan(value):  # NaN / None: never reached (epoch, last-k window)
            self.values.append(value)
            self.by_seed.setdefault(seed, []).append(value)
        entry = {"run": directory, "seed": seed, "student": student, "value": value, "status": status}
        self.runs.append({**entry, **({} if epoch is None else {"epoch": epoch}), **(where or {})})

    def per_seed(self) -> dict[int, float]:
        """The cell's mean per seed over the runs that did not diverge: what paired comparisons match."""
        return {seed: statistics.fmean(values) for seed, values in self.by_seed.items()}

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


def entry_values(entry: Entry, student: str, records: Records, statistic: str, spec: TableSpec) -> list[float]:
    """What one student of an entry's run puts into a cell: the study's statistic of the table's metric
    (or the metric at the entry's epoch), or the measurement the entry names (a list: that many values;
    NaN where a diverged run has none)."""
    record = records.record(entry.run)
    if entry.measure is None:
        return [recorded_value(record, student, statistic, entry.metric or spec.metric, entry.epoch)]
    return measured_values(records.measurements(entry.run, entry_measurements(spec.measurements, entry)), student, entry.measure)


def measured_values(measured: dict, student: str, measure: str) -> list[float]:
    """The values a measurements file (rdml.analysis.measure) holds for `measure` of `student`: a list
    (noise draws) counts as that many; NaN where it holds none (a diverged run is not measured)."""
    found = (measured.get("students") or {}).get(student, {}).get(measure, math.nan)
    return [float(v) for v in found] if isinstance(found, list) else [float(found)]


def measure_source(study: str, entry: Entry, index: int, measurements: dict) -> dict:
    """Where a measured value of a cell comes from, for the sidecar (what `rdml audit` opens): the
    measurements file of the entry's run, the measure, and its position in that measure's values; and what
    was asked of that run (`wanted`) where the entry adds settings or a partner to the table's `measurements`."""
    own = {"wanted": entry_measurements(measurements, entry)} if entry.partner is not None or entry.settings else {}
    return {"measures": paths.measures_file(study, entry.run.id), "measure": entry.measure, "index": index, **own}


def choose(spec: TableSpec, records: Records, statistic: str) -> dict[str, dict]:
    """Each Choice group's option with the best mean score over its students' runs (diverged runs left
    out), the first of equal ones; with every option's mean. By "val": the best validation accuracy;
    by "test": what the cells hold."""
    scores: dict[str, dict[str, list[float]]] = {}
    by: dict[str, str] = {}
    for entry in (e for e in spec.entries if e.choice):
        record = records.record(entry.run)
        got = scores.setdefault(entry.choice.group, {}).setdefault(entry.choice.option, [])
        by[entry.choice.group] = entry.choice.by
        if record["status"] != "diverged":
            got += [recorded_value(record, st, "best_val") if entry.choice.by == "val"
                    else recorded_value(record, st, statistic, spec.metric, entry.epoch) for st in entry.students]
    chosen = {}
    for group, options in scores.items():
        sign = METRICS[PRIMARY if by[group] == "val" else spec.metric].sign
        means = {o: statistics.fmean(v) if v else None for o, v in options.items()}
        kept = max((o for o in means if means[o] is not None), key=lambda o: sign * means[o], default=None)
        chosen[group] = {"by": by[group], "chosen": kept, "scores": means}
    return chosen


def fill_cells(spec: TableSpec, records: Records, statistic: str, choices: dict[str, dict]) -> dict[tuple[str, str], Cell]:
    """Every cell of a layout: each entry's students placed by the entry's rule (unranked: all into its
    column; ranked: the i-th lowest into the i-th column, a value never reached first; best: the best
    only, by the metric's direction); the entries of an option a Choice did not keep are left out."""
    sign = METRICS[spec.metric].sign
    cells: dict[tuple[str, str], Cell] = {}
    for entry in kept_entries(spec, choices):
        record = records.record(entry.run)
        values = [(student, v, measure_source(records.study, entry, i, spec.measurements) if entry.measure is not None
                   else {"score": entry.metric} if entry.metric else None)
                  for student in entry.students
                  for i, v in enumerate(entry_values(entry, student, records, statistic, spec))]
        if entry.ranked:
            order = sorted(values, key=lambda p: (_reached(p[1]), p[1] or 0.0))
            placed = list(zip(entry_columns(entry), ([pair] for pair in order)))
        elif entry.best:
            placed = [(*entry_columns(entry), sorted(values, key=lambda p: (_reached(p[1]), sign * (p[1] or 0.0)))[-1:])]
        else:
            placed = [(*entry_columns(entry), values)]
        for column, pairs in placed:
            cell = cells.setdefault((entry.row, column), Cell())
            for student, v, where in pairs:
                cell.add(entry.run, record, student, v, entry.epoch, where)
    return cells


def kept_entries(spec: TableSpec, choices: dict[str, dict]) -> list[Entry]:
    """The layout's entries less those of an option a Choice did not keep: what the tables fill and the
    audit plans."""
    return [entry for entry in spec.entries
            if not entry.choice or (choices.get(entry.choice.group) or {}).get("chosen") == entry.choice.option]


def entry_columns(entry: Entry) -> list[str]:
    """The columns an entry's values go to: a ranked entry's i-th lowest student into its i-th column
    (as many as it has students), any other entry's into its first."""
    return entry.columns[: len(entry.students)] if entry.ranked else entry.columns[:1]


def _reached(value: float | None) -> bool:
    """Whether a value exists: None and NaN stand for an epoch or a last-k window the run never reached."""
    return value is not None and not math.isnan(value)


def planned_runs(spec: TableSpec, choices: dict[str, dict]) -> dict[tuple[str, str], dict[str, Run]]:
    """Per cell, every run the layout places there (by directory), whatever its records say: what a
    cell's sidecar must list, each diverged run counted, never left out (`rdml audit`)."""
    planned: dict[tuple[str, str], dict[str, Run]] = {}
    for entry in kept_entries(spec, choices):
        for column in entry_columns(entry):
            planned.setdefault((entry.row, column), {})[entry.run.directory] = entry.run
    return planned
