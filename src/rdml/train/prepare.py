"""Everything a run needs, checked and loaded before its directory is touched."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rdml.config import ConfigError, TrainConfig, config_sha256, config_values, data_keys, resolve
from rdml.data.base import Dataset, load_dataset
from rdml.io import sha256_file
from rdml.methods import METHODS
from rdml.models.catalog import ARCHITECTURES
from rdml.models.pretrained import published_outputs, weights_file
from rdml.train.checkpoint import load_teacher
from rdml.train.execution import Execution, choose_execution

__all__ = ["Prepared", "prepare", "pick_device"]


@dataclass
class Prepared:
    cfg: TrainConfig
    config_sha256: str
    device: torch.device
    execution: Execution
    data: Dataset
    teacher: nn.Module | None
    teacher_info: dict | None
    pretrained: dict[str, dict]  # per architecture: the published weights students start from, file and sha256
    outputs: int  # of every student: the data set's classes, or the published head's size (head=pretrained)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        index = int(name.split(":")[1]) if ":" in name else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ConfigError(f"device={name}: no such CUDA device here ({torch.cuda.device_count()} visible)")
    return torch.device(name)


def prepare(cfg: TrainConfig) -> Prepared:
    """Resolve and validate the config, load the data and any teacher. Raises ConfigError; writes nothing."""
    cfg = resolve(cfg)
    device = pick_device(cfg.device)
    execution = choose_execution(device, cfg.precision, cfg.memory_format, cfg.compile, cfg.fuse_students, cfg.arch,
                                 cfg.deterministic)
    try:
        data = load_dataset(cfg.dataset, **data_keys(config_values(cfg)), workers=cfg.loader_workers)
    except (ValueError, OSError) as exc:  # a missing or corrupt data file
        raise ConfigError(str(exc)) from None
    pretrained = published_weights(cfg) if cfg.pretrained else {}
    outputs = data.num_classes
    if cfg.head == "pretrained":
        heads = {published_outputs(arch) for arch in cfg.arch}
        if len(heads) != 1 or min(heads) < data.num_classes:
            raise ConfigError(f"head=pretrained: the published heads of {', '.join(cfg.arch)} have {sorted(heads)} outputs, "
                              f"which must be one size of at least dataset {cfg.dataset}'s {data.num_classes} classes")
        outputs = heads.pop()
    teacher, teacher_info = (None, None)
    if METHODS[cfg.method].uses_teacher:
        teacher, teacher_info = load_teacher(cfg.teacher, cfg.teacher_index, data, device)
        if teacher_info["outputs"] != outputs:
            raise ConfigError(f"teacher={cfg.teacher} has {teacher_info['outputs']} outputs, the students {outputs}")
    return Prepared(cfg, config_sha256(cfg), device, execution, data.to(device), teacher, teacher_info, pretrained, outputs)


def published_weights(cfg: TrainConfig) -> dict[str, dict]:
    """The weights file of each architecture of the cohort, with its sha256; a missing one says how to fetch it."""
    found = {}
    for arch in sorted(set(cfg.arch)):
        file = weights_file(arch, cfg.data_dir)
        if not file.is_file():
            raise ConfigError(f"pretrained=true: the published weights of {arch} are not at {file}; fetch them first: "
                              f"rdml pipeline weights {arch} (or --file PATH for a local copy)")
        found[arch] = {"weights": ARCHITECTURES[arch].weights, "file": str(file), "sha256": sha256_file(file)}
    return found
