"""One GPU per training job: an exclusive slot among N, held by an OS file lock.

Snakemake counts GPUs (`resources: gpu=1`) but never says which one a job got. Each job therefore
takes the first free slot i among N by an exclusive, non-blocking `flock` on `<lock_dir>/gpu-<i>.lock`
and sets CUDA_VISIBLE_DEVICES=i before CUDA starts. The kernel drops a flock when its process dies,
even on SIGKILL, so a crashed job can never keep a GPU. Under SLURM (or whenever
CUDA_VISIBLE_DEVICES is already set) the job keeps what it was given; with no GPU it runs on CPU.

Packing (`jobs_per_gpu: N` in params.yaml): the papers' small CIFAR networks leave a modern GPU mostly
idle, so N jobs may share one. There are then GPUs × N slots; slot i pins its job to GPU i mod N_gpus
(the first jobs spread over the GPUs) under the lock `gpu-<g>.lock` for the first job of GPU g and
`gpu-<g>-<k>.lock` for its k-th companion, and the job caps its share of that GPU's memory at 1/N.
`jobs_per_gpu: auto` reaches here as the number `make gpu-check` measured for this GPU
(rdml.pipeline.requests.resolve_jobs_per_gpu).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rdml.gpus import count_gpus


__all__ = ["Slot", "acquire_gpu", "acquire_gpus", "count_gpus", "die_with_parent", "DEFAULT_LOCK_DIR"]

DEFAULT_LOCK_DIR = Path(os.environ.get("RDML_LOCK_DIR", "/tmp/rdml-gpu-locks"))


@dataclass
class Slot:
    """The GPU a job uses (None: CPU or inherited), and why; keeps the lock open while alive."""

    index: int | None
    source: str
    _handle: object = None
    sharing: int = 1  # jobs that share this slot's GPU

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def die_with_parent() -> None:
    """Linux: end this job when the process that started it (Snakemake, which execs the job) dies, even
    by SIGKILL, instead of training on as an orphan; if it already died while this one started, end now."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def acquire_gpus(count: int, n_slots: int | None = None, lock_dir: str | Path = DEFAULT_LOCK_DIR,
                 poll_seconds: float = 0.5, timeout: float | None = None, per_gpu: int = 1) -> Slot:
    """`count` whole GPUs for a distributed cohort (one per student, rdml.train.distributed), every one of their
    slots held (`gpu-<i>.lock` and its companions' under packing), waiting while fewer are free; CUDA_VISIBLE_DEVICES
    lists them in order, and rank k takes the k-th. Inherited CUDA_VISIBLE_DEVICES (SLURM) and CPU as `acquire_gpu`."""
    if count == 1:
        return acquire_gpu(n_slots, lock_dir, poll_seconds, timeout, per_gpu)
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return Slot(None, "inherited CUDA_VISIBLE_DEVICES=" + os.environ["CUDA_VISIBLE_DEVICES"])
    n = count_gpus() if n_slots is None else n_slots
    if n <= 0:
        return Slot(None, "no GPU: CPU")
    if n < count:
        raise RuntimeError(f"a distributed cohort of {count} students takes {count} GPUs, one per student; this machine "
                           f"has {n}")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        held: dict[int, list] = {}
        for index in range(n):
            locks = []
            for share in range(per_gpu):  # the whole GPU: its first slot and every companion's under packing
                if (handle := _locked(lock_dir, index, share)) is None:
                    break
                locks.append(handle)
            if len(locks) < per_gpu:
                for handle in locks:
                    handle.close()
                continue
            held[index] = locks
            if len(held) == count:
                break
        handles = [handle for locks in held.values() for handle in locks]
        if len(held) == count:
            for handle in handles:
                _sign(handle)
            indices = list(held)
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, indices))
            return Slot(indices[0], f"GPUs {','.join(map(str, indices))} of {n}, whole ({lock_dir})", _Handles(handles))
        for handle in handles:
            handle.close()
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"no {count} free GPU slots among {n} in {lock_dir} after {timeout} s")
        time.sleep(poll_seconds)


def _locked(lock_dir: Path, index: int, share: int):
    """Slot `share` of GPU `index` held by this process (an exclusive flock, not waited for), or None where another holds it."""
    handle = open(lock_dir / (f"gpu-{index}.lock" if share == 0 else f"gpu-{index}-{share}.lock"), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _sign(handle) -> None:
    """The holder's pid in its lock file, for whoever looks at a held slot."""
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()


class _Handles:
    """Several held locks, closed together (a cohort's GPUs)."""

    def __init__(self, handles):
        self.handles = handles

    def close(self) -> None:
        for handle in self.handles:
            handle.close()


def acquire_gpu(n_slots: int | None = None, lock_dir: str | Path = DEFAULT_LOCK_DIR, poll_seconds: float = 0.5,
                timeout: float | None = None, per_gpu: int = 1) -> Slot:
    """Take a free slot among GPUs × `per_gpu` and pin this process to its GPU, waiting while all are held."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return Slot(None, "inherited CUDA_VISIBLE_DEVICES=" + os.environ["CUDA_VISIBLE_DEVICES"])
    n = count_gpus() if n_slots is None else n_slots
    if n <= 0:
        return Slot(None, "no GPU: CPU")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        for slot in range(n * per_gpu):
            index, share = slot % n, slot // n
            if (handle := _locked(lock_dir, index, share)) is None:
                continue
            _sign(handle)
            os.environ["CUDA_VISIBLE_DEVICES"] = str(index)
            shared = f", share {share + 1} of {per_gpu}" if per_gpu > 1 else ""
            return Slot(index, f"slot {index} of {n}{shared} ({lock_dir})", handle, per_gpu)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"no free GPU slot among {n * per_gpu} in {lock_dir} after {timeout} s")
        time.sleep(poll_seconds)
