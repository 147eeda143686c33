"""Knowledge distillation from a frozen teacher in eval mode: Hinton KD at α = 1, Rényi KD otherwise.

L = (1−β)·CE + β·T²/α·D_α(P_t^T‖Q_s^T)  (Rényi-KD thesis eqs. 1.15–1.16; rdml.core.distillation.kd_terms).
"""

from __future__ import annotations

import math

from rdml.keys import ConfigError, Key, at_least, in_range, one_of
from rdml.methods.base import ALPHA, METHODS, Method, detached, update_together

__all__ = ["Distillation"]


@METHODS.register("kd")
class Distillation(Method):
    name = "kd"
    tasks = ("classification", "retrieval")  # retrieval: DML §4.1 on Market-1501
    description = "KD from a frozen teacher: Hinton KD at alpha=1, Rényi KD otherwise (thesis eqs. 1.15-1.16)"
    keys = (
        ALPHA,
        Key("beta", 0.9, "float", "kd: weight of the distillation term, (1-beta) on cross-entropy",
            check=lambda v: in_range("beta", v, 0, 1, "a number in [0, 1]")),
        Key("teacher", None, "str", "kd: teacher run directory or model.pt file"),
        Key("teacher_index", 0, "int", "kd: which model of the teacher checkpoint to use",
            check=lambda v: at_least("teacher_index", v, 0)),
        Key("kd_scale", "t2", "str", "kd: t2 (Hinton's T^2 on the distillation term) or none (the DML-vs-KD article's printed loss)",
            check=lambda v: one_of("kd_scale", v, ("t2", "none"))),
    )
    defaults = {**Method.defaults, "temperature": 4.0}
    uses_teacher = True

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.alpha in (0.0, math.inf):
            raise ConfigError(f"alpha={cfg.alpha}: kd scales its divergence by T^2/alpha, so alpha must be in (0, inf)")
        if not cfg.teacher:
            raise ConfigError("method kd needs teacher=<teacher run directory or model.pt>")

    @classmethod
    def label(cls, keys) -> str:
        alpha = keys.get("alpha", ALPHA.default)
        return "KD" if alpha == 1 else f"Rényi KD α={alpha:g}"

    def train_step(self, x, y, cohort) -> list[dict]:
        import torch

        from rdml.core.distillation import kd_terms

        with torch.no_grad():
            teacher_logits = self.teacher(x)
        c = self.cfg
        terms = [kd_terms(logits, teacher_logits, y, alpha=c.alpha, temperature=c.temperature, beta=c.beta,
                          temperature_squared=c.kd_scale == "t2", label_smoothing=c.label_smoothing)
                 for logits in cohort.predict(x)]
        update_together(cohort, terms)
        return detached(terms)
