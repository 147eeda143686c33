"""What the papers report for rdml's tables, versioned beside the studies in `reported/<paper>.yaml`:
per cell the study, table, row and column as rdml names them, the value as the paper prints it (in
the table's display unit), its kind (a value, a bound such as "> 89 %", or figure-only) and its
source. Transcribed from ../shared/papers/; tests/test_reported_transcription.py checks every cell."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rdml.keys import ConfigError
from rdml.yamlfile import load_yaml

__all__ = ["KINDS", "REPORTED", "Reported", "load_reported"]

REPORTED = "reported"  # the folder, relative to the project root
KINDS = ("value", "lower_bound", "upper_bound", "figure_only")


@dataclass(frozen=True)
class Reported:
    paper: str
    study: str
    table: str
    row: str
    column: str
    value: float | None
    kind: str
    source: str
    quote: str = ""
    note: str = ""


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
                item = Reported(body.get("paper", path.stem), str(cell["study"]), str(cell["table"]), str(cell["row"]),
                                str(cell["column"]), cell.get("value"), str(cell["kind"]), str(cell.get("source", "")),
                                str(cell.get("quote", "")), str(cell.get("note", "")))
            except (KeyError, TypeError) as exc:
                raise ConfigError(f"{where}: missing {exc}; a cell names study, table, row, column, kind") from None
            if item.kind not in KINDS:
                raise ConfigError(f"{where}: kind={item.kind!r} is not allowed; allowed: {', '.join(KINDS)}")
            if (item.value is None) != (item.kind == "figure_only") or not (
                    item.value is None or isinstance(item.value, (int, float))):
                raise ConfigError(f"{where}: value={item.value!r}: a number for {item.kind}, null only for figure_only")
            cells.append(item)
    return cells
