"""Everything a run needs, checked and loaded before its directory is touched."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rdml.config import ConfigError, TrainConfig, config_sha256, resolve
from rdml.data.base import Dataset, load_dataset
from rdml.methods import METHODS
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
    execution = choose_execution(device, cfg.precision, cfg.memory_format, cfg.compile, cfg.fuse_students, cfg.arch)
    try:
        data = load_dataset(cfg.dataset, split_seed=cfg.split_seed, test_fraction=cfg.test_fraction,
                            labelled_fraction=cfg.labelled_fraction, unlabelled=cfg.unlabelled, data_dir=cfg.data_dir,
                            normalize=cfg.normalize)
    except (ValueError, OSError) as exc:  # a missing or corrupt data file
        raise ConfigError(str(exc)) from None
    teacher, teacher_info = (None, None)
    if METHODS[cfg.method].uses_teacher:
        teacher, teacher_info = load_teacher(cfg.teacher, cfg.teacher_index, data, device)
    return Prepared(cfg, config_sha256(cfg), device, execution, data.to(device), teacher, teacher_info)
