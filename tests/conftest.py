"""The suite's fixtures and the helpers several test files share (imported as `from conftest import …`).

Two tiers: `make test-fast` (`-m "not slow and not system"`) and `make test` (everything). Markers:
`system` for end-to-end runs of Snakemake, DVC, SLURM, killed and resumed processes; `slow` for any
other test over ~3 s on 2 cores."""

import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from rdml.config import load_config
from rdml.data.augment import RATIO, SCALE
from rdml.train.loop import train

REPO = Path(__file__).resolve().parents[1]

# The suite's own cache of execution choices (rdml.train.autotune), inherited by every command it starts: `make run`
# before `make test` must not hand the tests the layouts it timed (they change float32 sums in the last digits).
import tempfile  # noqa: E402

os.environ["RDML_CACHE_DIR"] = tempfile.mkdtemp(prefix="rdml-test-cache-")
BIN = Path(sys.executable).parent  # the virtual environment's rdml, snakemake and dvc
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


def lone_run(root: Path) -> list[str]:
    """What the audit says of a one_cell_table (no study section, no params.yaml): its planned runs not vouched for."""
    return ["t.cells.json names no study section (`spec`): rebuild the tables (`rdml tables s`)",
            f"{root / 'params.yaml'} is missing: the audit cannot vouch for the runs planned for the cell"]


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
def timing_cache(tmp_path_factory):
    """`memory_format`/`compile` auto's timings (rdml.train.autotune) in a folder of the session, inherited by
    every subprocess: the suite neither reads the user's cached choices nor adds to them."""
    from rdml.train.autotune import CACHE_ENV

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("rdml-cache")))
        yield


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


def wait_for_epochs(record_path: Path, epochs: int, seconds: float = 180) -> None:
    """Return once the run's record holds at least `epochs` epochs (or after `seconds`: the caller's checks then fail)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if len(json.loads(record_path.read_text())["epochs"]) >= epochs:
                return
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.02)


def sigkill_and_resume(args: list[str], epochs: int, cwd: Path) -> dict:
    """Train `args` uninterrupted (out=ref) and, beside it, SIGKILLed after at least two epochs then resumed
    by the same command (out=run); asserts both end with the same epochs and weights; the resumed record."""
    reference = cli(*args, "out=ref", cwd=cwd)
    killed = cli(*args, "out=run", cwd=cwd)
    record_path = cwd / "run" / "record.json"
    wait_for_epochs(record_path, 2)
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


def resumes_to_the_uninterrupted_run(tmp_path: Path, *args, between=None) -> list:
    """Train `args` whole, and again killed after epoch 1's checkpoint and resumed: the resumed record holds one
    resumption and the whole run's every epoch, its model.pt the same weights. `between(cut)`: checks of the
    killed run's folder before it resumes. Returns the resumed model's states."""
    whole = run(tmp_path / "whole", *args)
    killed_after_checkpoint(1, lambda: run(tmp_path / "cut", *args))
    if between is not None:
        between(tmp_path / "cut")
    resumed = run(tmp_path / "cut", *args)
    assert len(resumed["resumed_at"]) == 1 and resumed["epochs"] == whole["epochs"]
    got = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)["states"]
    want = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)["states"]
    assert all(torch.equal(a[k], b[k]) for a, b in zip(got, want) for k in a)
    return got


def killed_after_checkpoint(epoch: int, train) -> None:
    """Call `train()`, killed right after the given epoch's checkpoint (KeyboardInterrupt stands in)."""
    from rdml.train import loop

    real, saved = loop.save_checkpoint, []

    def save_then_die(*args, **kwargs):
        real(*args, **kwargs)
        saved.append(epoch)
        if len(saved) == epoch:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "save_checkpoint", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            train()


def flipped(data: bytes) -> bytes:
    """`data` with its middle byte inverted: a damaged file of the same size."""
    data = bytearray(data)
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


# ---- projects for the Snakemake, DVC and SLURM tests --------------------------------------------------

# A small synthetic study: a teacher and one table of each kind, 8 runs of 2 epochs.
SMOKE = {
    "build": ["smoke"],
    "gpus": 0,
    "studies": {
        "smoke": {
            "datasets": ["synthetic"],
            "seeds": [0],
            "metric": "final",
            "train": {"epochs": 2, "batch_size": 64},
            "teacher": {"arch": "cnn", "seed": 0},
            "rdml_table": {"archs": ["mlp"], "alphas": [2.0]},
            "kd_table": {"student": "mlp", "alphas": [1.0, 2.0], "temperature": 4.0, "beta": 0.9},
            "pair_table": {"pairs": [["mlp", "cnn"]]},
        }
    },
}


