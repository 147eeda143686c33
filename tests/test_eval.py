"""`rdml eval RUN`: a finished run's students and ensemble scored on its test split, against a
computation by hand (numpy, float64) from the saved weights; bad paths refused with their reason."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import flipped, run
from rdml.analysis.evaluate import calibration_error, evaluate_run, scores
from rdml.cli import main
from rdml.data.base import load_dataset
from rdml.keys import ConfigError
from rdml.models import build_model
from rdml.train.integrity import seal

BINS = 15


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    record = run(out, "method=dml", "students=2", "epochs=2", "split_seed=3", "test_fraction=0.3")
    assert record["status"] == "ok"
    return out


def hand_ece(confidence, correct):
    """Σ_b |B_b|/n |acc − conf| over bins (i/15, (i+1)/15], the first one also holding 0."""
    n, total = len(confidence), 0.0
    for i in range(BINS):
        lo, hi = i / BINS, (i + 1) / BINS
        members = [j for j in range(n) if lo < confidence[j] <= hi or (i == 0 and confidence[j] == 0)]
        if members:
            acc = sum(correct[j] for j in members) / len(members)
            conf = sum(confidence[j] for j in members) / len(members)
            total += len(members) / n * abs(acc - conf)
    return total


def hand_scores(p, labels):
    """Top-1, top-5, NLL and ECE of probabilities p (n × C, float64), by hand."""
    order = np.argsort(-p, axis=1, kind="stable")
    k = min(5, p.shape[1])
    return {
        "top1": float(np.mean(order[:, 0] == labels)),
        "top5": float(np.mean([labels[i] in order[i, :k] for i in range(len(labels))])),
        "nll": float(-np.mean(np.log(p[np.arange(len(labels)), labels]))),
        "ece": hand_ece(list(p.max(axis=1)), list(order[:, 0] == labels)),
    }


def hand_probabilities(run_dir):
    """Each student's test probabilities from model.pt, rebuilt without rdml.analysis."""
    record = json.loads((run_dir / "record.json").read_text())
    cfg = record["config"]
    data = load_dataset(cfg["dataset"], split_seed=cfg["split_seed"], test_fraction=cfg["test_fraction"])
    saved = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    probs = []
    for arch, state in zip(saved["archs"], saved["states"]):
        model = build_model(arch, data.spec)
        model.load_state_dict(state)
        with torch.no_grad():
            logits = model.eval()(data.inputs(data.x_test)).numpy().astype(np.float64)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs.append(e / e.sum(axis=1, keepdims=True))
    return record, probs, data.y_test.numpy()


def assert_close(ours, theirs):
    for name in ("top1", "top5"):
        assert ours[name] == pytest.approx(theirs[name], abs=1e-12), name
    for name in ("nll", "ece"):
        assert ours[name] == pytest.approx(theirs[name], rel=1e-9, abs=1e-12), name


def test_eval_matches_a_computation_by_hand(run_dir):
    record, probs, labels = hand_probabilities(run_dir)
    result = evaluate_run(run_dir)
    assert list(result["models"]) == ["student_0", "student_1", "ensemble"]
    assert result["test_size"] == len(labels) == record["data"]["split"]["test_size"]
    for k, p in enumerate(probs):
        ours = result["models"][f"student_{k}"]
        assert_close(ours, hand_scores(p, labels))
        assert abs(ours["top1"] - record["epochs"][-1]["test"][f"student_{k}"]["acc"]) <= 1e-6
    assert_close(result["models"]["ensemble"], hand_scores(np.mean(probs, axis=0), labels))
    assert abs(result["models"]["ensemble"]["top1"] - record["epochs"][-1]["test"]["ensemble"]["acc"]) <= 1e-6
    assert result["model_sha256"] == record["final_model"]["sha256"]
    assert result["config_sha256"] == record["config_sha256"]
    assert result["data_sha256"] == record["data"]["sha256"]
    assert result["run"] == str(run_dir)


