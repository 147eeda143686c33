"""Each student trained alone on cross-entropy: the papers' Ind. / vanilla, and teacher pretraining."""

from __future__ import annotations

from rdml.methods.base import METHODS, Method, detached, update_together

__all__ = ["Independent", "Teacher"]


@METHODS.register("independent")
class Independent(Method):
    name = "independent"
    description = "each student trained alone on cross-entropy (the papers' Ind. / vanilla)"
    tag = "ind"  # teaching: "kd-resnet32-from-ind-wrn_28_10" (DML Table 4's "1 distills 2")

    @classmethod
    def label(cls, keys) -> str:
        return "Ind."

    def train_step(self, x, y, cohort) -> list[dict]:
        from rdml.core.losses import supervised_cross_entropy

        terms = [{"ce": supervised_cross_entropy(logits, y)} for logits in cohort.predict(x)]
        update_together(cohort, terms)
        return detached(terms)


@METHODS.register("teacher")
class Teacher(Independent):
    name = "teacher"
    description = "an independent run of the teacher architecture; its model.pt is a KD teacher"
    defaults = {**Independent.defaults, "arch": ["cnn_wide"]}
    tag = ""  # a pretrained teacher is named by its architecture alone: "kd-mlp-from-cnn_wide"

    @classmethod
    def label(cls, keys) -> str:
        return "Teacher"
