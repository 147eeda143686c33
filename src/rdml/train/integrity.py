"""A run record's integrity: its own hash, and a summary that must follow from its epochs. Torch-free,
so that tables and the audit check records without importing torch.

`record_sha256` is the sha256 of the record's canonical JSON without that field. It catches an edit
made without rdml (a forged or damaged number); it is not a signature, so the audit can also re-derive
the summary from the epochs and re-evaluate the saved model (`rdml audit --evaluate`).

`run_problems` is the one check of a finished run directory (the record sealed and consistent, its status
one the reader accepts, the model file the weights it names); `rdml.train.verified` loads a run through it.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from rdml.io import atomic_write_json, sha256_file
from rdml.keys import ConfigError
from rdml.metrics import LOSS, METRICS, PRIMARY, primary_of

__all__ = ["summarise", "statistics_of", "best_val_epoch", "recorded_value", "summary_field", "seal", "seal_holds", "write_record", "read_record", "record_problems", "sealed", "FINISHED",
           "MEASURES_FORMAT", "run_problems", "model_path"]

FINISHED = ("ok", "diverged")
MEASURES_FORMAT = "rdml.measures/1"  # a run's measurements (rdml.analysis.measure), sealed like a record
UNSEALED_FORMATS = ("rdml.run/1",)  # written before records carried their own hash


def summarise(epochs: list[dict], windows: list[int]) -> dict:
    """Final, best and mean-of-last-k test accuracy per model (students, ensemble, extra models), and its
    final test loss (on a retrieval set: of mAP, with the final rank-k and multi-query scores beside); with a validation split, also each model's best validation accuracy and the test
    accuracy at that epoch (the last of equal ones: the released RDML text code keeps a checkpoint when
    `val_acc >= best`). The metrics' record keys come from rdml.metrics."""
    summary = {}
    for name, last in epochs[-1]["test"].items():
        primary = primary_of(last)
        key = primary.recorded
        accs = [e["test"][name][key] for e in epochs]
        over = statistics_of(accs, windows, primary.sign)
        # classification: the final test loss beside; retrieval: every other score of the last epoch (rank-k and,
        # recorded at the last epoch only, the multi-query ones)
        finals = [METRICS[LOSS].recorded] if primary.name == PRIMARY else [m for m in last if m != key]
        entry = {f"final_{key}": over["final"], **{f"final_{m}": last[m] for m in finals},
                 f"best_{key}": over["best"], "best_epoch": over["best_epoch"]}
        for k in windows:
            entry[f"last{k}_{key}"] = over[f"last{k}"]
        if "val" in epochs[-1]:
            chosen = best_val_epoch(epochs, name)
            entry.update({f"best_val_{key}": epochs[chosen]["val"][name][key], "best_val_epoch": chosen + 1,
                          f"at_best_val_{key}": accs[chosen]})
        summary[name] = entry
    return summary


def statistics_of(values: list[float], windows, sign: int = 1) -> dict:
    """final, best (by the metric's direction, `sign`; the first of equal ones), best_epoch and the mean
    of the last k values (None with fewer than k) of one model's per-epoch values."""
    best = max(range(len(values)), key=lambda i: sign * values[i])
    over = {"final": values[-1], "best": values[best], "best_epoch": best + 1}
    for k in windows:
        over[f"last{k}"] = sum(values[-k:]) / k if len(values) >= k else None
    return over


def best_val_epoch(epochs: list[dict], name: str) -> int:
    """The index of the epoch of `name`'s best validation accuracy, the last of equal ones."""
    accuracy = METRICS[PRIMARY]
    val = [e["val"][name][accuracy.recorded] for e in epochs]
    return max(range(len(val)), key=lambda i: (accuracy.sign * val[i], i))


def recorded_value(record: dict, model: str, statistic: str, metric: str = PRIMARY, epoch: int | None = None):
    """What a table cell reads of one model of a run: its `metric` at `epoch` (NaN when the run never
    reached it), else the study's `statistic` (final, best, last<k>, at_best_val) of it: from the
    record's summary where the summary holds it, else from the recorded epochs alike."""
    chosen = METRICS[metric]
    if chosen.recorded is None:
        recorded = ", ".join(name for name, m in METRICS.items() if m.recorded)
        raise ConfigError(f"metric {metric} is not in training records (`rdml eval` computes it); a table can read "
                          f"the recorded ones: {recorded}")
    epochs = record["epochs"]
    if epoch is not None:
        return epochs[epoch - 1]["test"][model][chosen.recorded] if len(epochs) >= epoch else math.nan
    field = summary_field(statistic, metric)
    if field in record["summary"][model]:
        return record["summary"][model][field]
    if statistic == "at_best_val":
        return epochs[best_val_epoch(epochs, model)]["test"][model][chosen.recorded]
    values = [e["test"][model].get(chosen.recorded) for e in epochs]
    if None in values:
        raise ConfigError(f"metric {metric} is recorded at the final epoch only; a table can read its final value, "
                          f"not its {statistic}")
    windows = [int(statistic[4:])] if statistic.startswith("last") else []
    return statistics_of(values, windows, chosen.sign)[statistic]


