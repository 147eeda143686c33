"""GPU slots: 8 concurrent jobs on 4 slots, never two on one slot, every slot used, freed on SIGKILL."""

import os
import signal
import subprocess
import sys
import time

import pytest

from rdml.pipeline.slots import acquire_gpu

HOLDER = """
import json, os, sys, time
from rdml.pipeline.slots import acquire_gpu
slot = acquire_gpu({n}, {lock_dir!r}, poll_seconds=0.01, timeout=60, per_gpu={per_gpu})
start = time.time()
open(os.path.join({lock_dir!r}, f"held-{{os.getpid()}}"), "w").close()  # this holder has its slot
time.sleep({hold})
print(json.dumps({{"slot": slot.index, "cuda": os.environ["CUDA_VISIBLE_DEVICES"], "start": start, "end": time.time()}}))
"""


def holders(n_jobs, n_slots, lock_dir, hold, env=None, per_gpu=1):
    env = {k: v for k, v in (env or os.environ).items() if k != "CUDA_VISIBLE_DEVICES"}
    code = HOLDER.format(n=n_slots, lock_dir=str(lock_dir), hold=hold, per_gpu=per_gpu)
    return [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env) for _ in range(n_jobs)]


def test_eight_jobs_on_four_slots(tmp_path):
    import json

    jobs = holders(8, 4, tmp_path, hold=0.6)
    results = [json.loads(p.communicate(timeout=120)[0]) for p in jobs]
    assert sorted({r["slot"] for r in results}) == [0, 1, 2, 3]
    assert all(r["cuda"] == str(r["slot"]) for r in results)
    for slot in range(4):
        spans = sorted((r["start"], r["end"]) for r in results if r["slot"] == slot)
        assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans
    # At most four at once, at any moment.
    moments = sorted(t for r in results for t in (r["start"], r["end"]))
    assert max(sum(r["start"] <= t < r["end"] for r in results) for t in moments) <= 4


@pytest.mark.system  # a slot holder's process SIGKILLed
@pytest.mark.fault
def test_sigkill_frees_the_slot(tmp_path):
    (victim,) = holders(1, 1, tmp_path, hold=60)
    deadline = time.time() + 60
    while not (tmp_path / "gpu-0.lock").exists() or not (tmp_path / "gpu-0.lock").read_text().strip():
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    slot = acquire_gpu(1, tmp_path, poll_seconds=0.01, timeout=10)
    assert slot.index == 0
    slot.release()


def test_inherited_devices_and_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # as SLURM sets it
    assert acquire_gpu(4, tmp_path).index is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    slot = acquire_gpu(0, tmp_path)
    assert slot.index is None and "CPU" in slot.source and "CUDA_VISIBLE_DEVICES" not in os.environ


def test_two_jobs_per_gpu_pack_six_jobs_on_two_fake_gpus_four_at_a_time(tmp_path):
    """jobs_per_gpu=2 on 2 GPUs: 4 slots; each GPU runs at most two jobs at once, and the first two jobs
    to start land on different GPUs."""
    import json

    first = holders(2, 2, tmp_path, hold=0.8, per_gpu=2)
    deadline = time.monotonic() + 60  # the first two hold their slots before the other four start, so that
    while len(list(tmp_path.glob("held-*"))) < 2 and time.monotonic() < deadline:  # "first" is not a race
        time.sleep(0.01)
    jobs = first + holders(4, 2, tmp_path, hold=0.8, per_gpu=2)
    results = [json.loads(p.communicate(timeout=120)[0]) for p in jobs]
    assert {r["cuda"] for r in results} == {"0", "1"} and all(r["cuda"] == str(r["slot"]) for r in results)
    moments = sorted(t for r in results for t in (r["start"], r["end"]))
    for gpu in ("0", "1"):
        on_gpu = [r for r in results if r["cuda"] == gpu]
        assert max(sum(r["start"] <= t < r["end"] for r in on_gpu) for t in moments) <= 2
    assert max(sum(r["start"] <= t < r["end"] for r in results) for t in moments) <= 4
    assert {r["cuda"] for r in results[:2]} == {"0", "1"}  # the first two to start
    assert {p.name for p in tmp_path.glob("*.lock")} == {"gpu-0.lock", "gpu-1.lock", "gpu-0-1.lock", "gpu-1-1.lock"}


@pytest.mark.bad_input
def test_jobs_per_gpu_is_checked():
    import pytest

    from rdml.keys import ConfigError
    from rdml.study.params import jobs_per_gpu

    assert jobs_per_gpu(3) == 3 and jobs_per_gpu("2") == 2 and jobs_per_gpu("auto") == "auto"
    for bad in (0, -1, 1.5, "x", True, "Auto", " auto"):
        with pytest.raises(ConfigError, match="jobs_per_gpu=.* is not allowed; allowed: auto or an integer >= 1"):
            jobs_per_gpu(bad)


def test_a_distributed_cohort_holds_whole_gpus_and_waits_for_enough_of_them(tmp_path, monkeypatch):
    from rdml.pipeline.slots import acquire_gpus

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    single = acquire_gpu(3, lock_dir=tmp_path, per_gpu=2)  # a packed job on GPU 0
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    cohort = acquire_gpus(2, 3, lock_dir=tmp_path, per_gpu=2)  # GPU 0 is not whole: GPUs 1 and 2
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1,2" and cohort.index == 1
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(TimeoutError, match="no 2 free GPU slots among 3"):
        acquire_gpus(2, 3, lock_dir=tmp_path, per_gpu=2, timeout=0.2, poll_seconds=0.05)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    companion = acquire_gpu(3, lock_dir=tmp_path, per_gpu=2)  # GPU 0's second slot: the cohort holds GPU 1's and 2's
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(TimeoutError):
        acquire_gpu(3, lock_dir=tmp_path, per_gpu=2, timeout=0.2, poll_seconds=0.05)
    companion.release()
    cohort.release()
    single.release()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(RuntimeError, match="a distributed cohort of 4 students takes 4 GPUs, one per student; this machine has 3"):
        acquire_gpus(4, 3, lock_dir=tmp_path)
    assert acquire_gpus(2, 0, lock_dir=tmp_path).source == "no GPU: CPU"
