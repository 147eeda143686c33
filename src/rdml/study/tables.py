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
from rdml.metrics import METRICS, PRIMARY, Metric
from rdml.methods import METHODS
from rdml.study.layouts import Claim, Entry
from rdml.study.compute import compute_summary
from rdml.study.params import load_params, metric_of
from rdml.study.reported import load_reported
from rdml.study.plan import plan_study, plan_tables
from rdml.study.render import html_table, plain_table
from rdml.study.runs import Run
from rdml.study.stats import LEVEL, Paired, holm, paired, t_interval, verdict
from rdml.train.integrity import FINISHED, MEASURES_FORMAT, read_record, record_problems, recorded_value, seal_holds, sealed

__all__ = ["Cell", "Table", "build_tables", "write_tables", "claims_table", "paper_comparison"]


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)  # {"run", "seed", "student", "value", "status"}
    diverged: int = 0
    by_seed: dict[int, list[float]] = field(default_factory=dict)

    def add(self, run: Run, record: dict, student: str, value: float | None, epoch: int | None = None) -> None:
        if record["status"] == "diverged":
            self.diverged += 1
        elif value is not None and not math.isnan(value):  # NaN / None: never reached (epoch, last-k window)
            self.values.append(value)
            self.by_seed.setdefault(run.seed, []).append(value)
        entry = {"run": run.directory, "seed": run.seed, "student": student, "value": value, "status": record["status"]}
        self.runs.append(entry if epoch is None else {**entry, "epoch": epoch})

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

    def grid(self, latex: bool = False) -> list[list[str]]:
        best = {col: self.best_row(col) for col in self.bold_columns}
        marks = {col: _lead_mark(self.lead(col), latex) for col in self.bold_columns}
        out = []
        for row in self.rows:
            line = [row]
            for col in self.columns:
                if (row, col) in self.derived:
                    line.append(f"{self.derived[(row, col)]:+.{self.digits}f}")
                elif (row, col) in self.notes:
                    line.append(self.notes[(row, col)])
                else:
                    cell = self.cells.get((row, col))
                    bold = best.get(col) == row
                    text = cell.text(bold=bold, latex=latex, scale=self.scale, digits=self.digits) if cell else ""
                    line.append(text.replace(" (n=", f"{marks[col]} (n=", 1) if bold and cell.mean is not None else text)
            out.append(line)
        return out

    def claim_results(self) -> list[dict]:
        """Each claim of the table: paired difference better − worse over matched seeds (display units), its
        95 % t-interval, the paired t-test's p, Holm's p within the claim's family, and the verdict (by the
        metric's direction). The rows keep the keys `high` and `low` for the better and the worse cell."""
        tested = []
        for claim in self.claims:
            better, worse = self.cells.get(claim.better), self.cells.get(claim.worse)
            result = paired(better.per_seed() if better else {}, worse.per_seed() if worse else {})
            tested.append((claim, result))
        adjusted = {}
        for family in dict.fromkeys(c.family for c, _ in tested):
            members = [(i, r) for i, (c, r) in enumerate(tested) if c.family == family]
            adjusted.update(zip((i for i, _ in members), holm([r.p for _, r in members])))
        rows = []
        for i, (claim, result) in enumerate(tested):
            scaled = None if result.interval is None else [self.scale * v for v in result.interval]
            rows.append({"table": self.name, "claim": claim.says, "family": claim.family, "high": list(claim.better),
                         "low": list(claim.worse), "n": result.n,
                         "difference": None if result.mean is None else self.scale * result.mean, "interval": scaled,
                         "p": result.p, "holm_p": adjusted[i],
                         "verdict": verdict(result, adjusted[i], sign=self.metric.sign)})
        return rows

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

    def markdown(self) -> str:
        head = ["", *self.columns]
        lines = [f"**{self.caption}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(line) + " |" for line in self.grid()]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        """A standalone HTML table (what `snakemake --report` shows)."""
        return html_table(self.caption, ["", *self.columns], self.grid())

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
                    writer.writerow([row, col, self.derived[(row, col)] / self.scale, "", "", ""])
                elif (row, col) in self.notes:
                    writer.writerow([row, col, self.notes[(row, col)], "", "", ""])
                elif (cell := self.cells.get((row, col))) and cell.runs:
                    writer.writerow([row, col, cell.mean, cell.std, len(cell.values), cell.diverged])
        return buffer.getvalue()

    def sidecar(self, study: str, metric: str) -> dict:
        """`metric`: the study's statistic; `score`: the table's metric, where it is not top-1 accuracy."""
        score = {} if self.metric.name == PRIMARY else {"score": self.metric.name}
        return {
            "table": self.name, "study": study, "metric": metric, **score, "caption": self.caption,
            "cells": {f"{row}|{col}": cell.sidecar() for (row, col), cell in self.cells.items() if cell.runs},
            **({"choices": self.choices} if self.choices else {}),
        }


def checked_record(root: str | Path, study: str, run: Run) -> dict:
    """The run's record, refused when it is damaged, edited outside rdml, not finished, or of other keys."""
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
    return record


def describe(statistic: str, metric: str = PRIMARY) -> str:
    """What a cell holds, for captions: the study's statistic (final, best, last<k>, at_best_val) of a metric."""
    label, primary = METRICS[metric].label, METRICS[PRIMARY].label
    return {"final": f"final test {label}", "best": f"best test {label}",
            "at_best_val": f"test {label} at the epoch of best validation {primary}"}.get(
        statistic, f"mean test {label} of the last {statistic[4:]} epochs")


def build_tables(params: dict, study: str, root: str | Path = ".", records: dict[str, dict] | None = None) -> list[Table]:
    """Every table of the study, its cells filled from the run records under `root` (or from `records`,
    run id → checked record, when the caller has read them already)."""
    statistic = metric_of(params, study)
    records = {} if records is None else records

    def record_of(run: Run) -> dict:
        if run.id not in records:
            records[run.id] = checked_record(root, study, run)
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

    def values_of(entry: Entry, record: dict, student: str, wanted: dict, metric: str) -> list[float]:
        if entry.measure is None:
            return [value(entry, record, student, metric)]
        measured = measures_of(entry.run, record, wanted)["students"].get(student, {})
        found = measured.get(entry.measure, math.nan)  # a diverged run has no measurements
        return [float(v) for v in found] if isinstance(found, list) else [float(found)]

    def value(entry: Entry, record: dict, student: str, metric: str) -> float:
        return recorded_value(record, student, statistic, metric, entry.epoch)

    def choose(entries: list[Entry], metric: str) -> dict[str, dict]:
        """Each Choice group's option with the highest mean score over its students' runs (diverged runs
        left out), the first of equal ones; with every option's mean."""
        scores: dict[str, dict[str, list[float]]] = {}
        by: dict[str, str] = {}
        for entry in (e for e in entries if e.choice):
            record = record_of(entry.run)
            got = scores.setdefault(entry.choice.group, {}).setdefault(entry.choice.option, [])
            by[entry.choice.group] = entry.choice.by
            if record["status"] != "diverged":
                got += [recorded_value(record, st, "best_val") if entry.choice.by == "val" else value(entry, record, st, metric)
                        for st in entry.students]
        chosen = {}
        for group, options in scores.items():
            means = {o: statistics.fmean(v) if v else None for o, v in options.items()}
            kept = max((o for o in means if means[o] is not None), key=lambda o: means[o], default=None)
            chosen[group] = {"by": by[group], "chosen": kept, "scores": means}
        return chosen

    tables = []
    for spec in plan_tables(params, study):
        cells: dict[tuple[str, str], Cell] = {}
        choices = choose(spec.entries, spec.metric)
        for entry in spec.entries:
            if entry.choice and choices[entry.choice.group]["chosen"] != entry.choice.option:
                continue
            record = record_of(entry.run)
            values = [(student, v) for student in entry.students
                      for v in values_of(entry, record, student, spec.measurements, spec.metric)]
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
                derived[(d.row, d.column)] = spec.scale * (minuend.mean - subtrahend.mean)
        caption_notes = dict.fromkeys(note for entry in spec.entries
                                      for note in METHODS[entry.run.config.method].caption_notes(entry.run.config))
        caption = " ".join([spec.caption.replace("{what}", describe(statistic, spec.metric)), *caption_notes])
        kept = {where: choices[group]["chosen"] or "—" for group, where in spec.choice_cells.items() if group in choices}
        table = Table(spec.name, caption, spec.rows, spec.columns, cells, spec.bold_columns, derived, spec.scale,
                      spec.digits, spec.claims, kept, choices, METRICS[spec.metric])
        table.caption = table.caption.rstrip(".") + "." + table.legend
        tables.append(table)
    return tables


CLAIM_COLUMNS = ["table", "where", "claim", "n", "difference", "95% CI", "p", "Holm p", "verdict"]


def claims_table(tables: list[Table]) -> tuple[str, str, list[dict], str]:
    """The study's claims as Markdown and CSV, their rows (for JSON), and as HTML."""
    rows = [r for t in tables for r in t.claim_results()]
    number = lambda v, f: "" if v is None else format(v, f)
    where = lambda r: r["high"][1] if r["high"][1] == r["low"][1] else r["high"][0]
    cells = [[r["table"], where(r), r["claim"], str(r["n"]), number(r["difference"], "+.3f"),
              "" if r["interval"] is None else f"[{r['interval'][0]:+.3f}, {r['interval'][1]:+.3f}]",
              number(r["p"], ".3g"), number(r["holm_p"], ".3g"), r["verdict"]] for r in rows]
    caption = ("**Claims: each comparison the paper draws, as high − low over matched seeds (a seed fixes the "
               "initialisation and batch order of both runs), in the table's units (points for accuracies); 95 % "
               "t-interval of the mean difference; two-sided paired t-test; Holm's adjustment over the claims of one "
               "family (one claim at several α, or over pairs); verdict from the adjusted p at 0.05: supported (in the "
               "paper's direction), contradicted (significant the other way) or not significant.**")
    lower = sorted({t.metric.label for t in tables if t.claims and t.metric.direction == "lower"})
    if lower:  # a claim's first cell is its better one: the lower where lower is better
        caption = caption[:-2] + (f" Where lower is better ({', '.join(lower)}), high is the cell the paper says is "
                                  "better, so a supported claim's difference is negative.**")
    markdown = "\n".join([caption, "", "| " + " | ".join(CLAIM_COLUMNS) + " |", "|" + "---|" * len(CLAIM_COLUMNS),
                          *("| " + " | ".join(c) + " |" for c in cells)]) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["table", "claim", "family", "high_row", "high_column", "low_row", "low_column", "n", "difference",
                     "ci_low", "ci_high", "p", "holm_p", "verdict"])
    for r in rows:
        ci = r["interval"] or [None, None]
        writer.writerow([r["table"], r["claim"], r["family"], *r["high"], *r["low"], r["n"], r["difference"], *ci,
                         r["p"], r["holm_p"], r["verdict"]])
    return markdown, buffer.getvalue(), rows, html_table(caption.strip("*"), CLAIM_COLUMNS, cells)


