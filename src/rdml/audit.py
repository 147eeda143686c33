"""`rdml audit TABLE CELL`: the chain behind one number of a table, every hash checked on disk.

For each run behind the cell: the record's own hash, its summary re-derived from its epochs, its status
(finished; a diverged one by rdml's divergence rule, replayed over its epochs), its config hash, data
fingerprint, weights, kept epochs (`keep_every`: each epochs/epoch_<k>.pt against the sha256 its record names)
and teacher; for a measured cell (the DML §4.8 analyses) the run's measurements
file, its own hash, the record and weights it measured, and the value read from it. With `evaluate`,
the saved model evaluated again on the test split and each measured run measured again. Then the cell:
its mean, std, n and diverged count recomputed from the audited values by the code that wrote them
(rdml.report.cells.Cell), and every run the study's section of root/params.yaml plans for the cell
listed in it (the sidecar's own `spec`, which is not sealed, must be that section). A damaged file is a problem reported, never a traceback; a malformed
sidecar is a ConfigError.

`--evaluate` compares each output's test accuracy with its record. Tolerance per device: exact (0 test
examples) where the record was trained on this CPU model and ran as the audit runs it (float32,
contiguous, neither compiled nor fused), the audit evaluating with the record's thread count; one test
example where it was trained otherwise (e.g. on CUDA, audited on the CPU), as other float paths may
flip one near tie. Measurements made again: exact on the CPU model (and thread count) that made them,
else within MEASURE_RTOL.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from rdml.config import ConfigError, config_sha256, data_keys
from rdml.data.base import load_dataset
from rdml.io import read_json, sha256_file
from rdml.metrics import LOSS, METRICS, PRIMARY, primary_of
from rdml.report.cells import Cell, measured_values, planned_runs
from rdml.report.records import measurement_problems
from rdml.train.integrity import FINISHED, read_record, record_problems, recorded_value, sealed, summary_field

__all__ = ["audit_cell", "same_device", "evaluation_tolerance", "replayed_divergence", "MEASURE_RTOL"]

CELL_FIELDS = ("mean", "std", "n", "diverged", "runs")
RUN_FIELDS = ("run", "student", "value", "status")
MEASURED_FIELDS = ("measures", "measure", "index")  # a measured value: its file, its measure, its place in it
STATISTICS = ("mean", "std", "n", "diverged")


def audit_cell(table: str | Path, cell: str, root: str | Path = ".", out=print, evaluate: bool = False) -> list[str]:
    """Print the provenance of `cell` ("row|column") of a table sidecar; returns the problems found.

    A missing or malformed sidecar, or an unknown cell, is a ConfigError (bad input), not an audit failure.
    """
    sidecar_path, sidecar = _read_sidecar(table)
    if cell not in sidecar["cells"]:
        known = "\n  ".join(sorted(sidecar["cells"]))
        raise ConfigError(f"cell {cell!r} is not in {sidecar_path}; cells are:\n  {known}")
    entry = _cell_entry(sidecar_path, cell, sidecar["cells"][cell])
    out(f"{sidecar['study']} / {sidecar['table']} / {cell}: mean {entry['mean']}, std {entry['std']}, "
        f"n={entry['n']}, diverged={entry['diverged']} (metric: {sidecar['metric']})")
    if evaluate:
        out("  evaluation        exact (0 test examples) on the device model that trained the run, else 1 example")
    audit = _Audit(Path(root), sidecar, out, evaluate)
    problems: list[str] = []
    for item in entry["runs"]:
        problems += audit.item(item)
    problems += _statistics_problems(sidecar_path, cell, entry, audit.cell)
    problems += audit.planned(cell, entry)
    out("OK: every hash matches the files on disk" if not problems else f"FAILED: {len(problems)} problem(s)")
    for problem in problems:
        out(f"  - {problem}")
    return problems


def _read_sidecar(table: str | Path) -> tuple[Path, dict]:
    sidecar_path = Path(table)
    if sidecar_path.suffix != ".json":
        sidecar_path = sidecar_path.with_suffix(".cells.json") if sidecar_path.suffix else Path(f"{table}.cells.json")
    if not sidecar_path.is_file():
        raise ConfigError(f"no table sidecar at {sidecar_path}")
    try:
        sidecar = read_json(sidecar_path)
        sidecar["cells"], sidecar["study"], sidecar["table"], sidecar["metric"]
        if not isinstance(sidecar["cells"], dict):
            raise TypeError("cells is not a mapping")
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{sidecar_path} is not a readable table sidecar ({type(exc).__name__}: {exc}); "
                          "rebuild the tables (`rdml tables <study>`)") from None
    return sidecar_path, sidecar


def _cell_entry(path: Path, cell: str, entry) -> dict:
    """The sidecar's entry of `cell`, or a ConfigError naming the cell and the field it lacks."""
    rebuild = "rebuild the tables (`rdml tables <study>`)"
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: cell {cell!r} is not a mapping of {', '.join(CELL_FIELDS)}; {rebuild}")
    for name in CELL_FIELDS:
        if name not in entry:
            raise ConfigError(f"{path}: cell {cell!r} has no field {name!r} (a cell holds {', '.join(CELL_FIELDS)}); {rebuild}")
    if not isinstance(entry["runs"], list):
        raise ConfigError(f"{path}: cell {cell!r}: field 'runs' is not a list; {rebuild}")
    for i, item in enumerate(entry["runs"]):
        fields = RUN_FIELDS + (MEASURED_FIELDS if isinstance(item, dict) and "measure" in item else ())
        missing = [name for name in fields if not isinstance(item, dict) or name not in item]
        if missing:
            raise ConfigError(f"{path}: cell {cell!r}, runs[{i}] has no field {missing[0]!r} (each run holds "
                              f"{', '.join(fields)}); {rebuild}")
    return entry


