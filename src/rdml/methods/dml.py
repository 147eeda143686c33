"""Deep mutual learning: every peer a teacher (DML eq. 10; Rényi DML, RDML eq. 3.3, for α ≠ 1), or
the peers' average as one teacher (DML_e, DML eq. 11); rdml.core.mutual.mutual_terms.

`update_order=simultaneous` updates every student from the same predictions (what the released codes
do); `sequential` is DML Algorithm 1: student k steps on its peers' latest predictions, then its own
predictions on the batch are recomputed before the next student's loss.

The loss-side choices of DML's Market-1501 experiments (§4.1, Table 5) are keys: `peer_reduction` (eq. 10's
1/(K−1) over the peers, or the official code's sum), `feature_l2` (Table 5's "DML, L2") and the shared
`label_smoothing` (the official code's 0.1).
"""

from __future__ import annotations

import contextlib
import weakref

from rdml.keys import ConfigError, Key, in_range, one_of
from rdml.methods.base import ALPHA, METHODS, Method, detached, student_logits, update_together

__all__ = ["MutualLearning", "EnsembleMutualLearning", "frozen_batch_norm_statistics", "has_features"]

UPDATE_ORDERS = ("simultaneous", "sequential")
PEER_REDUCTIONS = ("mean", "sum")  # rdml.core.mutual.PEER_REDUCTIONS, spelled here without importing torch
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
    Key("peer_reduction", "mean", "str",
        "dml: how each student's mimicry (and feature_l2) term gathers its K-1 peers: mean, DML eq. 10's "
        "1/(K-1) sum (the paper), or sum, without 1/(K-1), as the official DML code adds kl_loss_compute once per "
        "peer (YingZhangDUT/Deep-Mutual-Learning train_models.py L90-96); the same for K = 2; dml_e takes mean only",
        check=lambda v: one_of("peer_reduction", v, PEER_REDUCTIONS)),
    Key("feature_l2", 0.0, "float",
        "dml: weight lambda of DML Table 5's \"DML, L2\", lambda·mean_rows ||f_k - f_l||² between the students' pooled "
        "features (f_l detached, gathered over peers by peer_reduction); the paper gives no lambda; 0 = off. Needs "
        "architectures with features (model.features(x), model.classify(f))",
        check=lambda v: in_range("feature_l2", v, 0, float("inf"), "a finite number >= 0 (0 = off)", open_high=True)),
)


