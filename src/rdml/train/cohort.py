"""The networks a run trains: each model with its optimiser, schedule and gradient clipping, and the
cohort's forward pass (one per student, or one vmapped pass when the students are fused).

By default the networks are the students, one per architecture of `arch`; a method that declares its
own (`Method.networks`: one network with several branches and a gate, say) has them built here, from
the same init seed, and rebuilt the same way from model.pt (`rebuild`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rdml.config import config_from_mapping, resolve
from rdml.data.base import Dataset
from rdml.methods import METHODS, Method
from rdml.models import build_model
from rdml.train.average import WeightAverage
from rdml.train.execution import Execution, ExecutionError
from rdml.train.optim import make_optimizer, make_scheduler

__all__ = ["Student", "Cohort", "Architectures", "build_cohort", "rebuild"]


@dataclass
class Student:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    grad_clip: float = 0.0
    run: Callable[[Tensor], Tensor] | None = None  # the model as it runs on the device (rdml.train.execution)
    average: WeightAverage | None = None  # the cohort's moving average of weights (weight_ema), updated after each step
    index: int = 0  # its place in the cohort, and in `average`

    def __call__(self, x: Tensor) -> Tensor:
        return (self.run if self.run is not None else self.model)(x)  # a compiled module has no truth value

    def step(self) -> None:
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        if self.average is not None:
            self.average.update(self.index, self.model)


class Cohort(list):
    """The students, and when they are fused, one forward pass that predicts for all of them."""

    def __init__(self, students, fused: Callable[[Tensor], list[Tensor]] | None = None,
                 runner: Callable[[nn.Module], Callable[[Tensor], Tensor]] | None = None, built_by: str | None = None):
        super().__init__(students)
        self.fused = fused
        self.runner = runner  # how any other model of the run runs here (a method's own, e.g. OKDPH's HWM)
        self.built_by = built_by  # the method that declared these networks (None: one student per architecture)

    def predict(self, x: Tensor) -> list[Tensor]:
        return self.fused(x) if self.fused else [s(x) for s in self]

    @property
    def average(self) -> WeightAverage | None:
        return self[0].average if self else None

    @contextmanager
    def evaluated(self):
        """Inside the block every network holds the weights a run evaluates and saves: its moving average with
        `weight_ema` (rdml.train.average), else its trained weights."""
        if self.average is None:
            yield
            return
        with self.average.swapped([s.model for s in self]):
            yield


def build_cohort(cfg, data: Dataset, execution: Execution, steps_per_epoch: int, outputs: int | None = None,
                 pretrained: dict[str, dict] | None = None, method: Method | None = None) -> Cohort:
    """The networks `method` declares, or the students, initialised from the run's init seed, or from their
    published weights (`pretrained`: per architecture, the file to start from; a new head is still drawn
    from the init seed)."""
    torch.manual_seed(cfg.seed if cfg.init_seed is None else cfg.init_seed)
    networks = method.networks(Architectures(data, outputs, pretrained)) if method is not None else None
    if networks is not None:
        if cfg.weight_ema:
            raise ExecutionError(f"weight_ema: method {cfg.method} trains networks of its own; the moving average of "
                                 "weights is kept for students (independent, kd, dml and its kin)")
        if execution.fuse_students:
            raise ExecutionError(f"fuse_students=true: method {cfg.method} trains networks of its own, which are not fused")
        trained = []
        for model in networks:
            model = model.to(execution.device)
            optimizer = make_optimizer(cfg, model.parameters())
            trained.append(Student(model, optimizer, make_scheduler(cfg, optimizer, steps_per_epoch), cfg.grad_clip,
                                   run=execution.runner(model)))
        return Cohort(trained, None, execution.runner, built_by=cfg.method)
    students = []
    same_init = METHODS[cfg.method].same_init
    for arch in cfg.arch:
        weights = (pretrained or {}).get(arch, {}).get("file")
        model = build_model(arch, data.spec, outputs=outputs, weights=weights, embeddings=data.embeddings).to(execution.device)
        if same_init and students:  # as the first student, whose architecture the method's checks require of all
            model.load_state_dict(students[0].model.state_dict())
        optimizer = make_optimizer(cfg, model.parameters())
        students.append(Student(model, optimizer, make_scheduler(cfg, optimizer, steps_per_epoch), cfg.grad_clip,
                                run=execution.runner(model)))  # fused or not, sequential DML re-predicts one at a time
    if cfg.weight_ema:
        if execution.fuse_students:
            raise ExecutionError("weight_ema: the students' moving average is kept per network, which fuse_students does not "
                                 "step one at a time; set fuse_students=false")
        average = WeightAverage([s.model for s in students], cfg.weight_ema)
        for index, student in enumerate(students):
            student.average, student.index = average, index
    return Cohort(students, execution.fused_runner([s.model for s in students]) if execution.fuse_students else None,
                  execution.runner)


class Architectures:
    """What a method's `networks` builds with: `build(arch, outputs=None)` is a catalogue architecture for the
    run's data (from its published weights where the run starts from them), with the run's `outputs` classes
    unless told otherwise; `spec` is the data's (input shape, classes, kind), for networks of its own."""

    def __init__(self, data: Dataset, outputs: int | None = None, pretrained: dict[str, dict] | None = None):
        self.spec, self.embeddings, self.pretrained = data.spec, data.embeddings, pretrained or {}
        self.outputs = outputs or data.num_classes

    def __call__(self, arch: str, outputs: int | None = None) -> nn.Module:
        weights = self.pretrained.get(arch, {}).get("file")
        return build_model(arch, self.spec, outputs=outputs or self.outputs, weights=weights, embeddings=self.embeddings)


def rebuild(saved: dict, config: dict, data: Dataset, device: torch.device) -> tuple[Cohort, Method | None]:
    """The networks of a model.pt (its content, `saved`) with their final weights, as students without
    optimisers, and the method that declared them, for `rdml.train.evaluate` to score every output it
    declares, as training did. A model.pt that names a method holds the networks that method declares,
    built from the run record's `config`; any other holds one student per architecture (method None: the
    students and their ensemble, read without the config, whichever rdml wrote it)."""
    method = None
    if saved.get("method"):
        cfg = resolve(config_from_mapping(config))
        method = METHODS[cfg.method](cfg)
        networks = method.networks(Architectures(data, saved.get("outputs")))
    else:
        networks = [build_model(arch, data.spec, outputs=saved.get("outputs"), embeddings=data.embeddings)
                    for arch in saved["archs"]]
    if len(networks) != len(saved["states"]):
        raise ValueError(f"model.pt holds {len(saved['states'])} networks, but "
                         f"{'method ' + saved['method'] if saved.get('method') else 'its architecture list'} "
                         f"declares {len(networks)}")
    for model, state in zip(networks, saved["states"]):
        model.load_state_dict(state)
        model.to(device)
    return Cohort([Student(m, None, None) for m in networks], built_by=saved.get("method")), method