def sh(*args, cwd, check=True, timeout=None):
    """A command with the virtual environment first on PATH and one thread per torch process; with `check`,
    a failure fails the test with the command's output; past `timeout` seconds, it fails the test."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def make_project(root: Path, params: dict | None = None) -> Path:
    """A copy of the workflow and the source it depends on, with `params` (default: the repository's)."""
    shutil.copy(REPO / "Snakefile", root)
    shutil.copytree(REPO / "workflow", root / "workflow")
    shutil.copytree(REPO / "profiles", root / "profiles")
    shutil.copytree(REPO / "src" / "rdml", root / "src" / "rdml", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".dvcignore", root)
    shutil.copytree(REPO / "reported", root / "reported")
    if params is None:
        shutil.copy(REPO / "params.yaml", root)
    else:
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root



def dvc_project(root: Path, params: dict | None = None) -> Path:
    """make_project with DVC initialised (no git) and its dvc.yaml generated: what Snakemake and DVC both build."""
    make_project(root, params)
    sh(str(BIN / "dvc"), "init", "--no-scm", "-q", cwd=root)
    shutil.copy(REPO / ".dvcignore", root)
    sh(str(BIN / "rdml"), "pipeline", "dvc-yaml", cwd=root)
    return root


def copy_project(source: Path, target: Path) -> Path:
    """A copy of a built project whose files keep their modification times (copy2), which Snakemake and DVC
    compare: the copy is as up to date as its source."""
    shutil.copytree(source, target, symlinks=True, copy_function=shutil.copy2)
    return target


@pytest.fixture(scope="session")
def smoke_build(tmp_path_factory):
    """dvc_project(SMOKE) built once for the session by `snakemake all_tables --cores 2`: the dry run before the
    build (its `-n -p` listing), the build's result and the built project, which tests copy (copy_project) rather
    than train the same 8 runs again."""
    from types import SimpleNamespace

    root = dvc_project(tmp_path_factory.mktemp("smoke-build"), SMOKE)
    dry_run = sh(str(BIN / "snakemake"), "all_tables", "-n", "-p", "--cores", "2", cwd=root).stdout
    build = sh(str(BIN / "snakemake"), "all_tables", "--cores", "2", cwd=root)
    return SimpleNamespace(root=root, dry_run=dry_run, build=build)

# ---- networks against their reference implementations -------------------------------------------------

def count(model: nn.Module, trainable_only: bool = False) -> int:
    """The model's parameters (only those that train, with `trainable_only`)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def trace(model: nn.Module, x, leave_out=(nn.Flatten,)) -> list:
    """Every leaf module in call order: its repr and output shape, in eval mode (`leave_out`: by default
    nn.Flatten, the reference codes' `view`)."""
    calls, hooks = [], []
    for m in model.modules():
        if not list(m.children()) and not isinstance(m, leave_out):
            hooks.append(m.register_forward_hook(lambda m, i, o: calls.append((repr(m), tuple(o.shape)))))
    model.eval()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return calls


def randomise_batch_norm(model: nn.Module, seed: int = 1) -> None:
    """Non-trivial BatchNorm statistics and affine parameters, so eval-mode outputs test them too."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


# ---- torchvision as the reference of the crop augmentations --------------------------------------------

def torchvision_resized_crop(x, boxes, size=None):
    """torchvision's resized_crop of each image's box to `size` (the image's own size if None)."""
    import torchvision.transforms.v2.functional as TF
    from torchvision.transforms import InterpolationMode

    h_out, w_out = x.shape[-2:] if size is None else size
    return torch.stack([TF.resized_crop(image, *map(int, box), size=[h_out, w_out],
                                        interpolation=InterpolationMode.BILINEAR, antialias=True)
                        for image, box in zip(x, boxes)])


def torchvision_boxes(n, height, width, seed, scale=SCALE, ratio=RATIO):
    """`n` boxes drawn by torchvision's RandomResizedCrop.get_params under torch's global seed `seed`."""
    from torchvision.transforms import RandomResizedCrop

    image = torch.empty(3, height, width)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        boxes = [RandomResizedCrop.get_params(image, list(scale), list(ratio)) for _ in range(n)]
    return torch.tensor(boxes)


def fallback_box(height, width, ratio=RATIO):
    """torchvision's central crop when no attempt fits: deterministic, so get_params with a scale no box
    can meet returns it."""
    return torchvision_boxes(1, height, width, 0, scale=(1e6, 1e6), ratio=ratio)[0]
