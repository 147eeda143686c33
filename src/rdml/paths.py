"""Where the pipeline writes, spelled once: `results/<study>/{runs,jobs,metrics,measures,tables}` and
`results/data/<dataset>.json`, `results/weights/<arch>.json`. Paths are relative to the project root."""

from __future__ import annotations

__all__ = ["RESULTS", "run_dir", "job_file", "metrics_file", "measures_file", "tables_dir", "curves_dir",
           "summary_file", "data_stamp", "data_folder", "weights_stamp", "CODE_STAMPS", "code_stamp"]

RESULTS = "results"


def run_dir(study: str, run_id: str) -> str:
    return f"{RESULTS}/{study}/runs/{run_id}"


def job_file(study: str, job_id: str) -> str:
    """Written last by a job, once every run of it has finished: what Snakemake waits for."""
    return f"{RESULTS}/{study}/jobs/{job_id}.json"


def metrics_file(study: str, run_id: str) -> str:
    return f"{RESULTS}/{study}/metrics/{run_id}.json"


def measures_file(study: str, run_id: str) -> str:
    """Measurements of a run's final models (rdml.analysis.measure), what analysis tables read."""
    return f"{RESULTS}/{study}/measures/{run_id}.json"


def tables_dir(study: str) -> str:
    return f"{RESULTS}/{study}/tables"


def curves_dir(study: str) -> str:
    """Per-run learning curves, one flat CSV per run and model (what `dvc plots show` draws)."""
    return f"{RESULTS}/{study}/curves"


def summary_file(study: str) -> str:
    """One value per table cell (what `dvc metrics diff` compares after a change)."""
    return f"{RESULTS}/{study}/summary.json"


def data_stamp(dataset: str) -> str:
    """The prepare step's output for a data set: its files' hashes, what training jobs depend on."""
    return f"{RESULTS}/data/{dataset}.json"


def data_folder(dataset: str, data_dir: str = "data") -> str:
    """Where a downloaded data set lives (a DVC output)."""
    return f"{data_dir}/{dataset}"


def weights_stamp(arch: str) -> str:
    """The weights step's output for an architecture: its published weights' file and sha256."""
    return f"{RESULTS}/weights/{arch}.json"


CODE_STAMPS = f"{RESULTS}/code"


def code_stamp(kind: str, name: str) -> str:
    """The code identity of one result (kind: train, measure, data, weights, tables) as DVC sees it: a
    file that `rdml pipeline code` rewrites only when the code that result runs changed (rdml.code)."""
    return f"{CODE_STAMPS}/{kind}/{name}.json"