def _statistics_problems(path: Path, cell: str, entry: dict, again: Cell) -> list[str]:
    """The cell's mean, std, n and diverged count against those of the audited values (the tables' Cell)."""
    recomputed = again.sidecar()
    return [f"{path}: cell {cell!r} says {name} {entry[name]}, its runs give {recomputed[name]}"
            for name in STATISTICS if not _equal(entry[name], recomputed[name])]


class _Audit:
    """The runs behind one cell, each run (and measurements file) audited once however many of its
    values the cell holds; `cell` refilled from what the records and measurements say."""

    def __init__(self, root: Path, sidecar: dict, out, evaluate: bool):
        self.root, self.sidecar, self.out, self.evaluate = root, sidecar, out, evaluate
        self.metric = (sidecar["metric"], sidecar.get("score", PRIMARY))  # the study's statistic of the table's metric
        self.records: dict[str, dict | None] = {}  # run directory → its record (None: not readable)
        self.measured: dict[str, dict | None] = {}  # measurements file → its content (None: not usable)
        self.cell = Cell()

    def item(self, item: dict) -> list[str]:
        """One value of the cell: its run audited (once), its status and value against the record."""
        problems = []
        run = item["run"]
        if run not in self.records:
            record, problems = self._run(run)
            self.records[run] = record
        record = self.records[run]
        if record is None:  # reported already; the sidecar's value stands in so the statistics are not blamed too
            self.cell.add_value(run, item.get("seed"), item["student"], item["value"], item["status"], item.get("epoch"))
            return problems
        status = record.get("status")
        if item["status"] != status:
            problems.append(f"{run}: the table lists {item['student']} as {item['status']!r}, its record says {status!r}")
        try:
            value, problems_of_value = self._value(run, record, item)
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            problems.append(f"{run}/record.json: the value of {item['student']} is missing or malformed "
                            f"({type(exc).__name__}: {exc})")
            value, problems_of_value = item["value"], []
        problems += problems_of_value
        self.cell.add_value(run, record.get("seed"), item["student"], value, status, item.get("epoch"))
        return problems

    def _value(self, run: str, record: dict, item: dict) -> tuple[float | None, list[str]]:
        """What the cell's `item` should hold, from the record or from the run's measurements file."""
        if "measure" in item:
            return self._measured(run, record, item)
        statistic, score = self.metric
        score = item.get("score", score)  # a cell of another recorded metric than the table's (Entry.metric)
        value = recorded_value(record, item["student"], statistic, score, item.get("epoch"))  # NaN: an epoch never reached
        what = f"{METRICS[score].label} at epoch {item['epoch']}" if "epoch" in item else summary_field(statistic, score)
        if not _equal(value, item["value"]):
            return value, [f"{run}/record.json: {item['student']} {what} is {value}, the table used {item['value']}"]
        return value, []

    def _measured(self, run: str, record: dict, item: dict) -> tuple[float | None, list[str]]:
        path = self.root / item["measures"]
        problems = []
        if str(path) not in self.measured:
            self.measured[str(path)] = None
            if not path.is_file():
                self.out(f"  measurements      {path} MISSING")
                return item["value"], [f"{path}: the measurements file of {run} is missing"]
            try:
                measured = read_record(path, "measurements file", ("format", "students"))
            except ConfigError as exc:
                return item["value"], [str(exc)]
            # what the table asked of this run: its own (a landscape's grid and partner run), else the table's
            wanted = item.get("wanted") or self.sidecar.get("measurements") or {}
            problems = measurement_problems(path, measured, record, run, wanted, self.root)
            self.out(f"  measurements      {path} of model {measured.get('model_sha256')} {'ok' if not problems else 'MISMATCH'}")
            if self.evaluate and not problems:
                problems += _measured_again(path, self.root / run, measured, self.out)
            self.measured[str(path)] = measured
        measured = self.measured[str(path)]
        if measured is None:
            return item["value"], problems
        values = measured_values(measured, item["student"], item["measure"])
        index = item["index"]
        value = values[index] if isinstance(index, int) and 0 <= index < len(values) else math.nan
        if not _equal(value, item["value"]):
            problems.append(f"{path}: {item['student']} {item['measure']}[{index}] is {value}, "
                            f"the table used {item['value']}")
        return value, problems

    def _run(self, run: str) -> tuple[dict | None, list[str]]:
        run_dir = self.root / run
        record_path = run_dir / "record.json"
        if not record_path.is_file():
            return None, [f"{run_dir}: record.json is missing"]
        try:
            record = read_record(record_path)
        except ConfigError as exc:
            return None, [str(exc)]
        problems = record_problems(record, record_path)
        try:
            self._record(run, record_path, record, problems)
        except ConfigError as exc:  # the data set is missing or damaged on disk
            problems.append(f"{record_path}: {exc}")
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            problems.append(f"{record_path}: a field the audit needs is missing or malformed ({type(exc).__name__}: {exc})")
        return record, problems

    def _record(self, run: str, record_path: Path, record: dict, problems: list[str]) -> None:
        out, root, run_dir = self.out, self.root, record_path.parent
        if not sealed(record):
            out(f"  note              an unsealed {record.get('format')} record: its numbers are checked against its "
                "epochs and, with --evaluate, its weights")
        cfg = record["config"]
        out(f"run {run} ({record['label']}, "
            f"seed {record['seed']}, status {record['status']})")
        if record["status"] not in FINISHED:
            problems.append(f"{record_path}: the run has not finished (status {record['status']!r}): no table reads it")
            return
        problems += _divergence_problems(record_path, record)
        recomputed = config_sha256(cfg)  # the stored mapping, whichever rdml version wrote it
        out(f"  config sha256     {record['config_sha256']}")
        if recomputed != record["config_sha256"]:
            problems.append(f"{record_path}: config does not hash to its recorded config_sha256")
        code = record["code"]
        out(f"  code              git {code['git_commit']} dirty={code['git_dirty']} src {code['src_sha256'][:16]}…")
        out(f"  data              {record['data']['name']} fingerprint {record['data']['sha256']}")
        data = load_dataset(cfg["dataset"], **data_keys(cfg))
        if data.fingerprint["sha256"] != record["data"]["sha256"]:
            problems.append(f"{record_path}: data set {cfg['dataset']} on disk no longer matches the recorded fingerprint")
        for arch, weights in sorted((record.get("pretrained") or {}).items()):  # what the students started from
            file = Path(weights["file"])
            problems += _check_file(file if file.is_absolute() else root / file, weights["sha256"], f"weights {arch}", out)
        model = run_dir / record["final_model"]["path"]
        model_problems = _check_file(model, record["final_model"]["sha256"], "checkpoint", out)
        problems += model_problems
        if record.get("kept_epochs") is not None or cfg.get("keep_every"):
            problems += _kept_epoch_problems(run_dir, record, out)
        if self.evaluate and not model_problems:
            problems += _evaluated(model, record, data, out)
        teacher = record.get("teacher")
        if teacher:
            problems += _teacher_problems(root, teacher, out)

    def planned(self, cell: str, entry: dict) -> list[str]:
        """Every run the study plans for the cell is listed in it, each of the keys its record was trained
        with; nothing else is. The plan is made from the study's section of root/params.yaml (the file DVC
        tracks), never from the sidecar's own `spec`, which is not sealed: a seed dropped from both the cell
        and its `spec` would otherwise pass. The sidecar's `spec` must be that section."""
        study = self.sidecar["study"]
        problems = []
        if "spec" not in self.sidecar:  # sidecars carry no format field: none predates `spec` but by mistake
            problems.append(f"{self.sidecar['table']}.cells.json names no study section (`spec`): rebuild the "
                            f"tables (`rdml tables {study}`)")
        params, missing = _study_params(self.root, study)
        if missing:
            return problems + [missing]
        spec = self.sidecar.get("spec")
        if spec is not None and (differences := _differences(spec, params["studies"][study])):
            problems.append(f"the table was built from other study keys than params.yaml's: {differences}")
        from rdml.study.plan import plan_tables

        try:
            layouts = {t.name: t for t in plan_tables(params, study)}
        except ConfigError as exc:
            return problems + [f"study {study} of params.yaml does not plan ({exc})"]
        if self.sidecar["table"] not in layouts:
            return problems + [f"study {study} plans no table {self.sidecar['table']}"]
        layout = layouts[self.sidecar["table"]]
        choices = self.sidecar.get("choices") or {}
        problems += self._choices(layout, choices)
        row, _, column = cell.partition("|")
        planned = planned_runs(layout, choices).get((row, column), {})
        listed = {item["run"] for item in entry["runs"]}
        problems += [f"cell {cell!r} does not list run {run}, which study {study} plans for it" for run in sorted(set(planned) - listed)]
        problems += [f"cell {cell!r} lists run {run}, which study {study} does not plan for it" for run in sorted(listed - set(planned))]
        for directory, run in sorted(planned.items()):
            record = self.records.get(directory)
            if record is not None and record.get("config_sha256") != run.config_sha256:
                problems.append(f"{directory}/record.json: the run there was trained with other keys than study {study} plans")
        return problems

    def _choices(self, layout, choices: dict) -> list[str]:
        """A Choice's kept option chosen again from the records, as the tables choose it."""
        if not any(e.choice for e in layout.entries):
            return []
        from rdml.report.cells import choose
        from rdml.report.records import Records

        try:
            again = choose(layout, Records(self.root, self.sidecar["study"]), self.sidecar["metric"])
        except ConfigError as exc:
            return [f"the choice of the table's options cannot be made again: {exc}"]
        return [f"the table kept option {choices.get(group, {}).get('chosen')!r} of {group}, the records choose "
                f"{chosen['chosen']!r}" for group, chosen in again.items()
                if (choices.get(group) or {}).get("chosen") != chosen["chosen"]]


