"""The training loop: prepare (validate everything), train with per-epoch checkpoints, record.

Run directory:
  record.json     provenance, per-epoch metrics, summary and status (rewritten atomically each epoch)
  checkpoint.pt   resume state, rewritten atomically each epoch, removed once the run has finished
  model.pt        final weights of every student (a KD teacher is read from here)
  epochs/         with keep_every: epoch_<k>.pt, model.pt's content after epoch k, each named with its sha256 in
                  the record's kept_epochs once the file is whole (rdml.train.checkpoint)
"""

from __future__ import annotations

import copy
import dataclasses
import fcntl
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import torch
from tqdm.auto import tqdm

from rdml.code import PACKAGE
from rdml.config import ConfigError, TrainConfig, config_values, resolve
from rdml.data.augment import augment_batch
from rdml.data.base import Dataset, own_stream_seed
from rdml.dependencies import training_code
from rdml.io import utc_now
from rdml.methods import METHODS
from rdml.metrics import primary_of
from rdml.train import distributed
from rdml.train.autotune import resolve_auto
from rdml.train.checkpoint import (KEPT_DIR, is_kept_epoch_file, kept_epoch_file, kept_epoch_problems, planned_kept_epochs,
                                   read_checkpoint, restore_checkpoint, save_checkpoint, save_model)
from rdml.train.cohort import Cohort, build_cohort
from rdml.train.evaluate import divergence_after, multiquery_at, evaluate, evaluation_noise, input_noise
from rdml.train.integrity import FINISHED, read_record, run_problems, summarise, write_record
from rdml.train.prepare import Prepared, prepare
from rdml.train.record import code_provenance, environment

__all__ = ["train", "train_distributed", "RECORD_FORMAT"]

RECORD_FORMAT = "rdml.run/2"  # /2: sealed by record_sha256 (/1 records have no seal)
RUN_FILES = ("record.json", "checkpoint.pt", "model.pt")
LOCK = ".rdml.lock"


def train(cfg: TrainConfig, argv: list[str] | None = None, *, progress: bool | None = None, replace: bool = False,
          retrain: bool = False, environment_extra: dict | None = None) -> dict:
    """Run (or resume, or return the finished record of) the configured training; returns the record.

    Everything is validated before the run directory is touched. The directory is rdml's: one holding
    files rdml did not write is refused, and one command at a time works in it (a lock the kernel
    drops when its holder dies). A finished run is returned only if its files still match its record.
    `replace`: a run of another configuration, or damaged files, are replaced instead of refused.
    `retrain`: a finished run is trained again (the pipeline reruns a job because something changed),
    unless its record says it is what training anew would give (`same_run`). A run being replaced keeps
    its files until everything that can refuse the new one (device, data, teacher, cohort) has passed.
    """
    ranks = ranks_of(cfg)
    prep = prepare(cfg)
    cfg = prep.cfg
    run_dir = Path(cfg.out)
    try:
        if ranks is not None:
            distributed.join(ranks, cfg.students, prep.device)
            if not ranks.leader:  # rank 0 alone reads, writes and locks the run directory, and shares what it decided
                return _train_locked(prep, run_dir, argv, progress, replace, retrain, environment_extra, ranks)
        check_run_directory(run_dir)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            lock = open(run_dir / LOCK, "a")
        except OSError as exc:
            raise ConfigError(f"out={run_dir}: cannot write there ({exc.strerror})") from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent commands into one out= take turns
            for stale in [*run_dir.glob(".*.tmp"), *(run_dir / KEPT_DIR).glob(".*.tmp")]:  # left by a kill inside an atomic write
                stale.unlink(missing_ok=True)
            return _train_locked(prep, run_dir, argv, progress, replace, retrain, environment_extra, ranks)
    finally:
        if ranks is not None:
            distributed.leave()


