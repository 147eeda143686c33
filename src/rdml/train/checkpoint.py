"""The files a run leaves: `checkpoint.pt` (resume state: students, optimisers, schedules, the
method's own state, RNG, metrics so far) and `model.pt` (final weights of every student, what a KD
teacher is read from). Both are written atomically."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rdml.data.base import Dataset
from rdml.io import atomic_torch_save, read_json, sha256_file, utc_now
from rdml.keys import ConfigError
from rdml.models import ARCHITECTURES, build_model

__all__ = ["MODEL_FORMAT", "CHECKPOINT_FORMAT", "RESUMED_KEYS", "save_model", "save_checkpoint", "restore_checkpoint",
           "load_teacher"]

MODEL_FORMAT = "rdml.models/1"
CHECKPOINT_FORMAT = "rdml.checkpoint/1"
RESUMED_KEYS = ("started_at", "resumed_at", "epochs", "epoch_seconds", "diverged")


def save_model(path: Path, data: Dataset, archs: list[str], cohort) -> str:
    """Write model.pt; returns its sha256."""
    return atomic_torch_save(path, {
        "format": MODEL_FORMAT,
        "dataset": data.name,
        "input_shape": list(data.spec.input_shape),
        "num_classes": data.num_classes,
        "archs": archs,
        "states": [{k: v.cpu() for k, v in s.model.state_dict().items()} for s in cohort],
    })


def save_checkpoint(path: Path, config_sha256: str, device: torch.device, cohort, method, record: dict) -> None:
    atomic_torch_save(path, {
        "format": CHECKPOINT_FORMAT,
        "config_sha256": config_sha256,
        "students": [
            {"model": s.model.state_dict(), "optimizer": s.optimizer.state_dict(), "scheduler": s.scheduler.state_dict()}
            for s in cohort
        ],
        "method": method.state_dict(),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "record": {k: record[k] for k in RESUMED_KEYS},
    })


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
    if tuple(saved["input_shape"]) != tuple(data.spec.input_shape) or saved["num_classes"] != data.num_classes:
        raise ConfigError(
            f"teacher={path}: trained for input {tuple(saved['input_shape'])} and {saved['num_classes']} classes, "
            f"but dataset {data.name} has input {tuple(data.spec.input_shape)} and {data.num_classes} classes"
        )
    model = build_model(archs[index], data.spec)
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