@METHODS.register("dml")
class MutualLearning(Method):
    name = "dml"
    description = "deep mutual learning: DML at alpha=1, RDML otherwise (DML eq. 10, RDML eq. 3.3)"
    keys = KEYS
    min_students = 2
    ensemble = False
    views = True  # with student_augment, each student on its own view (as the OKDPH authors' DML baseline)

    def __init__(self, cfg, teacher=None):
        super().__init__(cfg, teacher)
        self.featured = weakref.WeakKeyDictionary()  # each model's (features, logits) forward as it runs here

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.feature_l2:
            lacking = [arch for arch in dict.fromkeys(cfg.arch) if not has_features(arch)]
            if lacking:
                raise ConfigError(f"feature_l2={cfg.feature_l2:g} compares the students' pooled features, and arch "
                                  f"{', '.join(lacking)} exposes none (an architecture with features(x) and classify(f) "
                                  "says so in the catalogue); set feature_l2=0 or choose such architectures")
            if cfg.fuse_students:
                raise ConfigError(f"feature_l2={cfg.feature_l2:g} with fuse_students=true: the fused forward returns "
                                  "logits only, not the features the L2 term compares; set fuse_students=false")

    @classmethod
    def label(cls, keys) -> str:
        alpha = keys.get("alpha", ALPHA.default)
        base = "DML_e" if cls.ensemble else "DML"
        label = base if alpha == 1 else f"R{base} α={alpha:g}"
        if keys.get("peer_reduction", "mean") == "sum":
            label += " (Σ peers)"
        if keys.get("feature_l2", 0.0):
            label += f", L2 λ={keys['feature_l2']:g}"  # DML Table 5's "DML, L2"
        return label

    @classmethod
    def caption_notes(cls, cfg) -> list[str]:
        notes = []
        if cfg.probability_floor:
            notes.append(f"The mimicry term clamps both distributions to [{cfg.probability_floor:g}, 1] before D_α, as "
                         "the released RDML code does (probability_floor).")
        if cfg.peer_reduction == "sum":
            notes.append("Each student's mimicry term is summed over its K−1 peers, without DML eq. 10's 1/(K−1), as the "
                         "official DML code adds one KL term per peer (YingZhangDUT/Deep-Mutual-Learning train_models.py "
                         "L90–96); for K = 2 the two are the same.")
        if cfg.feature_l2:
            notes.append(f"DML, L2 (DML Table 5): each student also minimises λ·‖f_k − f_l‖² between its pooled features "
                         f"and each peer's (detached), mean over rows, λ = {cfg.feature_l2:g}; the paper gives no λ.")
        return notes

    def terms(self, logits: list, y, features: list | None = None) -> list[dict]:
        from rdml.core.mutual import mutual_terms

        c = self.cfg
        return mutual_terms(logits, y, alpha=c.alpha, temperature=c.temperature, weight=c.mimic_weight,
                            ensemble=self.ensemble, probability_floor=c.probability_floor,
                            peer_reduction=c.peer_reduction, label_smoothing=c.label_smoothing,
                            features=features, feature_weight=c.feature_l2)

    def featured_forward(self, student, x, cohort) -> tuple:
        """(features, logits) of one student from one forward pass, as the run's execution runs it (layout,
        precision, compile): `model.features(x)`, then `model.classify(f)`, forward's two halves."""
        model = student.model
        if model not in self.featured:
            if not (callable(getattr(model, "features", None)) and callable(getattr(model, "classify", None))):
                raise ConfigError(f"feature_l2={self.cfg.feature_l2:g}: {type(model).__name__} has no features(x) "
                                  "and classify(f)")
            wrapped = features_and_logits(model)
            self.featured[model] = cohort.runner(wrapped) if cohort.runner is not None else wrapped
        return self.featured[model](x)

    def predictions(self, x, cohort) -> tuple[list, list | None]:
        """Each student's logits, and with feature_l2 its features from the same forward pass (else None)."""
        if not self.cfg.feature_l2:
            return student_logits(x, cohort), None
        views = x if isinstance(x, (list, tuple)) else [x] * len(cohort)
        pairs = [self.featured_forward(student, view, cohort) for student, view in zip(cohort, views)]
        return [z for _, z in pairs], [f for f, _ in pairs]

    def train_step(self, x, y, cohort) -> list[dict]:
        if self.cfg.update_order == "simultaneous":
            logits, features = self.predictions(x, cohort)
            terms = self.terms(logits, y, features)
            update_together(cohort, terms)
            return detached(terms)
        import torch

        # Algorithm 1. Each student predicts on its own (never fused), so each backward pass has a
        # graph of its own.
        views = x if isinstance(x, (list, tuple)) else [x] * len(cohort)
        featured = bool(self.cfg.feature_l2)

        def predict(student, view):
            return self.featured_forward(student, view, cohort) if featured else (None, student(view))

        outputs = [predict(s, v) for s, v in zip(cohort, views)]
        current = [(None if f is None else f.detach(), z.detach()) for f, z in outputs]
        logged = []
        for k, student in enumerate(cohort):
            now = [*current[:k], outputs[k], *current[k + 1 :]]
            term = self.terms([z for _, z in now], y, [f for f, _ in now] if featured else None)[k]
            student.optimizer.zero_grad(set_to_none=True)
            sum(term.values()).backward()
            student.step()
            with torch.no_grad(), frozen_batch_norm_statistics(student.model):
                current[k] = predict(student, views[k])
            logged += detached([term])
        return logged


@METHODS.register("dml_e")
class EnsembleMutualLearning(MutualLearning):
    name = "dml_e"
    description = "DML with the average of the other students as one teacher (DML eq. 11)"
    ensemble = True

    @classmethod
    def check(cls, cfg) -> None:
        """DML_e has one teacher, the peers' averaged prediction (eq. 11): no peers to sum over, no feature of it."""
        if cfg.peer_reduction != "mean":
            raise ConfigError(f"peer_reduction={cfg.peer_reduction}: dml_e has one teacher, the average of its peers' "
                              "predictions (DML eq. 11), so there is nothing to sum over; leave peer_reduction=mean")
        if cfg.feature_l2:
            raise ConfigError(f"feature_l2={cfg.feature_l2:g}: DML Table 5's \"DML, L2\" pulls each student's features "
                              "towards each peer's; dml_e's teacher is the peers' averaged prediction, which has no "
                              "features; use method=dml")
        super().check(cfg)


def has_features(arch: str) -> bool:
    """Whether the catalogue says `arch` exposes its pooled features: `model.features(x) -> (N, D)` and
    `model.classify(f) -> logits`, with forward(x) = classify(features(x)) (the catalogue's `features` flag)."""
    from rdml.models.catalog import ARCHITECTURES

    return bool(getattr(ARCHITECTURES[arch], "features", False))


def features_and_logits(model):
    """`model` as a module whose forward returns (features(x), classify(features(x))): one pass gives both."""
    from torch import nn

    class FeaturesAndLogits(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            features = self.inner.features(x)
            return features, self.inner.classify(features)

    return FeaturesAndLogits(model)


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
