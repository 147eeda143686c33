"""Every run of a study as one long-form pandas frame: one row per run, model, epoch and metric
(each metric training records, rdml.metrics: test accuracy and loss; the learning rate), with the run's data set, method, α and seed. The figures
read it; `rdml tables` writes it beside the tables as `runs.csv` for anyone's own analysis."""

from __future__ import annotations

import pandas as pd

from rdml.metrics import METRICS

__all__ = ["COLUMNS", "RECORDED", "column", "long_frame"]

COLUMNS = ["study", "dataset", "method", "alpha", "seed", "run", "model", "epoch", "metric", "value", "status"]
RECORDED = tuple(METRICS[name] for name in METRICS if METRICS[name].recorded)  # what training records per epoch


def column(metric) -> str:
    """A recorded metric's name in the frame, the curves and the figures' data files ("test_acc")."""
    return f"test_{metric.recorded}"


def long_frame(study: str, records) -> pd.DataFrame:
    """The per-epoch metrics of every run, from (Run, record) pairs checked as the tables check them
    (rdml.report.records.checked_record)."""
    rows = []
    for run, record in records:
        base = (study, run.dataset, run.method, run.alpha, run.seed, run.id)
        for number, epoch in enumerate(record["epochs"], start=1):
            for model, scores in epoch["test"].items():
                rows += [(*base, model, number, column(m), scores[m.recorded], record["status"])
                         for m in RECORDED if m.recorded in scores]
            rows += [(*base, f"student_{k}", number, "lr", lr, record["status"])
                     for k, lr in enumerate(epoch.get("lr") or [])]
    return pd.DataFrame(rows, columns=COLUMNS)
