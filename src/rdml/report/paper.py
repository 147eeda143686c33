"""Our numbers beside the papers' (reported/*.yaml, rdml.study.reported): per reported cell the paper's
value, ours, the difference, the 95 % t-interval of our mean over seeds, and whether the paper's value
(or bound) lies outside it."""

from __future__ import annotations

from rdml.report.render import plain_table
from rdml.report.stats import t_interval
from rdml.report.table import Table

__all__ = ["PAPER_COLUMNS", "paper_comparison", "paper_check"]

PAPER_COLUMNS = ["row", "column", "paper", "ours", "ours − paper", "95% CI of ours", "check", "source"]


def paper_comparison(table: Table, reported: list) -> tuple[str, str, str] | None:
    """The table's cells the papers report, beside ours, as Markdown, CSV and HTML. None when no paper
    reports a cell of it."""
    mine = [r for r in reported if r.table == table.name and (r.row, r.column) in
            {(row, col) for row in table.rows for col in table.columns}]
    if not mine:
        return None
    lines = []
    for r in mine:
        cell = table.cells.get((r.row, r.column))
        if (r.row, r.column) in table.derived:
            mean, interval = table.derived[(r.row, r.column)], None
            ours = f"{mean:+.{table.digits}f}"
        elif cell is not None and cell.mean is not None:
            ours, mean = cell.text(scale=table.scale, digits=table.digits), table.scale * cell.mean
            bounds = t_interval(list(cell.per_seed().values()))
            interval = None if bounds is None else (table.scale * bounds[0], table.scale * bounds[1])
        else:
            ours, mean, interval = (cell.text(scale=table.scale, digits=table.digits) if cell else "not run"), None, None
        paper = {"value": "{:g}", "lower_bound": "> {:g}", "upper_bound": "< {:g}"}.get(r.kind, "figure only")
        paper = paper.format(r.value) if r.value is not None else paper
        difference = "" if mean is None or r.value is None else f"{mean - r.value:+.{table.digits}f}"
        ci = "" if interval is None else f"[{interval[0]:.{table.digits}f}, {interval[1]:.{table.digits}f}]"
        lines.append([r.row, r.column, paper, ours, difference, ci, paper_check(r, interval), r.source])
    return plain_table(f"{table.name} beside the paper: our mean ± sd (n), ours − paper in the table's units, the 95 % "
                       "t-interval of our mean over seeds, and whether the paper's value lies outside it.",
                       PAPER_COLUMNS, lines)


def paper_check(r, interval) -> str:
    """outside: the paper's value lies outside our interval; a bound is below or above when the interval
    lies wholly past it, met when wholly on its side."""
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
