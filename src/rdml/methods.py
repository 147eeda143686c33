"""Training methods: one small class each, in one explicit registry.

A method takes one batch and the cohort, computes each student's named loss terms, and updates the
students. Most methods update every student from one backward pass of the summed losses (each loss
only reaches its own student's parameters, so this equals separate backward passes); sequential DML
interleaves updates and re-predictions as DML Algorithm 1 does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rdml.config import TrainConfig
from rdml.losses import kd_terms, mutual_terms, supervised_cross_entropy

__all__ = ["Student", "Cohort", "METHOD_CLASSES", "build_method", "method_label"]


@dataclass
class Student:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    grad_clip: float = 0.0
    run: Callable[[Tensor], Tensor] | None = None  # the model as it runs on the device (rdml.execution)

    def __call__(self, x: Tensor) -> Tensor:
        return (self.run or self.model)(x)

    def step(self) -> None:
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()


class Cohort(list):
    """The students, and when they are fused, one forward pass that predicts for all of them."""

    def __init__(self, students, fused: Callable[[Tensor], list[Tensor]] | None = None):
        super().__init__(students)
        self.fused = fused

    def predict(self, x: Tensor) -> list[Tensor]:
        return self.fused(x) if self.fused else [s(x) for s in self]


def update_together(cohort: list[Student], terms: list[dict[str, Tensor]]) -> None:
    for student in cohort:
        student.optimizer.zero_grad(set_to_none=True)
    sum(sum(t.values()) for t in terms).backward()
    for student in cohort:
        student.step()


def detached(terms: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
    return [{name: value.detach() for name, value in t.items()} for t in terms]


class Independent:
    """Each student on cross-entropy alone (rows without a label contribute nothing)."""

    def __init__(self, cfg: TrainConfig, teacher: nn.Module | None = None):
        self.cfg = cfg

    def train_step(self, x: Tensor, y: Tensor, cohort: Cohort) -> list[dict[str, Tensor]]:
        terms = [{"ce": supervised_cross_entropy(logits, y)} for logits in cohort.predict(x)]
        update_together(cohort, terms)
        return detached(terms)


class Distillation:
    """Each student from a frozen teacher in eval mode: (1−β)·CE + β·T²/α·D_α(P_t^T‖Q_s^T)."""

    def __init__(self, cfg: TrainConfig, teacher: Callable[[Tensor], Tensor] | None = None):
        if teacher is None:
            raise ValueError("kd needs a teacher model")
        self.cfg, self.teacher = cfg, teacher

    def train_step(self, x: Tensor, y: Tensor, cohort: Cohort) -> list[dict[str, Tensor]]:
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        c = self.cfg
        terms = [
            kd_terms(logits, teacher_logits, y, alpha=c.alpha, temperature=c.temperature, beta=c.beta)
            for logits in cohort.predict(x)
        ]
        update_together(cohort, terms)
        return detached(terms)


class MutualLearning:
    """DML / RDML (every peer a teacher) or DML_e (the peers' average as one teacher)."""

    ensemble = False

    def __init__(self, cfg: TrainConfig, teacher: nn.Module | None = None):
        self.cfg = cfg

    def terms(self, logits: list[Tensor], y: Tensor) -> list[dict[str, Tensor]]:
        c = self.cfg
        return mutual_terms(
            logits, y, alpha=c.alpha, temperature=c.temperature, weight=c.mimic_weight, ensemble=self.ensemble
        )

    def train_step(self, x: Tensor, y: Tensor, cohort: Cohort) -> list[dict[str, Tensor]]:
        if self.cfg.update_order == "simultaneous":
            terms = self.terms(cohort.predict(x), y)
            update_together(cohort, terms)
            return detached(terms)
        # DML Algorithm 1: student k steps on the latest predictions of its peers, then its own
        # predictions on this batch are recomputed before the next student's loss. Each student
        # predicts on its own (never fused), so each backward pass has a graph of its own.
        logits = [s(x) for s in cohort]
        current = [l.detach() for l in logits]
        logged = []
        for k, student in enumerate(cohort):
            term = self.terms([*current[:k], logits[k], *current[k + 1 :]], y)[k]
            student.optimizer.zero_grad(set_to_none=True)
            sum(term.values()).backward()
            student.step()
            with torch.no_grad(), frozen_batch_norm_statistics(student.model):
                current[k] = student(x)
            logged += detached([term])
        return logged


class EnsembleMutualLearning(MutualLearning):
    ensemble = True


@contextlib.contextmanager
def frozen_batch_norm_statistics(model: nn.Module):
    """Re-predict in train mode (batch statistics) without counting the batch twice in running stats."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


METHOD_CLASSES = {
    "independent": Independent,
    "teacher": Independent,
    "kd": Distillation,
    "dml": MutualLearning,
    "dml_e": EnsembleMutualLearning,
}


def build_method(cfg: TrainConfig, teacher: nn.Module | None = None):
    return METHOD_CLASSES[cfg.method](cfg, teacher)


def method_label(cfg: TrainConfig) -> str:
    """The name a paper's table uses for this configuration."""
    alpha = f"{cfg.alpha:g}"
    if cfg.method == "independent":
        return "Ind."
    if cfg.method == "teacher":
        return "Teacher"
    if cfg.method == "kd":
        return "KD" if cfg.alpha == 1 else f"Rényi KD α={alpha}"
    base = "DML_e" if cfg.method == "dml_e" else "DML"
    return base if cfg.alpha == 1 else f"R{base} α={alpha}"