def _study_params(root: Path, study: str) -> tuple[dict | None, str | None]:
    """root/params.yaml (rdml.study.params.load_params) holding `study`, or why the audit cannot vouch
    for the runs planned for a cell of it."""
    from rdml.study.params import load_params

    path = root / "params.yaml"
    cannot = "the audit cannot vouch for the runs planned for the cell"
    if not path.is_file():
        return None, f"{path} is missing: {cannot}"
    try:
        params = load_params(path)
    except ConfigError as exc:
        return None, f"{path} does not load ({exc}): {cannot}"
    if study not in params["studies"]:
        return None, f"{path} has no study {study}: {cannot}"
    return params, None


def _differences(spec, section) -> str:
    """Where the sidecar's `spec` and params.yaml's section differ (dotted keys), with both values."""
    canonical = (json.loads(json.dumps(v, sort_keys=True)) for v in (spec, section))  # as the tables store it
    return "; ".join(_differing(*canonical))


def _differing(spec, section, at: str = "") -> list[str]:
    if isinstance(spec, dict) and isinstance(section, dict):
        return [found for key in sorted(set(spec) | set(section))
                for found in _differing(spec.get(key, "absent"), section.get(key, "absent"), f"{at}{key}.")]
    return [] if spec == section else [f"{at.rstrip('.') or 'the section'} {spec!r} in the table, {section!r} in params.yaml"]


