"""One flat training configuration: typed keys, `key=value` parsing, per-method defaults, validation.

Every check runs before any data is loaded or any file is written, and every error names the bad
key, its value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rdml.augment import AUGMENTATIONS
from rdml.data import DATASETS, NORMALIZATIONS
from rdml.divergences import check_alpha
from rdml.execution import MEMORY_FORMATS, PRECISIONS
from rdml.models import ARCHITECTURES

__all__ = ["ConfigError", "TrainConfig", "METHODS", "load_config", "config_from_mapping", "resolve", "config_sha256", "describe_keys"]

METHODS = {
    "independent": "each student trained alone on cross-entropy (the papers' Ind. / vanilla)",
    "teacher": "an independent run of the teacher architecture; its model.pt is a KD teacher",
    "kd": "KD from a frozen teacher: Hinton KD at alpha=1, Rényi KD otherwise (thesis eqs. 1.15-1.16)",
    "dml": "deep mutual learning: DML at alpha=1, RDML otherwise (DML eq. 10, RDML eq. 3.3)",
    "dml_e": "DML with the average of the other students as one teacher (DML eq. 11)",
}
MUTUAL_METHODS = ("dml", "dml_e")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "multistep", "cosine", "onecycle")
UPDATE_ORDERS = ("simultaneous", "sequential")
DEFAULT_ARCH = {"teacher": "cnn_wide"}  # every other method: "mlp"


class ConfigError(ValueError):
    """A configuration value that is not allowed; the message names it and what is allowed."""


def _key(default: Any, kind: str, help: str) -> Any:
    factory = (lambda: list(default)) if isinstance(default, list) else None
    if factory:
        return field(default_factory=factory, metadata={"kind": kind, "help": help})
    return field(default=default, metadata={"kind": kind, "help": help})


@dataclass
class TrainConfig:
    method: str = _key("dml", "str", "one of: " + ", ".join(METHODS))
    dataset: str = _key("digits", "str", "one of: " + ", ".join(DATASETS))
    arch: list | None = _key(None, "list[str]", "architecture, or one per student (comma-separated); default mlp (cnn_wide for teacher)")
    students: int | None = _key(None, "int", "cohort size K; default 2 for dml/dml_e, else 1 (or the number of archs)")
    alpha: float = _key(1.0, "float", "Rényi order in [0, inf] (kd: in (0, inf)); 1 = KL, i.e. DML and Hinton KD")
    temperature: float | None = _key(None, "float", "softmax temperature of the mimicry term; default 4 for kd, else 1")
    beta: float = _key(0.9, "float", "kd: weight of the distillation term, (1-beta) on cross-entropy")
    mimic_weight: float = _key(1.0, "float", "dml/dml_e: weight on the mimicry term")
    update_order: str = _key("simultaneous", "str", "simultaneous (all students from the same predictions) or sequential (DML Algorithm 1)")
    labelled_fraction: float = _key(1.0, "float", "fraction of training rows with labels, in (0, 1]; < 1 is semi-supervised (DML 3.4)")
    teacher: str | None = _key(None, "str", "kd: teacher run directory or model.pt file")
    teacher_index: int = _key(0, "int", "kd: which model of the teacher checkpoint to use")
    epochs: int = _key(30, "int", "number of epochs, >= 1")
    batch_size: int = _key(64, "int", "batch size, >= 1")
    optimizer: str = _key("sgd", "str", "one of: " + ", ".join(OPTIMIZERS))
    lr: float = _key(0.05, "float", "learning rate (onecycle: the peak)")
    momentum: float = _key(0.9, "float", "sgd momentum")
    nesterov: bool = _key(True, "bool", "sgd Nesterov momentum")
    weight_decay: float = _key(5e-4, "float", "weight decay (decoupled for adamw)")
    schedule: str = _key("cosine", "str", "one of: " + ", ".join(SCHEDULES))
    step_size: int = _key(60, "int", "step schedule: epochs between decays")
    gamma: float = _key(0.2, "float", "step/multistep schedule: decay factor")
    milestones: list = _key([], "list[int]", "multistep schedule: epochs at which lr is multiplied by gamma")
    pct_start: float = _key(0.1, "float", "onecycle: fraction of training spent rising to the peak lr")
    grad_clip: float = _key(0.0, "float", "clip each student's gradient norm to this; 0 = off")
    seed: int = _key(0, "int", "training seed: initialisation, batch order")
    split_seed: int = _key(0, "int", "seed of the train/test split and of the labelled subset")
    test_fraction: float = _key(0.25, "float", "fraction of each class held out for test, in (0, 1) (digits, synthetic)")
    augment: str = _key("none", "str", "training augmentation: " + ", ".join(AUGMENTATIONS) + " (see rdml.augment)")
    normalize: str = _key("dataset", "str", "per-channel normalisation: dataset (train statistics) or imagenet")
    data_dir: str = _key("data", "str", "folder of downloaded data sets (cifar10, cifar100, fashion_mnist)")
    summary_last: list = _key([5, 10], "list[int]", "report the mean test accuracy of the last k epochs for each k")
    crash_margin: float = _key(0.05, "float", "a student at <= chance + margin after > chance + 2 margin has crashed")
    device: str = _key("auto", "str", "auto, cpu, cuda or cuda:N")
    precision: str = _key("auto", "str", "fp32, bf16 (autocast of the forward passes) or auto: bf16 on a CUDA device that has it, else fp32")
    memory_format: str = _key("auto", "str", "contiguous, channels_last or auto: channels_last on CUDA, contiguous on the CPU")
    compile: bool = _key(False, "bool", "torch.compile each model (pays off on long runs; the first batches wait for it)")
    fuse_students: bool = _key(False, "bool", "one vmapped forward for a cohort of one architecture (see rdml.execution)")
    out: str | None = _key(None, "str", "run directory; default runs/<method>-<dataset>-<arch>-a<alpha>-s<seed>-<hash>")


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def describe_keys() -> str:
    """The `--help` listing: every key, its type, its default and what it does."""
    lines = []
    for name, f in FIELDS.items():
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        lines.append(f"  {name}={_show(default)}  [{f.metadata['kind']}]\n      {f.metadata['help']}")
    return "\n".join(lines)


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def _coerce(name: str, value: Any) -> Any:
    """Turn a command-line string or a YAML value into the key's type."""
    kind = FIELDS[name].metadata["kind"]
    nullable = FIELDS[name].default is None
    try:
        if nullable and (value is None or isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            return None
        if kind == "str":
            if not isinstance(value, str):
                raise ValueError
            return value
        if kind == "bool":
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        items = value if isinstance(value, list) else [v for v in str(value).split(",") if v.strip()]
        element = kind[len("list[") : -1]
        return [str(v).strip() if element == "str" else int(v) for v in items]
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a valid {kind}") from None


def _check_known(name: str) -> None:
    if name not in FIELDS:
        close = difflib.get_close_matches(name, FIELDS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown key {name!r}{hint} (see `rdml train --help` for the keys)")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """A config file (YAML or JSON mapping of keys) if given, then `key=value` overrides, unresolved."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of key: value")
        values.update(loaded)
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"expected key=value, got {item!r}")
        values[name.strip()] = value
    return config_from_mapping(values)


