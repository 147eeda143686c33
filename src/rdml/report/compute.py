"""What a study cost, measured: per method and architectures, the runs' training time from their
records (the seconds of every epoch, resumed runs included) and the devices they ran on. GPU-hours
count runs on a CUDA device; CPU runs are listed as CPU-hours. The README's estimates point here."""

from __future__ import annotations

from datetime import datetime

from rdml.report.render import plain_table

__all__ = ["compute_summary"]

COLUMNS = ["method", "archs", "runs", "device", "device model", "training hours", "wall hours", "hours per run"]


def _hours(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() / 3600


def compute_summary(records: list[tuple]) -> tuple[str, str, str]:
    """Markdown, CSV and HTML of the runs' measured compute; `records`: (Run, record) pairs."""
    groups: dict[tuple, dict] = {}
    for run, record in records:
        env = record.get("environment") or {}
        device = "GPU" if str(env.get("device", "")).startswith("cuda") else "CPU"
        key = (run.method, "+".join(run.archs), device, env.get("device_name", "?"))
        group = groups.setdefault(key, {"runs": 0, "train": 0.0, "wall": 0.0})
        group["runs"] += 1
        group["train"] += sum(record.get("epoch_seconds") or []) / 3600
        group["wall"] += _hours(record.get("started_at"), record.get("ended_at"))
    rows = [[method, archs, g["runs"], device, model, round(g["train"], 4), round(g["wall"], 4),
             round(g["train"] / g["runs"], 4)] for (method, archs, device, model), g in sorted(groups.items())]
    gpu = sum(g["train"] for (_, _, device, _), g in groups.items() if device == "GPU")
    cpu = sum(g["train"] for (_, _, device, _), g in groups.items() if device == "CPU")
    return plain_table(f"Measured compute: {gpu:.2f} GPU-hours and {cpu:.2f} CPU-hours of training (the recorded "
                       "seconds of every epoch); wall hours run from a run's start to its end (evaluation and any wait "
                       "for a resume included).", COLUMNS, rows)
