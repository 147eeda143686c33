"""Plain tables as Markdown, CSV and standalone HTML: the renderer every table of a study shares (the
study's tables, the paper comparison, the measured compute), below the modules that build them."""

from __future__ import annotations

import csv
import html
import io
import re

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


def html_table(caption: str, head: list[str], lines: list[list[str]]) -> str:
    """A minimal standalone HTML table; ** ** (bold in Markdown) becomes <b>."""
    cell = lambda text, tag: f"<{tag}>" + re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text)) + f"</{tag}>"
    rows = ["<tr>" + "".join(cell(h, "th") for h in head) + "</tr>"]
    rows += ["<tr>" + "".join(cell(v, "td") for v in line) + "</tr>" for line in lines]
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(caption[:80])}</title></head><body>\n'
            f"<p>{html.escape(caption)}</p>\n<table border=\"1\" cellpadding=\"3\">\n" + "\n".join(rows)
            + "\n</table>\n</body></html>\n")
