"""Every run of a study as one long-form pandas frame: one row per run, model, epoch and metric
(test accuracy, test loss, learning rate), with the run's data set, method, α and seed. The figures
read it; `rdml tables` writes it beside the tables as `runs.csv` for anyone's own analysis."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rdml.study.plan import plan_study
from rdml.study.tables import checked_record

__all__ = ["COLUMNS", "long_frame"]

COLUMNS = ["study", "dataset", "method", "alpha", "seed", "run", "model", "epoch", "metric", "value", "status"]


def long_frame(params: dict, study: str, root: str | Path = ".") -> pd.DataFrame:
    """The per-epoch metrics of every run the study plans, from records checked as the tables check them."""
    rows = []
    for run in plan_study(params, study):
        record = checked_record(root, study, run)
        base = (study, run.dataset, run.method, run.alpha, run.seed, run.id)
        for number, epoch in enumerate(record["epochs"], start=1):
            for model, scores in epoch["test"].items():
                rows += [(*base, model, number, f"test_{name}", scores[name], record["status"])
                         for name in ("acc", "loss") if name in scores]
            rows += [(*base, f"student_{k}", number, "lr", lr, record["status"])
                     for k, lr in enumerate(epoch.get("lr") or [])]
    return pd.DataFrame(rows, columns=COLUMNS)