PAPER_COLUMNS = ["row", "column", "paper", "ours", "ours − paper", "95% CI of ours", "check", "source"]


def paper_comparison(table: Table, reported: list) -> tuple[str, str, str] | None:
    """The table's cells the papers report, beside ours: the difference, the 95 % t-interval of our mean
    over seeds, and a check: outside when the paper's value lies outside that interval (bounds: below or
    above bound when the interval lies wholly past it). None when no paper reports a cell of it."""
    mine = [r for r in reported if r.table == table.name and (r.row, r.column) in
            {(row, col) for row in table.rows for col in table.columns}]
    if not mine:
        return None
    lines = []
    for r in mine:
        cell = table.cells.get((r.row, r.column))
        if (r.row, r.column) in table.derived:
            ours, mean, interval = f"{table.derived[(r.row, r.column)]:+.2f}", table.derived[(r.row, r.column)], None
        elif cell is not None and cell.mean is not None:
            ours, mean = cell.text(scale=table.scale, digits=table.digits), table.scale * cell.mean
            bounds = t_interval(list(cell.per_seed().values()))
            interval = None if bounds is None else (table.scale * bounds[0], table.scale * bounds[1])
        else:
            ours, mean, interval = (cell.text(scale=table.scale, digits=table.digits) if cell else "not run"), None, None
        paper = {"value": "{:g}", "lower_bound": "> {:g}", "upper_bound": "< {:g}"}.get(r.kind, "figure only")
        paper = paper.format(r.value) if r.value is not None else paper
        difference = "" if mean is None or r.value is None else f"{mean - r.value:+.{table.digits}f}"
        check = _paper_check(r, interval)
        ci = "" if interval is None else f"[{interval[0]:.{table.digits}f}, {interval[1]:.{table.digits}f}]"
        lines.append([r.row, r.column, paper, ours, difference, ci, check, r.source])
    return plain_table(f"{table.name} beside the paper: our mean ± sd (n), ours − paper in the table's units, the 95 % "
                       "t-interval of our mean over seeds, and whether the paper's value lies outside it.",
                       PAPER_COLUMNS, lines)


