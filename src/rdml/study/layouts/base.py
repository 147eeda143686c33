"""What a table layout declares: its rows and columns, and for every cell the runs and students it
reads. The planner trains exactly the runs the cells name (and their teachers); the table builder
fills the cells from their records. So a layout is the one place that says which runs a table needs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from rdml.data.catalog import DATASETS
from rdml.keys import PARTNER, ConfigError
from rdml.metrics import METRICS, PRIMARY, TASK_PRIMARY
from rdml.registry import Registry

__all__ = ["Choice", "Entry", "entry_measurements", "task_metric", "Derived", "Claim", "TableSpec", "LAYOUTS", "layout"]


@dataclass(frozen=True)
class Choice:
    """An entry that is one `option` of a `group`: the table keeps the group's option whose students have
    the best mean `by` over their runs ("val": each student's best validation accuracy; "test": the
    study's metric), the first of equal ones, and writes its name into the group's note cell."""

    group: str
    option: str
    by: str


@dataclass(frozen=True)
class Entry:
    """Students of one run that go into a row's cell(s).

    Unranked: every student's value goes into `columns[0]`. Ranked: the students are sorted by their
    value, ascending, and the i-th goes into `columns[i]` (the RDML tables' re-indexing). Best: the
    best of the students (by the table's metric) goes into `columns[0]`.
    `epoch`: the table's metric at that epoch instead of the study's statistic of it.
    `measure`: a value the run's measurements hold per student (rdml.analysis.measure; a list counts as
    that many values) instead of the study's metric.
    `metric`: another recorded metric than the table's (its direction must be the table's), which the
    cell's sidecar names for the audit.
    """

    def __post_init__(self):
        if self.metric is not None and METRICS[self.metric].recorded is None:
            raise ValueError(f"entry {self.row}/{self.columns[0]}: metric {self.metric} is not recorded by training")

    row: str
    columns: tuple[str, ...]
    run: object  # rdml.study.runs.Run
    students: tuple[str, ...] = ("student_0",)
    ranked: bool = False
    best: bool = False  # only the best of the students goes into the cell (a cohort's best student)
    epoch: int | None = None
    measure: str | None = None
    choice: Choice | None = None
    partner: object | None = None  # a second run its measurement reads (a landscape's OKDPH run): planned with it
    settings: str = ""  # JSON: its run's own measurement settings over the table's (a landscape's grid)
    metric: str | None = None  # the recorded metric its cell reports instead of the table's (DML Table 3: mAP, rank-1)


def entry_measurements(measurements: dict, entry: Entry) -> dict:
    """What a table's `measurements` ask of one entry's run: each setting, the entry's own `settings` over
    them, and its partner run by id (rdml.keys.PARTNER), so that a run is measured again when its partner
    becomes another run."""
    if entry.partner is None and not entry.settings:
        return measurements
    own = {**(json.loads(entry.settings) if entry.settings else {}),
           **({PARTNER: entry.partner.id} if entry.partner is not None else {})}
    return {name: {**spec, **own} for name, spec in measurements.items()}


def task_metric(datasets) -> str:
    """The metric a layout that any task's data sets can fill reports: top-1 accuracy on classification sets,
    mAP on retrieval ones (Market-1501, where DML reports Table 4's and Fig. 3's cells in mAP)."""
    tasks = sorted({DATASETS[d].task for d in datasets})
    if len(tasks) > 1:
        raise ConfigError(f"datasets {', '.join(datasets)} mix tasks ({', '.join(tasks)}); one table reports one task's "
                          "metric: split them into studies of one task")
    return TASK_PRIMARY[tasks[0]] if tasks else PRIMARY


@dataclass(frozen=True)
class Derived:
    """A cell that is a difference of two cells' means, in points: minuend − subtrahend."""

    row: str
    column: str
    minuend: tuple[str, str]
    subtrahend: tuple[str, str]


@dataclass(frozen=True)
class Claim:
    """A comparison the paper draws: cell `better` (row, column) beats cell `worse` in the table's metric,
    by its direction (rdml.metrics: an accuracy is higher, a loss lower). Tested by a paired t-test
    over matched seeds; the claims of one `family` (one claim at several α) are adjusted together (Holm)."""

    says: str
    better: tuple[str, str]
    worse: tuple[str, str]
    family: str


@dataclass
class TableSpec:
    name: str
    caption: str  # "{what}" is replaced by what the cells hold: the study's statistic of the table's metric
    rows: list[str]
    columns: list[str]
    entries: list[Entry]
    derived: list[Derived] = field(default_factory=list)
    bold_columns: list[str] = field(default_factory=list)  # column-wise best is set in bold
    claims: list[Claim] = field(default_factory=list)
    figures: tuple[str, ...] = ()  # rdml.report.figures drawn from it
    curves: str = "rows"  # in its learning curves: rows are the lines (panels per column), or columns are
    curve_runs: bool = False  # draw every run too (diverged runs visible)
    measurements: dict = field(default_factory=dict)  # what its `measure` entries need measured on each run
    scale: float | None = None  # cells print value × scale with `digits` decimals; None: as the metric prints
    digits: int | None = None
    choice_cells: dict = field(default_factory=dict)  # Choice.group → (row, column) that names the chosen option
    metric: str = PRIMARY  # the registered metric (rdml.metrics) its cells report, unless an entry measures

    def __post_init__(self):
        metric = METRICS[self.metric]
        self.scale = metric.scale if self.scale is None else self.scale
        self.digits = metric.digits if self.digits is None else self.digits


LAYOUTS: Registry = Registry("table layout")


def layout(name: str, keys: tuple[str, ...], title: tuple[str, str], smoke=None):
    """Register a layout under its params.yaml key, with the keys its section may hold and its human name,
    `title`: the paper's table it follows and what its rows compare (a figure reads "<the study's paper:>:
    <what>", or for a study that names no paper "<study> study, <the paper's table>: <what>"). `smoke`: what
    the section becomes in the study's `_smoke` variant beyond its data sets and networks (e.g. a coarser grid)."""
    def register(function):
        function.keys, function.title, function.smoke = keys, title, smoke
        return LAYOUTS.add(name, function)
    return register
