"""Every run of a study as one long-form pandas frame: one row per run, model, epoch and metric
(test accuracy, test loss, learning rate), with the run's data set, method, α and seed. The figures
read it; `rdml tables` writes it beside the tables as `runs.csv` for anyone's own analysis."""

from __future__ import annotations

import pandas as pd

__all__ = ["COLUMNS", "long_frame"]

COLUMNS = ["study", "dataset", "method", "alpha", "seed", "run", "model", "epoch", "metric", "value", "status"]


def long_frame(study: str, records) -> pd.DataFrame:
    """The per-epoch metrics of every run, from (Run, record) pairs checked as the tables check them
    (rdml.study.tables.checked_record)."""
    rows = []
    for run, record in records:
        base = (study, run.dataset, run.method, run.alpha, run.seed, run.id)
        for number, epoch in enumerate(record["epochs"], start=1):
            for model, scores in epoch["test"].items():
                rows += [(*base, model, number, f"test_{name}", scores[name], record["status"])
                         for name in ("acc", "loss") if name in scores]
            rows += [(*base, f"student_{k}", number, "lr", lr, record["status"])
                     for k, lr in enumerate(epoch.get("lr") or [])]
    return pd.DataFrame(rows, columns=COLUMNS)
