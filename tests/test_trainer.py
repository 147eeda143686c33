"""The trainer: methods end to end, update order, schedules, divergence, determinism, resume, records."""

import copy
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import killed_after_checkpoint, run, sigkill_and_resume
from rdml.code import PACKAGE
from rdml.config import load_config, resolve
from rdml.data.base import load_dataset
from rdml.dependencies import training_code
from rdml.io import sha256_file
from rdml.methods.dml import MutualLearning
from rdml.models import build_model
from rdml.train.cohort import Cohort, Student
from rdml.train.evaluate import find_divergence
from rdml.train.optim import make_optimizer, make_scheduler
from rdml.train.record import source_tree_sha256


def test_every_method_trains_and_records(tmp_path, teacher_dir):
    for i, (method, extra) in enumerate([
        ("independent", []),
        ("kd", [f"teacher={teacher_dir}", "alpha=1.5"]),
        ("dml", ["alpha=2", "arch=mlp,cnn"]),
        ("dml", ["update_order=sequential", "students=3"]),
        ("dml_e", ["students=3"]),
        ("dml", ["labelled_fraction=0.3"]),
    ]):
        record = run(tmp_path / str(i), f"method={method}", *extra)
        assert record["status"] == "ok", (method, record["diverged"])
        assert len(record["epochs"]) == 3
        students = [k for k in record["summary"] if k.startswith("student_")]
        assert len(students) == record["config"]["students"] == len(record["archs"])
        assert ("ensemble" in record["summary"]) == (len(students) > 1)
        for name in record["epochs"][0]["train"]:
            assert name.split("/")[1] in ("ce", "mimic", "total")


def test_teacher_checkpoint_feeds_kd_and_is_recorded(tmp_path, teacher_dir):
    record = run(tmp_path / "kd", "method=kd", f"teacher={teacher_dir}")
    teacher_record = json.loads((teacher_dir / "record.json").read_text())
    assert record["label"] == "KD" and record["config"]["temperature"] == 4.0 and record["config"]["beta"] == 0.9
    assert record["teacher"]["sha256"] == sha256_file(teacher_dir / "model.pt") == teacher_record["final_model"]["sha256"]
    assert record["teacher"]["run_config_sha256"] == teacher_record["config_sha256"]
    assert record["teacher"]["arch"] == "cnn_wide"


def test_run_record_fields(tmp_path):
    record = run(tmp_path / "r", "alpha=1.5", "seed=3")
    on_disk = json.loads((tmp_path / "r" / "record.json").read_text())
    assert on_disk == json.loads(json.dumps(record))
    assert record["label"] == "RDML α=1.5" and record["seed"] == 3 and record["alpha"] == 1.5
    assert record["code"]["src_sha256"] == source_tree_sha256()
    assert set(record["code"]) == {"rdml_version", "git_commit", "git_dirty", "src_sha256", "run"}
    assert record["code"]["run"] == training_code("dml", ["mlp", "mlp"], "synthetic", base=PACKAGE).describe()
    assert record["data"]["split"]["train_size"] + record["data"]["split"]["test_size"] == 800
    assert record["final_model"]["sha256"] == sha256_file(tmp_path / "r" / "model.pt")
    assert record["environment"]["torch"] == torch.__version__ and record["environment"]["device"] == "cpu"
    assert record["started_at"] <= record["ended_at"] and record["command"] == ["test"]
    assert not (tmp_path / "r" / "checkpoint.pt").exists()
    umask = os.umask(0)
    os.umask(umask)
    for name in ("record.json", "model.pt"):  # written through a temp file, yet readable as usual
        assert (tmp_path / "r" / name).stat().st_mode & 0o777 == 0o666 & ~umask
    for entry in record["epochs"]:
        assert {"epoch", "lr", "lr_last_batch", "train", "test"} <= set(entry)
        assert {"loss", "acc", "entropy"} == set(entry["test"]["student_0"])