def test_cli_json_on_stdout_and_the_table(run_dir, tmp_path, capsys):
    done = subprocess.run([sys.executable, "-m", "rdml.cli", "eval", str(run_dir / "model.pt"), "--json", "-"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)  # the table goes to stderr when the JSON takes stdout
    assert printed == json.loads(json.dumps(evaluate_run(run_dir)))
    assert "student_0" in done.stderr and "ensemble" in done.stderr
    assert main(["eval", str(run_dir), "--json", str(tmp_path / "scores.json")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split() == ["model", "top-1", "%", "top-5", "%", "NLL", "ECE", "%"]
    row = table[2].split()
    s = printed["models"]["student_0"]
    assert row == ["student_0", f"{100 * s['top1']:.2f}", f"{100 * s['top5']:.2f}", f"{s['nll']:.4f}", f"{100 * s['ece']:.2f}"]
    assert json.loads((tmp_path / "scores.json").read_text()) == printed


def test_one_student_has_no_ensemble(tmp_path):
    run(tmp_path / "one", "method=independent", "students=1", "epochs=1")
    result = evaluate_run(tmp_path / "one")
    assert list(result["models"]) == ["student_0"]


def test_ece_by_closed_form():
    # rows: conf 0.9 right, 0.9 wrong (bin (13/15, 14/15]: acc 1/2, conf 0.9), 0.55 right (bin (8/15, 9/15]),
    # 1.0 right (last bin, no gap): ECE = 2/4 · 0.4 + 1/4 · 0.45 + 0 = 0.3125
    probs = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.55, 0.45], [1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 0])
    assert calibration_error(probs, labels) == pytest.approx(0.3125, abs=1e-15)
    # a confidence on an edge belongs to the bin below it: uniform over 15 classes is confidence 1/15 in bin 0;
    # the tie goes to class 0, right for the first row, wrong for the second
    uniform = torch.full((2, 15), 1 / 15, dtype=torch.float64)
    assert calibration_error(uniform, torch.tensor([0, 3])) == pytest.approx(abs(0.5 - 1 / 15), abs=1e-15)
    assert calibration_error(uniform[:1], torch.tensor([0])) == pytest.approx(14 / 15, abs=1e-15)
    # confidence exactly 2/15 (right) shares bin (1/15, 2/15] with 0.1 (wrong), not bin (2/15, 3/15]
    edge = torch.full((2, 15), 0.0, dtype=torch.float64)
    edge[0] = 13 / 210
    edge[0, 0] = 2 / 15
    edge[1] = 0.9 / 14
    edge[1, 1] = 0.1
    assert calibration_error(edge, torch.tensor([0, 0])) == pytest.approx(abs(0.5 - (2 / 15 + 0.1) / 2), abs=1e-15)
    assert hand_ece([2 / 15, 0.1], [True, False]) == pytest.approx(abs(0.5 - (2 / 15 + 0.1) / 2), abs=1e-15)


def test_scores_on_fixed_probabilities():
    p = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.1, 0.6, 0.3]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 2])
    ours = scores(p.log(), labels)
    assert ours["top1"] == pytest.approx(1 / 3) and ours["top5"] == 1.0  # k = min(5, 3 classes)
    assert ours["nll"] == pytest.approx(-(np.log(0.5) + np.log(0.2) + np.log(0.3)) / 3, rel=1e-12)
    # bins: 0.5 in (7/15, 8/15] right and 0.5 wrong (no gap), 0.6 alone in its bin and wrong
    assert ours["ece"] == pytest.approx(2 / 3 * abs(0.5 - 0.5) + 1 / 3 * 0.6, rel=1e-12)


def flip_middle_byte(path):
    path.write_bytes(flipped(path.read_bytes()))


@pytest.mark.bad_input
def test_bad_runs_are_refused_naming_the_path(run_dir, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match=f"^rdml eval: {re.escape(str(missing))} does not exist; expected a run directory"):
        evaluate_run(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=f"^rdml eval: no run record at {re.escape(str(empty / 'record.json'))}; expected a run directory"):
        evaluate_run(empty)
    other = tmp_path / "weights.pt"
    other.write_bytes(b"x")
    with pytest.raises(ConfigError, match=f"^rdml eval: {re.escape(str(other))} is neither a directory nor a model.pt"):
        evaluate_run(other)

    flipped = tmp_path / "flipped"
    shutil.copytree(run_dir, flipped)
    flip_middle_byte(flipped / "model.pt")
    with pytest.raises(ConfigError) as info:
        evaluate_run(flipped / "model.pt")
    message = str(info.value)
    assert message.startswith(f"rdml eval: {flipped / 'model.pt'}: sha256 ") and "its record names" in message
    assert "teacher" not in message

    diverged = tmp_path / "diverged"
    shutil.copytree(run_dir, diverged)
    record = json.loads((diverged / "record.json").read_text())
    record["status"] = "diverged"
    (diverged / "record.json").write_text(json.dumps(seal(record)))
    with pytest.raises(ConfigError, match=f"^rdml eval: the run in {re.escape(str(diverged))} finished \\(status 'diverged', not 'ok'\\)"):
        evaluate_run(diverged)

    assert main(["eval", str(flipped)]) == 2  # through the CLI: exit status 2, the message on stderr
    err = capsys.readouterr().err
    assert err.startswith("rdml: error: rdml eval: ") and "sha256" in err and "teacher" not in err
