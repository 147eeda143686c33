"""A table as Markdown, LaTeX, CSV and HTML: one grid of cell texts (bold best, lead marks, derived
differences, the option a Choice kept), written four ways."""

from __future__ import annotations

import csv as csv_module
import io

from rdml.report.render import html_table
from rdml.report.stats import LEVEL, Paired
from rdml.report.table import Table

__all__ = ["grid", "lead_mark", "markdown", "latex", "csv", "html", "FORMATS"]


def lead_mark(lead: Paired | None, latex: bool, sign: int = 1) -> str:
    """ˢ: the bold lead is significant (in the metric's direction, `sign`); ⁿˢ: it is not; nothing where
    it cannot be tested."""
    if lead is None or lead.p is None:
        return ""
    significant = lead.p < 1 - LEVEL and sign * lead.mean > 0
    if latex:
        return "$^{s}$" if significant else "$^{ns}$"
    return "ˢ" if significant else "ⁿˢ"


def grid(table: Table, latex: bool = False) -> list[list[str]]:
    """Each row's name and cell texts: derived differences, a Choice's kept option, mean ± sd (n) with the
    column's best in bold and its lead mark."""
    best = {col: table.best_row(col) for col in table.bold_columns}
    marks = {col: lead_mark(table.lead(col), latex, table.metric.sign) for col in table.bold_columns}
    out = []
    for row in table.rows:
        line = [row]
        for col in table.columns:
            if (row, col) in table.derived:
                line.append(f"{table.derived[(row, col)]:+.{table.digits}f}")
            elif (row, col) in table.notes:
                line.append(table.notes[(row, col)])
            else:
                cell = table.cells.get((row, col))
                bold = best.get(col) == row
                text = cell.text(bold=bold, latex=latex, scale=table.scale, digits=table.digits) if cell else ""
                line.append(text.replace(" (n=", f"{marks[col]} (n=", 1) if bold and cell.mean is not None else text)
        out.append(line)
    return out


def markdown(table: Table) -> str:
    head = ["", *table.columns]
    lines = [f"**{table.caption}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(line) + " |" for line in grid(table)]
    return "\n".join(lines) + "\n"


def html(table: Table) -> str:
    """A standalone HTML table (what `snakemake --report` shows)."""
    return html_table(table.caption, ["", *table.columns], grid(table))


def latex(table: Table) -> str:
    escape = lambda s: s.replace("_", r"\_").replace("%", r"\%").replace("α", r"$\alpha$").replace("−", "-")
    lines = [r"\begin{table}", r"\centering", rf"\caption{{{escape(table.caption)}}}",
             r"\begin{tabular}{l" + "c" * len(table.columns) + "}", r"\toprule",
             " & ".join(["", *map(escape, table.columns)]) + r" \\", r"\midrule"]
    lines += [" & ".join(escape(v) if i == 0 else v for i, v in enumerate(line)) + r" \\" for line in grid(table, latex=True)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def csv(table: Table) -> str:
    """One line per cell: mean and sd as fractions (not × scale), n and diverged runs; a derived cell's
    difference and a Choice's kept option in the mean column."""
    buffer = io.StringIO()
    writer = csv_module.writer(buffer)
    writer.writerow(["row", "column", "mean", "std", "n", "diverged"])
    for row in table.rows:
        for col in table.columns:
            if (row, col) in table.derived:
                writer.writerow([row, col, table.derived[(row, col)] / table.scale, "", "", ""])
            elif (row, col) in table.notes:
                writer.writerow([row, col, table.notes[(row, col)], "", "", ""])
            elif (cell := table.cells.get((row, col))) and cell.runs:
                writer.writerow([row, col, cell.mean, cell.std, len(cell.values), cell.diverged])
    return buffer.getvalue()


FORMATS = {"md": markdown, "tex": latex, "csv": csv, "html": html}  # file suffix → writer, in the order written
