"""`rdml tables STUDY`: every table of a study, its claims, paper comparisons, measured compute, runs
frame, DVC's metrics and curves (rdml.report.dvc_views) and figures, written to results/<study>/ from the checked records.
Each table is written as Markdown, LaTeX, CSV and HTML, with `<table>.cells.json` naming each cell's runs."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from rdml import paths
from rdml.io import atomic_write_bytes, atomic_write_json
from rdml.keys import ConfigError
from rdml.report.claims import claims_table
from rdml.report.compute import compute_summary
from rdml.report.figures import write_figures
from rdml.report.formats import FORMATS
from rdml.report.dvc_views import study_summary, write_curves
from rdml.report.frame import long_frame
from rdml.report.paper import paper_comparison
from rdml.report.records import checked_record
from rdml.report.scorecard import write_scorecard
from rdml.report.table import Table, build_tables
from rdml.study.params import load_params, metric_of
from rdml.study.plan import plan_study, plan_tables
from rdml.study.reported import load_reported

__all__ = ["write_tables"]


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
    """Write every table of the study to results/<study>/tables/ (with its curves and summary); returns the files written.

    `spec`: the study's section as Snakemake planned it (overrides included); else read from params.yaml.
    The outputs are replaced only once the new ones are complete: everything is written into a fresh
    folder beside them, then moved into place, so a refused or failed command (a bad value, a damaged
    record, a full disk) leaves the old tables as they were. Commands writing one study's tables take
    turns (a lock file beside them); a place that cannot be written is a ConfigError before any work.
    """
    params = {"studies": {study: spec}} if spec is not None else load_params(params_path)
    root = Path(root)
    places = {"tables": root / paths.tables_dir(study), "curves": root / paths.curves_dir(study),
              "summary": root / paths.summary_file(study)}
    statistic = metric_of(params, study)
    home = _writable_home(places)
    with _turn(home / ".tables.lock"):
        checked = [(run, checked_record(root, study, run)) for run in plan_study(params, study)]  # each read once
        tables = build_tables(params, study, root, {run.id: record for run, record in checked})
        frame = long_frame(study, checked)
        files, claims = _text_files(study, tables, checked, root)
        staging = _staging(home)
        try:
            new = {name: staging / place.name for name, place in places.items()}
            out = new["tables"]
            out.mkdir()
            for name, text in files.items():
                atomic_write_bytes(out / name, text.encode())
            atomic_write_bytes(out / "runs.csv", frame.to_csv(index=False).encode())
            specs = plan_tables(params, study)
            new["curves"].mkdir()
            write_curves(study, specs, frame, new["curves"])
            write_figures(specs, tables, frame, out)
            for table in tables:
                atomic_write_json(out / f"{table.name}.cells.json", table.sidecar(study, statistic))
            if claims:
                atomic_write_json(out / "claims.json", {"study": study, "metric": statistic, "claims": claims})
            atomic_write_json(new["summary"], study_summary(tables))
            _swap_all(new, places, staging)
        except OSError as exc:
            raise ConfigError(f"cannot write the tables of {study} in {home} ({exc.strerror}: {exc.filename}); "
                              "what was there is left as it was") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        write_scorecard(root)  # results/scorecard.md: every built study, this one's new tables included
        return [p for place in (places["tables"], places["curves"]) for p in sorted(place.rglob("*")) if p.is_file()] \
            + [places["summary"]]


def _writable_home(places: dict[str, Path]) -> Path:
    """results/<study>/, created, checked to take the new outputs: a ConfigError naming what is in the way."""
    home = places["tables"].parent
    for name, place in places.items():
        folder = name != "summary"
        if place.exists() and place.is_dir() != folder:
            raise ConfigError(f"{place} is a {'file' if folder else 'directory'}, where the {name} of the study belong; "
                              "move it away to write the tables")
        if place.exists() and folder and not os.access(place, os.W_OK):
            raise ConfigError(f"{place} is read-only; make it writable to write the tables (nothing was changed)")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {home} for the tables ({exc.strerror})") from None
    if not os.access(home, os.W_OK):
        raise ConfigError(f"{home} is read-only; make it writable to write the tables (nothing was changed)")
    return home


@contextmanager
def _turn(lock_path: Path):
    """One command at a time writes a study's tables: an exclusive flock the kernel drops when its holder dies."""
    try:
        handle = open(lock_path, "a")
    except OSError as exc:
        raise ConfigError(f"cannot open the lock {lock_path} ({exc.strerror})") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _staging(home: Path) -> Path:
    """A fresh folder for the new outputs, after removing any a killed command left (we hold the lock)."""
    for stale in home.glob(".tables-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=".tables-", suffix=".tmp", dir=home))


def _swap_all(new: dict[str, Path], places: dict[str, Path], staging: Path) -> None:
    """Put every new output in its place, or none: the old ones go into `staging` (removed with it), and
    on a failure half way each new one placed is taken out and each old one put back. The summary goes
    last: DVC's metrics vouch for the tables."""
    moved, placed = [], []
    try:
        for name in ("tables", "curves", "summary"):
            place, old = places[name], staging / f"old-{places[name].name}"
            if place.exists():
                place.replace(old)
                moved.append((old, place))
            new[name].replace(place)
            placed.append(place)
    except OSError:
        for place in placed:
            if place.is_dir():
                shutil.rmtree(place)
            else:
                place.unlink()
        for old, place in moved:
            old.replace(place)
        raise
