"""Deep mutual learning: every peer a teacher (DML eq. 10; Rényi DML, RDML eq. 3.3, for α ≠ 1), or
the peers' average as one teacher (DML_e, DML eq. 11); rdml.core.mutual.mutual_terms.

`update_order=simultaneous` updates every student from the same predictions (what the released codes
do); `sequential` is DML Algorithm 1: student k steps on its peers' latest predictions, then its own
predictions on the batch are recomputed before the next student's loss.
"""

from __future__ import annotations

import contextlib

from rdml.keys import Key, in_range, one_of
from rdml.methods.base import ALPHA, METHODS, Method, detached, student_logits, update_together

__all__ = ["MutualLearning", "EnsembleMutualLearning", "frozen_batch_norm_statistics"]

UPDATE_ORDERS = ("simultaneous", "sequential")
KEYS = (
    ALPHA,
    Key("mimic_weight", 1.0, "float", "dml/dml_e: weight on the mimicry term",
        check=lambda v: in_range("mimic_weight", v, 0, float("inf"), "a finite number >= 0", open_high=True)),
    Key("update_order", "simultaneous", "str",
        "simultaneous (all students from the same predictions) or sequential (DML Algorithm 1)",
        check=lambda v: one_of("update_order", v, UPDATE_ORDERS)),
    Key("probability_floor", 0.0, "float",
        "dml/dml_e: 0 = exact D_alpha from log-probabilities; > 0 clamps both distributions to [floor, 1] first, "
        "as the released RDML code does with 1e-8",
        check=lambda v: in_range("probability_floor", v, 0, 1, "a number in [0, 1) (0 = exact, no clamp)", open_high=True)),
)


@METHODS.register("dml")
class MutualLearning(Method):
    name = "dml"
    description = "deep mutual learning: DML at alpha=1, RDML otherwise (DML eq. 10, RDML eq. 3.3)"
    keys = KEYS
    min_students = 2
    ensemble = False
    views = True  # with student_augment, each student on its own view (as the OKDPH authors' DML baseline)

    @classmethod
    def label(cls, keys) -> str:
        alpha = keys.get("alpha", ALPHA.default)
        base = "DML_e" if cls.ensemble else "DML"
        return base if alpha == 1 else f"R{base} α={alpha:g}"

    @classmethod
    def caption_notes(cls, cfg) -> list[str]:
        if not cfg.probability_floor:
            return []
        return [f"The mimicry term clamps both distributions to [{cfg.probability_floor:g}, 1] before D_α, as the "
                "released RDML code does (probability_floor)."]

    def terms(self, logits: list, y) -> list[dict]:
        from rdml.core.mutual import mutual_terms

        c = self.cfg
        return mutual_terms(logits, y, alpha=c.alpha, temperature=c.temperature, weight=c.mimic_weight,
                            ensemble=self.ensemble, probability_floor=c.probability_floor)

    def train_step(self, x, y, cohort) -> list[dict]:
        if self.cfg.update_order == "simultaneous":
            terms = self.terms(student_logits(x, cohort), y)
            update_together(cohort, terms)
            return detached(terms)
        import torch

        # Algorithm 1. Each student predicts on its own (never fused), so each backward pass has a
        # graph of its own.
        views = x if isinstance(x, (list, tuple)) else [x] * len(cohort)
        logits = [s(v) for s, v in zip(cohort, views)]
        current = [l.detach() for l in logits]
        logged = []
        for k, student in enumerate(cohort):
            term = self.terms([*current[:k], logits[k], *current[k + 1 :]], y)[k]
            student.optimizer.zero_grad(set_to_none=True)
            sum(term.values()).backward()
            student.step()
            with torch.no_grad(), frozen_batch_norm_statistics(student.model):
                current[k] = student(views[k])
            logged += detached([term])
        return logged


@METHODS.register("dml_e")
class EnsembleMutualLearning(MutualLearning):
    name = "dml_e"
    description = "DML with the average of the other students as one teacher (DML eq. 11)"
    ensemble = True


@contextlib.contextmanager
def frozen_batch_norm_statistics(model):
    """Re-predict in train mode (batch statistics) without counting the batch twice in running stats."""
    from torch import nn

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
