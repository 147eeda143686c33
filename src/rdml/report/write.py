"""`rdml tables STUDY`: every table of a study, its claims, paper comparisons, measured compute, runs
frame, learning curves, DVC metrics and figures, written to results/<study>/ from the checked records.
Each table is written as Markdown, LaTeX, CSV and HTML, with `<table>.cells.json` naming each cell's runs."""

from __future__ import annotations

import shutil
from pathlib import Path

from rdml import paths
from rdml.io import atomic_write_bytes, atomic_write_json
from rdml.report.claims import claims_table
from rdml.report.compute import compute_summary
from rdml.report.figures import write_figures
from rdml.report.formats import FORMATS
from rdml.report.frame import RECORDED, column, long_frame
from rdml.report.paper import paper_comparison
from rdml.report.records import checked_record
from rdml.report.table import Table, build_tables
from rdml.study.params import load_params, metric_of
from rdml.study.plan import plan_study, plan_tables
from rdml.study.reported import load_reported

__all__ = ["write_tables", "write_curves", "study_summary"]


def write_curves(frame, folder: Path) -> list[Path]:
    """One CSV per run and model: epoch and each recorded metric (test accuracy, test loss), what `dvc
    plots` draws. The folder is replaced whole, so no curve of a run the study no longer plans survives."""
    fresh = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(fresh, ignore_errors=True)
    written = []
    columns = [column(m) for m in RECORDED]
    scores = frame[frame.metric.isin(columns)]
    for (run, model), group in scores.groupby(["run", "model"]):
        wide = group.pivot_table(index="epoch", columns="metric", values="value").reset_index()
        path = fresh / run / f"{model}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        wide[["epoch", *columns]].to_csv(path, index=False)
        written.append(folder / run / f"{model}.csv")
    shutil.rmtree(folder, ignore_errors=True)
    if fresh.exists():
        fresh.replace(folder)
    return written


def study_summary(tables: list[Table]) -> dict:
    """One value per cell, as printed (DVC's metrics file: `dvc metrics diff` shows the cells that moved)."""
    return {t.name: {f"{row} | {col}": (None if c.mean is None else round(t.scale * c.mean, 6))
                     for (row, col), c in t.cells.items() if c.runs} for t in tables}


def _text_files(study: str, tables: list[Table], checked: list, root) -> tuple[dict[str, str], list[dict]]:
    """Every text file of the tables folder by name, and the claims' rows."""
    reported = [r for r in load_reported(root) if r.study == study]
    files: dict[str, str] = {}
    for table in tables:
        files.update({f"{table.name}.{suffix}": write(table) for suffix, write in FORMATS.items()})
        if (comparison := paper_comparison(table, reported)) is not None:
            files.update(zip((f"{table.name}.paper.{s}" for s in ("md", "csv", "html")), comparison))
    files["compute.md"], files["compute.csv"], files["compute.html"] = compute_summary(checked)
    markdown, text, rows, page = claims_table(tables)
    if rows:
        files.update({"claims.md": markdown, "claims.csv": text, "claims.html": page})
    return files, rows


def write_tables(study: str, params_path: str = "params.yaml", root: str | Path = ".", spec: dict | None = None) -> list[Path]:
    """Write every table of the study to results/<study>/tables/; returns the files written.

    `spec`: the study's section as Snakemake planned it (overrides included); else read from params.yaml.
    """
    params = {"studies": {study: spec}} if spec is not None else load_params(params_path)
    out = Path(root) / paths.tables_dir(study)
    out.mkdir(parents=True, exist_ok=True)
    statistic = metric_of(params, study)
    checked = [(run, checked_record(root, study, run)) for run in plan_study(params, study)]  # each read once
    tables = build_tables(params, study, root, {run.id: record for run, record in checked})
    frame = long_frame(study, checked)
    files, claims = _text_files(study, tables, checked, root)
    written = []
    for name, text in files.items():
        atomic_write_bytes(out / name, text.encode())
        written.append(out / name)
    atomic_write_bytes(out / "runs.csv", frame.to_csv(index=False).encode())
    written += write_curves(frame, Path(root) / paths.curves_dir(study))
    atomic_write_json(Path(root) / paths.summary_file(study), study_summary(tables))
    written.append(Path(root) / paths.summary_file(study))
    written += [out / "runs.csv", *write_figures(plan_tables(params, study), tables, frame, out)]
    for table in tables:
        atomic_write_json(out / f"{table.name}.cells.json", table.sidecar(study, statistic))
        written.append(out / f"{table.name}.cells.json")
    if claims:
        atomic_write_json(out / "claims.json", {"study": study, "metric": statistic, "claims": claims})
        written.append(out / "claims.json")
    return written
