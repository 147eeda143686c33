"""What a training method is, and the registry of methods.

A method is one class in one module of this package, registered with `@METHODS.register(name)`. The
class declares, without importing torch (so that configs and study plans are checked without it):
its own config keys (`keys`, each with default, type and check), its defaults of shared keys
(`defaults`: arch, temperature), the smallest cohort it trains (`min_students`), whether it
distils from a teacher checkpoint (`uses_teacher`), extra checks across keys (`check`) and the
name a paper's table gives it (`label`), what a table caption must say about a run (`caption_notes`),
and the names of its evaluated outputs (`outputs`; `members`, those a table's per-student cell averages).

An instance is one run's training, and declares its models and outputs:
- `networks(build)`: the networks it trains, each with an optimiser, a schedule and a state in model.pt
  of its own (None, the default: one student per architecture of `arch`). The same call rebuilds them
  from model.pt for the audit and the analyses;
- `train_step` takes a batch and the cohort (the trained networks as students with `.model`,
  `.optimizer`, `.step()`, and `cohort.predict(x)`), updates them and returns the named loss terms of
  each student (a list, recorded as `student_k/<term>`) or of each name it chooses (a dict);
- `predict(x, cohort)`: the logits of every evaluated output on a batch, by name; `combine` adds those
  formed from others over the whole split (by default the students' `ensemble`);
- `state_dict` / `load_state_dict` carry any state of its own through checkpoints; `extra_models`
  names models of its own evaluated beside the students (OKDPH's hybrid-weight model).
The trainer knows no method by name.

Method modules import torch inside the functions that train, never at import time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from rdml.keys import Key, real_in_range
from rdml.registry import Registry

__all__ = ["Method", "METHODS", "ALPHA", "update_together", "update_in_turn", "student_logits", "detached",
           "student_predictions", "with_ensemble"]


# The Rényi order, a key of the methods that have one (kd, dml, dml_e): RDML eq. 3.3, Rényi-KD thesis eq. 1.15.
ALPHA = Key("alpha", 1.0, "float", "Rényi order in [0, inf] (kd: in (0, inf)); 1 = KL, i.e. DML and Hinton KD",
            check=lambda v: real_in_range("alpha", v, 0, float("inf"), "a real number in [0, inf]"))


class Method(ABC):
    name: str = ""
    description: str = ""
    keys: tuple[Key, ...] = ()
    defaults: dict[str, Any] = {"arch": ["mlp"], "temperature": 1.0}
    min_students: int = 1
    uses_teacher: bool = False
    tag: str | None = None  # how a run of this method is named when it teaches (None: the method's name)
    views: bool = False  # trains each student on its own view of a batch (`student_augment`): x is a list
    extra_views: int = 0  # views beyond one per student, for models of its own (OKDPH's hybrid-weight model)
    same_init: bool = False  # every student starts from the first one's initial weights (OKDPH)
    # the data sets' tasks it trains on (rdml.data.catalog.TASKS): retrieval sets evaluate each student's features and
    # their concatenation, so a method whose outputs are its students (and their ensemble) alone
    tasks: tuple[str, ...] = ("classification",)

    def __init__(self, cfg, teacher=None):
        self.cfg, self.teacher = cfg, teacher

    @classmethod
    def check(cls, cfg) -> None:
        """Refuse (ConfigError) a resolved config this method cannot train, beyond each key's own check."""

    @classmethod
    @abstractmethod
    def label(cls, keys: Mapping[str, Any]) -> str:
        """The row name a paper's table gives a run of this method with these keys of its own (its `alpha`,
        say; a key left out is at its default)."""

    @classmethod
    def caption_notes(cls, cfg) -> list[str]:
        """What a table caption must say about a run of this config that departs from the exact method."""
        return []

    @abstractmethod
    def train_step(self, x, y, cohort) -> list[dict] | dict[str, dict]:
        """Update the students on one batch; each student's named loss terms, detached (recorded as
        `student_k/<term>`), or a dict of them under names of the method's own (`<name>/<term>`). With
        `student_augment`, x is a list of views of the batch: one per student, then `extra_views`."""

    @classmethod
    def distributable(cls, cfg) -> str | None:
        """Why a run of `cfg` cannot train with one process per student (`distributed`), or None where it can: its
        students then exchange their logits on one shared batch and step together, each process computing its
        student's terms with `terms(logits, y)[k]` (rdml.train.distributed.exchange_step)."""
        return f"method {cls.name} does not train with one process per student; dml and dml_e do"

    def batches_per_step(self) -> int:
        """Mini-batches one `train_step` takes (the loop draws each from an epoch order of its own): one by default;
        one per network for dml's batches=own."""
        return 1

    def end_epoch(self, epoch: int, cohort) -> None:
        """After an epoch's evaluation and learning-rate step (OKDPH fuses the students at epoch ends)."""

    def state_dict(self) -> dict:
        """The method's own state between steps (not the students'), saved in every checkpoint."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def extra_models(self) -> dict:
        """Models evaluated and recorded beside the students, by name (none by default)."""
        return {}

    @classmethod
    def view_count(cls, cfg) -> int:
        """Views of each batch a step takes with `student_augment`: one per student, then `extra_views` (a
        multi-branch method with views says its own: PCL's one per branch)."""
        return cfg.students + cls.extra_views

    @classmethod
    def members(cls, cfg) -> tuple[str, ...]:
        """The evaluated outputs that are the cohort's members: what a table's per-student cell averages and
        the divergence check watches (by default each student, `student_k`)."""
        return tuple(f"student_{k}" for k in range(cfg.students))

    @classmethod
    def outputs(cls, cfg) -> tuple[str, ...]:
        """Every output a run records per epoch and in its summary, in the record's order: by default the
        students, then their `ensemble` when K ≥ 2 (what `combine` forms)."""
        return (*cls.members(cfg), *(("ensemble",) if cfg.students > 1 else ()))

    def networks(self, build) -> list | None:
        """The networks this method trains, in order, each with an optimiser, a schedule and a model.pt state
        of its own. `build(arch, outputs=None)` is a catalogue architecture for the run's data; `build.outputs`
        its classes, `build.spec` the data's spec. Built right after the init seed is set, and built again the
        same way to load model.pt. None (the default): one student per architecture of `arch` (`same_init`,
        published weights and fused forwards honoured)."""
        return None

    def predict(self, x, cohort) -> dict:
        """The logits of every output this method evaluates on one batch, by name, its networks in eval mode:
        by default each student's and each extra model's."""
        return student_predictions(x, cohort, self.extra_models())

    def combine(self, log_probs: dict) -> dict:
        """Every evaluated output's log-probabilities over a whole split, in the record's order, with the
        outputs formed from others: by default the students' `ensemble`."""
        return with_ensemble(log_probs)


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


def student_logits(x, cohort) -> list:
    """Each student's logits: student k on view k when x is a list of views (`student_augment`), else all on x
    (one fused pass where the cohort is fused). The official OKDPH, KDCL and DML codes give each student its
    own independently augmented view of every image (tianlizhang/OKDPH src/data/cifar.py L122–126)."""
    if isinstance(x, (list, tuple)):
        if len(x) < len(cohort):
            raise ValueError(f"{len(x)} views for {len(cohort)} students")
        return [student(view) for student, view in zip(cohort, x)]
    return cohort.predict(x)


def update_in_turn(cohort, terms: list[dict], after=None) -> None:
    """Student by student: zero its gradients, back-propagate its summed terms (the graph kept for the
    next student), step; then `after(student)` (OKDPH's batch-level fusion). Every loss comes from the
    logits all students gave before any step (src/03_KDCL.py L56–61, src/OKDPH.py L90–103)."""
    for k, (student, term) in enumerate(zip(cohort, terms)):
        student.optimizer.zero_grad(set_to_none=True)
        sum(term.values()).backward(retain_graph=k < len(cohort) - 1)
        student.step()
        if after is not None:
            after(student)


def student_predictions(x, cohort, extra: dict | None = None) -> dict:
    """Each student's logits (`student_k`, one fused pass where the cohort is fused), then each extra model's."""
    logits = {f"student_{k}": z for k, z in enumerate(cohort.predict(x))}
    logits.update({name: model(x) for name, model in (extra or {}).items()})
    return logits


def with_ensemble(log_probs: dict) -> dict:
    """The students' log-probabilities, their ensemble when K ≥ 2, the mean of their probabilities
    (log Σ_k p_k − log K), then the other outputs."""
    import math

    import torch

    students = {name: lp for name, lp in log_probs.items() if name.startswith("student_")}
    ensemble = {}
    if len(students) > 1:
        ensemble["ensemble"] = torch.logsumexp(torch.stack(list(students.values())), dim=0) - math.log(len(students))
    return {**students, **ensemble, **{name: lp for name, lp in log_probs.items() if name not in students}}
