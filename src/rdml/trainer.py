"""The training loop: prepare (validate everything), train with per-epoch checkpoints, record.

Run directory:
  record.json     provenance, per-epoch metrics, summary and status (rewritten atomically each epoch)
  checkpoint.pt   resume state, rewritten atomically each epoch, removed once the run has finished
  model.pt        final weights of every student (a KD teacher is read from here)
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from rdml.augment import augment_batch
from rdml.config import ConfigError, TrainConfig, config_sha256, resolve
from rdml.data import Dataset, batch_starts, epoch_batches, load_dataset, sha256_file
from rdml.execution import Execution, ExecutionError, choose_execution
from rdml.methods import Cohort, Student, build_method, method_label
from rdml.models import ARCHITECTURES, build_model
from rdml.record import atomic_torch_save, atomic_write_json, code_provenance, environment, read_json, utc_now

__all__ = ["train", "prepare", "Prepared", "load_teacher", "pick_device", "MODEL_FORMAT"]

MODEL_FORMAT = "rdml.models/1"
CHECKPOINT_FORMAT = "rdml.checkpoint/1"
RECORD_FORMAT = "rdml.run/1"
FINISHED = ("ok", "diverged")


@dataclass
class Prepared:
    """Everything checked and loaded before the run directory is touched."""

    cfg: TrainConfig
    config_sha256: str
    device: torch.device
    execution: Execution
    data: Dataset
    teacher: nn.Module | None
    teacher_info: dict | None


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        index = int(name.split(":")[1]) if ":" in name else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ConfigError(f"device={name}: no such CUDA device here ({torch.cuda.device_count()} visible)")
    return torch.device(name)


def load_teacher(path: str, index: int, data: Dataset, device: torch.device) -> tuple[nn.Module, dict]:
    """Load model `index` of a model.pt (or a run directory holding one) and check it fits the data."""
    file = Path(path)
    if file.is_dir():
        file = file / "model.pt"
    if not file.is_file():
        raise ConfigError(f"teacher={path}: no teacher checkpoint at {file}")
    try:
        saved = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise ConfigError(f"teacher={path}: {file} is not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(saved, dict) or saved.get("format") != MODEL_FORMAT:
        raise ConfigError(f"teacher={path}: {file} is not an rdml model file (expected format {MODEL_FORMAT})")
    archs = saved["archs"]
    if not 0 <= index < len(archs):
        raise ConfigError(f"teacher_index={index}: {file} holds {len(archs)} model(s), allowed 0..{len(archs) - 1}")
    if archs[index] not in ARCHITECTURES:
        raise ConfigError(f"teacher={path}: architecture {archs[index]!r} is unknown to this rdml")
    if saved.get("dataset") != data.name:
        raise ConfigError(f"teacher={path}: trained on dataset {saved.get('dataset')!r}, but this run uses {data.name!r}")
    if tuple(saved["input_shape"]) != data.input_shape or saved["num_classes"] != data.num_classes:
        raise ConfigError(
            f"teacher={path}: trained for input {tuple(saved['input_shape'])} and {saved['num_classes']} classes, "
            f"but dataset {data.name} has input {data.input_shape} and {data.num_classes} classes"
        )
    model = build_model(archs[index], data.input_shape, data.num_classes)
    try:
        model.load_state_dict(saved["states"][index])
    except RuntimeError as exc:
        raise ConfigError(f"teacher={path}: weights do not fit {archs[index]} ({exc})") from None
    run_record = file.parent / "record.json"
    info = {
        "path": str(file),
        "sha256": sha256_file(file),
        "index": index,
        "arch": archs[index],
        "dataset": saved.get("dataset"),
        "run_config_sha256": read_json(run_record).get("config_sha256") if run_record.is_file() else None,
    }
    return model.to(device).eval(), info


def prepare(cfg: TrainConfig) -> Prepared:
    """Resolve and validate the config, load the data and the teacher. Raises ConfigError; writes nothing."""
    cfg = resolve(cfg)
    device = pick_device(cfg.device)
    try:
        execution = choose_execution(device, cfg.precision, cfg.memory_format, cfg.compile, cfg.fuse_students, cfg.arch)
    except ExecutionError as exc:
        raise ConfigError(str(exc)) from None
    try:
        data = load_dataset(cfg.dataset, split_seed=cfg.split_seed, test_fraction=cfg.test_fraction,
                            labelled_fraction=cfg.labelled_fraction, data_dir=cfg.data_dir, normalize=cfg.normalize)
    except ValueError as exc:  # a missing or corrupt data file, or a normalisation the data cannot take
        raise ConfigError(str(exc)) from None
    teacher, teacher_info = (None, None)
    if cfg.method == "kd":
        teacher, teacher_info = load_teacher(cfg.teacher, cfg.teacher_index, data, device)
    return Prepared(cfg, config_sha256(cfg), device, execution, data.to(device), teacher, teacher_info)


def build_cohort(cfg: TrainConfig, data: Dataset, execution: Execution, steps_per_epoch: int) -> Cohort:
    torch.manual_seed(cfg.seed)
    students = []
    for arch in cfg.arch:
        model = build_model(arch, data.input_shape, data.num_classes).to(execution.device)
        optimizer = make_optimizer(cfg, model.parameters())
        students.append(Student(model, optimizer, make_scheduler(cfg, optimizer, steps_per_epoch), cfg.grad_clip,
                                run=execution.runner(model)))  # fused or not, sequential DML re-predicts one at a time
    return Cohort(students, execution.fused_runner([s.model for s in students]) if execution.fuse_students else None)


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _constant(epoch: int) -> float:
    return 1.0


def make_scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    """Learning-rate schedule; only onecycle steps per batch, the others per epoch."""
    sched = torch.optim.lr_scheduler
    if cfg.schedule == "step":
        return sched.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.schedule == "multistep":
        return sched.MultiStepLR(optimizer, milestones=cfg.milestones, gamma=cfg.gamma)
    if cfg.schedule == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.schedule == "onecycle":
        # Momentum is not cycled: it stays what the config says, so no second schedule hides here.
        return sched.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=cfg.pct_start, cycle_momentum=False
        )
    return sched.LambdaLR(optimizer, _constant)


@torch.no_grad()
def evaluate(cohort: Cohort, data: Dataset, batch_size: int = 1024) -> dict:
    """Test loss, accuracy and mean prediction entropy per student and for the cohort's mean prediction."""
    for s in cohort:
        s.model.eval()
    log_probs = [[] for _ in cohort]
    for start in range(0, len(data.y_test), batch_size):
        for k, logits in enumerate(cohort.predict(data.inputs(data.x_test[start : start + batch_size]))):
            log_probs[k].append(torch.log_softmax(logits.float(), dim=-1))
    for s in cohort:
        s.model.train()
    per_student = [torch.cat(lp) for lp in log_probs]
    results = {f"student_{k}": _scores(lp, data.y_test) for k, lp in enumerate(per_student)}
    if len(cohort) > 1:
        ensemble = torch.logsumexp(torch.stack(per_student), dim=0) - math.log(len(cohort))
        results["ensemble"] = _scores(ensemble, data.y_test)
    return results


