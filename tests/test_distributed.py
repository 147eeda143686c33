"""Distributed DML (`distributed=true`, rdml.train.distributed): one process per student, gloo on CPU.

Every distributed run is compared with the one-process run of update_order=simultaneous, which computes the same
terms: the records' epochs (test scores, train terms, learning rates) and model.pt's weights must be equal bit for
bit (the networks here draw no random numbers). Ranks run with one torch thread, as the one-process run does."""

import json
import multiprocessing
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest
import torch

from conftest import cli, wait_for_epochs
from rdml.config import ConfigError, load_config
from rdml.train import distributed
from rdml.train.loop import train

def weights(run_dir: Path) -> list[dict]:
    return torch.load(run_dir / "model.pt", weights_only=True)["states"]


def same_run(got: Path, want: Path) -> dict:
    """Assert two run directories hold the same epochs and weights; the first's record."""
    record = json.loads((got / "record.json").read_text())
    expected = json.loads((want / "record.json").read_text())
    assert record["status"] == expected["status"] == "ok"
    assert record["epochs"] == expected["epochs"]
    assert all(torch.equal(a[k], b[k]) for a, b in zip(weights(got), weights(want), strict=True) for k in a)
    return record


def one_process(out: Path, keys: list[str]) -> None:
    """The reference: the same keys without distributed, in one process of one thread."""
    process = cli(*keys, "distributed=false", f"out={out}", cwd=out.parent)
    assert process.wait() == 0, process.stderr.read().decode()


def launched(out: Path, keys: list[str]) -> subprocess.Popen:
    """`rdml train distributed=true`: rdml launches the ranks with torchrun."""
    return cli(*keys, "distributed=true", f"out={out}", cwd=out.parent)


