"""`rdml audit TABLE CELL`: the chain behind one number of a table, every hash checked on disk.

For each run behind the cell: the record's own hash, its summary re-derived from its epochs, its
config hash, data fingerprint, weights and teacher, and with `evaluate` the saved model evaluated
again on the test split. A damaged file is a problem reported, never a traceback.
"""

from __future__ import annotations

import math
from pathlib import Path

from rdml.config import ConfigError, config_sha256, data_keys
from rdml.data.base import load_dataset
from rdml.io import read_json, sha256_file
from rdml.metrics import METRICS, PRIMARY
from rdml.train.integrity import FINISHED, read_record, record_problems, recorded_value, sealed, summary_field

__all__ = ["audit_cell"]


def audit_cell(table: str | Path, cell: str, root: str | Path = ".", out=print, evaluate: bool = False) -> list[str]:
    """Print the provenance of `cell` ("row|column") of a table sidecar; returns the problems found.

    A missing sidecar or an unknown cell is a ConfigError (bad input), not an audit failure.
    """
    sidecar_path = Path(table)
    if sidecar_path.suffix != ".json":
        sidecar_path = sidecar_path.with_suffix(".cells.json") if sidecar_path.suffix else Path(f"{table}.cells.json")
    if not sidecar_path.is_file():
        raise ConfigError(f"no table sidecar at {sidecar_path}")
    try:
        sidecar = read_json(sidecar_path)
        sidecar["cells"], sidecar["study"], sidecar["table"], sidecar["metric"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{sidecar_path} is not a readable table sidecar ({type(exc).__name__}: {exc}); "
                          "rebuild the tables (`rdml tables <study>`)") from None
    if cell not in sidecar["cells"]:
        known = "\n  ".join(sorted(sidecar["cells"]))
        raise ConfigError(f"cell {cell!r} is not in {sidecar_path}; cells are:\n  {known}")
    entry = sidecar["cells"][cell]
    out(f"{sidecar['study']} / {sidecar['table']} / {cell}: mean {entry['mean']}, std {entry['std']}, "
        f"n={entry['n']}, diverged={entry['diverged']} (metric: {sidecar['metric']})")
    problems: list[str] = []
    metric = (sidecar["metric"], sidecar.get("score", PRIMARY))  # the study's statistic of the table's metric
    for item in entry["runs"]:
        problems += _audit_run(Path(root), item, metric, out, evaluate)
    out("OK: every hash matches the files on disk" if not problems else f"FAILED: {len(problems)} problem(s)")
    for problem in problems:
        out(f"  - {problem}")
    return problems


def _audit_run(root: Path, item: dict, metric: tuple[str, str], out, evaluate: bool) -> list[str]:
    run_dir = root / item["run"]
    record_path = run_dir / "record.json"
    if not record_path.is_file():
        return [f"{run_dir}: record.json is missing"]
    try:
        record = read_record(record_path)
    except ConfigError as exc:
        return [str(exc)]
    problems = record_problems(record, record_path)
    try:
        _audit_record(root, run_dir, record_path, record, item, metric, out, evaluate, problems)
    except ConfigError as exc:  # the data set is missing or damaged on disk
        problems.append(f"{record_path}: {exc}")
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        problems.append(f"{record_path}: a field the audit needs is missing or malformed ({type(exc).__name__}: {exc})")
    return problems


def _audit_record(root, run_dir, record_path, record, item, metric, out, evaluate, problems: list[str]) -> None:
    if not sealed(record):
        out(f"  note              an unsealed {record.get('format')} record: its numbers are checked against its "
            "epochs and, with --evaluate, its weights")
    cfg = record["config"]
    out(f"run {item['run']} ({item['student']}, {record['label']}, seed {record['seed']}, status {record['status']})")
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
    statistic, score = metric
    value = recorded_value(record, item["student"], statistic, score, item.get("epoch"))  # NaN: an epoch never reached
    if "epoch" in item:
        what = f"{METRICS[score].label} at epoch {item['epoch']}"
    else:
        what = summary_field(statistic, score)
    if value != item["value"] and not (_missing(value) and _missing(item["value"])):
        problems.append(f"{record_path}: {item['student']} {what} is {value}, the table used {item['value']}")
    for arch, weights in sorted((record.get("pretrained") or {}).items()):  # what the students started from
        file = Path(weights["file"])
        problems += _check_file(file if file.is_absolute() else root / file, weights["sha256"], f"weights {arch}", out)
    model_problems = _check_file(run_dir / record["final_model"]["path"], record["final_model"]["sha256"], "checkpoint", out)
    problems += model_problems
    if evaluate and not model_problems:
        problems += _evaluated(run_dir / record["final_model"]["path"], record, data, out)
    teacher = record.get("teacher")
    if teacher:
        problems += _check_file(Path(teacher["path"]) if Path(teacher["path"]).is_absolute() else root / teacher["path"],
                                teacher["sha256"], "teacher checkpoint", out)
        teacher_record = (root / teacher["path"]).parent / "record.json"
        out(f"  teacher run       {teacher_record.parent} (config {teacher['run_config_sha256']})")
        if not teacher_record.is_file():
            problems.append(f"{teacher_record}: the teacher's run record is missing")
            return
        try:
            own = read_record(teacher_record)
        except ConfigError as exc:
            problems.append(str(exc))
            return
        problems += record_problems(own, teacher_record)
        if own["config_sha256"] != teacher["run_config_sha256"]:
            problems.append(f"{teacher_record}: the teacher run there is not the one that taught this run")
        if (own.get("final_model") or {}).get("sha256") != teacher["sha256"]:
            problems.append(f"{teacher_record}: the teacher's own record names other weights than the ones that taught this run")


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _check_file(path: Path, expected: str, what: str, out) -> list[str]:
    if not path.is_file():
        out(f"  {what:17s} {path} MISSING")
        return [f"{path}: {what} is missing"]
    actual = sha256_file(path)
    out(f"  {what:17s} {path} sha256 {actual} {'ok' if actual == expected else 'MISMATCH'}")
    return [] if actual == expected else [f"{path}: {what} sha256 is {actual}, recorded {expected}"]


def _evaluated(model_file: Path, record: dict, data, out) -> list[str]:
    """Evaluate every output the run's method declares, from its saved networks (rdml.train.cohort.rebuild),
    on the test split again (float32 on the CPU) and compare with the record's last epoch; float paths may
    differ by one test example, no more."""
    import torch

    from rdml.train.cohort import rebuild
    from rdml.train.evaluate import evaluate, evaluation_noise
    from rdml.train.verified import verified_run

    run = verified_run(model_file, "", FINISHED, unsealed=True)  # the bytes hashed are the bytes loaded
    cohort, method = rebuild(run.saved, record["config"], data, torch.device("cpu"))
    cfg = record["config"]  # a noisy run's last test pass is drawn again with its noise
    noise = evaluation_noise(cfg.get("input_noise", 0.0), cfg["seed"], len(record["epochs"]))
    scores = evaluate(cohort, data, noise=noise, method=method)
    tolerance = 1 / data.split_size("test") + 1e-12
    key = METRICS[PRIMARY].recorded
    problems = []
    for name, recorded in record["epochs"][-1]["test"].items():
        if name in scores and abs(scores[name][key] - recorded[key]) > tolerance:
            problems.append(f"{model_file}: {name} evaluates to accuracy {scores[name][key]}, its record says {recorded[key]}")
    evaluated = ", ".join(f"{name} {score[key]:.4f}" for name, score in scores.items())
    out(f"  evaluated         {evaluated}")
    return problems