def _scores(log_probs: torch.Tensor, labels: torch.Tensor) -> dict:
    return {
        "loss": torch.nn.functional.nll_loss(log_probs, labels).item(),
        "acc": (log_probs.argmax(-1) == labels).sum().item() / len(labels),
        "entropy": -(log_probs.exp() * log_probs).sum(-1).mean().item(),
    }


def summarise(epochs: list[dict], windows: list[int]) -> dict:
    """Final, best and mean-of-last-k test accuracy per student and for the ensemble."""
    summary = {}
    for name in epochs[-1]["test"]:
        accs = [e["test"][name]["acc"] for e in epochs]
        best = max(range(len(accs)), key=accs.__getitem__)
        entry = {"final_acc": accs[-1], "final_loss": epochs[-1]["test"][name]["loss"], "best_acc": accs[best], "best_epoch": best + 1}
        for k in windows:
            entry[f"last{k}_acc"] = sum(accs[-k:]) / k if len(accs) >= k else None
        summary[name] = entry
    return summary


def find_divergence(epochs: list[dict], chance: float, margin: float) -> dict | None:
    """A non-finite training loss, or a student back at chance accuracy after having been above it."""
    last = epochs[-1]
    bad = sorted(k for k, v in last["train"].items() if not math.isfinite(v))
    if bad:
        return {"epoch": last["epoch"], "reason": f"non-finite training loss ({', '.join(bad)})", "stopped": True}
    for name, scores in last["test"].items():
        if name == "ensemble":
            continue
        previous_best = max((e["test"][name]["acc"] for e in epochs[:-1]), default=0.0)
        if previous_best > chance + 2 * margin and scores["acc"] <= chance + margin:
            return {
                "epoch": last["epoch"],
                "reason": f"{name} fell back to chance accuracy ({scores['acc']:.4f} <= {chance:.4f} + {margin}) "
                f"after reaching {previous_best:.4f}",
                "stopped": False,  # a crashed student stays in the cohort, as in the DML-vs-KD study
            }
    return None


