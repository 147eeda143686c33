"""The comparisons each paper draws (a layout's claims), tested on our runs: the paired difference over
matched seeds, its t-interval, the paired t-test, Holm's adjustment within a claim's family and a
verdict in the direction of the table's metric (rdml.metrics: a loss's improvement is a decrease)."""

from __future__ import annotations

import csv
import io

from rdml.report.render import html_table
from rdml.report.stats import holm, paired, verdict
from rdml.report.table import Table

__all__ = ["CLAIM_COLUMNS", "claim_results", "claims_table"]

CLAIM_COLUMNS = ["table", "where", "claim", "n", "difference", "95% CI", "p", "Holm p", "verdict"]
CSV_COLUMNS = ["table", "claim", "family", "high_row", "high_column", "low_row", "low_column", "n", "difference",
               "ci_low", "ci_high", "p", "holm_p", "verdict"]
CAPTION = ("**Claims: each comparison the paper draws, as high − low over matched seeds (a seed fixes the "
           "initialisation and batch order of both runs), in the table's units (points for accuracies); 95 % "
           "t-interval of the mean difference; two-sided paired t-test; Holm's adjustment over the claims of one "
           "family (one claim at several α, or over pairs); verdict from the adjusted p at 0.05: supported (in the "
           "paper's direction), contradicted (significant the other way) or not significant.**")


def claim_results(table: Table) -> list[dict]:
    """Each claim of the table: paired difference better − worse over matched seeds (display units), its
    95 % t-interval, the paired t-test's p, Holm's p within the claim's family, and the verdict (by the
    metric's direction). The rows keep the keys `high` and `low` for the better and the worse cell."""
    tested = []
    for claim in table.claims:
        better, worse = table.cells.get(claim.better), table.cells.get(claim.worse)
        tested.append((claim, paired(better.per_seed() if better else {}, worse.per_seed() if worse else {})))
    adjusted = {}
    for family in dict.fromkeys(c.family for c, _ in tested):
        members = [(i, r) for i, (c, r) in enumerate(tested) if c.family == family]
        adjusted.update(zip((i for i, _ in members), holm([r.p for _, r in members])))
    rows = []
    for i, (claim, result) in enumerate(tested):
        scaled = None if result.interval is None else [table.scale * v for v in result.interval]
        rows.append({"table": table.name, "claim": claim.says, "family": claim.family, "high": list(claim.better),
                     "low": list(claim.worse), "n": result.n,
                     "difference": None if result.mean is None else table.scale * result.mean, "interval": scaled,
                     "p": result.p, "holm_p": adjusted[i], "verdict": verdict(result, adjusted[i], sign=table.metric.sign)})
    return rows


def _caption(tables: list[Table]) -> str:
    lower = sorted({t.metric.label for t in tables if t.claims and t.metric.direction == "lower"})
    if not lower:
        return CAPTION
    return CAPTION[:-2] + (f" Where lower is better ({', '.join(lower)}), high is the cell the paper says is better, so a "
                           "supported claim's difference is negative.**")


def _line(row: dict) -> list[str]:
    number = lambda v, f: "" if v is None else format(v, f)
    where = row["high"][1] if row["high"][1] == row["low"][1] else row["high"][0]
    interval = "" if row["interval"] is None else f"[{row['interval'][0]:+.3f}, {row['interval'][1]:+.3f}]"
    return [row["table"], where, row["claim"], str(row["n"]), number(row["difference"], "+.3f"), interval,
            number(row["p"], ".3g"), number(row["holm_p"], ".3g"), row["verdict"]]


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        ci = r["interval"] or [None, None]
        writer.writerow([r["table"], r["claim"], r["family"], *r["high"], *r["low"], r["n"], r["difference"], *ci,
                         r["p"], r["holm_p"], r["verdict"]])
    return buffer.getvalue()


def claims_table(tables: list[Table]) -> tuple[str, str, list[dict], str]:
    """The study's claims as Markdown and CSV, their rows (for JSON), and as HTML."""
    rows = [r for t in tables for r in claim_results(t)]
    lines = [_line(r) for r in rows]
    caption = _caption(tables)
    markdown = "\n".join([caption, "", "| " + " | ".join(CLAIM_COLUMNS) + " |", "|" + "---|" * len(CLAIM_COLUMNS),
                          *("| " + " | ".join(c) + " |" for c in lines)]) + "\n"
    return markdown, _csv(rows), rows, html_table(caption.strip("*"), CLAIM_COLUMNS, lines)