def replayed_divergence(record: dict) -> dict | None:
    """What rdml's divergence rule (rdml.train.evaluate.divergence_after, applied after every epoch as the
    training loop applies it) finds in the record's epochs: the `diverged` entry the record must carry."""
    from rdml.config import KEYS
    from rdml.train.evaluate import divergence_after

    cfg = record["config"]
    margin, members = cfg.get("crash_margin", KEYS["crash_margin"].default), _members(cfg)
    diverged = None
    for i in range(1, len(record["epochs"]) + 1):
        if diverged and diverged["stopped"]:
            break
        diverged = divergence_after(diverged, record["epochs"][:i], record["data"]["chance_acc"], margin, members)
    return diverged


def _members(cfg: dict):
    """The outputs the divergence rule watches: the members the run's method declares (its students by
    default, and where the stored config no longer resolves)."""
    from rdml.config import config_from_mapping, resolve
    from rdml.methods import METHODS

    try:
        resolved = resolve(config_from_mapping(cfg))
    except (ConfigError, KeyError, TypeError, ValueError):
        return None
    return METHODS[resolved.method].members(resolved)


def _divergence_problems(path: Path, record: dict) -> list[str]:
    """A finished run's status against its `diverged` entry, and that entry against the epochs."""
    claimed = record.get("diverged")
    if (record["status"] == "diverged") != bool(claimed):
        return [f"{path}: status {record['status']!r}, but its divergence entry is {claimed!r}"]
    if "diverged" not in record or "chance_acc" not in record.get("data", {}):
        return []  # a record of a format before divergence was recorded
    found = replayed_divergence(record)
    if not _equal(found, claimed):
        return [f"{path}: the epochs give divergence {found!r}, the record says {claimed!r} (status {record['status']!r})"]
    return []


