import json
from pathlib import Path

import pytest

from rdml.config import load_config
from rdml.train.loop import train

REPO = Path(__file__).resolve().parents[1]
REPOSITORY_STATE = ("results", ".snakemake", "data", "dvc.lock")  # what `make run` writes; tests never touch it


def run(out, *overrides, **kwargs):
    """Train in this process on the synthetic data, 3 epochs unless an override says otherwise."""
    keys = dict(item.split("=", 1) for item in ["dataset=synthetic", "epochs=3", f"out={out}", *overrides])
    return train(load_config(None, [f"{k}={v}" for k, v in keys.items()]), argv=["test"], progress=False, **kwargs)


def one_cell_table(root: Path, run_dir: str, record: dict, student: str = "student_0") -> Path:
    """A table sidecar whose one cell "DML|x" is `student` of the run at `run_dir` (relative to `root`):
    what `rdml audit` reads."""
    value = record["summary"][student]["final_acc"]
    sidecar = {"table": "t", "study": "s", "metric": "final", "caption": "",
               "cells": {"DML|x": {"mean": value, "std": 0.0, "n": 1, "diverged": 0,
                                   "runs": [{"run": run_dir, "student": student, "value": value, "status": "ok"}]}}}
    path = root / "t.cells.json"
    path.write_text(json.dumps(sidecar))
    return path


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "run"
    run(out, "method=teacher", "epochs=4")
    return out


def repository_state() -> dict:
    state = {}
    for name in REPOSITORY_STATE:
        path = REPO / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
        state.update({str(f.relative_to(REPO)): (f.stat().st_size, f.stat().st_mtime_ns) for f in files})
    return state


@pytest.fixture(scope="session", autouse=True)
def repository_state_untouched():
    """The suite works in temporary directories: the repository's results/, .snakemake/, data/ and
    dvc.lock are the same after it as before (so `make run` and `make test` work in either order)."""
    before = repository_state()
    yield
    after = repository_state()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"the tests changed the repository's own files: {changed[:10]}"
