"""KDCL as the OKDPH authors run it: every student distils from the students' mean logits.

L_m = (1−a)·CE(z_m, y) + a·T²·KL(softmax(z_en/T) ‖ softmax(z_m/T)),  z_en = 1/K Σ_j z_j, detached
(tianlizhang/OKDPH src/03_KDCL.py L44–54; a = 0.5 and T = 4 by default, L130–131). The ensemble holds
every student, the one it teaches included. The students step one after another, each from the logits
all of them gave before any step (L46–61); since each loss reaches only its own student's weights, the
order changes nothing but is kept as written.

The official script gives each student its own independently drawn view of the batch: K copies of one
transform composition (L141–148), each applied to the image anew (src/data/cifar.py L122–126). Here
that is `student_augment` with the composition once per student; without it every student sees the
same augmented batch.
"""

from __future__ import annotations

from rdml.keys import Key, in_range
from rdml.methods.base import METHODS, Method, detached, student_logits, update_in_turn

__all__ = ["CollaborativeLearning", "kdcl_terms"]

KEYS = (
    Key("ensemble_weight", 0.5, "float", "kdcl: a, weight of the distillation from the students' mean logits, (1-a) on "
        "cross-entropy (tianlizhang/OKDPH src/03_KDCL.py L54)",
        check=lambda v: in_range("ensemble_weight", v, 0, 1, "a number in [0, 1]")),
)


@METHODS.register("kdcl")
class CollaborativeLearning(Method):
    name = "kdcl"
    description = "KDCL as the OKDPH authors run it: each student distils from the students' mean logits"
    keys = KEYS
    defaults = {**Method.defaults, "temperature": 4.0}  # src/03_KDCL.py L131
    min_students = 2
    views = True

    @classmethod
    def label(cls, keys) -> str:
        return "KDCL"

    @classmethod
    def caption_notes(cls, cfg) -> list[str]:
        if cfg.student_augment:
            return []
        return ["KDCL: every student sees the same augmented batch; the official code draws each student's view "
                "independently (tianlizhang/OKDPH src/data/cifar.py L122–126)."]

    def train_step(self, x, y, cohort) -> list[dict]:
        c = self.cfg
        terms = kdcl_terms(student_logits(x, cohort), y, weight=c.ensemble_weight, temperature=c.temperature,
                           label_smoothing=c.label_smoothing)
        update_in_turn(cohort, terms)
        return detached(terms)


def kdcl_terms(logits: list, labels, *, weight: float, temperature: float, label_smoothing: float = 0.0) -> list[dict]:
    """Each student's terms {"ce": (1−a)·CE, "kd": a·T²·KL(softmax(z_en/T) ‖ softmax(z_m/T))}, z_en the mean of
    every student's logits, detached (tianlizhang/OKDPH src/03_KDCL.py L44–54). Rows labelled UNLABELLED get
    no cross-entropy but are distilled. `label_smoothing`: the run's (rdml.core.losses.supervised_cross_entropy)."""
    import torch

    from rdml.core.losses import kl_distillation, supervised_cross_entropy

    ensemble = torch.stack(logits).mean(dim=0).detach()  # L44
    return [{"ce": (1 - weight) * supervised_cross_entropy(z, labels, label_smoothing),
             "kd": weight * kl_distillation(z, ensemble, temperature)} for z in logits]