RESUMED_KEYS = ("started_at", "resumed_at", "epochs", "epoch_seconds", "diverged")


def train(cfg: TrainConfig, argv: list[str] | None = None, *, progress: bool | None = None, replace: bool = False,
          environment_extra: dict | None = None) -> dict:
    """Run (or resume, or return the finished record of) the configured training; returns the record.

    A run directory holding another configuration is refused, or with `replace` emptied of it first.
    """
    prep = prepare(cfg)
    cfg, data = prep.cfg, prep.data
    run_dir = Path(cfg.out)
    record_path, checkpoint_path = run_dir / "record.json", run_dir / "checkpoint.pt"
    existing = read_json(record_path) if record_path.is_file() else None
    # On the CPU: the RNG state must stay a CPU tensor; load_state_dict moves the rest where it belongs.
    saved = torch.load(checkpoint_path, map_location="cpu", weights_only=True) if checkpoint_path.is_file() else None
    if any(found is not None and found.get("config_sha256") != prep.config_sha256 for found in (existing, saved)):
        if not replace:
            raise ConfigError(
                f"out={run_dir} holds a run of a different configuration; choose another out= or remove that directory"
            )
        for stale in (record_path, checkpoint_path, run_dir / "model.pt"):
            stale.unlink(missing_ok=True)
        existing = saved = None
    if existing is not None and existing.get("status") in FINISHED:
        return existing
    run_dir.mkdir(parents=True, exist_ok=True)

    steps_per_epoch = len(batch_starts(len(data.y_train), cfg.batch_size))
    cohort = build_cohort(cfg, data, prep.execution, steps_per_epoch)
    teacher = prep.execution.runner(prep.teacher.requires_grad_(False)) if prep.teacher is not None else None
    method = build_method(cfg, teacher)
    record = new_record(prep, argv)
    record["environment"].update(environment_extra or {})
    if saved is not None:
        restore_checkpoint(saved, prep.device, cohort, record)

    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=cfg.epochs, initial=len(record["epochs"]), desc=record["label"], unit="epoch", disable=not show)
    for epoch in range(len(record["epochs"]) + 1, cfg.epochs + 1):
        if record["diverged"] and record["diverged"]["stopped"]:
            break
        started = time.perf_counter()
        entry = train_epoch(method, cohort, data, cfg, epoch, show)
        record["epochs"].append(entry)
        record["epoch_seconds"].append(time.perf_counter() - started)
        record["diverged"] = record["diverged"] or find_divergence(record["epochs"], data.chance_accuracy, cfg.crash_margin)
        record["summary"] = summarise(record["epochs"], cfg.summary_last)
        save_checkpoint(checkpoint_path, prep, cohort, record)
        atomic_write_json(record_path, record)
        bar.update(1)
        (bar.write if show else partial(print, file=sys.stderr))(_epoch_line(entry, cfg.epochs))
    bar.close()

    sha = atomic_torch_save(run_dir / "model.pt", {
        "format": MODEL_FORMAT,
        "dataset": data.name,
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
        "archs": cfg.arch,
        "states": [{k: v.cpu() for k, v in s.model.state_dict().items()} for s in cohort],
    })
    record["final_model"] = {"path": "model.pt", "sha256": sha}
    record["status"] = "diverged" if record["diverged"] else "ok"
    record["ended_at"] = utc_now()
    atomic_write_json(record_path, record)
    checkpoint_path.unlink(missing_ok=True)
    return record