def test_digits_fingerprint_is_the_shipped_file(tmp_path):
    data = load_dataset("digits", split_seed=0, test_fraction=0.25)
    import sklearn

    shipped = Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"
    assert data.fingerprint["files"] == {"sklearn/datasets/data/digits.csv.gz": sha256_file(shipped)}
    assert data.x_train.shape[1:] == (1, 8, 8) and len(data.y_train) + len(data.y_test) == 1797


def test_same_seed_bit_identical_other_seed_not(tmp_path):
    a = run(tmp_path / "a", "seed=5", "method=dml", "update_order=sequential")
    b = run(tmp_path / "b", "seed=5", "method=dml", "update_order=sequential")
    c = run(tmp_path / "c", "seed=6", "method=dml", "update_order=sequential")
    assert a["epochs"] == b["epochs"]
    assert a["epochs"] != c["epochs"]


@pytest.mark.bad_input
def test_finished_run_is_returned_not_retrained_and_other_config_refused(tmp_path):
    first = run(tmp_path / "r")
    again = run(tmp_path / "r")
    assert again["ended_at"] == first["ended_at"]
    with pytest.raises(ValueError, match="different configuration"):
        run(tmp_path / "r", "seed=9")
    replaced = run(tmp_path / "r", "seed=9", replace=True)  # what the pipeline asks for
    assert replaced["seed"] == 9 and replaced["config_sha256"] != first["config_sha256"]


def one_batch(seed=0, rows=32):
    data = load_dataset("synthetic", split_seed=0, test_fraction=0.25)
    return data.x_train[:rows], data.y_train[:rows], data


def make_cohort(cfg, data):
    torch.manual_seed(cfg.seed)
    cohort = []
    for arch in cfg.arch:
        model = build_model(arch, data.spec)
        opt = make_optimizer(cfg, model.parameters())
        cohort.append(Student(model, opt, make_scheduler(cfg, opt, 1)))
    return Cohort(cohort)


def test_sequential_update_is_dml_algorithm_1():
    x, y, data = one_batch()
    cfg = resolve(load_config(None, ["arch=cnn", "update_order=sequential", "alpha=1", "dataset=synthetic", "lr=0.5"]))
    cohort = make_cohort(cfg, data)
    reference = copy.deepcopy([(s.model, s.optimizer.state_dict()) for s in cohort])
    MutualLearning(cfg).train_step(x, y, cohort)

    # Algorithm 1 written out for K = 2, with plain SGD steps taken by hand.
    m1, m2 = (copy.deepcopy(model) for model, _ in reference)
    p1, p2 = m1(x), m2(x)
    kl = lambda target, student: F.kl_div(F.log_softmax(student, -1), F.softmax(target.detach(), -1), reduction="batchmean")
    manual_sgd(m1, F.cross_entropy(p1, y) + kl(p2, p1), cfg)
    p1 = copy.deepcopy(m1)(x)  # updated prediction; a copy so that m1's running statistics count the batch once
    manual_sgd(m2, F.cross_entropy(p2, y) + kl(p1, p2), cfg)
    for student, expected in zip(cohort, (m1, m2)):
        for got, want in zip(student.model.state_dict().values(), expected.state_dict().values()):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)

    # The simultaneous order gives student 2 the old p1, so its result must differ.
    simultaneous = make_cohort(resolve(load_config(None, ["arch=cnn", "dataset=synthetic", "lr=0.5"])), data)
    MutualLearning(resolve(load_config(None, ["arch=cnn", "dataset=synthetic", "lr=0.5"]))).train_step(x, y, simultaneous)
    assert not torch.equal(simultaneous[1].model[0].weight, cohort[1].model[0].weight)
    assert torch.equal(simultaneous[0].model[0].weight, cohort[0].model[0].weight)