def summary_field(statistic: str, metric: str = PRIMARY) -> str:
    """The field of a record's summary that holds a statistic (final, best, last<k>, at_best_val) of a metric."""
    return f"{statistic}_{METRICS[metric].recorded}"


def _digest(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def seal(record: dict) -> dict:
    record["record_sha256"] = _digest(record)
    return record


def write_record(path: str | Path, record: dict) -> None:
    atomic_write_json(path, seal(record))


def read_record(path: str | Path, what: str = "run record", required: tuple[str, ...] = ("config", "status")) -> dict:
    """A record.json (or another sealed JSON: `what`, with `required` keys), or a ConfigError naming the
    file when it is not readable as one."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not a readable {what} ({type(exc).__name__}: {exc}); "
                          f"remove it (or its run directory) to {'train that run' if what == 'run record' else 'compute it'} again") from None
    if not isinstance(record, dict) or not all(k in record for k in required):
        raise ConfigError(f"{path} is not an rdml {what}")
    return record


def seal_holds(record: dict) -> bool:
    """Whether the record hashes to the record_sha256 it carries."""
    return record.get("record_sha256") == _digest(record)


def sealed(record: dict) -> bool:
    """Whether the record carries its own hash (every record since rdml.run/2)."""
    return record.get("format") not in UNSEALED_FORMATS


def record_problems(record: dict, path: str | Path) -> list[str]:
    """What does not hold in a record: its own hash (required unless it is an rdml.run/1 record, which
    predates it), a finished run's summary against its epochs."""
    problems = []
    if sealed(record) and not seal_holds(record):
        problems.append(f"{path}: the record does not hash to its record_sha256 (edited outside rdml?)")
    if record.get("status") in FINISHED:
        epochs = record.get("epochs") or []
        windows = record.get("config", {}).get("summary_last", [5, 10])
        try:
            consistent = bool(epochs) and record.get("summary") is not None and _same(summarise(epochs, windows), record["summary"])
        except (KeyError, TypeError, ValueError):
            consistent = False
        if not consistent:
            problems.append(f"{path}: the summary does not follow from the recorded epochs")
    return problems


def model_path(run_dir: str | Path, record: dict) -> Path:
    """The model file a run's record names (model.pt in the run directory where it names none yet)."""
    return Path(run_dir) / ((record.get("final_model") or {}).get("path") or "model.pt")


def run_problems(run_dir: str | Path, record: dict, statuses: tuple[str, ...] = FINISHED, *, unsealed: bool = False,
                 weights: bool = True, model_sha256: str | None = None) -> list[str]:
    """What does not hold of the run in `run_dir` whose record.json reads `record`, each problem naming its
    file: its status one of `statuses`; the record sealed (`unsealed`: a record of the format before seals,
    rdml.run/1, is accepted) and hashing to its seal, a finished run's summary following from its epochs;
    with `weights`, its model file present and hashing to the sha256 the record names (`model_sha256`: that
    file's hash where the caller has read the file already). The model file is not checked where the
    status is refused (an unfinished run has none)."""
    run_dir = Path(run_dir)
    path = run_dir / "record.json"
    problems = []
    status = record.get("status")
    if status not in statuses:
        state = "finished" if status in FINISHED else "has not finished"
        problems.append(f"the run in {run_dir} {state} (status {status!r}, not {' or '.join(map(repr, statuses))})")
    if not unsealed and not sealed(record):
        problems.append(f"{path}: an unsealed record of {record.get('format')} (rerun the run with this rdml)")
    problems += record_problems(record, path)
    if weights and status in statuses:
        model = model_path(run_dir, record)
        named = (record.get("final_model") or {}).get("sha256")
        if model_sha256 is None and not model.is_file():
            problems.append(f"{model}: the model file its record names is missing")
        elif (sha := model_sha256 or sha256_file(model)) != named:
            problems.append(f"{model}: sha256 {sha} is not the {named} its record names (changed after training?)")
    return problems


def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b
