"""What a training method is, and the registry of methods.

A method is one class in one module of this package, registered with `@METHODS.register(name)`. The
class declares, without importing torch (so that configs and study plans are checked without it):
its own config keys (`keys`, each with default, type and check), its defaults of shared keys
(`defaults`: arch, temperature), the smallest cohort it trains (`min_students`), whether it
distils from a teacher checkpoint (`uses_teacher`), extra checks across keys (`check`) and the
name a paper's table gives it (`label`), and what a table caption must say about a run (`caption_notes`). An instance is one run's training: `train_step` takes a
batch and the cohort (students with `.model`, `.optimizer`, `.step()`, and `cohort.predict(x)`),
updates the students and returns each student's named loss terms; `state_dict` /
`load_state_dict` carry any state of its own through checkpoints; `extra_models` names models it
wants evaluated beside the students. The trainer knows no method by name.

Method modules import torch inside the functions that train, never at import time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from rdml.keys import Key
from rdml.registry import Registry

__all__ = ["Method", "METHODS", "update_together", "detached"]


class Method(ABC):
    name: str = ""
    description: str = ""
    keys: tuple[Key, ...] = ()
    defaults: dict[str, Any] = {"arch": ["mlp"], "temperature": 1.0}
    min_students: int = 1
    uses_teacher: bool = False
    tag: str | None = None  # how a run of this method is named when it teaches (None: the method's name)

    def __init__(self, cfg, teacher=None):
        self.cfg, self.teacher = cfg, teacher

    @classmethod
    def check(cls, cfg) -> None:
        """Refuse (ConfigError) a resolved config this method cannot train, beyond each key's own check."""

    @classmethod
    @abstractmethod
    def label(cls, alpha: float) -> str:
        """The row name a paper's table gives a run of this method at order α."""

    @classmethod
    def caption_notes(cls, cfg) -> list[str]:
        """What a table caption must say about a run of this config that departs from the exact method."""
        return []

    @abstractmethod
    def train_step(self, x, y, cohort) -> list[dict]:
        """Update the students on one batch; each student's named loss terms, detached."""

    def state_dict(self) -> dict:
        """The method's own state between steps (not the students'), saved in every checkpoint."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def extra_models(self) -> dict:
        """Models evaluated and recorded beside the students, by name (none by default)."""
        return {}


METHODS: Registry[type[Method]] = Registry("method")


def update_together(cohort, terms: list[dict]) -> None:
    """One backward pass of every student's summed terms: each loss only reaches its own student's
    parameters (peers are detached), so this equals a separate backward pass per student."""
    for student in cohort:
        student.optimizer.zero_grad(set_to_none=True)
    sum(sum(t.values()) for t in terms).backward()
    for student in cohort:
        student.step()


def detached(terms: list[dict]) -> list[dict]:
    return [{name: value.detach() for name, value in t.items()} for t in terms]