def manual_sgd(model, loss, cfg):
    """One step of SGD with Nesterov momentum from zero buffers and weight decay (torch's definition)."""
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            g = p.grad + cfg.weight_decay * p
            p -= cfg.lr * (g + cfg.momentum * g)


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["schedule=step", "step_size=2", "gamma=0.5"], [0.1, 0.1, 0.05, 0.05, 0.025]),
        (["schedule=multistep", "milestones=1,3", "gamma=0.2"], [0.1, 0.02, 0.02, 0.004, 0.004]),
        (["schedule=cosine"], [0.05 * (1 + math.cos(math.pi * e / 5)) for e in range(5)]),
        (["schedule=constant"], [0.1] * 5),
    ],
)
def test_learning_rate_of_every_epoch_is_logged(tmp_path, overrides, expected):
    record = run(tmp_path / "r", "lr=0.1", "epochs=5", "method=independent", *overrides)
    assert [e["lr"][0] for e in record["epochs"]] == pytest.approx(expected, rel=1e-12)


def test_onecycle_peaks_after_pct_start_and_steps_per_batch(tmp_path):
    record = run(tmp_path / "r", "lr=0.005", "epochs=10", "method=independent", "schedule=onecycle",
                 "optimizer=adamw", "pct_start=0.1", "batch_size=200")
    firsts = [e["lr"][0] for e in record["epochs"]]
    assert firsts[0] == pytest.approx(0.005 / 25)
    assert max(e["lr_last_batch"][0] for e in record["epochs"]) == pytest.approx(0.005, rel=0.05)
    assert firsts[1] > firsts[2] > firsts[-1]  # decaying after the peak at 10 % of training
    assert record["epochs"][0]["lr_last_batch"][0] > firsts[0]


def test_gradient_clipping_bounds_the_norm():
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    student = Student(model, opt, None, grad_clip=0.5)
    (model(torch.full((2, 4), 100.0)).sum() * 100).backward()
    before = [p.detach().clone() for p in model.parameters()]
    student.step()
    step = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, model.parameters())])
    assert step.norm().item() == pytest.approx(0.5, rel=1e-5)


def test_non_finite_loss_stops_the_run_and_marks_it_diverged(tmp_path):
    record = run(tmp_path / "r", "method=independent", "lr=1e12", "momentum=0", "nesterov=false", "epochs=6", "schedule=constant")
    assert record["status"] == "diverged"
    assert "non-finite" in record["diverged"]["reason"]
    assert len(record["epochs"]) == record["diverged"]["epoch"] < 6


def test_crash_to_chance_is_detected():
    def epoch(n, *accs):
        return {"epoch": n, "train": {"student_0/total": 1.0}, "test": {f"student_{k}": {"acc": a} for k, a in enumerate(accs)}}

    history = [epoch(1, 0.5, 0.5), epoch(2, 0.9, 0.85)]
    assert find_divergence(history, chance=0.1, margin=0.05) is None
    history.append(epoch(3, 0.9, 0.12))
    found = find_divergence(history, chance=0.1, margin=0.05)
    assert found["epoch"] == 3 and "student_1 fell back to chance" in found["reason"]
    # Still near chance from the start is not a crash: it never was above chance.
    assert find_divergence([epoch(1, 0.11), epoch(2, 0.13)], chance=0.1, margin=0.05) is None


@pytest.mark.system  # rdml train processes, one SIGKILLed and resumed
@pytest.mark.fault
def test_sigkill_then_same_command_resumes_to_identical_metrics(tmp_path):
    sigkill_and_resume(["dataset=synthetic", "arch=cnn", "batch_size=8", "epochs=10", "method=dml",
                        "update_order=sequential"], 10, tmp_path)


