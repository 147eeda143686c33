"""A finished run is read back (as a KD teacher, by `rdml eval`) only through rdml.train.verified: each
refusal names the reader's prefix, the run and the problem, and nothing is written."""

import io
import json
import shutil

import pytest
import torch

from rdml.cli import main
from rdml.io import sha256_bytes
from rdml.keys import ConfigError
from rdml.train.integrity import run_problems, seal
from rdml.train.verified import verified_run


def edit_record(run, change):
    path = run / "record.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps(change(record)))


def unsealed(run):
    edit_record(run, lambda r: {k: v for k, v in {**r, "format": "rdml.run/1"}.items() if k != "record_sha256"})


def edited(run):
    edit_record(run, lambda r: {**r, "seed": r["seed"] + 1})


def diverged(run):
    edit_record(run, lambda r: seal({**r, "status": "diverged"}))


def weights_changed(run):
    data = bytearray((run / "model.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (run / "model.pt").write_bytes(bytes(data))


def weights_missing(run):
    (run / "model.pt").unlink()


def not_a_model_file(run):
    """A torch file of another format, which the record, sealed again, names."""
    buffer = io.BytesIO()
    torch.save({"format": "someone.else/1", "states": []}, buffer)
    (run / "model.pt").write_bytes(buffer.getvalue())
    edit_record(run, lambda r: seal({**r, "final_model": {"path": "model.pt", "sha256": sha256_bytes(buffer.getvalue())}}))


REFUSALS = {
    "unsealed record": (unsealed, "an unsealed record of rdml.run/1"),
    "edited record": (edited, "the record does not hash to its record_sha256"),
    "status not ok": (diverged, "finished (status 'diverged', not 'ok')"),
    "weights changed": (weights_changed, "its record names (changed after training?)"),
    "weights missing": (weights_missing, "the model file its record names is missing"),
    "not an rdml model file": (not_a_model_file, "is not an rdml model file (expected format rdml.models/1)"),
}


def files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def broken(teacher_dir, tmp_path, request):
    """A copy of a finished `ok` run with one refusal's damage."""
    damage, _ = REFUSALS[request.param]
    run = tmp_path / "finished"
    shutil.copytree(teacher_dir, run)
    damage(run)
    return run


@pytest.mark.parametrize("broken", list(REFUSALS), indirect=True)
@pytest.mark.tamper
def test_a_teacher_is_refused_with_the_teacher_prefix_and_nothing_is_written(broken, tmp_path, capsys, request):
    problem = REFUSALS[request.node.callspec.params["broken"]][1]
    before = files(broken)
    out = tmp_path / "student"
    assert main(["train", "dataset=synthetic", "method=kd", f"teacher={broken}", "epochs=1", f"out={out}"]) == 2
    err = capsys.readouterr().err
    assert f"teacher={broken}: " in err and problem in err and str(broken) in err.split(f"teacher={broken}: ", 1)[1], err
    assert not out.exists() and files(broken) == before


@pytest.mark.parametrize("broken", list(REFUSALS), indirect=True)
@pytest.mark.tamper
def test_a_run_is_refused_by_eval_with_its_prefix_and_nothing_is_written(broken, tmp_path, capsys, request):
    problem = REFUSALS[request.node.callspec.params["broken"]][1]
    before = files(broken)
    scores = tmp_path / "scores.json"
    assert main(["eval", str(broken), "--json", str(scores)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rdml: error: rdml eval: ") and problem in err and str(broken) in err, err
    assert "teacher=" not in err
    assert not scores.exists() and files(broken) == before


@pytest.mark.parametrize("broken", list(REFUSALS), indirect=True)
@pytest.mark.tamper
def test_the_loader_names_the_caller_s_prefix_the_run_and_the_problem(broken, request):
    problem = REFUSALS[request.node.callspec.params["broken"]][1]
    with pytest.raises(ConfigError) as info:
        verified_run(broken / "model.pt" if (broken / "model.pt").exists() else broken, "reader: ")
    message = str(info.value)
    assert message.startswith("reader: ") and problem in message and str(broken) in message


def test_a_verified_run_holds_the_hash_it_loaded_and_rebuilds_its_students(teacher_dir):
    run = verified_run(teacher_dir, "reader: ")
    assert run.model_sha256 == run.record["final_model"]["sha256"] and run.model_file == teacher_dir / "model.pt"
    assert verified_run(teacher_dir / "model.pt", "reader: ").model_sha256 == run.model_sha256
    assert run.archs == run.record["archs"] and len(run.archs) == run.record["config"]["students"]


def test_a_diverged_run_passes_where_the_reader_accepts_it(teacher_dir, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(teacher_dir, run)
    diverged(run)
    assert verified_run(run, "reader: ", ("ok", "diverged")).record["status"] == "diverged"
    record = json.loads((run / "record.json").read_text())
    assert run_problems(run, record) == []
    assert run_problems(run, record, ("ok",)) == [f"the run in {run} finished (status 'diverged', not 'ok')"]


@pytest.mark.bad_input
def test_a_file_other_than_the_run_s_model_is_refused(teacher_dir, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(teacher_dir, run)
    shutil.copy(run / "model.pt", run / "weights.pt")
    with pytest.raises(ConfigError, match="^reader: .*weights.pt is neither a directory nor a model.pt"):
        verified_run(run / "weights.pt", "reader: ")
