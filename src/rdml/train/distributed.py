"""One process per student (`distributed=true`): DML §4.5's "distributed" DML, where "each network is trained on
a separate GPU … the predictions and parameters of two networks are updated simultaneously" (Fig. 2b).

Rank k holds student k, its optimiser, schedule and moving average on a device of its own. Every rank reads the
same batch stream (the same seeds) and, at each step, predicts with its student, all-gathers the batch's logits and
computes its student's terms against its peers' logits as constants (`exchange_step`): the terms update_order=
simultaneous computes in one process, where a peer's logits are detached too, so each student's gradient is the same
computation. Every rank builds the whole cohort from the run's init seed, as one process would, and keeps training
its own student only. At each checkpoint (an epoch's end, or every `checkpoint_steps` steps) the ranks send their
students' state to rank 0 (`gather_cohort`), which then holds the cohort one process would hold: it evaluates it,
writes the one checkpoint (with every rank's random state) and the record. A rerun resumes every rank from that
checkpoint, the last one all ranks reached. A killed rank ends the others (torchrun stops its workers when one
fails; srun with --kill-on-bad-exit), so the job fails and its rerun resumes.

Equality with the one-process run: bit for bit on CPU (gloo copies the logits exactly) while the networks draw no
random numbers in training. Rank 0 draws dropout masks from the stream one process's first student draws from;
rank k ≥ 1 from a stream of its own (`rank_seed`), where one process's student k draws after its peers: such runs
are the same in distribution, not bitwise. On CUDA, NCCL moves the logits exactly; equality with one process then
holds as far as the two devices compute alike.

Launching: `rdml train distributed=true …` outside a launcher starts `torchrun --standalone --nproc-per-node K`
on this machine (`run_cohort`); under SLURM, `srun --ntasks K --gpus-per-task 1 --kill-on-bad-exit=1` in a job
allocated K tasks (`srun_command`, what the pipeline's cohort jobs run). torchrun's RANK/WORLD_SIZE/LOCAL_RANK, or
srun's SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID with MASTER_ADDR/MASTER_PORT set by the launching process, say
which rank a process is (`launched`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from rdml.keys import ConfigError

__all__ = ["Ranks", "launched", "join", "leave", "share", "exchange_step", "gather_cohort", "rank_seed", "run_cohort",
           "torchrun_command", "srun_command", "launched_keys", "LAUNCH_ENV", "KEYS_ENV"]

LAUNCH_ENV = "RDML_DISTRIBUTED_LAUNCH"  # set by rdml's launchers: what started the ranks (torchrun, srun)
KEYS_ENV = "RDML_DISTRIBUTED_KEYS"  # the run's keys as JSON, handed by rdml's launchers to every rank
TIMEOUT = timedelta(minutes=30)  # a collective waiting longer than this fails the rank (a peer hung, not died)


@dataclass(frozen=True)
class Ranks:
    """This process's place in a distributed cohort."""

    rank: int
    world: int
    local_rank: int
    launcher: str  # torchrun or srun

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def describe(self, device: torch.device) -> dict:
        """What a run's record says of its ranks: how many, the backend and launcher, and where each ran (a
        collective: every rank calls it)."""
        here = {"host": socket.gethostname(), "device": str(device),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                **({"slurm_procid": int(os.environ["SLURM_PROCID"])} if "SLURM_PROCID" in os.environ else {})}
        placed = [None] * self.world
        dist.all_gather_object(placed, here)
        return {"ranks": self.world, "backend": dist.get_backend(), "launcher": self.launcher, "placement": placed}


