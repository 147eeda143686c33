"""`rdml status` against fabricated run records, and the console a person follows (rdml.pipeline.console).

The records are written here by hand with the fields rdml.train.loop.new_record gives a real one, in
every state a run can be found in while Snakemake trains: finished (ok, diverged), running (its lock held,
or its record just rewritten), interrupted (a record or checkpoint left behind: pending), failed (its job's
log says so), outdated (another configuration) and missing. The estimate and the hours are computed by hand.
"""

import fcntl
import json
import os
import sys
import time
from pathlib import Path

import pytest

from rdml.cli import main
from rdml.keys import ConfigError
from rdml.pipeline import status as status_module
from rdml.pipeline.console import ATTEMPT, DONE, FAILED, job_log, last_attempt_failed
from rdml.pipeline.status import format_status, read_record_retrying, study_status
from rdml.study.plan import plan_jobs

PARAMS = {"build": ["s"], "gpus": 0, "studies": {"s": {
    "datasets": ["synthetic"], "seeds": [0, 1, 2], "seeds_per_job": 3, "metric": "final",
    "train": {"epochs": 4, "batch_size": 64}, "rdml_table": {"archs": ["mlp"], "alphas": [2.0, 3.0]}}}}
HOUR_AGO = time.time() - 3600


def planned_runs() -> dict:
    return {run.id: run for job in plan_jobs(PARAMS, "s") for run in job.runs}


def fabricate(root: Path, run_id: str, status: str, seconds: list[float], device: str = "cpu", *,
              config_sha256: str | None = None, written: float | None = None, code_sha256: str | None = None) -> Path:
    """A record.json as rdml.train.loop writes it (the fields status reads and the rest of new_record's)."""
    run = planned_runs()[run_id]
    epochs = [{"epoch": i + 1, "lr": [0.1], "train": {}, "test": {"student_0": {"acc": 0.5, "loss": 1.0}}}
              for i in range(len(seconds))]
    record = {"format": "rdml.run/2", "status": status, "label": run.method, "method": run.method, "alpha": run.alpha,
              "seed": run.seed, "archs": list(run.archs), "config_sha256": config_sha256 or run.config_sha256,
              "config": run.train_keys(), "code": {"run": {"sha256": code_sha256 or run.code.sha256}}, "environment": {"device": device, "threads": 1}, "command": ["rdml"],
              "started_at": "2026-01-01T00:00:00+00:00", "resumed_at": [], "diverged": None,
              "ended_at": None if status == "running" else "2026-01-01T00:01:00+00:00",
              "final_model": None, "epochs": epochs, "epoch_seconds": seconds,
              "summary": {"student_0": {"final_acc": 0.5}} if epochs else None}
    path = root / run.directory / "record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    if written is not None:
        os.utime(path, (written, written))
    return path


def write_log(root: Path, job: str, *lines: str) -> None:
    path = root / job_log("s", job)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


