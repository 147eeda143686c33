"""The files a run leaves: `checkpoint.pt` (resume state: students, optimisers, schedules, the
method's own state, RNG, metrics so far) and `model.pt` (final weights of every student, what a KD
teacher is read from). Both are written atomically; the checkpoint carries the sha256 of its own
content, so a damaged one is refused instead of resuming to other numbers, and a teacher is accepted
only when its weights are the ones its finished `ok` record names."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import torch
from torch import nn

from rdml.data.base import Dataset
from rdml.io import atomic_torch_save, sha256_bytes, utc_now
from rdml.keys import ConfigError
from rdml.train.verified import MODEL_FORMAT, verified_run

__all__ = ["MODEL_FORMAT", "CHECKPOINT_FORMAT", "RESUMED_KEYS", "save_model", "save_checkpoint", "read_checkpoint",
           "restore_checkpoint", "load_teacher"]

CHECKPOINT_FORMAT = "rdml.checkpoint/2"  # /1 had no digest of its content
RESUMED_KEYS = ("started_at", "resumed_at", "epochs", "epoch_seconds", "diverged")


def save_model(path: Path, data: Dataset, archs: list[str], cohort, outputs: int | None = None) -> str:
    """Write model.pt; returns its sha256. `outputs`: of each student, where not the data set's classes
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


def save_checkpoint(path: Path, resume: dict, device: torch.device, cohort, method, record: dict) -> None:
    """`resume`: what must be the same for the state to be resumed (config, teacher, training code, execution)."""
    payload = io.BytesIO()
    torch.save({
        "students": [
            {"model": s.model.state_dict(), "optimizer": s.optimizer.state_dict(), "scheduler": s.scheduler.state_dict()}
            for s in cohort
        ],
        "method": method.state_dict(),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "record": {k: record[k] for k in RESUMED_KEYS},
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


def restore_checkpoint(state: dict, device: torch.device, cohort, method, record: dict) -> None:
    """Put students, optimisers, schedules, the method's state, RNG and the metrics so far back as saved."""
    for student, saved in zip(cohort, state["students"]):
        student.model.load_state_dict(saved["model"])
        student.optimizer.load_state_dict(saved["optimizer"])
        student.scheduler.load_state_dict(saved["scheduler"])
    method.load_state_dict(state.get("method") or {})
    torch.set_rng_state(state["rng"])
    if device.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    record.update({k: state["record"][k] for k in RESUMED_KEYS})
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