def _teacher_problems(root: Path, teacher: dict, out) -> list[str]:
    path = Path(teacher["path"])
    problems = _check_file(path if path.is_absolute() else root / path, teacher["sha256"], "teacher checkpoint", out)
    teacher_record = (root / teacher["path"]).parent / "record.json"
    out(f"  teacher run       {teacher_record.parent} (config {teacher['run_config_sha256']})")
    if not teacher_record.is_file():
        return problems + [f"{teacher_record}: the teacher's run record is missing"]
    try:
        own = read_record(teacher_record)
    except ConfigError as exc:
        return problems + [str(exc)]
    problems += record_problems(own, teacher_record)
    if own.get("status") != "ok":
        problems.append(f"{teacher_record}: the teacher run's status is {own.get('status')!r}, not 'ok'")
    if own["config_sha256"] != teacher["run_config_sha256"]:
        problems.append(f"{teacher_record}: the teacher run there is not the one that taught this run")
    if (own.get("final_model") or {}).get("sha256") != teacher["sha256"]:
        problems.append(f"{teacher_record}: the teacher's own record names other weights than the ones that taught this run")
    return problems


def _equal(a, b) -> bool:
    """JSON values alike, NaN and None alike (a value never reached)."""
    if _missing(a) and _missing(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_equal, a, b))
    return a == b


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _kept_epoch_problems(run_dir: Path, record: dict, out) -> list[str]:
    """The kept epochs a finished run's record names (rdml.train.checkpoint): the epochs its keep_every plans
    over the epochs it ran, each file hashing to the sha256 named."""
    from rdml.train.checkpoint import KEPT_DIR, kept_epoch_problems, planned_kept_epochs

    named = record.get("kept_epochs") or {}
    problems = kept_epoch_problems(run_dir, named, planned_kept_epochs(record["config"], len(record["epochs"])),
                                   run_dir / "record.json")
    out(f"  kept epochs       {len(named)} in {run_dir / KEPT_DIR} {'ok' if not problems else 'MISMATCH'}")
    return problems


def _check_file(path: Path, expected: str, what: str, out) -> list[str]:
    if not path.is_file():
        out(f"  {what:17s} {path} MISSING")
        return [f"{path}: {what} is missing"]
    actual = sha256_file(path)
    out(f"  {what:17s} {path} sha256 {actual} {'ok' if actual == expected else 'MISMATCH'}")
    return [] if actual == expected else [f"{path}: {what} sha256 is {actual}, recorded {expected}"]


REFERENCE_EXECUTION = {"precision": "fp32", "compile": False, "fuse_students": False}
LAYOUTS = ("contiguous", "channels_last")  # the audit evaluates in the layout the record names (`audit_runner`)


