"""Kept epochs (`keep_every`): the networks after epochs 1, 1+N, 1+2N, … in <run>/epochs/epoch_<k>.pt, each named
with its sha256 in the record's `kept_epochs` once the file is whole. Training is as without them; a kill anywhere
resumes to the files and hashes an uninterrupted run has; the audit, a rerun and the loader check each file
against its record; a run without the key keeps its identity."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from conftest import flipped, killed_after_checkpoint, lone_run, one_cell_table, run, sigkill_and_resume
from rdml.audit import audit_cell
from rdml.config import ConfigError, config_sha256, config_values, data_keys, load_config, resolve
from rdml.data.base import load_dataset
from rdml.io import sha256_file
from rdml.train.checkpoint import KEPT_DIR, load_kept_epoch, read_checkpoint, read_kept_epoch
from rdml.train.evaluate import evaluate

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "golden_runs.json").read_text())
KEEPING = ["epochs=5", "keep_every=2", "memory_format=contiguous"]  # kept: epochs 1, 3 and 5
PLAIN = ["epochs=5", "memory_format=contiguous"]


def kept(run_dir) -> dict[str, bytes]:
    """Every file in a run's epochs/ folder (temporary ones too), by name, with its bytes."""
    folder = Path(run_dir) / KEPT_DIR
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def on_disk(run_dir) -> dict:
    return json.loads((Path(run_dir) / "record.json").read_text())


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """An uninterrupted run keeping epochs 1, 3 and 5, and the same run keeping none."""
    root = tmp_path_factory.mktemp("kept")
    return {"dir": root / "kept", "record": run(root / "kept", *KEEPING),
            "plain_dir": root / "plain", "plain": run(root / "plain", *PLAIN)}


def copied(whole, tmp_path) -> Path:
    target = tmp_path / "r"
    shutil.copytree(whole["dir"], target)
    return target


# ---- identity: a run without the key is the run it was ---------------------------------------------------------

@pytest.mark.parametrize("name", list(GOLDEN["runs"]))
def test_a_run_that_keeps_no_epochs_keeps_the_identity_rdml_gave_it_before_the_key(name):
    stored = GOLDEN["runs"][name]
    cfg = resolve(load_config(None, [*GOLDEN["common"], *stored["args"]]))
    assert config_values(cfg)["keep_every"] == 0  # the key is in the run's config, at its default …
    assert config_sha256(cfg) == stored["config_sha256"]  # … and out of its hash, written by rdml before the key
    assert cfg.out.endswith(stored["config_sha256"][:8])  # so its default run directory stays too


def test_keeping_epochs_is_part_of_a_run_identity():
    plain = resolve(load_config(None, ["dataset=synthetic", *PLAIN]))
    keeping = resolve(load_config(None, ["dataset=synthetic", *KEEPING]))
    assert config_sha256(keeping) != config_sha256(plain)
    assert config_sha256({**config_values(keeping), "keep_every": 0}) == config_sha256(plain)