def train_distributed(cfg: TrainConfig, argv: list[str] | None = None, threads: int | None = None, *,
                      replace: bool = False, retrain: bool = False, environment_extra: dict | None = None) -> dict:
    """Train a distributed=true run from this process: check it, launch one process per student
    (rdml.train.distributed.run_cohort: torchrun here, srun inside a SLURM allocation), wait, and return the record
    rank 0 wrote. A failed rank fails the launch (the others are stopped); the same call resumes from the last
    checkpoint every rank reached. `replace`, `retrain`: as `train`'s, for every rank."""
    cfg = resolve(cfg)
    status = distributed.run_cohort(config_values(cfg), cfg.students, threads, argv, environment_extra, replace, retrain)
    if status != 0:
        raise RuntimeError(f"distributed run {cfg.out}: a rank failed (exit status {status}); the same command resumes "
                           "it from its last checkpoint")
    return read_record(Path(cfg.out) / "record.json")


def ranks_of(cfg: TrainConfig) -> distributed.Ranks | None:
    """This process's rank in a distributed run (distributed=true), its device set; None for one process. A
    distributed run started without a launcher is refused here: `rdml train` and the pipeline launch it."""
    wanted = resolve(cfg).distributed
    ranks = distributed.launched() if wanted else None
    if wanted and ranks is None:
        raise ConfigError("distributed=true runs one process per student: start it with `rdml train` (which launches "
                          "them with torchrun), `torchrun --nproc-per-node K -m rdml.cli train ...`, or srun with one task "
                          "per student and RDML_DISTRIBUTED_LAUNCH=srun")
    if ranks is not None and cfg.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device={cfg.device} with distributed=true: each rank takes a device of its own; "
                          "set device=auto, cuda or cpu")
    if ranks is not None:
        distributed.device_of(ranks, cfg.device)
    return ranks


def check_run_directory(run_dir: Path) -> None:
    """Refuse an out= that is a file, or a directory holding anything rdml did not write."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"out={run_dir} is a file, not a run directory")
    if not run_dir.is_dir():
        return
    foreign = sorted(p.name for p in run_dir.iterdir()
                     if p.name not in (*RUN_FILES, LOCK, KEPT_DIR) and not p.name.endswith(".tmp"))
    kept = run_dir / KEPT_DIR
    if kept.exists():
        foreign += [KEPT_DIR] if not kept.is_dir() else sorted(
            f"{KEPT_DIR}/{p.name}" for p in kept.iterdir() if not is_kept_epoch_file(p.name) and not p.name.endswith(".tmp"))
    if foreign or ((run_dir / "model.pt").exists() and not (run_dir / "record.json").exists()):
        what = ", ".join(foreign) or "model.pt without a record.json"
        raise ConfigError(f"out={run_dir} holds files rdml did not write ({what}); choose another out= or empty it")


def kept_files(run_dir: Path) -> list[Path]:
    """The kept epochs' files in `run_dir` (epochs/epoch_<k>.pt), whatever the record names."""
    kept = run_dir / KEPT_DIR
    return sorted(p for p in kept.iterdir() if is_kept_epoch_file(p.name)) if kept.is_dir() else []