def same_device(environment: dict) -> bool:
    """Whether what was computed where `environment` says (a record's, a measurements file's `measured_on`)
    is computed again here bit for bit: on the CPU of the same model (at its thread count, which the audit
    sets), with the same torch (an upgrade may change the last bits of a kernel) and, where it says how
    the students ran, as the audit runs them (float32 in the record's layout, neither compiled nor fused): there
    rdml's evaluation is deterministic. A key the environment does not hold is taken as the audit's own:
    that claims exactness, which can only raise a false mismatch, never pass a forged number (a
    measurements file's `measured_on` does not name its torch). The CPU model must be named."""
    return not _differences_from_here(environment) and str(environment.get("device", "")).split(":")[0] == "cpu"


def _differences_from_here(environment: dict) -> list[str]:
    """What of `environment` is not as the audit computes: the CPU model, torch, the execution path."""
    import torch

    from rdml.train.record import cpu_name

    here = {"device_name": cpu_name(), "torch": torch.__version__, **REFERENCE_EXECUTION}
    return [f"{key} {environment.get(key)}" for key, value in here.items()
            if environment.get(key, None if key == "device_name" else value) != value] + (  # the CPU model must be named
        [] if environment.get("memory_format", LAYOUTS[0]) in LAYOUTS else [f"memory_format {environment['memory_format']}"])


def audit_runner(environment: dict):
    """How the audit runs a model of the record `environment`: float32 on the CPU in the record's memory layout
    (a layout changes the order of float32 sums, so only the same one gives the same bits)."""
    import torch

    from rdml.train.execution import Execution

    layout = environment.get("memory_format", LAYOUTS[0])
    return Execution(torch.device("cpu"), "fp32", layout if layout in LAYOUTS else LAYOUTS[0], False, False).runner


def _where(environment: dict) -> str:
    import torch

    from rdml.train.record import cpu_name

    if same_device(environment):
        return f"this CPU model ({cpu_name()}) with torch {torch.__version__}"
    how = ", ".join(d for d in _differences_from_here(environment) if not d.startswith("device_name "))
    return (f"{environment.get('device') or 'an unrecorded device'} ({environment.get('device_name')}"
            f"{', ' + how if how else ''}), audited on {cpu_name()} in float32 with torch {torch.__version__}")


def evaluation_tolerance(environment: dict, test_examples: int) -> tuple[float, str]:
    """How far an output's test accuracy evaluated again may be from its record, and why: exact (0 test
    examples) where the record was trained on this machine's device model (`same_device`), one test
    example where it was trained on another device (CUDA, another CPU), whose float paths may flip one
    near tie."""
    if same_device(environment):
        return 0.0, f"exact: trained on {_where(environment)}"
    return 1 / test_examples + 1e-12, f"1 test example: trained on {_where(environment)}"


# A measurement (a mean over the training rows) made again on the CPU where it was made on another device:
# CUDA convolutions run in TF32 by default (10-bit mantissa), which moves such means by well under 0.1 %.
MEASURE_RTOL = 1e-3


def _measured_again(path: Path, run_dir: Path, measured: dict, out) -> list[str]:
    """The run measured again (rdml.analysis.measure, on the CPU, at the thread count it was measured
    with): exact where it was measured on this CPU model, else within MEASURE_RTOL, a PAC-Bayes σ search then
    measured along its recorded path (its accuracies may differ in the last examples elsewhere, which could
    send a new bisection to another σ), each recorded path checked to be the bisection of its own accuracies."""
    import torch

    from rdml.analysis.measure import measure_run

    where = measured.get("measured_on") or {}
    exact = same_device(where)
    problems = [f"{path}: {student} {problem}" for student, problem in _search_problems(measured)]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(int(where.get("threads") or threads))
        again = measure_run(run_dir, measured["measurements"], torch.device("cpu"), None if exact else measured["students"])
    except ConfigError as exc:
        return [f"{path}: cannot be measured again ({exc})"]
    finally:
        torch.set_num_threads(threads)
    for student, values in sorted(measured["students"].items()):
        for name, value in sorted(values.items()):
            new = (again["students"].get(student) or {}).get(name)
            if not _close(value, new, 0.0 if exact else MEASURE_RTOL):
                problems.append(f"{path}: {student} {name} measures {new} again, the file says {value} "
                                f"({'exact' if exact else f'relative tolerance {MEASURE_RTOL:g}'}: measured on {_where(where)})")
    if set(again["students"]) != set(measured["students"]):
        problems.append(f"{path}: measures students {sorted(measured['students'])}, the run has {sorted(again['students'])}")
    out(f"  measured again    {len(measured['students'])} student(s) "
        f"{'ok' if not problems else 'MISMATCH'} ({'exact' if exact else 'within tolerance'}: measured on {_where(where)})")
    return problems