def _paper_check(r, interval) -> str:
    if r.kind == "figure_only":
        return "figure only"
    if interval is None:
        return "no interval (n < 2)"
    low, high = interval
    if r.kind == "value":
        return "inside" if low <= r.value <= high else "**outside**"
    if r.kind == "lower_bound":
        return "below bound" if high < r.value else "meets bound" if low > r.value else "undecided"
    return "above bound" if low > r.value else "meets bound" if high < r.value else "undecided"


def _write_curves(frame, folder: Path) -> list[Path]:
    """One CSV per run and model: epoch and each recorded metric (test accuracy, test loss). The folder is
    replaced whole, so no curve of a run the study no longer plans survives."""
    import shutil

    from rdml.study.frame import RECORDED, column

    fresh = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(fresh, ignore_errors=True)
    written = []
    columns = [column(m) for m in RECORDED]
    scores = frame[frame.metric.isin(columns)]
    for (run, model), group in scores.groupby(["run", "model"]):
        wide = group.pivot_table(index="epoch", columns="metric", values="value").reset_index()
        path = fresh / run / f"{model}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        wide[["epoch", *columns]].to_csv(path, index=False)
        written.append(folder / run / f"{model}.csv")
    shutil.rmtree(folder, ignore_errors=True)
    if fresh.exists():
        fresh.replace(folder)
    return written


