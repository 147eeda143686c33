"""The students of a run: each model with its optimiser, schedule and gradient clipping, and the
cohort's forward pass (one per student, or one vmapped pass when the students are fused)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rdml.data.base import Dataset
from rdml.methods import METHODS
from rdml.models import build_model
from rdml.train.execution import Execution
from rdml.train.optim import make_optimizer, make_scheduler

__all__ = ["Student", "Cohort", "build_cohort"]


@dataclass
class Student:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    grad_clip: float = 0.0
    run: Callable[[Tensor], Tensor] | None = None  # the model as it runs on the device (rdml.train.execution)

    def __call__(self, x: Tensor) -> Tensor:
        return (self.run or self.model)(x)

    def step(self) -> None:
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()


class Cohort(list):
    """The students, and when they are fused, one forward pass that predicts for all of them."""

    def __init__(self, students, fused: Callable[[Tensor], list[Tensor]] | None = None,
                 runner: Callable[[nn.Module], Callable[[Tensor], Tensor]] | None = None):
        super().__init__(students)
        self.fused = fused
        self.runner = runner  # how any other model of the run runs here (a method's own, e.g. OKDPH's HWM)

    def predict(self, x: Tensor) -> list[Tensor]:
        return self.fused(x) if self.fused else [s(x) for s in self]


def build_cohort(cfg, data: Dataset, execution: Execution, steps_per_epoch: int, outputs: int | None = None,
                 pretrained: dict[str, dict] | None = None) -> Cohort:
    """The students, initialised from the run's init seed, or from their published weights (`pretrained`:
    per architecture, the file to start from; a new head is still drawn from the init seed)."""
    torch.manual_seed(cfg.seed if cfg.init_seed is None else cfg.init_seed)
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
    return Cohort(students, execution.fused_runner([s.model for s in students]) if execution.fuse_students else None,
                  execution.runner)
