"""What DVC shows of a study, in names that a shell, a Vega field and a Markdown table all carry:

- the metrics summary, `results/<study>/summary.json`: every printed cell, nested table → row → column, each
  label made a key (`key`), so that `dvc metrics diff --md` prints `rdml_table.RDML_alpha_0_5.digits_mlp_0`;
- the curves, `results/<study>/curves/<table>/<panel>.csv`: per panel of a table's learning curves
  (rdml.report.panels, the panels its figure draws), the epoch and each line's test accuracy, the mean
  over its runs (and their students), in the unit the table prints;
- the top-level plot definitions of dvc.yaml that draw each curves file as one plot, its lines by name.

The repository's .gitignore lets exactly these (and the per-run metrics) through `results/`, so git keeps
them beside the code that wrote them, and `dvc metrics diff`, `dvc plots diff` and `dvc exp show` compare
commits.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from rdml import paths
from rdml.io import atomic_write_bytes
from rdml.metrics import METRICS, PRIMARY
from rdml.report.panels import panel_lines

__all__ = ["key", "keys_of", "study_summary", "curve_plots", "plot_definitions", "write_curves", "ACCURACY_LABEL",
           "curve_label"]

# Signs spelled as a word in a key; a Greek letter is spelled by its Unicode name (α → alpha, Δ → Delta).
SIGNS = {"≠": "ne", "≤": "le", "≥": "ge", "±": "pm", "%": "pct", "+": "plus", "×": "x", "→": "to"}
ACCURACY_LABEL = f"mean test {METRICS[PRIMARY].label} over seeds ({METRICS[PRIMARY].unit})"


def curve_label(metric: str) -> str:
    """The y axis of a table's curves: the table's metric (top-1 accuracy; mAP on a retrieval set)."""
    return f"mean test {METRICS[metric].label} over seeds ({METRICS[metric].unit})"


def key(label: str) -> str:
    """A label as a key of letters, digits and underscores: Greek letters and a few signs by name, every other
    run of characters one underscore ("RDML α=0.5" → "RDML_alpha_0_5", "digits/mlp/0" → "digits_mlp_0")."""
    spelled = []
    for char in label:
        word = SIGNS.get(char)
        if word is None and not char.isascii():
            name = unicodedata.name(char, "")
            word = name.split()[-1].lower() if name.startswith("GREEK") and "LETTER" in name else ""
            word = word.capitalize() if "CAPITAL" in name else word
        spelled.append(char if word is None else f" {word} ")
    return re.sub(r"[^A-Za-z0-9]+", "_", "".join(spelled)).strip("_") or "_"


def keys_of(labels: Iterable[str]) -> dict[str, str]:
    """Each label's key, distinct: a key that an earlier label already took gets `_2`, `_3`, ... in order."""
    keys: dict[str, str] = {}
    taken: set[str] = set()
    for label in dict.fromkeys(labels):
        base = candidate = key(label)
        n = 2
        while candidate in taken:
            candidate, n = f"{base}_{n}", n + 1
        keys[label] = candidate
        taken.add(candidate)
    return keys


def study_summary(tables) -> dict:
    """One value per filled cell, as printed, under table → row key → column key (DVC's metrics file:
    `dvc metrics diff` lists the cells that moved)."""
    summary = {}
    for table in tables:
        rows, columns = keys_of(table.rows + [r for r, _ in table.cells]), keys_of(table.columns + [c for _, c in table.cells])
        nested: dict[str, dict] = {}
        for (row, col), cell in table.cells.items():
            if cell.runs:
                nested.setdefault(rows[row], {})[columns[col]] = None if cell.mean is None else round(table.scale * cell.mean, 6)
        summary[table.name] = nested
    return summary


def curve_plots(study: str, specs) -> list[tuple[str, str, str, dict[str, str]]]:
    """(file, table, panel, {line: column}) of every plot of the study's curves, in the tables' order; known
    from the plan alone, so dvc.yaml names each file's columns before any run exists."""
    plots = []
    for spec in specs:
        panels = panel_lines(spec)
        for panel, file_key in keys_of(panels).items():
            plots.append((f"{paths.curves_dir(study)}/{spec.name}/{file_key}.csv", spec.name, panel,
                          keys_of(panels[panel])))
    return plots


def plot_definitions(study: str, specs, paper: str | None) -> list[dict]:
    """dvc.yaml's top-level plots of the study: one per curves file, its lines named as the table names them."""
    from rdml.report.figures import figure_title

    metric = {spec.name: spec.metric for spec in specs}
    return [{f"{study}/{table}/{Path(file).stem}": {
        "x": "epoch", "y": {file: list(columns.values())}, "template": "linear",
        "title": f"{figure_title(paper, study, table)}: {panel}", "x_label": "epoch", "y_label": curve_label(metric[table])}}
        for file, table, panel, columns in curve_plots(study, specs)]


def write_curves(study: str, specs, frame, root: Path) -> list[Path]:
    """Write every curves file of the study under `root` (the study's new curves folder, moved into place
    whole by rdml.report.write): epoch, then each line's column, the planned columns always present."""
    from rdml.report.figures import curve_data
    from rdml.report.frame import column

    written = []
    for spec in specs:
        data, metric = curve_data(spec, frame), METRICS[spec.metric]
        for file, table, panel, columns in curve_plots(study, [spec]):
            shown = data[data.panel == panel]
            means = shown.groupby(["line", "epoch"])[column(metric)].mean().unstack("line") * metric.scale
            wide = means.reindex(columns=list(columns)).rename(columns=columns).round(6)
            wide.index.name = "epoch"
            path = root / Path(file).relative_to(paths.curves_dir(study))
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, wide.reset_index().to_csv(index=False).encode())
            written.append(path)
    return written