@pytest.fixture
def study(tmp_path):
    """Four jobs of three seeds (4 epochs each) in every state; yields the root and a held lock."""
    ind, a1, a2, a3 = "synthetic/independent-mlp-s", "synthetic/dml-mlp+mlp-a1-s", "synthetic/dml-mlp+mlp-a2-s", "synthetic/dml-mlp+mlp-a3-s"
    fabricate(tmp_path, ind + "0", "ok", [1, 2, 3, 4])
    running = fabricate(tmp_path, ind + "1", "running", [3], written=HOUR_AGO)  # old, but its lock is held
    fabricate(tmp_path, ind + "2", "ok", [2, 2, 2, 2], config_sha256="0" * 64)  # another configuration's run
    fabricate(tmp_path, a1 + "0", "diverged", [5, 5], device="cuda:0")  # stopped after 2 of 4 epochs
    checkpoint = tmp_path / planned_runs()[a1 + "1"].directory / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"killed before its first record")
    fabricate(tmp_path, a1 + "2", "running", [6], written=HOUR_AGO)  # killed: no lock, an old record
    write_log(tmp_path, "synthetic/dml-mlp+mlp-a1-s0+1+2", f"{ATTEMPT} t: job", "epoch 1/4", f"{FAILED} t: X", f"{ATTEMPT} t: job")
    fabricate(tmp_path, a2 + "0", "running", [7], written=HOUR_AGO)  # a2 s1, s2: nothing on disk
    fabricate(tmp_path, a3 + "0", "running", [8], written=HOUR_AGO)
    write_log(tmp_path, "synthetic/dml-mlp+mlp-a3-s0+1+2", f"{ATTEMPT} t: job", "Traceback ...", f"{FAILED} t: RuntimeError: x")
    with open(running.parent / ".rdml.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # what rdml.train.loop holds while it trains
        yield tmp_path


def test_each_state_is_read_from_the_files_of_its_run(study):
    states = {r.run: (r.state, r.epoch, r.epochs) for r in study_status(PARAMS, "s", study).runs}
    assert states == {
        "synthetic/independent-mlp-s0": ("ok", 4, 4),
        "synthetic/independent-mlp-s1": ("running", 1, 4),
        "synthetic/independent-mlp-s2": ("pending", 0, 4),  # its record is of another configuration
        "synthetic/dml-mlp+mlp-a1-s0": ("diverged", 2, 4),
        "synthetic/dml-mlp+mlp-a1-s1": ("pending", 0, 4),  # a checkpoint without a record resumes
        "synthetic/dml-mlp+mlp-a1-s2": ("pending", 1, 4),  # its log's last attempt did not fail: killed
        "synthetic/dml-mlp+mlp-a2-s0": ("pending", 1, 4),
        "synthetic/dml-mlp+mlp-a2-s1": ("pending", 0, 4),
        "synthetic/dml-mlp+mlp-a2-s2": ("pending", 0, 4),
        "synthetic/dml-mlp+mlp-a3-s0": ("failed", 1, 4),
        "synthetic/dml-mlp+mlp-a3-s1": ("failed", 0, 4),
        "synthetic/dml-mlp+mlp-a3-s2": ("failed", 0, 4),
    }


def test_a_finished_run_whose_code_changed_since_is_pending_as_snakemake_and_dvc_see_it(tmp_path):
    """An edit of the code a run executes reruns it (its Snakemake parameter and DVC stamp change): status
    counts it pending with no epoch done, not ok."""
    fabricate(tmp_path, "synthetic/independent-mlp-s0", "ok", [1, 2, 3, 4])
    fabricate(tmp_path, "synthetic/independent-mlp-s1", "ok", [1, 2, 3, 4], code_sha256="1" * 64)
    states = {r.run: (r.state, r.epoch) for r in study_status(PARAMS, "s", tmp_path).runs}
    assert states["synthetic/independent-mlp-s0"] == ("ok", 4)
    assert states["synthetic/independent-mlp-s1"] == ("pending", 0)


def test_the_estimate_and_the_hours_by_hand(study):
    status = study_status(PARAMS, "s", study)
    # seconds per epoch of finished runs: independent (1+2+3+4)/4 = 2.5; a1 (5+5)/2 = 5; all (10+10)/(4+2) = 10/3
    independent = (4 - 1) * 2.5 + 4 * 2.5  # s1 running at epoch 1; s2 pending from scratch
    a1 = 4 * 5 + (4 - 1) * 5  # s1 from its checkpoint (no epoch recorded), s2 from epoch 1
    a2 = ((4 - 1) + 4 + 4) * (20 / 6)  # no a2 run finished: the mean of all finished runs
    assert status.estimate_seconds() == pytest.approx(independent + a1 + a2)  # the failed a3 runs: not counted
    hours = status.compute_hours()
    assert hours["GPU"] == pytest.approx(10 / 3600)  # the CUDA record
    assert hours["CPU"] == pytest.approx((10 + 3 + 8 + 6 + 7 + 8) / 3600)  # every CPU record, outdated included
    text = format_status(status)
    assert text.splitlines()[0] == (f"s: 2 of 12 runs done, 1 diverged, 1 running, 6 pending, 3 failed, about "
                                    f"{status_module.format_seconds(independent + a1 + a2)} of training left (estimate)")
    assert "running  synthetic/independent-mlp-s1: epoch 1 of 4" in text
    assert f"failed   synthetic/dml-mlp+mlp-a3-s0 (log: {job_log('s', 'synthetic/dml-mlp+mlp-a3-s0+1+2')})" in text
    assert "0.00278 GPU-hours, 0.0117 CPU-hours" in text


def test_no_estimate_before_a_run_has_finished(tmp_path):
    fabricate(tmp_path, "synthetic/independent-mlp-s0", "running", [3], written=HOUR_AGO)
    status = study_status(PARAMS, "s", tmp_path)
    assert status.estimate_seconds() is None and "time left unknown (no run has finished yet)" in format_status(status)


def test_a_record_rewritten_just_now_is_running_where_no_lock_is_seen(tmp_path):
    """On a cluster file system flock may not reach across hosts: a record younger than two of its epochs
    (at least a minute) is a run still training; an hour-old one is not."""
    path = fabricate(tmp_path, "synthetic/independent-mlp-s0", "running", [3, 4])
    state = lambda: {r.run: r.state for r in study_status(PARAMS, "s", tmp_path).runs}["synthetic/independent-mlp-s0"]
    assert state() == "running"
    os.utime(path, (HOUR_AGO, HOUR_AGO))
    assert state() == "pending"


def test_a_record_read_while_it_is_replaced_is_read_again(tmp_path, monkeypatch):
    path = tmp_path / "record.json"
    path.write_text('{"status": "runn')  # what a non-atomic writer could leave for an instant
    monkeypatch.setattr(status_module.time, "sleep", lambda s: path.write_text('{"status": "ok"}'))
    assert read_record_retrying(path) == {"status": "ok"}
    monkeypatch.setattr(status_module.time, "sleep", lambda s: None)
    path.write_text("{")
    assert read_record_retrying(path)["status"] == "running"  # never readable: counted as running
    assert read_record_retrying(tmp_path / "none.json") is None


def test_the_last_attempt_in_a_log_decides_failed(tmp_path):
    log = tmp_path / "job.log"
    assert not last_attempt_failed(log)  # no log: never started
    log.write_text(f"{ATTEMPT} a\n{FAILED} b\n")
    assert last_attempt_failed(log)
    log.write_text(f"{ATTEMPT} a\n{FAILED} b\n{ATTEMPT} c\nepoch 1/4\n")  # retried, then killed
    assert not last_attempt_failed(log)
    log.write_text(f"{ATTEMPT} a\n{FAILED} b\n{ATTEMPT} c\n{DONE} d\n")
    assert not last_attempt_failed(log)


def test_rdml_status_prints_json_for_scripts(study, capsys):
    import yaml

    (study / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    assert main(["status", "s", "--root", str(study), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"] == {"ok": 1, "diverged": 1, "running": 1, "pending": 6, "failed": 3}
    assert out["running_jobs"] == 1 and out["estimate_seconds_left"] == pytest.approx(7.5 + 10 + 35 + 11 * 20 / 6)
    assert main(["status", "s", "--root", str(study)]) == 0
    assert capsys.readouterr().out.startswith("s: 2 of 12 runs done")


@pytest.mark.bad_input
def test_a_study_not_in_params_is_named_with_the_studies_allowed(tmp_path, capsys):
    with pytest.raises(ConfigError, match="study 'nosuch' is not in params.yaml; allowed: s$"):
        study_status(PARAMS, "nosuch", tmp_path)
    import yaml

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    assert main(["status", "nosuch", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "study 'nosuch' is not in params.yaml; allowed: s, s_smoke" in err and "Traceback" not in err
    assert not (tmp_path / "results").exists()  # read-only


# ---- the console and a job's log (rdml.pipeline.console) ---------------------------------------------------

ONE_RUN = {"build": ["s"], "gpus": 0, "studies": {"s": {
    "datasets": ["synthetic"], "seeds": [0], "metric": "final", "train": {"epochs": 2, "batch_size": 64},
    "rdml_table": {"archs": ["mlp"], "alphas": []}}}}  # two runs: independent-mlp-s0 and dml-mlp+mlp-a1-s0
JOB = "synthetic/independent-mlp-s0"


@pytest.fixture
def one_run_project(tmp_path, monkeypatch):
    import yaml

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(ONE_RUN))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RDML_LOCK_DIR", str(tmp_path / "locks"))
    return tmp_path


def test_a_jobs_epoch_lines_go_to_its_log_and_the_console_gets_one_line_per_run(one_run_project, capfd):
    from rdml.pipeline.specs import spec_file, write_spec_files

    assert write_spec_files(plan_jobs(ONE_RUN, "s")) == 2 and write_spec_files(plan_jobs(ONE_RUN, "s")) == 0  # unchanged: not rewritten
    assert main(["pipeline", "run", "s", JOB, "--spec-file", spec_file("s", JOB), "--threads", "1"]) == 0
    out, err = capfd.readouterr()
    assert "epoch" not in out + err
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"rdml: s {JOB}: ok, final test acc 0.") and lines[0].endswith(" s")
    assert lines[1].startswith("rdml: s: 1 of 2 runs done, 1 pending, about ") and lines[1].endswith("left (estimate)")
    log = (one_run_project / job_log("s", JOB)).read_text()
    assert log.startswith(ATTEMPT) and "epoch 1/2 " in log and "epoch 2/2 " in log and lines[0] in log
    assert log.splitlines()[-1].startswith(DONE)

    assert main(["-q", "pipeline", "run", "s", JOB, "--threads", "1"]) == 0  # already trained: checked, kept
    assert capfd.readouterr().err == ""  # -q: no INFO
    assert main(["-v", "pipeline", "run", "s", JOB, "--threads", "1", "--log", "other.log"]) == 0
    err = capfd.readouterr().err
    assert f"rdml: s {JOB}: ok, final test acc 0." in err and "already trained" in err
    assert (one_run_project / "other.log").read_text().count(ATTEMPT) == 1


@pytest.mark.fault
def test_a_failed_job_names_its_log_which_holds_the_traceback(one_run_project, capfd, monkeypatch):
    from rdml.pipeline import jobs

    def fails(*args, **kwargs):
        print("epoch 1/2 lr=0.05 test acc: student_0=0.1000", file=sys.stderr)
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr(jobs, "train", fails)
    assert main(["pipeline", "run", "s", JOB, "--threads", "1"]) == 1
    err = capfd.readouterr().err
    assert f"rdml: error: job {JOB} of s failed (RuntimeError: CUDA error: out of memory); its output and traceback: " \
           f"{job_log('s', JOB)}" in err and "Traceback" not in err and "epoch" not in err
    log = (one_run_project / job_log("s", JOB)).read_text()
    assert "epoch 1/2" in log and "Traceback" in log and log.splitlines()[-1].startswith(f"{FAILED} ")
    states = {r.run: r.state for r in study_status(ONE_RUN, "s", one_run_project).runs}
    assert states == {JOB: "failed", "synthetic/dml-mlp+mlp-a1-s0": "pending"}


@pytest.mark.bad_input
def test_a_spec_file_of_another_job_is_refused_before_any_work(one_run_project, capfd):
    from rdml.pipeline.specs import spec_file, write_spec_files

    write_spec_files(plan_jobs(ONE_RUN, "s"))
    other = spec_file("s", "synthetic/dml-mlp+mlp-a1-s0")
    assert main(["pipeline", "run", "s", JOB, "--spec-file", other]) == 2
    assert f"--spec-file {other} describes job 'synthetic/dml-mlp+mlp-a1-s0' of 's', not '{JOB}' of 's'" in capfd.readouterr().err
    assert not (one_run_project / "results/s/runs").exists() and not (one_run_project / "results/s/logs").exists()