@pytest.mark.parametrize("value,message", [
    ("-1", "keep_every=-1 is not allowed; it must be an integer >= 0: N keeps the networks of epochs 1, 1+N, 1+2N"),
    ("2.5", "keep_every='2.5' is not a valid int"),
    ("five", "keep_every='five' is not a valid int"),
])
@pytest.mark.bad_input
def test_a_bad_keep_every_is_refused_before_any_work(tmp_path, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        run(tmp_path / "r", f"keep_every={value}")
    assert not (tmp_path / "r").exists()


# ---- what is kept, and training as without it -------------------------------------------------------------------

def test_kept_epochs_leave_training_as_it_was_and_hold_the_networks_after_their_epoch(whole, tmp_path):
    record, plain, run_dir = whole["record"], whole["plain"], whole["dir"]
    assert record["epochs"] == plain["epochs"] and record["summary"] == plain["summary"]
    assert record["final_model"]["sha256"] == plain["final_model"]["sha256"]  # model.pt byte for byte
    assert list(kept(run_dir)) == ["epoch_1.pt", "epoch_3.pt", "epoch_5.pt"] and not kept(whole["plain_dir"])
    assert record["kept_epochs"] == {k: sha256_file(run_dir / KEPT_DIR / f"epoch_{k}.pt") for k in ("1", "3", "5")}
    assert on_disk(run_dir)["kept_epochs"] == record["kept_epochs"] and "kept_epochs" not in plain
    # model.pt's content: after the last epoch, the same bytes as model.pt
    assert kept(run_dir)["epoch_5.pt"] == (run_dir / "model.pt").read_bytes()
    # after epoch 3: the networks the plain run's checkpoint after epoch 3 resumes from
    killed_after_checkpoint(3, lambda: run(tmp_path / "cut", *PLAIN))
    resumes_from = read_checkpoint(tmp_path / "cut" / "checkpoint.pt")["students"]
    saved = torch.load(run_dir / KEPT_DIR / "epoch_3.pt", weights_only=True)
    assert saved["archs"] == record["archs"] and len(saved["states"]) == len(resumes_from) == 2
    for state, student in zip(saved["states"], resumes_from):
        assert state.keys() == student["model"].keys() and all(torch.equal(state[k], student["model"][k]) for k in state)
    assert kept(run_dir)["epoch_3.pt"] != (run_dir / "model.pt").read_bytes()


def test_a_kept_epoch_loads_into_its_networks_and_scores_as_that_epoch_did(whole):
    record = whole["record"]
    data = load_dataset("synthetic", **data_keys(record["config"]))
    for epoch in (1, 3, 5):
        cohort, method = load_kept_epoch(whole["dir"], epoch)
        assert method is None and len(cohort) == 2 and not cohort[0].model.training
        assert evaluate(cohort, data) == record["epochs"][epoch - 1]["test"]
    saved_record, saved = read_kept_epoch(whole["dir"], 3)
    on_file = torch.load(whole["dir"] / KEPT_DIR / "epoch_3.pt", weights_only=True)
    assert saved_record == record and saved.keys() == on_file.keys() and saved["archs"] == on_file["archs"]
    assert all(torch.equal(a[k], b[k]) for a, b in zip(saved["states"], on_file["states"]) for k in a)


@pytest.mark.slow  # a ONE run on 2 cores, ~13 s
def test_a_method_own_networks_are_kept_and_rebuilt_through_the_method(tmp_path):
    record = run(tmp_path / "r", "method=one", "arch=okdph_resnet32", "branches=2", "epochs=1", "batch_size=32",
                 "keep_every=1", "memory_format=contiguous")
    assert torch.load(tmp_path / "r" / KEPT_DIR / "epoch_1.pt", weights_only=True)["method"] == "one"
    cohort, method = load_kept_epoch(tmp_path / "r", 1)
    assert method.name == "one" and len(cohort) == 1
    data = load_dataset("synthetic", **data_keys(record["config"]))
    assert evaluate(cohort, data, method=method) == record["epochs"][0]["test"]


@pytest.mark.parametrize("epoch,kept_ones", [(2, "kept: 1, 3, 5"), (0, "kept: 1, 3, 5"), (1, "kept: none (keep_every=0)")])
@pytest.mark.bad_input
def test_loading_an_epoch_that_was_not_kept_is_refused_with_the_kept_ones(whole, epoch, kept_ones):
    run_dir = whole["dir"] if kept_ones != "kept: none (keep_every=0)" else whole["plain_dir"]
    with pytest.raises(ConfigError, match=re.escape(f"landscape: {run_dir}: epoch {epoch} is not a kept epoch of this run; {kept_ones}")):
        load_kept_epoch(run_dir, epoch, prefix="landscape: ")


# ---- faults: a kill anywhere around a kept epoch ---------------------------------------------------------------

def _kill_inside_the_kept_file(monkeypatch, loop):
    real = loop.save_model

    def half_written(path, *args):
        if Path(path).name == "epoch_3.pt":  # what a kill inside atomic_write_bytes leaves: a temporary file
            Path(path).parent.mkdir(exist_ok=True)
            (Path(path).parent / ".epoch_3.pt.x1.tmp").write_bytes(b"half the networks")
            raise KeyboardInterrupt
        return real(path, *args)
    monkeypatch.setattr(loop, "save_model", half_written)


def _kill_after_the_kept_file(monkeypatch, loop):
    real = loop.save_model

    def written_then_killed(path, *args):
        sha = real(path, *args)
        if Path(path).name == "epoch_3.pt":
            raise KeyboardInterrupt
        return sha
    monkeypatch.setattr(loop, "save_model", written_then_killed)


def _kill_after_the_checkpoint(monkeypatch, loop):
    real = loop.write_record

    def killed_before_epoch_3s_record(path, record):
        if len(record["epochs"]) == 3 and record["status"] == "running":
            raise KeyboardInterrupt
        return real(path, record)
    monkeypatch.setattr(loop, "write_record", killed_before_epoch_3s_record)


CUTS = {"inside the kept file": _kill_inside_the_kept_file,
        "between the kept file and the checkpoint": _kill_after_the_kept_file,
        "between the checkpoint and the record": _kill_after_the_checkpoint}


@pytest.mark.parametrize("cut", list(CUTS))
@pytest.mark.fault
def test_a_kill_around_a_kept_epoch_resumes_to_the_uninterrupted_files_and_hashes(whole, tmp_path, monkeypatch, cut):
    from rdml.train import loop

    run_dir = tmp_path / "r"
    with monkeypatch.context() as mp:
        CUTS[cut](mp, loop)
        with pytest.raises(KeyboardInterrupt):
            run(run_dir, *KEEPING)
    # whatever names a kept epoch on disk names the bytes there
    recorded, checkpointed = on_disk(run_dir), read_checkpoint(run_dir / "checkpoint.pt")["record"]
    assert recorded["kept_epochs"] == {"1": whole["record"]["kept_epochs"]["1"]}  # epoch 3 never reached the record
    assert set(checkpointed["kept_epochs"]) == ({"1", "3"} if cut == "between the checkpoint and the record" else {"1"})
    for sha_of in (recorded["kept_epochs"], checkpointed["kept_epochs"]):
        assert all(sha256_file(run_dir / KEPT_DIR / f"epoch_{k}.pt") == sha for k, sha in sha_of.items())
    if cut == "between the kept file and the checkpoint":  # named by nothing: other bytes there are written over
        leftover = run_dir / KEPT_DIR / "epoch_3.pt"
        leftover.write_bytes(flipped(leftover.read_bytes()))
    resumed = run(run_dir, *KEEPING)
    assert len(resumed["resumed_at"]) == 1 and resumed["epochs"] == whole["record"]["epochs"]
    assert resumed["kept_epochs"] == on_disk(run_dir)["kept_epochs"] == whole["record"]["kept_epochs"]
    assert kept(run_dir) == kept(whole["dir"])  # the same files, byte for byte, and no temporary one
    assert resumed["final_model"] == whole["record"]["final_model"]


def test_a_kept_file_its_record_does_not_name_is_not_left_when_the_run_finishes(whole, tmp_path):
    run_dir = tmp_path / "r"
    killed_after_checkpoint(2, lambda: run(run_dir, *KEEPING))
    (run_dir / KEPT_DIR / "epoch_4.pt").write_bytes(b"named by nothing")  # an epoch this run does not keep
    resumed = run(run_dir, *KEEPING)
    assert resumed["kept_epochs"] == whole["record"]["kept_epochs"] and kept(run_dir) == kept(whole["dir"])


@pytest.mark.system  # rdml train processes, one SIGKILLed and resumed
@pytest.mark.fault
def test_sigkill_then_resume_ends_with_the_kept_epochs_of_an_uninterrupted_run(tmp_path):
    done = sigkill_and_resume(["dataset=synthetic", "arch=cnn", "batch_size=8", "epochs=10", "keep_every=1"], 10, tmp_path)
    reference = on_disk(tmp_path / "ref")
    assert list(done["kept_epochs"]) == [str(k) for k in range(1, 11)]
    assert done["kept_epochs"] == reference["kept_epochs"]
    assert kept(tmp_path / "run") == kept(tmp_path / "ref")
    assert all(sha256_file(tmp_path / "run" / KEPT_DIR / f"epoch_{k}.pt") == sha for k, sha in done["kept_epochs"].items())


# ---- tamperings: the audit, a rerun, a resume and the loader check each kept file -----------------------------

def _damage(run_dir: Path, how: str) -> Path:
    file = run_dir / KEPT_DIR / "epoch_3.pt"
    if how == "flipped":
        file.write_bytes(flipped(file.read_bytes()))
    elif how == "deleted":
        file.unlink()
    else:  # another epoch's whole file in its place
        shutil.copy(run_dir / KEPT_DIR / "epoch_1.pt", file)
    return file


def _problem(file: Path, record: dict, how: str) -> str:
    if how == "deleted":
        return f"{file}: the kept epoch 3 its record names is missing"
    return f"{file}: sha256 {sha256_file(file)} is not the {record['kept_epochs']['3']} its record names (changed after training?)"


def test_the_audit_checks_every_kept_epoch(whole, tmp_path):
    copied(whole, tmp_path)
    lines = []
    assert audit_cell(one_cell_table(tmp_path, "r", whole["record"]), "DML|x", tmp_path, out=lines.append) == lone_run(tmp_path)
    assert f"  kept epochs       3 in {tmp_path / 'r' / KEPT_DIR} ok" in lines


@pytest.mark.parametrize("how", ["flipped", "deleted", "another epoch's"])
@pytest.mark.tamper
def test_the_audit_reports_a_tampered_kept_epoch(whole, tmp_path, how):
    file = _damage(copied(whole, tmp_path), how)
    lines = []
    problems = audit_cell(one_cell_table(tmp_path, "r", whole["record"]), "DML|x", tmp_path, out=lines.append)
    assert problems == [_problem(file, whole["record"], how), *lone_run(tmp_path)]
    assert f"  kept epochs       3 in {tmp_path / 'r' / KEPT_DIR} MISMATCH" in lines


@pytest.mark.parametrize("how", ["flipped", "deleted"])
@pytest.mark.tamper
def test_a_finished_run_whose_kept_epoch_changed_is_refused_and_replaced_on_request(whole, tmp_path, how):
    run_dir = copied(whole, tmp_path)
    file = _damage(run_dir, how)
    with pytest.raises(ConfigError, match="files no longer match its record: " + re.escape(_problem(file, whole["record"], how))):
        run(run_dir, *KEEPING)
    again = run(run_dir, *KEEPING, replace=True)
    assert again["epochs"] == whole["record"]["epochs"] and again["kept_epochs"] == whole["record"]["kept_epochs"]
    assert kept(run_dir) == kept(whole["dir"])


@pytest.mark.tamper
def test_an_interrupted_run_whose_kept_epoch_changed_is_refused_and_replaced_on_request(whole, tmp_path):
    run_dir = tmp_path / "r"
    killed_after_checkpoint(4, lambda: run(run_dir, *KEEPING))
    file = _damage(run_dir, "flipped")
    with pytest.raises(ConfigError, match=re.escape(f"holds an interrupted run whose kept epochs no longer match its checkpoint: {file}: sha256")):
        run(run_dir, *KEEPING)
    again = run(run_dir, *KEEPING, replace=True)
    assert again["resumed_at"] == [] and again["kept_epochs"] == whole["record"]["kept_epochs"]
    assert kept(run_dir) == kept(whole["dir"])


@pytest.mark.parametrize("how", ["flipped", "deleted", "another epoch's"])
@pytest.mark.tamper
def test_the_loader_refuses_a_tampered_kept_epoch(whole, tmp_path, how):
    file = _damage(copied(whole, tmp_path), how)
    with pytest.raises(ConfigError) as refused:
        load_kept_epoch(tmp_path / "r", 3, prefix="landscape: ")
    assert str(refused.value) == "landscape: " + _problem(file, whole["record"], how)
    load_kept_epoch(tmp_path / "r", 1)  # the others still load


@pytest.mark.tamper
def test_the_loader_refuses_a_kept_epoch_of_a_forged_record(whole, tmp_path):
    run_dir = copied(whole, tmp_path)
    record = on_disk(run_dir)
    record["kept_epochs"]["3"] = sha256_file(run_dir / KEPT_DIR / "epoch_1.pt")  # epoch 1's file named as epoch 3's
    (run_dir / "record.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="does not hash to its record_sha256"):
        load_kept_epoch(run_dir, 3)


# ---- the run directory -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("setup,found", [
    (lambda d: ((d / KEPT_DIR).mkdir(parents=True), (d / KEPT_DIR / "notes.txt").write_text("mine")), "epochs/notes.txt"),
    (lambda d: (d.mkdir(), (d / KEPT_DIR).write_text("not a folder")), "epochs"),
])
@pytest.mark.bad_input
def test_an_out_whose_epochs_folder_holds_what_rdml_did_not_write_is_refused(tmp_path, setup, found):
    setup(tmp_path / "r")
    with pytest.raises(ConfigError, match=rf"holds files rdml did not write \({found}\)"):
        run(tmp_path / "r", *KEEPING)


def test_a_run_no_longer_asked_to_keep_epochs_is_another_run_and_trains_again(whole, tmp_path):
    run_dir = copied(whole, tmp_path)
    with pytest.raises(ConfigError, match="holds a run of a different configuration"):
        run(run_dir, *PLAIN)
    again = run(run_dir, *PLAIN, replace=True, retrain=True)  # as a pipeline job trains
    assert again["config_sha256"] == whole["plain"]["config_sha256"] != whole["record"]["config_sha256"]
    assert "kept_epochs" not in again and kept(run_dir) == {} and again["epochs"] == whole["record"]["epochs"]
