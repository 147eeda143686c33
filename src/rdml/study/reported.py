"""What the papers report for rdml's tables, versioned beside the studies in `reported/<paper>.yaml`:
per cell the study, table, row and column as rdml names them, the value as the paper prints it (in
the table's display unit), its kind (a value, a bound such as "> 89 %", an interval such as "between
87 % and 89 %" stored as [87, 89], or figure-only) and its source. Transcribed from ../shared/papers/;
tests/test_reported_transcription.py checks every cell."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from rdml.keys import ConfigError
from rdml.yamlfile import load_yaml

__all__ = ["KINDS", "REPORTED", "Reported", "load_reported", "reported_value"]

REPORTED = "reported"  # the folder, relative to the project root
KINDS = ("value", "lower_bound", "upper_bound", "interval", "figure_only")
ALLOWED_VALUES = ("a number for value, lower_bound and upper_bound; [low, high], two numbers with low <= high, "
                  "for interval; null for figure_only")


@dataclass(frozen=True)
class Reported:
    paper: str
    study: str
    table: str
    row: str
    column: str
    value: float | tuple[float, float] | None  # (low, high) for an interval, None for figure_only
    kind: str
    source: str
    quote: str = ""
    note: str = ""

    @property
    def printed(self) -> str:
        """The paper's number as the comparison tables show it: 89.5, > 89, < 89, 87–89, figure only."""
        if self.kind == "interval":
            return f"{self.value[0]:g}–{self.value[1]:g}"
        if self.kind == "figure_only":
            return "figure only"
        return {"value": "{:g}", "lower_bound": "> {:g}", "upper_bound": "< {:g}"}[self.kind].format(self.value)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def reported_value(kind: str, value, where: str) -> float | tuple[float, float] | None:
    """The cell's value checked against its kind: a finite number, an interval's (low, high) with both
    ends given and low <= high, or None for figure_only; anything else is a ConfigError naming the cell."""
    if kind not in KINDS:
        raise ConfigError(f"{where}: kind={kind!r} is not allowed; allowed: {', '.join(KINDS)}")
    if kind == "figure_only":
        if value is not None:
            raise ConfigError(f"{where}: value={value!r}: a figure_only cell has value null; allowed: {ALLOWED_VALUES}")
        return None
    if kind == "interval":
        ends = value if isinstance(value, list) else None
        if ends is None or len(ends) != 2 or not all(_is_number(end) for end in ends):
            raise ConfigError(f"{where}: value={value!r}: an interval gives both ends as two numbers [low, high]"
                              f" (an end is missing or not a number); allowed: {ALLOWED_VALUES}")
        low, high = ends
        if low > high:
            raise ConfigError(f"{where}: value={value!r}: the interval's low end {low:g} is above its high end "
                              f"{high:g}; allowed: {ALLOWED_VALUES}")
        return (low, high)
    if not _is_number(value):
        raise ConfigError(f"{where}: value={value!r}: {kind} needs one finite number; allowed: {ALLOWED_VALUES}")
    return value


def load_reported(root: str | Path = ".") -> list[Reported]:
    """Every reported cell of every paper file; a malformed file or cell stops with its name."""
    cells = []
    for path in sorted((Path(root) / REPORTED).glob("*.yaml")):
        body = load_yaml(path, "reported-numbers file")
        if not isinstance(body, dict) or not isinstance(body.get("cells"), list):
            raise ConfigError(f"{path}: expected a mapping with paper and a list of cells")
        for i, cell in enumerate(body["cells"]):
            where = f"{path}: cell {i}"
            try:
                names = [str(cell[key]) for key in ("study", "table", "row", "column")]
                kind = str(cell["kind"])
            except (KeyError, TypeError) as exc:
                raise ConfigError(f"{where}: missing {exc}; a cell names study, table, row, column, kind") from None
            where += " (" + " / ".join(names) + ")"
            value = reported_value(kind, cell.get("value"), where)
            cells.append(Reported(body.get("paper", path.stem), *names, value, kind, str(cell.get("source", "")),
                                  str(cell.get("quote", "")), str(cell.get("note", ""))))
    return cells
