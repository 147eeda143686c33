"""Each student trained alone on cross-entropy: the papers' Ind. / vanilla, and teacher pretraining; with
`confidence_penalty` β > 0, DML Table 5's "Independent, Entropy": CE − β·H(p_θ(y|x)).

DML's text cites two entropy regularisers for that row, Entropy-SGD [4] and the confidence penalty of Pereyra
et al. [17] ("connection to entropy regularisation-based approaches [4, 17]", §4.8; Table 5 names [4]); rdml
takes the confidence penalty, the one that is a loss term (Entropy-SGD is an optimiser of a local-entropy
objective, not a term of this loss).
"""

from __future__ import annotations

from rdml.keys import Key, in_range
from rdml.methods.base import METHODS, Method, detached, update_together

__all__ = ["Independent", "Teacher"]

CONFIDENCE_PENALTY = Key(
    "confidence_penalty", 0.0, "float",
    "independent: beta of Pereyra et al. 2017's confidence penalty, CE - beta·H(p) (DML Table 5's \"Independent, "
    "Entropy\"; the DML paper gives no beta); 0 = off",
    check=lambda v: in_range("confidence_penalty", v, 0, float("inf"), "a finite number >= 0 (0 = off)", open_high=True))


@METHODS.register("independent")
class Independent(Method):
    name = "independent"
    tasks = ("classification", "retrieval")  # retrieval: DML §4.1 on Market-1501
    description = "each student trained alone on cross-entropy (the papers' Ind. / vanilla)"
    keys = (CONFIDENCE_PENALTY,)
    tag = "ind"  # teaching: "kd-resnet32-from-ind-wrn_28_10" (DML Table 4's "1 distills 2")

    @classmethod
    def label(cls, keys) -> str:
        beta = keys.get("confidence_penalty", CONFIDENCE_PENALTY.default)
        return f"Ind. + entropy β={beta:g}" if beta else "Ind."

    @classmethod
    def caption_notes(cls, cfg) -> list[str]:
        if not cfg.confidence_penalty:
            return []
        return [f"Ind. + entropy (DML Table 5's \"Independent, Entropy\"): cross-entropy minus β·H(p), the confidence "
                f"penalty of Pereyra et al. 2017, β = {cfg.confidence_penalty:g}. The DML paper cites both Entropy-SGD "
                "[4] and this penalty [17] as entropy regularisation and gives no β; rdml takes the penalty."]

    def train_step(self, x, y, cohort) -> list[dict]:
        from rdml.core.losses import confidence_penalty, supervised_cross_entropy

        c = self.cfg
        terms = []
        for logits in cohort.predict(x):
            term = {"ce": supervised_cross_entropy(logits, y, c.label_smoothing)}
            if c.confidence_penalty:
                term["confidence"] = confidence_penalty(logits, c.confidence_penalty)
            terms.append(term)
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