def _train_locked(prep: Prepared, run_dir: Path, argv, progress, replace: bool, retrain: bool, environment_extra,
                  ranks: distributed.Ranks | None = None) -> dict:
    numerics = prep.execution.apply()  # torch's global switches, for this run, before any of its work
    leader = ranks is None or ranks.leader
    plan = _plan(prep, run_dir, argv, replace, retrain, environment_extra, numerics) if leader else None
    plan = distributed.share(plan, ranks)
    if plan["finished"] is not None:
        return plan["finished"]
    prep = dataclasses.replace(prep, execution=dataclasses.replace(prep.execution, **plan["execution"]))
    cfg, data = prep.cfg, prep.data
    record_path, checkpoint_path, model_path = (run_dir / name for name in RUN_FILES)
    record, saved, resume = plan["record"], plan["saved"], plan["resume"]
    steps_per_epoch = data.steps_per_epoch(cfg.batch_size)
    teacher = prep.execution.runner(prep.teacher.requires_grad_(False)) if prep.teacher is not None else None
    method = METHODS[cfg.method](cfg, teacher)
    cohort = build_cohort(cfg, data, prep.execution, steps_per_epoch, prep.outputs, prep.pretrained, method)
    if ranks is not None:
        record["environment"]["distributed"] = ranks.describe(prep.device)  # every rank takes part
        if not ranks.leader:
            torch.manual_seed(distributed.rank_seed(cfg.seed, ranks.rank))  # dropout: a stream of its own (module doc)
    if leader and plan["fresh"]:  # only now, once all that can refuse the new run has passed
        for stale in (model_path, checkpoint_path, *kept_files(run_dir), record_path):  # the record last: it vouches for the rest
            stale.unlink(missing_ok=True)
    if saved is not None:
        restore_checkpoint(saved, prep.device, cohort, method, record, rank=None if ranks is None else ranks.rank)
        if record["epochs"]:  # killed after an epoch's checkpoint, perhaps before its record
            record["summary"] = summarise(record["epochs"], cfg.summary_last)
    within = saved.get("progress") if saved is not None else None  # killed inside an epoch (checkpoint_steps)

    def checkpoint(progress_state=None, rank_rng=None):
        save_checkpoint(checkpoint_path, resume, prep.device, cohort, method, record, progress=progress_state,
                        rank_rng=rank_rng)

    kept = set(planned_kept_epochs(config_values(cfg), cfg.epochs))
    show = (sys.stderr.isatty() if progress is None else progress) and leader
    bar = tqdm(total=cfg.epochs, initial=len(record["epochs"]), desc=record["label"], unit="epoch", disable=not show)
    for epoch in range(len(record["epochs"]) + 1, cfg.epochs + 1):
        if record["diverged"] and record["diverged"]["stopped"]:
            break
        started = time.perf_counter()
        entry, rank_rng = train_epoch(method, cohort, data, cfg, epoch, show, within=within, checkpoint=checkpoint,
                                      ranks=ranks)
        seconds = time.perf_counter() - started + (within or {}).get("seconds", 0.0)
        within = None
        if leader:
            record["epochs"].append(entry)
            record["epoch_seconds"].append(seconds)
            record["diverged"] = divergence_after(record["diverged"], record["epochs"], data.chance_accuracy,
                                                  cfg.crash_margin, method.members(cfg))
            record["summary"] = summarise(record["epochs"], cfg.summary_last)
            if epoch in kept:  # after the epoch's evaluation and the method's end of epoch (OKDPH's fusion), as the
                # official code saves (src/OKDPH.py L138-152); named once whole, vouched for by the checkpoint, then the record
                with cohort.evaluated():
                    record["kept_epochs"][str(epoch)] = save_model(run_dir / kept_epoch_file(epoch), data, cfg.arch, cohort,
                                                                   prep.outputs)
            checkpoint(rank_rng=rank_rng)
            write_record(record_path, record)
            bar.update(1)
            (bar.write if show else partial(print, file=sys.stderr))(_epoch_line(entry, cfg.epochs))
        record["diverged"] = distributed.share(record["diverged"], ranks)
    bar.close()
    if not leader:
        return distributed.share(None, ranks)

    for unnamed in set(kept_files(run_dir)) - {run_dir / kept_epoch_file(k) for k in record.get("kept_epochs") or {}}:
        unnamed.unlink()  # what a kill between a kept epoch's file and its checkpoint left, if not written again
    with cohort.evaluated():
        record["final_model"] = {"path": "model.pt", "sha256": save_model(model_path, data, cfg.arch, cohort, prep.outputs)}
    record["status"] = "diverged" if record["diverged"] else "ok"
    record["ended_at"] = utc_now()
    write_record(record_path, record)
    checkpoint_path.unlink(missing_ok=True)
    return distributed.share(record, ranks)


