"""A run record's integrity: its own hash, and a summary that must follow from its epochs. Torch-free,
so that tables and the audit check records without importing torch.

`record_sha256` is the sha256 of the record's canonical JSON without that field. It catches an edit
made without rdml (a forged or damaged number); it is not a signature, so the audit can also re-derive
the summary from the epochs and re-evaluate the saved model (`rdml audit --evaluate`).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from rdml.io import atomic_write_json
from rdml.keys import ConfigError

__all__ = ["summarise", "seal", "seal_holds", "write_record", "read_record", "record_problems", "sealed", "FINISHED",
           "MEASURES_FORMAT"]

FINISHED = ("ok", "diverged")
MEASURES_FORMAT = "rdml.measures/1"  # a run's measurements (rdml.analysis.measure), sealed like a record
UNSEALED_FORMATS = ("rdml.run/1",)  # written before records carried their own hash


def summarise(epochs: list[dict], windows: list[int]) -> dict:
    """Final, best and mean-of-last-k test accuracy per model (students, ensemble, extra models); with a
    validation split, also each model's best validation accuracy and the test accuracy at that epoch
    (the last of equal ones: the released RDML text code keeps a checkpoint when `val_acc >= best`)."""
    summary = {}
    for name in epochs[-1]["test"]:
        accs = [e["test"][name]["acc"] for e in epochs]
        best = max(range(len(accs)), key=accs.__getitem__)
        entry = {"final_acc": accs[-1], "final_loss": epochs[-1]["test"][name]["loss"], "best_acc": accs[best], "best_epoch": best + 1}
        for k in windows:
            entry[f"last{k}_acc"] = sum(accs[-k:]) / k if len(accs) >= k else None
        if "val" in epochs[-1]:
            val = [e["val"][name]["acc"] for e in epochs]
            chosen = max(range(len(val)), key=lambda i: (val[i], i))
            entry.update({"best_val_acc": val[chosen], "best_val_epoch": chosen + 1, "at_best_val_acc": accs[chosen]})
        summary[name] = entry
    return summary


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


def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b