def config_from_mapping(values: dict[str, Any]) -> TrainConfig:
    """Typed config from a mapping of keys to strings or YAML values, unresolved."""
    typed = {}
    for name, value in values.items():
        _check_known(str(name))
        typed[str(name)] = _coerce(str(name), value)
    return TrainConfig(**typed)


def resolve(cfg: TrainConfig) -> TrainConfig:
    """Fill per-method defaults and validate every key; returns a new, fully explicit config."""
    c = dataclasses.replace(cfg, arch=list(cfg.arch) if cfg.arch else None, milestones=list(cfg.milestones))
    _one_of("method", c.method, METHODS)
    _one_of("dataset", c.dataset, DATASETS)
    if not c.arch:
        c.arch = [DEFAULT_ARCH.get(c.method, "mlp")]
    for name in c.arch:
        _one_of("arch", name, ARCHITECTURES)
    if c.students is None:
        c.students = len(c.arch) if len(c.arch) > 1 else (2 if c.method in MUTUAL_METHODS else 1)
    _at_least("students", c.students, 1)
    if c.method in MUTUAL_METHODS and c.students < 2:
        raise ConfigError(f"students={c.students}: method {c.method} needs a cohort of K >= 2 students")
    if len(c.arch) not in (1, c.students):
        raise ConfigError(f"arch={','.join(c.arch)} names {len(c.arch)} architectures for students={c.students}: give one, or one per student")
    if len(c.arch) == 1:
        c.arch = c.arch * c.students
    try:
        c.alpha = check_alpha(c.alpha)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if c.method == "kd" and c.alpha in (0.0, math.inf):
        raise ConfigError(f"alpha={c.alpha}: kd scales its divergence by T^2/alpha, so alpha must be in (0, inf)")
    if c.temperature is None:
        c.temperature = 4.0 if c.method == "kd" else 1.0
    _in_range("temperature", c.temperature, 0, math.inf, "a finite number > 0", open_low=True)
    _in_range("beta", c.beta, 0, 1, "a number in [0, 1]")
    _in_range("mimic_weight", c.mimic_weight, 0, math.inf, "a finite number >= 0")
    _one_of("update_order", c.update_order, UPDATE_ORDERS)
    _in_range("labelled_fraction", c.labelled_fraction, 0, 1, "a number in (0, 1]", open_low=True)
    if c.method == "kd" and not c.teacher:
        raise ConfigError("method kd needs teacher=<teacher run directory or model.pt>")
    if c.method != "kd" and c.teacher:
        raise ConfigError(f"teacher={c.teacher} is only used by method kd, not {c.method}")
    _at_least("teacher_index", c.teacher_index, 0)
    _at_least("epochs", c.epochs, 1)
    _at_least("batch_size", c.batch_size, 1)
    _one_of("optimizer", c.optimizer, OPTIMIZERS)
    _in_range("lr", c.lr, 0, math.inf, "a finite number > 0", open_low=True)
    _in_range("momentum", c.momentum, 0, 1, "a number in [0, 1)", open_high=True)
    if c.nesterov and c.optimizer == "sgd" and c.momentum == 0:
        raise ConfigError("nesterov=true needs momentum > 0 (or set nesterov=false)")
    _in_range("weight_decay", c.weight_decay, 0, math.inf, "a finite number >= 0")
    _one_of("schedule", c.schedule, SCHEDULES)
    _at_least("step_size", c.step_size, 1)
    _in_range("gamma", c.gamma, 0, math.inf, "a finite number > 0", open_low=True)
    if c.schedule == "multistep" and not c.milestones:
        raise ConfigError("schedule=multistep needs milestones=<epoch,epoch,...>")
    if any(m < 1 for m in c.milestones) or c.milestones != sorted(set(c.milestones)):
        raise ConfigError(f"milestones={_show(c.milestones)} must be increasing epochs >= 1")
    _in_range("pct_start", c.pct_start, 0, 1, "a number in (0, 1)", open_low=True, open_high=True)
    _in_range("grad_clip", c.grad_clip, 0, math.inf, "a finite number >= 0 (0 = off)")
    _in_range("test_fraction", c.test_fraction, 0, 1, "a number in (0, 1)", open_low=True, open_high=True)
    _one_of("augment", c.augment, AUGMENTATIONS)
    _one_of("normalize", c.normalize, NORMALIZATIONS)
    if not c.summary_last or any(k < 1 for k in c.summary_last):
        raise ConfigError(f"summary_last={_show(c.summary_last)} must list window sizes >= 1")
    _in_range("crash_margin", c.crash_margin, 0, 1, "a number in [0, 1)", open_high=True)
    if c.device not in ("auto", "cpu", "cuda") and not (c.device.startswith("cuda:") and c.device[5:].isdigit()):
        raise ConfigError(f"device={c.device!r} is not allowed; allowed: auto, cpu, cuda, cuda:N")
    _one_of("precision", c.precision, PRECISIONS)
    _one_of("memory_format", c.memory_format, MEMORY_FORMATS)
    if c.out is None:
        archs = "+".join(sorted(set(c.arch)))
        c.out = str(Path("runs") / f"{c.method}-{c.dataset}-{archs}-a{c.alpha:g}-s{c.seed}-{config_sha256(c)[:8]}")
    return c


def config_sha256(cfg: TrainConfig) -> str:
    """Hash of everything that defines the experiment (where its output and data live are not part of it)."""
    values = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("out", "data_dir")}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def _one_of(name: str, value: Any, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed; allowed: {', '.join(sorted(allowed))}")


def _at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(f"{name}={value} must be >= {low}")


def _in_range(name, value, low, high, allowed, *, open_low=False, open_high=False) -> None:
    ok = not math.isnan(value) and (value > low if open_low else value >= low)
    ok = ok and (value < high if open_high or high == math.inf else value <= high)
    if not ok:
        raise ConfigError(f"{name}={value} is not allowed; it must be {allowed}")
