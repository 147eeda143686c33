"""Which learning curves a table draws, known from its plan alone: one panel per table column (without the
student index) with one line per row, or one panel per row with one line per column where the table says
`curves="columns"`; panels and lines in the table's order. The curves figure (rdml.report.figures) and
DVC's plots (rdml.report.dvc_views) draw the same panels."""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["strip_index", "curve_entries", "panels_and_lines", "panel_lines"]


def strip_index(name: str) -> str:
    """A column without its student index: "digits/mlp/0" → "digits/mlp"."""
    return re.sub(r"/\d+$", "", name)


def curve_entries(spec) -> Iterator[tuple[str, str, object]]:
    """(panel, line, entry) of every entry whose runs have curves (not a measurement, not one epoch's value)."""
    for entry in spec.entries:
        if entry.measure is not None or entry.epoch is not None:
            continue
        column_name = entry.columns[0]
        yield (strip_index(column_name), entry.row, entry) if spec.curves == "rows" else (entry.row, column_name, entry)


def panels_and_lines(spec) -> tuple[list[str], list[str]]:
    """The table's panels and lines in its order (all of them, whether or not an entry fills them)."""
    if spec.curves == "rows":
        return list(dict.fromkeys(strip_index(c) for c in spec.columns)), list(spec.rows)
    return list(spec.rows), list(spec.columns)


def panel_lines(spec) -> dict[str, list[str]]:
    """Each panel an entry fills, with the lines entries fill in it, both in the table's order."""
    panels, lines = panels_and_lines(spec)
    filled: dict[str, set[str]] = {}
    for panel, line, _ in curve_entries(spec):
        filled.setdefault(panel, set()).add(line)
    order = panels + [p for p in filled if p not in panels]
    return {panel: [line for line in lines if line in filled[panel]]
            + sorted(filled[panel] - set(lines)) for panel in order if panel in filled}
