"""The files a run leaves: `checkpoint.pt` (resume state: students, optimisers, schedules, the
method's own state, RNG, metrics so far), `model.pt` (final weights of every student, what a KD
teacher is read from) and, with `keep_every`, `epochs/epoch_<k>.pt` (model.pt's content after epoch k,
for the analyses of a trajectory). All are written atomically; the checkpoint carries the sha256 of its
own content, so a damaged one is refused instead of resuming to other numbers, a kept epoch is named in
the record (`kept_epochs`: epoch → sha256) only once its file is whole, and a teacher is accepted only
when its weights are the ones its finished `ok` record names."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import torch
from torch import nn

from rdml.data.base import Dataset
from rdml.io import atomic_torch_save, sha256_bytes, sha256_file, utc_now
from rdml.keys import ConfigError
from rdml.train.integrity import FINISHED, read_record, run_problems
from rdml.train.verified import MODEL_FORMAT, MODEL_KEYS, verified_run

__all__ = ["MODEL_FORMAT", "CHECKPOINT_FORMAT", "RESUMED_KEYS", "KEPT_DIR", "save_model", "save_checkpoint", "read_checkpoint",
           "restore_checkpoint", "load_teacher", "kept_epoch_file", "is_kept_epoch_file", "planned_kept_epochs",
           "kept_epoch_problems", "read_kept_epoch", "load_kept_epoch"]

CHECKPOINT_FORMAT = "rdml.checkpoint/2"  # /1 had no digest of its content
RESUMED_KEYS = ("started_at", "resumed_at", "epochs", "epoch_seconds", "diverged", "kept_epochs")  # kept_epochs: with keep_every
KEPT_DIR = "epochs"  # <run>/epochs/epoch_<k>.pt: the networks after epoch k (keep_every)
KEPT_NAME = re.compile(r"epoch_([1-9][0-9]*)\.pt")


def save_model(path: Path, data: Dataset, archs: list[str], cohort, outputs: int | None = None) -> str:
    """Write model.pt, the weights the run evaluates (with `weight_ema`, their moving average: the caller
    saves inside `Cohort.evaluated`); returns its sha256. `outputs`: of each student, where not the data set's classes
    (a published head kept). `states` holds each trained network's weights in the cohort's order: one per
    architecture of `archs`, or, where `method` names the method that declared them (Method.networks), the
    networks it builds again to read them (rdml.train.cohort.rebuild)."""
    built_by = getattr(cohort, "built_by", None)
    about = _canonical({
        "format": MODEL_FORMAT,
        "dataset": data.name,
        "input_shape": list(data.spec.input_shape),
        "num_classes": data.num_classes,
        **({"outputs": outputs} if outputs not in (None, data.num_classes) else {}),
        "archs": list(archs),
        **({"method": built_by} if built_by else {}),
    })
    return atomic_torch_save(path, {**about, "states": [{k: v.cpu() for k, v in s.model.state_dict().items()} for s in cohort]})


def _canonical(value):
    """`value` with every string interned: pickle writes a string a second time as a reference to the first
    only when it is the same object, so ["mlp", "mlp"] from a JSON spec and ["mlp"] * 2 from the command line
    would give the same weights two files; interned, equal strings are one object whichever way they came."""
    if isinstance(value, str):
        return sys.intern(str(value))
    if isinstance(value, dict):
        return {_canonical(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def save_checkpoint(path: Path, resume: dict, device: torch.device, cohort, method, record: dict,
                    progress: dict | None = None, rank_rng: list | None = None) -> None:
    """`resume`: what must be the same for the state to be resumed (config, teacher, training code, execution).
    `progress`: where inside an epoch the run is (checkpoint_steps; rdml.train.loop.train_epoch), None at an
    epoch's end. `rank_rng`: every rank's random state, in a distributed run (rdml.train.distributed)."""
    payload = io.BytesIO()
    torch.save({
        "students": [
            {"model": s.model.state_dict(), "optimizer": s.optimizer.state_dict(), "scheduler": s.scheduler.state_dict()}
            for s in cohort
        ],
        "method": method.state_dict(),
        **({"average": cohort.average.state_dict()} if getattr(cohort, "average", None) is not None else {}),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "record": {k: record[k] for k in RESUMED_KEYS if k in record},
        **({"progress": progress} if progress is not None else {}),
        **({"rank_rng": rank_rng} if rank_rng is not None else {}),
    }, payload)
    data = payload.getvalue()
    atomic_torch_save(path, {"format": CHECKPOINT_FORMAT, "resume": resume, "sha256": sha256_bytes(data), "payload": data})


def read_checkpoint(path: Path) -> dict:
    """The resume state saved in `path` with what it may resume under, or a ConfigError that names the file,
    what is wrong and what to do (a damaged checkpoint must not resume to other numbers)."""
    hint = f"remove {path} to train the run from its first epoch"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)  # the RNG state must stay on the CPU
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise ConfigError(f"{path} is not a readable checkpoint ({type(exc).__name__}); {hint}") from None
    if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path} is not an rdml checkpoint of format {CHECKPOINT_FORMAT}; {hint}")
    if sha256_bytes(saved["payload"]) != saved["sha256"]:
        raise ConfigError(f"{path} is damaged (its content does not hash to its recorded sha256); {hint}")
    state = torch.load(io.BytesIO(saved["payload"]), map_location="cpu", weights_only=True)
    return {**state, "resume": saved["resume"]}


def restore_checkpoint(state: dict, device: torch.device, cohort, method, record: dict, rank: int | None = None) -> None:
    """Put students, optimisers, schedules, the method's state, RNG and the metrics so far back as saved; `rank`: this
    process's in a distributed run, which takes its own random state back."""
    for student, saved in zip(cohort, state["students"]):
        student.model.load_state_dict(saved["model"])
        student.optimizer.load_state_dict(saved["optimizer"])
        student.scheduler.load_state_dict(saved["scheduler"])
    method.load_state_dict(state.get("method") or {})
    if getattr(cohort, "average", None) is not None:
        cohort.average.load_state_dict(state["average"])
    if rank is not None:
        torch.set_rng_state(state["rank_rng"]["rng"][rank])
        if device.type == "cuda" and state["rank_rng"]["cuda_rng"][rank] is not None:
            torch.cuda.set_rng_state(state["rank_rng"]["cuda_rng"][rank], device)
    else:
        torch.set_rng_state(state["rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
    record.update({k: state["record"][k] for k in RESUMED_KEYS if k in state["record"]})
    record["resumed_at"].append(utc_now())


def load_teacher(path: str, index: int, data: Dataset, device: torch.device) -> tuple[nn.Module, dict]:
    """Model `index` of a finished `ok` run (its directory or its model.pt), through the checks of
    rdml.train.verified, checked to fit the data; with what the student's record names of it."""
    if not Path(path).exists():
        raise ConfigError(f"teacher={path}: no teacher checkpoint at {path}")
    run = verified_run(path, f"teacher={path}: ")
    if not 0 <= index < len(run.archs):
        raise ConfigError(f"teacher_index={index}: {run.model_file} holds {len(run.archs)} model(s), allowed 0..{len(run.archs) - 1}")
    model = run.model(index, data)
    info = {
        "path": str(run.model_file),
        "sha256": run.model_sha256,
        "index": index,
        "arch": run.archs[index],
        "dataset": run.saved.get("dataset"),
        "outputs": run.outputs,
        "run_config_sha256": run.record.get("config_sha256"),
    }
    return model.to(device).eval(), info


# ---- kept epochs (keep_every): the networks after chosen epochs, for the analyses of a trajectory ----

def kept_epoch_file(epoch: int) -> str:
    """Where, relative to its run directory, the networks after `epoch` are kept."""
    return f"{KEPT_DIR}/epoch_{epoch}.pt"


def is_kept_epoch_file(name: str) -> bool:
    """Whether a file name in a run's epochs/ folder is one rdml writes there (epoch_<k>.pt)."""
    return KEPT_NAME.fullmatch(name) is not None


def planned_kept_epochs(config: dict, epochs_run: int) -> list[int]:
    """The epochs whose networks a run keeps after `epochs_run` epochs: 1, 1+N, 1+2N, … for `keep_every` = N
    (the official code's 0-based 0, N, 2N, …), none for 0 or a record's config that predates the key."""
    every = config.get("keep_every") or 0
    return list(range(1, epochs_run + 1, every)) if every else []


def kept_epoch_problems(run_dir: Path, named: dict | None, planned: list[int], source: str | Path) -> list[str]:
    """What does not hold of the kept epochs `named` (epoch → sha256; None where the run keeps none) that
    `source` (a record, a checkpoint) vouches for: the epochs the run's `keep_every` plans (`planned`), each
    file present and hashing to its sha256."""
    named = named or {}
    problems = []
    if sorted(map(int, named)) != planned:
        problems.append(f"{source}: names the networks of epochs {sorted(map(int, named))} kept, its keep_every "
                        f"plans {planned}")
    for epoch, sha in named.items():
        file = Path(run_dir) / kept_epoch_file(epoch)
        if not file.is_file():
            problems.append(f"{file}: the kept epoch {epoch} its record names is missing")
        elif (actual := sha256_file(file)) != sha:
            problems.append(f"{file}: sha256 {actual} is not the {sha} its record names (changed after training?)")
    return problems


def read_kept_epoch(run_dir: str | Path, epoch: int, prefix: str = "", statuses: tuple[str, ...] = FINISHED) -> tuple[dict, dict]:
    """The record of the run in `run_dir` and the content of its kept epoch `epoch` (model.pt's: `states` in
    the cohort's order, `archs`, `method` where it declared its networks), each checked as a finished run's
    model.pt is (rdml.train.verified): the record sealed, consistent and of a status in `statuses`, the
    file the bytes its record names (hashed, then loaded). Else a ConfigError `prefix` + what is wrong."""
    run_dir = Path(run_dir)
    record_path = run_dir / "record.json"
    if not record_path.is_file():
        raise ConfigError(f"{prefix}no run record at {record_path}; expected a run directory written by `rdml train`")
    try:
        record = read_record(record_path)
    except ConfigError as exc:
        raise ConfigError(f"{prefix}{exc}") from None
    problems = run_problems(run_dir, record, statuses, weights=False)
    if problems:
        raise ConfigError(prefix + "; ".join(problems))
    named = record.get("kept_epochs") or {}
    if str(epoch) not in named:
        kept = ", ".join(named) or f"none (keep_every={record['config'].get('keep_every', 0)})"
        raise ConfigError(f"{prefix}{run_dir}: epoch {epoch!r} is not a kept epoch of this run; kept: {kept}")
    file = run_dir / kept_epoch_file(epoch)
    if not file.is_file():
        raise ConfigError(f"{prefix}{file}: the kept epoch {epoch} its record names is missing")
    content = file.read_bytes()
    if (sha := sha256_bytes(content)) != named[str(epoch)]:
        raise ConfigError(f"{prefix}{file}: sha256 {sha} is not the {named[str(epoch)]} its record names (changed after training?)")
    try:
        saved = torch.load(io.BytesIO(content), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise ConfigError(f"{prefix}{file} is not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(saved, dict) or saved.get("format") != MODEL_FORMAT or not all(k in saved for k in MODEL_KEYS):
        raise ConfigError(f"{prefix}{file} is not an rdml model file (expected format {MODEL_FORMAT})")
    return record, saved


def load_kept_epoch(run_dir: str | Path, epoch: int, data: Dataset | None = None, device: torch.device | str = "cpu",
                    prefix: str = "", statuses: tuple[str, ...] = FINISHED):
    """The networks of the run in `run_dir` as they were after `epoch` (a kept epoch, `read_kept_epoch`),
    rebuilt as model.pt's are (rdml.train.cohort.rebuild: the students, or the networks the method declares),
    on `device` in eval mode, with the method that declared them (None for students): `(cohort, method)`.
    `data`: the run's data set, loaded from its record's keys where not given."""
    from rdml.config import data_keys
    from rdml.data.base import load_dataset
    from rdml.train.cohort import rebuild

    record, saved = read_kept_epoch(run_dir, epoch, prefix, statuses)
    config = record["config"]
    data = data if data is not None else load_dataset(config["dataset"], **data_keys(config))
    cohort, method = rebuild(saved, config, data, torch.device(device))
    for network in cohort:
        network.model.eval()
    return cohort, method