def _rank(rank: int, world: int, port: int, keys: list[str], die_after: int) -> None:
    """One rank as torchrun would start it; rank 0 dies (os._exit, no clean-up) right after its `die_after`-th
    checkpoint when that is not 0."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from rdml.train import loop

    if die_after and rank == 0:
        real, saved = loop.save_checkpoint, []

        def save_then_die(*args, **kwargs):
            real(*args, **kwargs)
            saved.append(kwargs.get("progress"))
            if len(saved) == die_after:
                os._exit(9)

        loop.save_checkpoint = save_then_die
    loop.train(load_config(None, keys), argv=["test"], progress=False)


def ranks_of(world: int, keys: list[str], die_after: int = 0) -> list[int]:
    context = multiprocessing.get_context("spawn")
    port = distributed.free_port()
    processes = [context.Process(target=_rank, args=(r, world, port, keys, die_after)) for r in range(world)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(120)
    for p in processes:
        if p.is_alive():
            p.kill()
    return [p.exitcode for p in processes]


@pytest.mark.system  # ranks killed and resumed
@pytest.mark.fault
def test_a_cohort_killed_inside_an_epoch_resumes_every_rank_from_the_last_common_checkpoint(tmp_path):
    # 2 epochs of 13 steps (400 rows - 25 % test, batches of 24), a checkpoint every 5 steps: rank 0 dies right
    # after the second, at step 10 of epoch 1; its peer fails in the next exchange; the rerun goes on from step 10
    keys = ["dataset=synthetic", "epochs=2", "batch_size=24", "method=dml", "arch=mlp", "augment=crop_flip",
            "input_noise=0.1", "checkpoint_steps=5"]
    one_process(tmp_path / "one", keys)
    cut = [*keys, "distributed=true", f"out={tmp_path / 'cut'}"]
    codes = ranks_of(2, cut, die_after=2)
    assert codes[0] == 9 and codes[1] != 0, codes
    from rdml.train.checkpoint import read_checkpoint

    saved = read_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert (saved["progress"]["epoch"], saved["progress"]["step"]) == (1, 10) and len(saved["rank_rng"]["rng"]) == 2
    assert not (tmp_path / "cut" / "model.pt").exists()
    assert ranks_of(2, cut) == [0, 0]
    record = same_run(tmp_path / "cut", tmp_path / "one")
    assert len(record["resumed_at"]) == 1


@pytest.mark.fault
def test_one_process_killed_inside_an_epoch_resumes_to_the_same_bits(tmp_path):
    # the in-memory loader's place, the augmentation and noise generators and the partial sums come back
    from conftest import killed_after_checkpoint, run

    keys = ["epochs=2", "batch_size=24", "method=dml", "arch=mlp", "augment=crop_flip", "input_noise=0.1",
            "checkpoint_steps=4"]
    whole = run(tmp_path / "whole", *keys)
    killed_after_checkpoint(2, lambda: run(tmp_path / "cut", *keys))  # the second checkpoint: step 8 of epoch 1
    from rdml.train.checkpoint import read_checkpoint

    progress = read_checkpoint(tmp_path / "cut" / "checkpoint.pt")["progress"]
    assert (progress["epoch"], progress["step"]) == (1, 8) and len(progress["draws"]) == 1
    resumed = run(tmp_path / "cut", *keys)
    assert len(resumed["resumed_at"]) == 1 and resumed["epochs"] == whole["epochs"]
    assert all(torch.equal(a[k], b[k]) for a, b in zip(weights(tmp_path / "cut"), weights(tmp_path / "whole")) for k in a)


def test_checkpoint_steps_and_loader_workers_change_no_run_identity():
    from rdml.config import config_sha256, resolve

    base = resolve(load_config(None, ["dataset=synthetic", "method=dml"]))
    for key in ("checkpoint_steps=7", "loader_workers=3"):
        assert config_sha256(resolve(load_config(None, ["dataset=synthetic", "method=dml", key]))) == config_sha256(base)
    assert config_sha256(resolve(load_config(None, ["dataset=synthetic", "method=dml", "distributed=true"]))) != \
        config_sha256(base)


@pytest.mark.bad_input
@pytest.mark.parametrize("keys, says", [
    (["method=dml", "update_order=sequential"], "update_order=sequential steps the students one after the other"),
    (["method=dml", "batches=own"], "batches=own gives each network a batch of its own"),
    (["method=dml_e", "update_order=sequential"], "update_order=sequential steps"),
    (["method=independent"], "method independent does not train with one process per student"),
    (["method=dml", "fuse_students=true"], "with fuse_students=true: each process holds one student"),
])
def test_a_cohort_one_process_per_student_cannot_train_is_refused_before_any_work(keys, says):
    from rdml.config import resolve

    items = ["dataset=synthetic", *keys, "distributed=true"]
    with pytest.raises(ConfigError, match=f"^distributed=true.*{says}"):
        resolve(load_config(None, items))


@pytest.mark.bad_input
def test_a_distributed_run_outside_a_launch_says_how_to_launch_it(tmp_path, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", distributed.LAUNCH_ENV):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="torchrun --nproc-per-node K"):
        train(load_config(None, ["dataset=synthetic", "method=dml", "distributed=true", f"out={tmp_path / 'r'}"]))
    assert not (tmp_path / "r").exists()


@pytest.mark.bad_input
def test_a_launch_of_another_size_than_the_cohort_is_refused():
    with pytest.raises(ConfigError, match="this run has 2 students, and 3 processes were launched"):
        distributed.join(distributed.Ranks(0, 3, 0, "torchrun"), 2, torch.device("cpu"))


def test_ranks_come_from_torchrun_or_from_srun(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", distributed.LAUNCH_ENV):
        monkeypatch.delenv(name, raising=False)
    assert distributed.launched() is None
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_LOCALID", "0")
    assert distributed.launched() is None  # a SLURM task rdml did not launch as a rank
    monkeypatch.setenv(distributed.LAUNCH_ENV, "srun")
    assert distributed.launched() == distributed.Ranks(1, 2, 0, "srun")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv(distributed.LAUNCH_ENV, "torchrun")
    assert distributed.launched() == distributed.Ranks(0, 3, 0, "torchrun")


def test_srun_runs_one_task_and_one_gpu_per_student_and_ends_all_when_one_fails(monkeypatch):
    monkeypatch.delenv("RDML_SRUN_GPUS", raising=False)
    command, env = distributed.srun_command(3, 2, {"A": "1"})
    assert command[:5] == ["srun", "--ntasks=3", "--kill-on-bad-exit=1", "--cpus-per-task=2", "--gpus-per-task=1"]
    assert command[-5:] == ["-m", "rdml.cli", "train", "--progress", "off"]
    assert env[distributed.LAUNCH_ENV] == "srun" and env["A"] == "1" and int(env["MASTER_PORT"]) > 0


@pytest.mark.system  # torchrun and its ranks, one SIGKILLed and resumed
@pytest.mark.fault
def test_sigkill_of_one_rank_fails_the_launch_and_the_same_command_resumes_to_the_uninterrupted_run(tmp_path):
    # three mixed students. weight_ema counts every student's step (TF's global step), which each rank keeps counting
    # as one process does; onecycle steps each rank's schedule per batch, which rank 0 gathers for lr_last_batch
    keys = ["dataset=synthetic", "epochs=5", "batch_size=32", "method=dml", "arch=mlp,cnn,mlp", "weight_ema=0.9",
            "schedule=onecycle", "augment=crop_flip", "checkpoint_steps=4"]
    one_process(tmp_path / "one", keys)
    process = launched(tmp_path / "run", keys)
    record_path = tmp_path / "run" / "record.json"
    wait_for_epochs(record_path, 2, seconds=120)
    rank_1 = [p for p in psutil.Process(process.pid).children(recursive=True)
              if p.environ().get("RANK") == "1" and "rdml.cli" in " ".join(p.cmdline())]
    assert len(rank_1) == 1
    os.kill(rank_1[0].pid, signal.SIGKILL)
    assert process.wait() != 0
    interrupted = json.loads(record_path.read_text())
    assert interrupted["status"] == "running" and 2 <= len(interrupted["epochs"]) < 5, "the kill came too late"
    again = launched(tmp_path / "run", keys)
    assert again.wait() == 0, again.stderr.read().decode()
    record = same_run(tmp_path / "run", tmp_path / "one")
    assert len(record["resumed_at"]) == 1
    placed = record["environment"]["distributed"].pop("placement")
    assert record["environment"]["distributed"] == {"ranks": 3, "backend": "gloo", "launcher": "torchrun"}
    assert [p["device"] for p in placed] == ["cpu"] * 3 and len({p["host"] for p in placed}) == 1
    assert record["label"] == "DML, distributed"
    assert json.loads(again.stdout.read())["status"] == "ok"  # one summary, the launching command's
