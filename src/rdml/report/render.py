"""Plain tables as Markdown, CSV and standalone, styled HTML: the renderer every table of a study shares (the
study's tables, the paper comparison, the measured compute), below the modules that build them."""

from __future__ import annotations

import csv
import html
import io
import re

import pandas as pd

__all__ = ["plain_table", "html_table"]


def plain_table(caption: str, head: list[str], rows: list[list]) -> tuple[str, str, str]:
    """A captioned table of plain rows as Markdown, CSV and HTML."""
    rows = [[str(v) for v in row] for row in rows]
    markdown = "\n".join([f"**{caption}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                          *("| " + " | ".join(row) + " |" for row in rows)]) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(head)
    writer.writerows(rows)
    return markdown, buffer.getvalue(), html_table(caption, head, rows)


# The one style sheet of every HTML table, embedded so that a page reads offline (no fonts, no scripts):
# booktabs-like rules, zebra rows, numbers right-aligned in tabular figures, the best cell bold, n muted.
HTML_STYLE = """\
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328;
       margin: 1.5em; line-height: 1.4; }
table.rdml { border-collapse: collapse; font-size: 0.92em; }
table.rdml caption { caption-side: top; text-align: left; max-width: 70em; padding-bottom: 0.6em; }
table.rdml th, table.rdml td { padding: 0.3em 0.8em; vertical-align: top; }
table.rdml thead th { border-top: 2px solid #1f2328; border-bottom: 1px solid #1f2328; text-align: center; }
table.rdml tbody tr:last-child > * { border-bottom: 2px solid #1f2328; }
table.rdml tbody tr:nth-child(even) { background: #f3f4f6; }
table.rdml th.row_heading { text-align: left; font-weight: 600; white-space: nowrap; }
table.rdml td { text-align: left; }
table.rdml td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.rdml td.best { font-weight: bold; }
table.rdml .n { color: #6e7781; font-size: 0.85em; font-weight: normal; }
"""

_NUMBER = re.compile(r"^\[?(\*\*)?[-+−]?\.?\d|^—")  # a number, an interval [a, b], a bold mean, a cell with no value
_BOLD = re.compile(r"\*\*(.+?)\*\*")  # Markdown's bold, what the grid marks the best cell with
_COUNT = re.compile(r" \((n=[^()]*)\)$")  # a cell's closing (n=…, k diverged)


def _html_cell(text: str) -> str:
    """One cell's text as HTML: escaped, ** ** as <b>, the closing (n=…) muted."""
    escaped = _BOLD.sub(r"<b>\1</b>", html.escape(text))
    return _COUNT.sub(r' <span class="n">(\1)</span>', escaped)


def html_table(caption: str, head: list[str], lines: list[list[str]], name: str = "table") -> str:
    """A standalone, styled HTML page of a table (pandas' Styler, `DataFrame.style`): each line's first
    text its row's heading, head[0] the corner; ** ** (bold in Markdown) becomes <b>, in a cell marked
    best. Positional labels underneath, so repeated row or column names are kept as they are."""
    body = [[str(v) for v in line[1:]] for line in lines]
    data = pd.DataFrame(body, columns=pd.RangeIndex(len(head) - 1, name=html.escape(head[0])), dtype=object)
    classes = pd.DataFrame([[" ".join((["num"] if _NUMBER.match(v) else []) + (["best"] if _BOLD.search(v) else []))
                             for v in line] for line in body], columns=data.columns, dtype=object)
    styler = data.map(_html_cell).style.set_td_classes(classes).set_caption(html.escape(caption))
    styler.set_uuid(re.sub(r"[^A-Za-z0-9_-]", "_", name)).set_table_attributes('class="rdml"')
    styler.relabel_index([html.escape(str(line[0])) for line in lines], axis=0)
    styler.relabel_index([html.escape(h) for h in head[1:]], axis=1)
    table = styler.to_html(cell_ids=False).replace('<style type="text/css">\n</style>\n', "")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(caption[:80])}</title>\n<style>\n{HTML_STYLE}</style>\n</head>\n<body>\n"
            f"{table}</body>\n</html>\n")