def train_epoch(method, cohort: Cohort, data: Dataset, cfg: TrainConfig, epoch: int, show: bool) -> dict:
    """One pass over the training rows, then the test metrics: the epoch's entry of the record."""
    per_batch_schedule = cfg.schedule == "onecycle"
    lr_first = [s.optimizer.param_groups[0]["lr"] for s in cohort]
    sums: dict[str, torch.Tensor] = {}
    batches = list(epoch_batches(len(data.y_train), cfg.batch_size, seed=cfg.seed, epoch=epoch))
    draws = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch + 500_000_000)  # augmentation only
    augment = None if cfg.augment == "none" else partial(augment_batch, kind=cfg.augment, generator=draws)
    for rows in tqdm(batches, desc=f"epoch {epoch}", unit="batch", leave=False, disable=not show):
        terms = method.train_step(data.inputs(data.x_train[rows], augment), data.y_train[rows], cohort)
        for k, student_terms in enumerate(terms):
            for name, value in {**student_terms, "total": sum(student_terms.values())}.items():
                key = f"student_{k}/{name}"
                sums[key] = sums.get(key, 0.0) + value
        if per_batch_schedule:
            for s in cohort:
                s.scheduler.step()
    lr_last = [s.optimizer.param_groups[0]["lr"] for s in cohort]
    if not per_batch_schedule:
        for s in cohort:
            s.scheduler.step()
    return {
        "epoch": epoch,
        "lr": lr_first,
        "lr_last_batch": lr_last,
        "train": {k: float(v) / len(batches) for k, v in sums.items()},
        "test": evaluate(cohort, data),
    }


def new_record(prep: Prepared, argv: list[str] | None) -> dict:
    cfg, data = prep.cfg, prep.data
    return {
        "format": RECORD_FORMAT,
        "status": "running",
        "label": method_label(cfg),
        "method": cfg.method,
        "alpha": cfg.alpha,
        "seed": cfg.seed,
        "archs": cfg.arch,
        "config_sha256": prep.config_sha256,
        "config": dataclasses.asdict(cfg),
        "code": code_provenance(),
        "data": {"name": data.name, "num_classes": data.num_classes, "input_shape": list(data.input_shape),
                 "chance_acc": data.chance_accuracy, **data.fingerprint},
        "teacher": prep.teacher_info,
        "environment": {**environment(prep.device), **prep.execution.describe()},
        "command": list(sys.argv if argv is None else argv),
        "started_at": utc_now(),
        "resumed_at": [],
        "ended_at": None,
        "diverged": None,
        "final_model": None,
        "epochs": [],
        "epoch_seconds": [],
        "summary": None,
    }


def save_checkpoint(path: Path, prep: Prepared, cohort: list[Student], record: dict) -> None:
    atomic_torch_save(path, {
        "format": CHECKPOINT_FORMAT,
        "config_sha256": prep.config_sha256,
        "students": [
            {"model": s.model.state_dict(), "optimizer": s.optimizer.state_dict(), "scheduler": s.scheduler.state_dict()}
            for s in cohort
        ],
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(prep.device) if prep.device.type == "cuda" else None,
        "record": {k: record[k] for k in RESUMED_KEYS},
    })


def restore_checkpoint(state: dict, device: torch.device, cohort: list[Student], record: dict) -> None:
    """Put students, optimisers, schedules, RNG and the metrics so far back as they were saved."""
    for student, saved in zip(cohort, state["students"]):
        student.model.load_state_dict(saved["model"])
        student.optimizer.load_state_dict(saved["optimizer"])
        student.scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(state["rng"])
    if device.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    record.update({k: state["record"][k] for k in RESUMED_KEYS})
    record["resumed_at"].append(utc_now())


def _epoch_line(entry: dict, epochs: int) -> str:
    accs = " ".join(f"{name}={scores['acc']:.4f}" for name, scores in entry["test"].items())
    return f"epoch {entry['epoch']}/{epochs} lr={entry['lr'][0]:.4g} test acc: {accs}"
