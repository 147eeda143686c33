"""Our numbers beside the papers' (reported/*.yaml, rdml.study.reported): per reported cell the paper's
value (a number, a bound, or an interval such as 87–89), ours, the difference, the 95 % t-interval of our
mean over seeds, and whether the paper's number lies outside it."""

from __future__ import annotations

from rdml.report.render import plain_table
from rdml.report.stats import t_interval
from rdml.report.table import Table

__all__ = ["PAPER_COLUMNS", "paper_comparison", "paper_check", "paper_difference"]

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
        gap = None if mean is None else paper_difference(r, mean)
        difference = "" if gap is None else f"{gap:+.{table.digits}f}"
        ci = "" if interval is None else f"[{interval[0]:.{table.digits}f}, {interval[1]:.{table.digits}f}]"
        lines.append([r.row, r.column, r.printed, ours, difference, ci, paper_check(r, interval), r.source])
    return plain_table(f"{table.name} beside the paper: our mean ± sd (n), ours − paper in the table's units (for an "
                       "interval, past its nearer end; 0 inside), the 95 % t-interval of our mean over seeds, and the check: the "
                       "paper's value inside or outside our interval; ours wholly past a bound (meets bound), "
                       "wholly short of it (below or above bound) or across it (undecided); ours wholly inside the "
                       "paper's interval, wholly below or above it, or across an end (undecided).",
                       PAPER_COLUMNS, lines)


def paper_difference(r, mean: float) -> float | None:
    """ours − paper: the mean minus the paper's value or bound; for an interval [low, high] how far the
    mean lies past its nearer end (mean − low below it, mean − high above it, 0 inside); None for a figure."""
    if r.kind == "figure_only":
        return None
    if r.kind == "interval":
        low, high = r.value
        return mean - low if mean < low else mean - high if mean > high else 0.0
    return mean - r.value


def paper_check(r, interval) -> str:
    """outside: the paper's value lies outside our interval; a bound is below or above when the interval
    lies wholly past it, met when wholly on its side. The paper's interval [low, high] (all its runs' mean
    "lies between" them) is met when ours lies wholly inside it, below or above when wholly past an end,
    and undecided when ours crosses an end (ours may hold the paper's range, or lie partly outside it)."""
    if r.kind == "figure_only":
        return "figure only"
    if interval is None:
        return "no interval (n < 2)"
    low, high = interval
    if r.kind == "value":
        return "inside" if low <= r.value <= high else "**outside**"
    if r.kind == "interval":
        paper_low, paper_high = r.value
        return ("below interval" if high < paper_low else "above interval" if low > paper_high
                else "inside interval" if paper_low <= low and high <= paper_high else "undecided")
    if r.kind == "lower_bound":
        return "below bound" if high < r.value else "meets bound" if low > r.value else "undecided"
    return "above bound" if low > r.value else "meets bound" if high < r.value else "undecided"