class AveragedStudent:
    """A test method with state of its own: Ind. training plus a running average of student 0's
    weights, evaluated beside the students (as a method with a hybrid or EMA model would be)."""

    @staticmethod
    def make():
        import copy as copy_module

        from rdml.methods.independent import Independent

        class Averaged(Independent):
            name = "averaged_test"

            def __init__(self, cfg, teacher=None):
                super().__init__(cfg, teacher)
                self.average, self.steps = None, 0

            def train_step(self, x, y, cohort):
                terms = super().train_step(x, y, cohort)
                if self.average is None:
                    self.average = copy_module.deepcopy(cohort[0].model).requires_grad_(False)
                self.steps += 1
                with torch.no_grad():
                    for a, p in zip(self.average.parameters(), cohort[0].model.parameters()):
                        a.mul_(1 - 1 / self.steps).add_(p / self.steps)
                return terms

            def state_dict(self):
                return {"steps": self.steps, "average": self.average.state_dict()}

            def load_state_dict(self, state):
                self.steps = state["steps"]
                self.average = build_model("mlp", load_dataset("synthetic", split_seed=0, test_fraction=0.25).spec)
                self.average.load_state_dict(state["average"])
                self.average.requires_grad_(False)

            def extra_models(self):
                return {"average": self.average}

        return Averaged


@pytest.mark.fault
def test_a_method_state_is_checkpointed_and_resumes_bit_identically(tmp_path, monkeypatch):
    from rdml.methods import METHODS

    monkeypatch.setitem(METHODS._items, "averaged_test", AveragedStudent.make())
    whole = run(tmp_path / "whole", "method=averaged_test", "arch=mlp")
    assert "average" in whole["epochs"][-1]["test"] and whole["epochs"][0]["test"]["average"] != whole["epochs"][0]["test"]["student_0"]

    killed_after_checkpoint(1, lambda: run(tmp_path / "cut", "method=averaged_test", "arch=mlp"))
    resumed = run(tmp_path / "cut", "method=averaged_test", "arch=mlp")
    assert len(resumed["resumed_at"]) == 1 and resumed["epochs"] == whole["epochs"]


# ---- Nothing lost, nothing forged: faults and tamperings of one run directory ----