def _plan(prep: Prepared, run_dir: Path, argv, replace: bool, retrain: bool, environment_extra, numerics) -> dict:
    """What this command does in `run_dir` (rank 0 decides for every rank): return a finished run as it is
    (`finished`), resume an interrupted one (`saved`, its checkpoint) or train anew, with the record it writes,
    the checkpoint's resume key and the execution choices (`auto` resolved by timing)."""
    cfg = prep.cfg
    record_path, checkpoint_path, model_path = (run_dir / name for name in RUN_FILES)
    try:
        existing = read_record(record_path) if record_path.is_file() else None
        saved = read_checkpoint(checkpoint_path) if checkpoint_path.is_file() else None
    except ConfigError:
        if not replace:
            raise
        existing = saved = None
    earlier = (saved["resume"]["execution"] if saved is not None and saved["resume"].get("config_sha256") == prep.config_sha256
               else existing.get("environment") if existing is not None and existing.get("config_sha256") == prep.config_sha256
               else None)
    prep, choice = timed_execution(prep, earlier)
    if choice:
        environment_extra = {**(environment_extra or {}), "execution_choice": choice}
    resume = {"config_sha256": prep.config_sha256, "teacher_sha256": (prep.teacher_info or {}).get("sha256"),
              **({"pretrained_sha256": {a: w["sha256"] for a, w in prep.pretrained.items()}} if prep.pretrained else {}),
              "training_code_sha256": run_code(prep).sha256, "execution": prep.execution.describe(), "numerics": numerics}
    if (existing is not None and existing.get("config_sha256") != prep.config_sha256) or (
            saved is not None and saved["resume"] != resume):
        if not replace:
            raise ConfigError(
                f"out={run_dir} holds a run of a different configuration (or an interrupted one under another teacher, "
                "training code or execution); choose another out= or remove that directory"
            )
        existing = saved = None
    if saved is not None and (problems := kept_epoch_problems(
            run_dir, saved["record"].get("kept_epochs"), planned_kept_epochs(config_values(cfg), len(saved["record"]["epochs"])),
            checkpoint_path)):
        if not replace:
            raise ConfigError(f"out={run_dir} holds an interrupted run whose kept epochs no longer match its checkpoint: "
                              + "; ".join(problems) + "; remove the directory to train the run again")
        existing = saved = None
    record = None
    if existing is not None and existing.get("status") in FINISHED:
        problems = run_problems(run_dir, existing, FINISHED, unsealed=True)  # rdml.run/1 records predate seals
        problems += kept_epoch_problems(run_dir, existing.get("kept_epochs"),
                                        planned_kept_epochs(existing["config"], len(existing["epochs"])), record_path)
        if not problems and not retrain:
            return {"finished": existing}
        record = new_record(prep, argv, environment_extra)
        if not problems and same_run(existing, record):
            return {"finished": existing}
        if problems and not replace:
            raise ConfigError(f"out={run_dir} holds a finished run whose files no longer match its record: "
                              + "; ".join(problems) + "; remove the directory to train the run again")
        existing = saved = None
    chosen = {"memory_format": prep.execution.memory_format, "compile": prep.execution.compile}
    return {"finished": None, "record": record or new_record(prep, argv, environment_extra), "saved": saved,
            "resume": resume, "execution": chosen, "fresh": existing is None and saved is None}


