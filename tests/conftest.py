import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from rdml.config import load_config
from rdml.train.loop import train

REPO = Path(__file__).resolve().parents[1]
REPOSITORY_STATE = ("results", ".snakemake", "data", "dvc.lock")  # what `make run` writes; tests never touch it


def run(out, *overrides, **kwargs):
    """Train in this process on the synthetic data, 3 epochs unless an override says otherwise."""
    keys = dict(item.split("=", 1) for item in ["dataset=synthetic", "epochs=3", f"out={out}", *overrides])
    return train(load_config(None, [f"{k}={v}" for k, v in keys.items()]), argv=["test"], progress=False, **kwargs)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http(tmp_path):
    """An HTTP server on localhost serving tmp_path/server, so downloads take the real network path."""
    root = tmp_path / "server"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


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


def cli(*args, cwd):
    """`rdml train` in its own process. One thread each: two torch processes spinning two threads each on
    two cores run ~10x slower."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "rdml.cli", "train", *args, "--progress", "off"], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def sigkill_and_resume(args: list[str], epochs: int, cwd: Path) -> dict:
    """Train `args` uninterrupted (out=ref) and, beside it, SIGKILLed after at least two epochs then resumed
    by the same command (out=run); asserts both end with the same epochs and weights; the resumed record."""
    reference = cli(*args, "out=ref", cwd=cwd)
    killed = cli(*args, "out=run", cwd=cwd)
    record_path = cwd / "run" / "record.json"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if len(json.loads(record_path.read_text())["epochs"]) >= 2:
                break
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.02)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    interrupted = json.loads(record_path.read_text())
    assert interrupted["status"] == "running" and 2 <= len(interrupted["epochs"]) < epochs, "the kill came too late"
    resumed = cli(*args, "out=run", cwd=cwd)
    assert resumed.wait() == 0, resumed.stderr.read().decode()
    assert reference.wait() == 0, reference.stderr.read().decode()
    done = json.loads(record_path.read_text())
    expected = json.loads((cwd / "ref" / "record.json").read_text())
    assert done["status"] == "ok" and len(done["resumed_at"]) == 1
    assert done["epochs"] == expected["epochs"]
    got = torch.load(cwd / "run" / "model.pt", weights_only=True)["states"]
    want = torch.load(cwd / "ref" / "model.pt", weights_only=True)["states"]
    assert all(torch.equal(a[k], b[k]) for a, b in zip(got, want) for k in a)
    return done


def killed_after_checkpoint(epoch: int, train) -> None:
    """Call `train()`, killed right after the given epoch's checkpoint (KeyboardInterrupt stands in)."""
    from rdml.train import loop

    real, saved = loop.save_checkpoint, []

    def save_then_die(*args):
        real(*args)
        saved.append(epoch)
        if len(saved) == epoch:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "save_checkpoint", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            train()