@pytest.mark.fault
def test_a_kill_while_the_final_model_is_written_resumes_to_the_whole_run(tmp_path, monkeypatch):
    from rdml.train import loop

    whole = run(tmp_path / "whole")
    monkeypatch.setattr(loop, "save_model", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut")  # every epoch checkpointed, killed before model.pt and the final record
    (tmp_path / "cut" / ".model.pt.x1.tmp").write_bytes(b"half a model")  # what a kill inside the write leaves
    monkeypatch.undo()
    resumed = run(tmp_path / "cut")
    assert resumed["status"] == "ok" and resumed["summary"] == whole["summary"] and resumed["epochs"] == whole["epochs"]
    assert not list((tmp_path / "cut").glob("*.tmp")) and not list((tmp_path / "cut").glob(".*.tmp"))


def damaged_checkpoint(tmp_path, how):
    killed_after_checkpoint(2, lambda: run(tmp_path / "r"))
    path = tmp_path / "r" / "checkpoint.pt"
    data = path.read_bytes()
    path.write_bytes({"flipped": lambda d: d[:-2000] + bytes([d[-2000] ^ 1]) + d[-1999:], "truncated": lambda d: d[: len(d) // 3],
                      "empty": lambda d: b""}[how](data))
    return tmp_path / "r"


@pytest.mark.parametrize("how", ["flipped", "truncated", "empty"])
@pytest.mark.tamper
def test_a_damaged_checkpoint_is_refused_with_a_hint_and_replaced_on_request(tmp_path, how):
    run_dir = damaged_checkpoint(tmp_path, how)
    with pytest.raises(ValueError, match=f"remove {run_dir / 'checkpoint.pt'} to train the run from its first epoch"):
        run(run_dir)
    assert run(run_dir, replace=True)["epochs"] == run(tmp_path / "clean")["epochs"]


@pytest.mark.parametrize("damage", ["deleted", "flipped"])
@pytest.mark.tamper
def test_a_finished_run_whose_model_changed_is_reported_not_returned(tmp_path, damage):
    first = run(tmp_path / "r")
    model = tmp_path / "r" / "model.pt"
    if damage == "deleted":
        model.unlink()
    else:
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0xFF
        model.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="files no longer match its record"):
        run(tmp_path / "r")
    again = run(tmp_path / "r", replace=True)
    assert again["epochs"] == first["epochs"] and sha256_file(model) == first["final_model"]["sha256"]


@pytest.mark.parametrize("setup,message", [
    (lambda d: d.write_text("not a directory"), "is a file, not a run directory"),
    (lambda d: (d.mkdir(), (d / "model.pt").write_bytes(b"my own weights")), "holds files rdml did not write (model.pt without a record.json)"),
    (lambda d: (d.mkdir(), (d / "notes.txt").write_text("mine")), "holds files rdml did not write (notes.txt)"),
    (lambda d: (d.mkdir(), (d / "checkpoint.pt").write_bytes(b"my own checkpoint")), "is not a readable checkpoint"),
    (lambda d: (d.mkdir(), (d / "record.json").write_text('{"status": "ok", "con')), "is not a readable run record"),
])
@pytest.mark.bad_input
def test_an_out_that_is_not_rdml_s_is_refused_and_left_as_it_was(tmp_path, setup, message):
    out = tmp_path / "r"
    setup(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()} if out.is_dir() else out.read_bytes()
    with pytest.raises(ValueError, match=re.escape(message)):
        run(out)
    assert ({p.name: p.read_bytes() for p in out.iterdir() if p.name != ".rdml.lock"} if out.is_dir() else out.read_bytes()) == before


@pytest.mark.bad_input
def test_an_out_where_nothing_can_be_written_is_refused(tmp_path):
    with pytest.raises(ValueError, match="out=/proc/rdml-run: cannot write there"):
        run("/proc/rdml-run")


@pytest.mark.system  # two rdml train processes racing for one out=
@pytest.mark.fault
def test_two_commands_into_one_out_take_turns(tmp_path):
    args = ["dataset=synthetic", "epochs=3", f"out={tmp_path / 'r'}"]
    procs = [subprocess.Popen([sys.executable, "-m", "rdml.cli", "train", "--progress", "off", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"}) for _ in range(2)]
    outputs = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs) and outputs[0] == outputs[1]
    record = json.loads((tmp_path / "r" / "record.json").read_text())
    assert record["resumed_at"] == [] and len(record["epochs"]) == 3  # trained once, then returned


@pytest.mark.tamper
def test_an_interrupted_run_resumes_only_under_the_teacher_it_started_with(tmp_path):
    teacher = tmp_path / "teacher"
    run(teacher, "method=teacher", "arch=cnn", "epochs=2")
    kd = ("method=kd", f"teacher={teacher}", "arch=mlp")
    killed_after_checkpoint(1, lambda: run(tmp_path / "kd", *kd))
    run(teacher, "method=teacher", "arch=cnn", "epochs=2", "seed=1", replace=True)  # retrained in place
    with pytest.raises(ValueError, match="under another teacher, training code or execution"):
        run(tmp_path / "kd", *kd)
    restarted = run(tmp_path / "kd", *kd, replace=True)
    assert restarted["resumed_at"] == [] and restarted["teacher"]["sha256"] == sha256_file(teacher / "model.pt")


@pytest.mark.parametrize("where,key,value", [
    ("environment", "torch", "0.0.1"), ("environment", "device_name", "another CPU"), ("environment", "threads", 64),
    ("environment", "precision", "bf16"), ("code", "run", {"sha256": "0" * 64}), ("data", "sha256", "0" * 64),
    ("teacher", "sha256", "0" * 64)])
def test_a_finished_run_is_kept_for_a_rerun_only_where_it_is_what_training_anew_gives(tmp_path, where, key, value):
    """The pipeline keeps a finished run when its job reruns only if nothing that changes its numbers changed."""
    from rdml.train.loop import same_run

    record = copy.deepcopy(run(tmp_path / "r", "epochs=1"))
    record["teacher"] = {"sha256": "1" * 64}
    assert same_run(record, copy.deepcopy(record))
    fresh = copy.deepcopy(record)
    fresh[where] = {**fresh[where], key: value}
    assert not same_run(record, fresh)