def train_epoch(method, cohort: Cohort, data: Dataset, cfg: TrainConfig, epoch: int, show: bool, *,
                within: dict | None = None, checkpoint: Callable | None = None,
                ranks: distributed.Ranks | None = None) -> tuple[dict | None, list | None]:
    """One pass over the training rows, then the test metrics: the epoch's entry of the record, and (distributed) every
    rank's random state for its checkpoint. A method whose step takes a mini-batch per network (dml's batches=own)
    gets at each step every network's next batch of its own stream (`batch_streams`), as lists of inputs and labels in
    the cohort's order.

    With `checkpoint_steps` N, `checkpoint(state, rank_rng)` saves the epoch's progress after every N-th step: the
    steps taken, the sums of the logged terms, the first learning rates and each stream's augmentation generator, so
    that `within` (that progress, from the checkpoint) resumes the epoch at its next step with the same bits.
    Distributed: rank k steps student k (`exchange_step`); at each checkpoint and at the epoch's end the ranks send
    their students to rank 0 (`gather_cohort`), which alone evaluates and returns the entry (the others None)."""
    leader = ranks is None or ranks.leader
    per_batch_schedule = cfg.schedule == "onecycle"
    within = within or {}
    start = within.get("step", 0)
    lr_first = within.get("lr_first") or [s.optimizer.param_groups[0]["lr"] for s in cohort]
    sums: dict = dict(within.get("sums") or {})
    if ranks is not None:  # rank k sums its own student's terms; rank 0 gathers them in the students' order
        sums = {name: value for name, value in sums.items() if name.startswith(f"student_{ranks.rank}/")}
    streams = batch_streams(data, cfg, epoch, method.batches_per_step(), start=start)
    for stream, state in zip(streams, within.get("draws") or ()):
        stream.generator.set_state(state)
    steps = data.steps_per_epoch(cfg.batch_size)
    step_once = (partial(distributed.exchange_step, method, ranks=ranks) if ranks is not None else method.train_step)
    mine = cohort if ranks is None else [cohort[ranks.rank]]  # the students whose schedules this process steps
    started = time.perf_counter()

    def synced() -> tuple[dict, list | None]:
        if ranks is None:
            return sums, None
        gathered = distributed.gather_cohort(cohort, ranks, sums)
        return gathered.get("sums", {}), gathered.get("rng")

    for step, batches in enumerate(tqdm(zip(*(stream.batches for stream in streams)), total=steps, initial=start,
                                        desc=f"epoch {epoch}", unit="batch", leave=False, disable=not show),
                                   start=start + 1):
        if len(streams) == 1:
            x, y = streams[0].inputs(batches[0]), batches[0].labels
        else:
            x, y = [stream.inputs(batch) for stream, batch in zip(streams, batches)], [batch.labels for batch in batches]
        terms = step_once(x, y, cohort)
        for k, student_terms in (terms.items() if isinstance(terms, dict) else enumerate(terms)):
            for name, value in {**student_terms, "total": sum(student_terms.values())}.items():
                key = f"{k}/{name}" if isinstance(terms, dict) else f"student_{k}/{name}"
                sums[key] = sums.get(key, 0.0) + value
        if per_batch_schedule:
            for s in mine:
                s.scheduler.step()
        if checkpoint is not None and cfg.checkpoint_steps and step % cfg.checkpoint_steps == 0 and step < steps:
            merged, rank_rng = synced()
            if leader:
                checkpoint({"epoch": epoch, "step": step, "lr_first": lr_first,
                            "sums": {k: torch.as_tensor(v).detach().cpu() for k, v in merged.items()},
                            "draws": [stream.generator.get_state() for stream in streams],
                            "seconds": within.get("seconds", 0.0) + time.perf_counter() - started}, rank_rng)
    sums, rank_rng = synced()
    if not leader:
        for s in mine:
            if not per_batch_schedule:
                s.scheduler.step()
        method.end_epoch(epoch, cohort)
        return None, None
    lr_last = [s.optimizer.param_groups[0]["lr"] for s in cohort]
    entry = {
        "epoch": epoch,
        "lr": lr_first,
        "lr_last_batch": lr_last,
        "train": {k: float(v) / steps for k, v in sums.items()},
    }
    with cohort.evaluated():  # the moving average of the weights with weight_ema, as the official DML code evaluates
        entry["test"] = evaluate(cohort, data, noise=evaluation_noise(cfg.input_noise, cfg.seed, epoch), method=method,
                                 multiquery=multiquery_at(cfg.multiquery, epoch, cfg.epochs))
        if data.split_size("val"):
            entry["val"] = evaluate(cohort, data, split="val", method=method)
    if not per_batch_schedule:
        for s in cohort:
            s.scheduler.step()
    method.end_epoch(epoch, cohort)
    return entry, rank_rng