def _lead_mark(lead: Paired | None, latex: bool) -> str:
    """ˢ: the bold lead is significant; ⁿˢ: it is not; nothing where it cannot be tested."""
    if lead is None or lead.p is None:
        return ""
    significant = lead.p < 1 - LEVEL and lead.mean > 0
    if latex:
        return "$^{s}$" if significant else "$^{ns}$"
    return "ˢ" if significant else "ⁿˢ"


def write_tables(study: str, params_path: str = "params.yaml", root: str | Path = ".", spec: dict | None = None) -> list[Path]:
    """Write every table of the study to results/<study>/tables/; returns the files written.

    `spec`: the study's section as Snakemake planned it (overrides included); else read from params.yaml.
    """
    params = {"studies": {study: spec}} if spec is not None else load_params(params_path)
    out = Path(root) / paths.tables_dir(study)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    metric = metric_of(params, study)
    from rdml.study.figures import write_figures
    from rdml.study.frame import long_frame

    checked = [(run, checked_record(root, study, run)) for run in plan_study(params, study)]  # each read once
    tables = build_tables(params, study, root, {run.id: record for run, record in checked})
    frame = long_frame(study, checked)
    reported = [r for r in load_reported(root) if r.study == study]
    files: dict[str, str] = {}
    for table in tables:
        files.update({f"{table.name}.md": table.markdown(), f"{table.name}.tex": table.latex(),
                      f"{table.name}.csv": table.csv(), f"{table.name}.html": table.html()})
        if (comparison := paper_comparison(table, reported)) is not None:
            files.update(zip((f"{table.name}.paper.{s}" for s in ("md", "csv", "html")), comparison))
    files["compute.md"], files["compute.csv"], files["compute.html"] = compute_summary(checked)
    markdown, text, rows, page = claims_table(tables)
    if rows:
        files.update({"claims.md": markdown, "claims.csv": text, "claims.html": page})
    for name, text in files.items():
        atomic_write_bytes(out / name, text.encode())
        written.append(out / name)
    atomic_write_bytes(out / "runs.csv", frame.to_csv(index=False).encode())
    written += _write_curves(frame, Path(root) / paths.curves_dir(study))
    summary = {t.name: {f"{row} | {col}": (None if c.mean is None else round(t.scale * c.mean, 6))
                        for (row, col), c in t.cells.items() if c.runs} for t in tables}
    atomic_write_json(Path(root) / paths.summary_file(study), summary)
    written.append(Path(root) / paths.summary_file(study))
    written += [out / "runs.csv", *write_figures(plan_tables(params, study), tables, frame, out)]
    for table in tables:
        atomic_write_json(out / f"{table.name}.cells.json", table.sidecar(study, metric))
        written.append(out / f"{table.name}.cells.json")
    if rows:
        atomic_write_json(out / "claims.json", {"study": study, "metric": metric, "claims": rows})
        written.append(out / "claims.json")
    return written