def _search_problems(measured: dict) -> list[tuple[str, str]]:
    """Each recorded PAC-Bayes σ search of a measurements file that is not the bisection of its own accuracies
    (rdml.analysis.pac_bayes.search_problems): (student, problem)."""
    from rdml.analysis.pac_bayes import search_problems

    wanted, found = measured.get("measurements") or {}, []
    for student, values in sorted((measured.get("students") or {}).items()):
        searches = [("", values, wanted["pac_bayes"])] if "pac_bayes" in wanted else []
        if "pac_bayes_epochs" in wanted:
            searches += [(f"epoch {epoch}: ", each, wanted["pac_bayes_epochs"])
                         for epoch, each in sorted((values.get("pac_bayes_epochs") or {}).items())]
        found += [(student, where + problem) for where, each, spec in searches for problem in search_problems(each, spec)]
    return found


def _close(a, b, rtol: float) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, rtol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):  # a σ search's steps, a measure per epoch
        return a.keys() == b.keys() and all(_close(a[k], b[k], rtol) for k in a)
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return _equal(a, b)
    return a == b or abs(a - b) <= rtol * max(abs(a), abs(b))


def _evaluated(model_file: Path, record: dict, data, out) -> list[str]:
    """Evaluate every output the run's method declares, from its saved networks (rdml.train.cohort.rebuild),
    on the test split again (float32 on the CPU, at the record's thread count) and compare with the record's
    last epoch within `evaluation_tolerance`. A record that says its training loss went non-finite must
    hold weights or test losses that are not finite."""
    import torch

    from rdml.train.cohort import rebuild
    from rdml.train.evaluate import evaluate, evaluation_noise, multiquery_at
    from rdml.train.verified import verified_run

    run = verified_run(model_file, "", FINISHED, unsealed=True)  # the bytes hashed are the bytes loaded
    environment = record.get("environment") or {}
    # a retrieval set's mAP: one query's AP moves it by at most 1/queries, as one example moves an accuracy
    tolerance, why = evaluation_tolerance(environment, data.split_size("query" if data.probes else "test"))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(int(environment.get("threads") or threads))
        cohort, method = rebuild(run.saved, record["config"], data, torch.device("cpu"))
        cohort.runner = audit_runner(environment)
        for student in cohort:
            student.run = cohort.runner(student.model)
        cfg = record["config"]  # a noisy run's last test pass is drawn again with its noise
        noise = evaluation_noise(cfg.get("input_noise", 0.0), cfg["seed"], len(record["epochs"]))
        multiquery = multiquery_at(cfg.get("multiquery"), len(record["epochs"]), cfg["epochs"])
        scores = evaluate(cohort, data, noise=noise, method=method, multiquery=multiquery)
    finally:
        torch.set_num_threads(threads)
    loss = METRICS[LOSS].recorded
    problems = []
    for name, recorded in record["epochs"][-1]["test"].items():
        metric = primary_of(recorded)
        key = metric.recorded
        if name in scores and not abs(scores[name][key] - recorded[key]) <= tolerance:
            problems.append(f"{model_file}: {name} evaluates to {metric.label} {scores[name][key]}, its record says "
                            f"{recorded[key]} (tolerance {why})")
    if (record.get("diverged") or {}).get("stopped"):
        finite_weights = all(torch.isfinite(t).all() for state in run.saved["states"] for t in state.values()
                             if t.is_floating_point())
        finite_losses = all(math.isfinite(score.get(loss, 0.0)) for score in scores.values())
        if finite_weights and finite_losses:
            problems.append(f"{model_file}: its record says training stopped on a non-finite loss, but its weights "
                            "are finite and evaluate to finite test losses")
    evaluated = ", ".join(f"{name} {score[primary_of(score).recorded]:.4f}" for name, score in scores.items())
    out(f"  evaluated         {evaluated} (tolerance {why})")
    return problems