@dataclasses.dataclass
class BatchStream:
    """One epoch's training batches in one order, and the augmentation draws and input noise of their inputs
    (`student_augment`: one view of each batch per kind), drawn from `generator`."""

    batches: Iterator
    augment: Callable | None
    views: list
    noise: Callable | None
    generator: torch.Generator

    def inputs(self, batch):
        x = [batch.inputs(view) for view in self.views] if self.views else batch.inputs(self.augment)
        if self.noise is not None:
            x = [self.noise(v) for v in x] if self.views else self.noise(x)
        return x


def batch_streams(data: Dataset, cfg: TrainConfig, epoch: int, count: int, start: int = 0) -> list[BatchStream]:
    """The epoch's batch streams, one per mini-batch a step takes, from batch `start` on (a run resumed inside the
    epoch). Stream 0 is every run's: the order of `Dataset.train_batches` and augmentation draws (and input noise)
    from one generator seeded with seed · 1,000,003 + epoch + 500,000,000. Stream k ≥ 1 (a network's own batches)
    takes network k's own order (`Dataset.student_train_batches`) and draws from its own generator
    (rdml.data.base.own_stream_seed(seed, epoch, k, "draws")), so each network's inputs come from (seed, epoch, k)
    alone, and network 0's are a shared run's."""
    streams = []
    for k in range(count):
        batches = (data.train_batches(cfg.batch_size, seed=cfg.seed, epoch=epoch, start=start) if k == 0 else
                   data.student_train_batches(cfg.batch_size, seed=cfg.seed, epoch=epoch, student=k, start=start))
        seed = cfg.seed * 1_000_003 + epoch + 500_000_000 if k == 0 else own_stream_seed(cfg.seed, epoch, k, "draws")
        draws = torch.Generator().manual_seed(seed)  # augmentation only
        augment = None if cfg.augment == "none" else partial(augment_batch, kind=cfg.augment, generator=draws)
        views = [None if kind == "none" else partial(augment_batch, kind=kind, generator=draws)
                 for kind in cfg.student_augment]
        streams.append(BatchStream(batches, augment, views, input_noise(cfg.input_noise, draws), draws))
    return streams


SAME_RUN = ("config_sha256", "config", "data", "teacher", "pretrained")  # with the code run and the execution
# what, beyond the keys, changes the numbers: the library and the device (model) that computed them, the threads
# (float32 sums) and the execution choices
SAME_ENVIRONMENT = ("torch", "cuda", "device", "device_name", "threads", "precision", "memory_format", "compile",
                    "fuse_students", "deterministic", "numerics")


def same_run(finished: dict, fresh: dict) -> bool:
    """Whether a finished record is what training anew would give the record `fresh`: the same configuration,
    code, data, teacher, published weights, torch, device and execution (SAME_ENVIRONMENT). A pipeline job
    reruns when its job file is gone, which a failed job (a refused device, say) also does; its finished runs
    are then kept, not trained again. To train a finished run again, remove its directory."""
    environment = finished.get("environment") or {}
    return all(finished.get(key) == fresh[key] for key in SAME_RUN) \
        and (finished.get("code") or {}).get("run") == fresh["code"]["run"] \
        and all(environment.get(key) == fresh["environment"].get(key) for key in SAME_ENVIRONMENT)


