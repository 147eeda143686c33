"""GPU slots: 8 concurrent jobs on 4 slots, never two on one slot, every slot used, freed on SIGKILL."""

import os
import signal
import subprocess
import sys
import time

from rdml.study.slots import acquire_gpu

HOLDER = """
import json, os, sys, time
from rdml.study.slots import acquire_gpu
slot = acquire_gpu({n}, {lock_dir!r}, poll_seconds=0.01, timeout=60)
start = time.time()
time.sleep({hold})
print(json.dumps({{"slot": slot.index, "cuda": os.environ["CUDA_VISIBLE_DEVICES"], "start": start, "end": time.time()}}))
"""


def holders(n_jobs, n_slots, lock_dir, hold, env=None):
    env = {k: v for k, v in (env or os.environ).items() if k != "CUDA_VISIBLE_DEVICES"}
    code = HOLDER.format(n=n_slots, lock_dir=str(lock_dir), hold=hold)
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
