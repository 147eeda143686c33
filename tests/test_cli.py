"""`rdml train`: bad input fails before any work with a message naming the value; the happy path prints."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import flipped
from rdml.cli import main
from rdml.config import KEYS, load_config, resolve
from rdml.train.integrity import seal


def teacher_copy(teacher_dir, where, edit_record=None, edit_model=None):
    """A copy of the teacher run with its record or weights changed behind rdml's back."""
    shutil.copytree(teacher_dir, where)
    if edit_record:
        (where / "record.json").write_text(edit_record((where / "record.json").read_text()))
    if edit_model:
        (where / "model.pt").write_bytes(edit_model((where / "model.pt").read_bytes()))
    return where


def diverged(text):
    record = json.loads(text)
    record["status"] = "diverged"
    return json.dumps(seal(record))


@pytest.fixture
def teachers(tmp_path, teacher_dir):
    return {
        "CORRUPT": teacher_copy(teacher_dir, tmp_path / "truncated", edit_model=lambda d: d[: len(d) // 2]),
        "FLIPPED": teacher_copy(teacher_dir, tmp_path / "flipped", edit_model=flipped),
        "BADRECORD": teacher_copy(teacher_dir, tmp_path / "badrecord", edit_record=lambda t: t[: len(t) // 2]),
        "DIVERGED": teacher_copy(teacher_dir, tmp_path / "diverged", edit_record=diverged),
        "TEACHER": teacher_dir,
    }


BAD = [
    pytest.param(["method=distill"], "method='distill' is not allowed; allowed: dml, dml_e, ffl, independent, kd, kdcl, okddip, okdph, one, pcl, teacher", marks=pytest.mark.bad_input),
    pytest.param(["arch=resnet9000"], "arch='resnet9000' is not allowed; allowed: charcnn, charcnn_as_released, charcnn_logits, cnn, cnn_wide, darknet53", marks=pytest.mark.bad_input),
    pytest.param(["dataset=imagenet21k"], "dataset='imagenet21k' is not allowed; allowed: ag_news, cifar10, cifar100, cifar100_1, cifar100_10", marks=pytest.mark.bad_input),
    pytest.param(["alpha=-0.5"], "alpha=-0.5 is not allowed; it must be a real number in [0, inf]", marks=pytest.mark.bad_input),
    pytest.param(["alpha=nan"], "alpha=nan is not allowed; it must be a real number in [0, inf]", marks=pytest.mark.bad_input),
    pytest.param(["alpha=abc"], "alpha='abc' is not a valid float", marks=pytest.mark.bad_input),
    pytest.param(["method=kd", "teacher=TEACHER", "temperature=0"], "temperature=0.0 is not allowed; it must be a finite number > 0", marks=pytest.mark.bad_input),
    pytest.param(["method=kd", "teacher=TEACHER", "beta=1.5"], "beta=1.5 is not allowed; it must be a number in [0, 1]", marks=pytest.mark.bad_input),
    pytest.param(["method=kd", "teacher=TEACHER", "alpha=0"], "alpha=0.0: kd scales its divergence by T^2/alpha", marks=pytest.mark.bad_input),
    pytest.param(["method=dml", "students=1"], "students=1: method dml needs a cohort of K >= 2 students", marks=pytest.mark.bad_input),
    pytest.param(["epochs=0"], "epochs=0 must be >= 1", marks=pytest.mark.bad_input),
    pytest.param(["arch=mlp,cnn,mlp", "students=2"], "names 3 architectures for students=2", marks=pytest.mark.bad_input),
    pytest.param(["method=kd"], "method kd needs teacher=", marks=pytest.mark.bad_input),
    pytest.param(["method=kd", "teacher=/nonexistent/run"], "teacher=/nonexistent/run: no teacher checkpoint at /nonexistent/run", marks=pytest.mark.bad_input),
    pytest.param(["method=kd", "teacher=CORRUPT"], "is not the", marks=pytest.mark.tamper),
    pytest.param(["method=kd", "teacher=FLIPPED"], "is not the", marks=pytest.mark.tamper),  # one flipped byte in the teacher's weights
    pytest.param(["method=kd", "teacher=BADRECORD"], "is not a readable run record", marks=pytest.mark.tamper),
    pytest.param(["method=kd", "teacher=DIVERGED"], "finished (status 'diverged', not 'ok')", marks=pytest.mark.bad_input),
    pytest.param(["seed=99999999999999999999999"], "seed=99999999999999999999999 is not allowed; it must be an integer in [0, 4294967295]", marks=pytest.mark.bad_input),
    pytest.param(["split_seed=-1"], "split_seed=-1 is not allowed; it must be an integer in [0, 4294967295]", marks=pytest.mark.bad_input),
    pytest.param(["test_fraction=0.001"], "test_fraction=0.001 leaves no test rows in dataset synthetic", marks=pytest.mark.bad_input),
    pytest.param(["alpha=1.5", "alpha=2"], "alpha is given twice (alpha=1.5, alpha=2); give it once", marks=pytest.mark.bad_input),
    pytest.param(["method=kd", "teacher=TEACHER", "teacher_index=1"], "teacher_index=1: ", marks=pytest.mark.bad_input),
    pytest.param(["method=kd", "teacher=TEACHER", "dataset=digits"], "trained on dataset 'synthetic', but this run uses 'digits'", marks=pytest.mark.bad_input),
    pytest.param(["epoch=3"], "unknown key 'epoch'; did you mean epochs", marks=pytest.mark.bad_input),
    pytest.param(["schedule=multistep"], "schedule=multistep needs milestones=", marks=pytest.mark.bad_input),
    pytest.param(["milestones=5,2", "schedule=multistep"], "milestones=5,2 must be increasing", marks=pytest.mark.bad_input),
    pytest.param(["labelled_fraction=0"], "labelled_fraction=0.0 is not allowed; it must be a number in (0, 1]", marks=pytest.mark.bad_input),
    pytest.param(["device=tpu"], "device='tpu' is not allowed", marks=pytest.mark.bad_input),
    pytest.param(["seed"], "expected key=value, got 'seed'", marks=pytest.mark.bad_input),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_fails_before_work_and_names_the_value(tmp_path, teachers, capsys, args, message):
    for name, where in teachers.items():
        args = [a.replace(f"={name}", f"={where}") for a in args]
    out = tmp_path / "run"
    dataset = [] if any(a.startswith("dataset=") for a in args) else ["dataset=synthetic"]
    code = main(["train", *dataset, *args, f"out={out}"])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists()


def test_config_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method: dml\nalpha: 1.5\narch: [mlp, cnn]\nmilestones: [2, 4]\nnesterov: false\n")
    cfg = resolve(load_config(path, ["alpha=2", "seed=4"]))
    assert (cfg.method, cfg.alpha, cfg.arch, cfg.milestones, cfg.nesterov, cfg.seed, cfg.students) == (
        "dml", 2.0, ["mlp", "cnn"], [2, 4], False, 4, 2)
    (tmp_path / "nulls.yaml").write_text("teacher: null\ntemperature: ~\n")
    assert (load_config(tmp_path / "nulls.yaml").teacher, load_config(tmp_path / "nulls.yaml").temperature) == (None, None)
    (tmp_path / "null_epochs.yaml").write_text("epochs: null\n")
    with pytest.raises(ValueError, match="epochs=None is not a valid int"):
        load_config(tmp_path / "null_epochs.yaml")
    (tmp_path / "bad.yaml").write_text("alhpa: 2\n")
    with pytest.raises(ValueError, match="unknown key 'alhpa'; did you mean alpha"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")


def test_per_method_defaults():
    kd = resolve(load_config(None, ["method=kd", "teacher=x"]))
    assert (kd.temperature, kd.students, kd.arch) == (4.0, 1, ["mlp"])
    dml = resolve(load_config(None, []))
    assert (dml.method, dml.temperature, dml.students, dml.arch, dml.alpha) == ("dml", 1.0, 2, ["mlp", "mlp"], 1.0)
    assert resolve(load_config(None, ["method=teacher"])).arch == ["cnn_wide"]
    assert resolve(load_config(None, ["alpha=inf"])).alpha == float("inf")


def test_help_lists_every_key():
    result = subprocess.run([sys.executable, "-m", "rdml.cli", "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for name in KEYS:
        assert f"  {name}=" in result.stdout


@pytest.mark.slow  # a training run in its own process, ~7 s
def test_console_script_trains_and_prints_summary(tmp_path):
    rdml = [sys.executable, "-c", "import sys; from rdml.cli import main; sys.exit(main())"]
    result = subprocess.run([*rdml, "train", "dataset=synthetic", "epochs=2", "alpha=1.5", "out=r", "--progress", "off"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["status"] == "ok" and printed["label"] == "RDML α=1.5"
    assert "epoch 2/2" in result.stderr
    assert (tmp_path / "r" / "record.json").is_file()


def test_version_names_the_release_the_commit_and_the_source_tree(capsys):
    """`rdml --version` says which rdml ran: the release, the git commit of its checkout (and whether it is edited),
    and the source hash a run record holds, which the audit compares."""
    import rdml
    from rdml.train.record import source_tree_sha256

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    commit = subprocess.run(["git", "-C", str(Path(rdml.__file__).parent), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    assert printed.startswith(f"rdml {rdml.__version__} (")
    assert (f"git {commit[:12]}" if commit else "not a git checkout") in printed
    assert f"source sha256 {source_tree_sha256()[:16]}" in printed and f"torch {torch.__version__}" in printed