def timed_execution(prep: Prepared, earlier: dict | None) -> tuple[Prepared, dict | None]:
    """`prep` with `memory_format`/`compile` auto resolved by timing the run's own step (rdml.train.autotune),
    or as the run ran before (`earlier`: its checkpoint's execution or its record's environment), and what
    decided them. The timed steps are the run's: its method, networks, first batch and device."""
    cfg, data = prep.cfg, prep.data
    if "auto" not in (prep.execution.memory_format, prep.execution.compile):
        return prep, None
    batch = next(iter(data.train_batches(cfg.batch_size, seed=cfg.seed, epoch=1)))
    x = [batch.inputs() for _ in cfg.student_augment] if cfg.student_augment else batch.inputs()

    def cohort_under(execution):
        teacher = copy.deepcopy(prep.teacher) if prep.teacher is not None else None  # runner() lays the model out
        method = METHODS[cfg.method](cfg, execution.runner(teacher.requires_grad_(False)) if teacher else None)
        return method, build_cohort(cfg, data, execution, data.steps_per_epoch(cfg.batch_size), prep.outputs, None, method)

    def step_with(execution):
        method, cohort = cohort_under(execution)
        return lambda: method.train_step(x, batch.labels, cohort)

    def networks():
        plain = dataclasses.replace(prep.execution, memory_format="contiguous", compile=False)
        return [s.model for s in cohort_under(plain)[1]] + ([prep.teacher] if prep.teacher is not None else [])

    key = {"method": cfg.method, "arch": list(cfg.arch), "dataset": cfg.dataset, "input": list(data.spec.input_shape),
           "outputs": prep.outputs, "batch_size": cfg.batch_size, "student_augment": list(cfg.student_augment),
           "teacher": (prep.teacher_info or {}).get("arch"), "update_order": getattr(cfg, "update_order", None)}
    with torch.random.fork_rng(devices=[prep.device] if prep.device.type == "cuda" else []):
        execution, choice = resolve_auto(prep.execution, key, cfg.epochs * data.steps_per_epoch(cfg.batch_size),
                                         earlier, step_with, networks)
    return dataclasses.replace(prep, execution=execution), choice


def run_code(prep: Prepared):
    """The code this run executes (rdml.dependencies): its resume key, and in its record for the audit."""
    cfg = prep.cfg
    teacher = [prep.teacher_info["arch"]] if prep.teacher_info else []
    return training_code(cfg.method, cfg.arch, cfg.dataset, teacher, base=PACKAGE)


def new_record(prep: Prepared, argv: list[str] | None, environment_extra: dict | None = None) -> dict:
    cfg, data = prep.cfg, prep.data
    return {
        "format": RECORD_FORMAT,
        "status": "running",
        "label": METHODS[cfg.method].label(config_values(cfg)),
        "method": cfg.method,
        "alpha": cfg.alpha,
        "seed": cfg.seed,
        "archs": cfg.arch,
        "config_sha256": prep.config_sha256,
        "config": config_values(cfg),
        "code": {**code_provenance(), "run": run_code(prep).describe()},
        "data": {"name": data.name, "num_classes": data.num_classes, "input_shape": list(data.spec.input_shape),
                 "chance_acc": data.chance_accuracy, **data.fingerprint},
        "teacher": prep.teacher_info,
        "pretrained": prep.pretrained or None,
        "environment": {**environment(prep.device), **prep.execution.describe(), **(environment_extra or {})},
        "command": list(sys.argv if argv is None else argv),
        "started_at": utc_now(),
        "resumed_at": [],
        "ended_at": None,
        "diverged": None,
        "final_model": None,
        **({"kept_epochs": {}} if cfg.keep_every else {}),  # epoch → sha256 of epochs/epoch_<k>.pt
        "epochs": [],
        "epoch_seconds": [],
        "summary": None,
    }


def _epoch_line(entry: dict, epochs: int) -> str:
    metric = primary_of(next(iter(entry["test"].values())))
    values = " ".join(f"{name}={scores[metric.recorded]:.4f}" for name, scores in entry["test"].items())
    return f"epoch {entry['epoch']}/{epochs} lr={entry['lr'][0]:.4g} test {metric.name}: {values}"
