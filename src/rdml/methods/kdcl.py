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

from rdml.keys import ConfigError, Key, in_range
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
    def check(cls, cfg) -> None:
        check_kl(cfg)

    @classmethod
    def label(cls, alpha: float) -> str:
        return "KDCL"

    @classmethod
    def caption_notes(cls, cfg) -> list[str]:
        if cfg.student_augment:
            return []
        return ["KDCL: every student sees the same augmented batch; the official code draws each student's view "
                "independently (tianlizhang/OKDPH src/data/cifar.py L122–126)."]

    def train_step(self, x, y, cohort) -> list[dict]:
        c = self.cfg
        terms = kdcl_terms(student_logits(x, cohort), y, weight=c.ensemble_weight, temperature=c.temperature)
        update_in_turn(cohort, terms)
        return detached(terms)


def check_kl(cfg) -> None:
    """The OKDPH code's methods distil with KL divergence alone: refuse a Rényi order."""
    if cfg.alpha != 1:
        raise ConfigError(f"alpha={cfg.alpha:g}: method {cfg.method} distils with KL divergence as the official code does; "
                          "alpha must be 1")


def kdcl_terms(logits: list, labels, *, weight: float, temperature: float) -> list[dict]:
    """Each student's terms {"ce": (1−a)·CE, "kd": a·T²·KL(softmax(z_en/T) ‖ softmax(z_m/T))}, z_en the mean of
    every student's logits, detached (tianlizhang/OKDPH src/03_KDCL.py L44–54). Rows labelled UNLABELLED get
    no cross-entropy but are distilled."""
    import torch

    from rdml.core.losses import supervised_cross_entropy

    ensemble = torch.stack(logits).mean(dim=0).detach()  # L44
    return [{"ce": (1 - weight) * supervised_cross_entropy(z, labels),
             "kd": weight * distillation(z, ensemble, temperature)} for z in logits]


def distillation(logits, teacher_logits, temperature: float):
    """T²·KL(softmax(teacher/T) ‖ softmax(z/T)), mean over rows, as both official scripts write it
    (F.kl_div(..., reduction='batchmean')·T·T; src/03_KDCL.py L48–52, src/OKDPH.py L82–86)."""
    import torch.nn.functional as F

    return F.kl_div(F.log_softmax(logits / temperature, dim=1), F.softmax(teacher_logits / temperature, dim=1),
                    reduction="batchmean") * temperature * temperature


