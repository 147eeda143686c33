"""What a table may read: run records and measurements refused unless rdml wrote them, sealed, for
the runs the study plans now, and each read once however many cells and tables read it."""

from __future__ import annotations

from pathlib import Path

from rdml import paths
from rdml.keys import PARTNER, ConfigError
from rdml.study.runs import Run
from rdml.train.integrity import FINISHED, MEASURES_FORMAT, read_record, run_problems, seal_holds

__all__ = ["checked_record", "checked_measurements", "measurement_problems", "partner_problems", "Records"]


def checked_record(root: str | Path, study: str, run: Run) -> dict:
    """The run's record, refused when it is damaged, edited outside rdml, not finished, or of other keys."""
    path = Path(root) / run.directory / "record.json"
    if not path.is_file():
        raise ConfigError(f"{path} is missing: run {run.id} of study {study} has no record (rerun the pipeline)")
    record = read_record(path)
    problems = run_problems(path.parent, record, FINISHED, weights=False)  # tables read numbers, not weights
    if record.get("config_sha256") != run.config_sha256:
        problems.append(f"{path}: the run there was trained with other keys than the study now plans")
    if problems:
        raise ConfigError("no table is written from a record that does not hold: " + "; ".join(problems))
    return record


def checked_measurements(root: str | Path, study: str, run: Run, record: dict, wanted: dict) -> dict:
    """The run's measurements (rdml.analysis.measure), refused unless they are rdml's, of this record's
    weights, measured as the table asks (`wanted`)."""
    path = Path(root) / paths.measures_file(study, run.id)
    if not path.is_file():
        raise ConfigError(f"{path} is missing: run {run.id} of study {study} has not been measured (rerun the pipeline)")
    measured = read_record(path, "measurements file", ("format", "students"))
    problems = measurement_problems(path, measured, record, run.directory, wanted, root)
    if problems:
        raise ConfigError("no table is written from measurements that do not hold: " + "; ".join(problems))
    return measured


def measurement_problems(path: str | Path, measured: dict, record: dict, run_dir: str, wanted: dict,
                         root: str | Path = ".") -> list[str]:
    """What does not hold of the measurements file at `path` (read as `measured`) of the run at `run_dir`
    (under `root`) whose record reads `record`: its own hash, the record it names (its record_sha256), the
    weights it measured (model_sha256: the model.pt that record names; none for a diverged run, which is not
    measured), the settings the table asks for (`wanted`) and, where they name a partner run, that run's record
    and weights as they are now (partner_problems). What tables and `rdml audit` both check."""
    problems = [] if seal_holds(measured) else [f"{path}: does not hash to its record_sha256 (edited outside rdml?)"]
    if measured.get("format") != MEASURES_FORMAT or measured.get("run_record_sha256") != record.get("record_sha256"):
        problems.append(f"{path}: not the measurements of the record at {run_dir}")
    elif measured.get("status") != record.get("status"):
        problems.append(f"{path}: measured a run of status {measured.get('status')!r}, the record at {run_dir} says "
                        f"{record.get('status')!r}")
    elif measured.get("model_sha256") != (record["final_model"]["sha256"] if record.get("status") == "ok" else None):
        problems.append(f"{path}: measured other weights than {run_dir}/model.pt")
    if any((measured.get("measurements") or {}).get(name) != value for name, value in wanted.items()):
        problems.append(f"{path}: measured with {measured.get('measurements')}, but the table asks for {wanted}")
    partners = {spec[PARTNER] for spec in wanted.values() if isinstance(spec, dict) and PARTNER in spec}
    if partners and measured.get("status") == "ok":
        problems += partner_problems(path, measured, Path(root) / run_dir, partners.pop())
    return problems


def partner_problems(path: str | Path, measured: dict, run_dir: Path, partner: str) -> list[str]:
    """What does not hold of the partner run a measurement read (rdml.keys.PARTNER, beside the run at
    `run_dir`): the run it names, that run's record (sealed, finished) and weights as they are now."""
    said = measured.get(PARTNER) or {}
    where = run_dir.parent.parent / partner
    if said.get("run") != partner:
        return [f"{path}: measured beside run {said.get('run')!r}, but the table pairs it with {partner!r}"]
    try:
        record = read_record(where / "record.json")
    except ConfigError as exc:
        return [f"{path}: its partner run {where}: {exc}"]
    problems = run_problems(where, record, FINISHED, weights=False)
    if record.get("record_sha256") != said.get("run_record_sha256") or \
            (record.get("final_model") or {}).get("sha256") != said.get("model_sha256"):
        problems.append(f"{path}: measured beside another record or other weights than {where} holds now")
    return problems


class Records:
    """The checked records and measurements of one study's runs under `root`, each read once.
    `records` (run id → checked record): what the caller has read already."""

    def __init__(self, root: str | Path, study: str, records: dict[str, dict] | None = None):
        self.root, self.study = root, study
        self.records = {} if records is None else records
        self.measured: dict[str, dict] = {}

    def record(self, run: Run) -> dict:
        if run.id not in self.records:
            self.records[run.id] = checked_record(self.root, self.study, run)
        return self.records[run.id]

    def measurements(self, run: Run, wanted: dict) -> dict:
        if run.id not in self.measured:
            self.measured[run.id] = checked_measurements(self.root, self.study, run, self.record(run), wanted)
        return self.measured[run.id]