def launched() -> Ranks | None:
    """The rank of this process, from torchrun's environment or srun's, or None outside a launch."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return Ranks(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"])),
                     env.get(LAUNCH_ENV, "torchrun"))
    if env.get(LAUNCH_ENV) == "srun" and "SLURM_PROCID" in env:
        return Ranks(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)), "srun")
    return None


def device_of(ranks: Ranks, requested: str) -> str:
    """The device this rank trains on: its own GPU (cuda:LOCAL_RANK, or cuda:0 where the launcher gave each task
    one GPU, as srun --gpus-per-task does), else the CPU."""
    if requested == "cpu" or not torch.cuda.is_available():
        if requested.startswith("cuda"):
            raise ConfigError(f"device={requested}: no CUDA device is visible to rank {ranks.rank}")
        return "cpu"
    visible = torch.cuda.device_count()
    index = ranks.local_rank if visible > 1 else 0
    if index >= visible:
        raise ConfigError(f"distributed=true: rank {ranks.rank} (local rank {ranks.local_rank}) has no GPU of its own "
                          f"among the {visible} visible; give each student a GPU (torchrun --nproc-per-node at most the "
                          "GPUs, srun --gpus-per-task 1)")
    torch.cuda.set_device(index)
    return f"cuda:{index}"


def join(ranks: Ranks, students: int, device: torch.device) -> None:
    """Join the cohort's process group (NCCL on CUDA, gloo on CPU), once the run's config has been checked."""
    if ranks.world != students:
        raise ConfigError(f"distributed=true trains one process per student: this run has {students} students, and "
                          f"{ranks.world} processes were launched; launch {students} (torchrun --nproc-per-node "
                          f"{students}, srun --ntasks {students})")
    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ranks.rank, world_size=ranks.world,
                                timeout=TIMEOUT)


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def share(value, ranks: Ranks | None):
    """Rank 0's `value` on every rank (a picklable object), what the leader decided."""
    if ranks is None:
        return value
    box = [value if ranks.leader else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def rank_seed(seed: int, rank: int) -> int:
    """The torch seed of rank k ≥ 1's own random stream (dropout), once the cohort is built; rank 0 keeps the one
    one process's first student draws from."""
    return (seed * 1_000_003 + 700_000_000 + rank) % (2**63)


def exchange_step(method, x, y, cohort, ranks: Ranks) -> dict[str, dict]:
    """One step of this rank's student: predict, all-gather every student's logits on the batch, take this
    student's terms against its peers' logits (constants), back-propagate and step. The moving average of weights
    (weight_ema) counts every student's step, as one process's does (rdml.train.average: its n counts them all)."""
    k = ranks.rank
    student = cohort[k]
    view = x[k] if isinstance(x, (list, tuple)) else x
    own = student(view)
    peers = [torch.empty_like(own) for _ in range(ranks.world)]
    dist.all_gather(peers, own.detach().contiguous())
    logits = [own if j == k else peers[j] for j in range(ranks.world)]
    terms = method.terms(logits, y)[k]
    student.optimizer.zero_grad(set_to_none=True)
    sum(terms.values()).backward()
    if student.average is not None:
        student.average.steps += k  # the steps of students 0..k-1, taken before this one's in one process
    student.step()
    if student.average is not None:
        student.average.steps += ranks.world - 1 - k
    return {f"student_{k}": {name: value.detach() for name, value in terms.items()}}


def gather_cohort(cohort, ranks: Ranks, sums: dict) -> dict:
    """Every student's state on rank 0, loaded into its copy of the cohort, and every rank's sums of logged terms
    and random state; returns (on rank 0) {"sums": merged in the students' order, "rng": {"rng": [per rank],
    "cuda_rng": [per rank]}} (save_checkpoint's rank_rng), else {}.
    Rank 0's copies of the other students then hold what one process would hold after the same steps."""
    k = ranks.rank
    student = cohort[k]
    mine = {
        "model": _cpu(student.model.state_dict()),
        "optimizer": _cpu(student.optimizer.state_dict()),
        "scheduler": student.scheduler.state_dict(),
        "shadow": _cpu(student.average.shadows[k]) if student.average is not None else None,
        "sums": {name: torch.as_tensor(value).detach().cpu() for name, value in sums.items()},
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
    }
    gathered = [None] * ranks.world if ranks.leader else None
    dist.gather_object(mine, gathered, dst=0)
    if not ranks.leader:
        return {}
    merged: dict = {}
    for j, state in enumerate(gathered):
        if j != k:
            other = cohort[j]
            other.model.load_state_dict(state["model"])
            other.optimizer.load_state_dict(state["optimizer"])
            other.scheduler.load_state_dict(state["scheduler"])
            if other.average is not None:
                for name, value in state["shadow"].items():
                    other.average.shadows[j][name].copy_(value)
        merged.update({name: value for name, value in state["sums"].items() if name.startswith(f"student_{j}/")})
    return {"sums": merged, "rng": {"rng": [state["rng"] for state in gathered],
                                    "cuda_rng": [state["cuda_rng"] for state in gathered]}}


def _cpu(state):
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    if isinstance(state, dict):
        return {key: _cpu(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_cpu(value) for value in state)
    return state


def run_cohort(values: dict, students: int, threads: int | None = None, argv: list[str] | None = None,
               environment_extra: dict | None = None, replace: bool = False, retrain: bool = False) -> int:
    """Train the run of config `values` (its keys, `out` included) as `students` processes and wait for them; the
    exit status, non-zero when any rank failed. Inside a SLURM allocation (SLURM_JOB_ID, and srun at hand): srun, one
    task per student (`srun_command`); elsewhere torchrun on this machine (`torchrun_command`). Each rank reads the
    keys from the environment (KEYS_ENV), exactly as given, with the command (`argv`) and `environment_extra` its
    record names and `train`'s `replace` and `retrain`, and keeps this process's torch threads (torchrun would
    set 1), which change float32 sums."""
    threads = threads if threads is not None else torch.get_num_threads()
    handed = {"keys": values, "argv": list(argv or ["rdml", "train"]), "environment_extra": environment_extra or {},
              "replace": replace, "retrain": retrain}
    env = {**os.environ, KEYS_ENV: json.dumps(handed), "OMP_NUM_THREADS": str(threads)}
    if os.environ.get("SLURM_JOB_ID") and shutil.which("srun"):
        command, env = srun_command(students, threads, env)
    else:
        command, env = torchrun_command(students, env)
    return subprocess.run(command, env=env).returncode


RANK_COMMAND = ["-m", "rdml.cli", "train", "--progress", "off"]  # a rank's keys come from KEYS_ENV


def torchrun_command(students: int, env: dict) -> tuple[list[str], dict]:
    """torchrun on this machine (--standalone: a rendezvous of its own on a free port), one process per student;
    torchrun stops every rank when one fails."""
    return ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node",
             str(students), *RANK_COMMAND], {**env, LAUNCH_ENV: "torchrun"})


def srun_command(students: int, threads: int, env: dict) -> tuple[list[str], dict]:
    """srun inside a SLURM allocation of `students` tasks (one node or several): one task and one GPU per student
    (RDML_SRUN_GPUS=0: none, for an allocation without GPUs), every task ended when one fails; rank 0 listens on
    this host, the allocation's first node, where the batch script runs."""
    gpus = os.environ.get("RDML_SRUN_GPUS", "1") != "0"
    command = ["srun", f"--ntasks={students}", "--kill-on-bad-exit=1", f"--cpus-per-task={threads}",
               *(["--gpus-per-task=1"] if gpus else []), sys.executable, *RANK_COMMAND]
    return command, {**env, LAUNCH_ENV: "srun", "MASTER_ADDR": socket.gethostname(), "MASTER_PORT": str(free_port())}


def launched_keys() -> dict | None:
    """What a launcher handed this rank (KEYS_ENV): the run's `keys`, the `argv` its record names and the
    `environment_extra` it records (the pipeline's GPU slot), and `replace` and `retrain` (rdml.train.loop.train);
    None outside an rdml launch."""
    text = os.environ.get(KEYS_ENV)
    return None if text is None else json.loads(text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]
