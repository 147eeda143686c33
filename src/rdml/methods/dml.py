"""Deep mutual learning: every peer a teacher (DML eq. 10; Rényi DML, RDML eq. 3.3, for α ≠ 1), or
the peers' average as one teacher (DML_e, DML eq. 11); rdml.core.mutual.mutual_terms.

`update_order=simultaneous` updates every student from the same predictions (what the released codes
do); `sequential` is DML Algorithm 1: student k steps on its peers' latest predictions, then its own
predictions on the batch are recomputed before the next student's loss.

The loss-side choices of DML's Market-1501 experiments (§4.1, Table 5) are keys: `peer_reduction` (eq. 10's
1/(K−1) over the peers, or the official code's sum), `feature_l2` (Table 5's "DML, L2") and the shared
`label_smoothing` (the official code's 0.1).

`batches` says which mini-batches a step takes. `shared` (the default) is DML Algorithm 1: every network steps on
the same batch. `own` is the official re-ID code's loop (YingZhangDUT/Deep-Mutual-Learning): each step runs one
training op per network in turn (train_models.py L310-316), each run dequeues a fresh batch (L197-201, the images
every loss reads, L216), so network 0 steps on batch b_2t and network 1 on b_2t+1. Network i's loss is its
cross-entropy plus KL(p_j ‖ p_i) of every peer j on its own batch (L70-114), the peers' logits computed in the same
graph, built with is_training=True (L149-153, passed to batch norm and dropout by nets/mobilenet_v1.py L325-326):
in training mode on that batch (its batch statistics, dropout drawn), while their batch-norm moving averages stay,
since network i's op groups only the UPDATE_OPS of its own scope (L234-235, L280-282; slim's batch_norm puts its
updates in that collection by default, which nets/mobilenet_v1.py L409-415 keeps and nets/inception_utils.py L54
names). Its gradients reach only its own variables (L237-241), so the peers' predictions are constants. Network 1
thus sees network 0 after its step: `update_order=sequential`. Here network k's t-th batch is batch t of an epoch
order of its own (rdml.data.base.student_epoch_batches: network 0's is a shared run's), so each network sees every
training row once an epoch, where the official code's stream of shuffled batches has no epochs. The official loop
also spends one batch on its summaries every 100 steps (L323-325), which no network trains on; rdml does not.
"""

from __future__ import annotations

import contextlib
import weakref

from rdml.keys import ConfigError, Key, in_range, one_of
from rdml.methods.base import ALPHA, METHODS, Method, detached, student_logits, update_together

__all__ = ["MutualLearning", "EnsembleMutualLearning", "frozen_batch_norm_statistics", "has_features"]

UPDATE_ORDERS = ("simultaneous", "sequential")
BATCHES = ("shared", "own")
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
    Key("batches", "shared", "str",
        "dml/dml_e: shared (DML Algorithm 1: every network steps on the same mini-batch) or own (each network steps on "
        "a mini-batch of its own, network k's t-th batch being batch t of an epoch order of its own, and mimics its "
        "peers' predictions on that batch, made in training mode without moving their batch-norm statistics, as the "
        "official DML re-ID code's loop runs one training op per network, each dequeuing a fresh batch: "
        "YingZhangDUT/Deep-Mutual-Learning train_models.py L197-201, L310-316; with update_order=sequential, the "
        "official order, network k sees the networks before it after their step)",
        check=lambda v: one_of("batches", v, BATCHES)),
)


@METHODS.register("dml")
class MutualLearning(Method):
    name = "dml"
    tasks = ("classification", "retrieval")  # retrieval: DML §4.1 on Market-1501
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
        if cfg.batches == "own":
            if cfg.student_augment:
                raise ConfigError(f"batches=own with student_augment={','.join(cfg.student_augment)}: student_augment gives "
                                  "each student a view of one shared batch, and batches=own gives each network a batch of "
                                  "its own (augmented by `augment`); leave student_augment empty or set batches=shared")
            if cfg.fuse_students:
                raise ConfigError("batches=own with fuse_students=true: the fused forward runs every student on one batch "
                                  "and moves every student's batch-norm statistics, where network k's peers predict on its "
                                  "batch with theirs held; set fuse_students=false")
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
    def distributable(cls, cfg) -> str | None:
        """DML §4.5's distributed DML: each student on a GPU of its own, "the predictions and parameters of two networks
        are updated simultaneously" (Fig. 2b), which is update_order=simultaneous on one shared batch."""
        if cfg.update_order != "simultaneous":
            return (f"update_order={cfg.update_order} steps the students one after the other, each on its peers' latest "
                    "predictions (DML Algorithm 1), where one process per student updates them simultaneously (DML §4.5); "
                    "set update_order=simultaneous")
        if cfg.batches != "shared":
            return f"batches={cfg.batches} gives each network a batch of its own, where the processes exchange their logits on one shared batch"
        if cfg.feature_l2:
            return f"feature_l2={cfg.feature_l2:g} compares the students' features, where the processes exchange logits only"
        return None

    @classmethod
    def label(cls, keys) -> str:
        alpha = keys.get("alpha", ALPHA.default)
        base = "DML_e" if cls.ensemble else "DML"
        label = base if alpha == 1 else f"R{base} α={alpha:g}"
        tags = [*(["Σ peers"] if keys.get("peer_reduction", "mean") == "sum" else []),
                *(["own batches"] if keys.get("batches", "shared") == "own" else [])]
        if tags:
            label += f" ({', '.join(tags)})"
        if keys.get("feature_l2", 0.0):
            label += f", L2 λ={keys['feature_l2']:g}"  # DML Table 5's "DML, L2"
        if keys.get("distributed", False):
            label += ", distributed"  # DML §4.5, Fig. 2b: one process (GPU) per student
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
        if cfg.batches == "own":
            order = ("the networks step in turn, each mimicking the ones before it as they are after their step, as the "
                     "official loop runs them" if cfg.update_order == "sequential" else
                     "every network's loss is taken from the cohort as it was before any of them stepped "
                     "(update_order=simultaneous), where the official loop lets each network see the ones before it "
                     "after their step")
            notes.append("Each network steps on a mini-batch of its own (batches=own), as the official DML re-ID code runs "
                         "one training op per network, each dequeuing a fresh batch (YingZhangDUT/Deep-Mutual-Learning "
                         "train_models.py L197–201, L310–316), not on one shared batch as DML Algorithm 1: it mimics its "
                         "peers' predictions on its own batch, made in training mode without moving their batch-norm "
                         f"statistics; every network sees every training example once an epoch, in an order of its own; {order}.")
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

    def batches_per_step(self) -> int:
        """Mini-batches one step takes: one per network with batches=own (the loop draws network k's from an epoch
        order of its own, rdml.data.base.student_epoch_batches), else the one all networks share."""
        return self.cfg.students if self.cfg.batches == "own" else 1

    def train_step(self, x, y, cohort) -> list[dict]:
        if self.cfg.batches == "own":
            return self.step_on_own_batches(x, y, cohort)
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

    def step_on_own_batches(self, x, y, cohort) -> list[dict]:
        """batches=own: network k steps on its own batch (x[k], y[k]), its terms from its own prediction and its
        peers' on that batch, as the official graph computes them (train_models.py L70-114, L149-153, L234-241): the
        peers in training mode (batch statistics, dropout) without moving their batch-norm statistics
        (`frozen_batch_norm_statistics`), as constants (no gradient). `update_order=sequential`: network k predicts
        and steps before network k+1 predicts, so network k+1 sees it after its step (the official loop, L310-316);
        `simultaneous`: every network's terms from the cohort before any step, then one backward of them all
        (`update_together`). Given one batch, not one per network (the autotuner's timed step), every network's
        batch is that one."""
        import torch

        if not isinstance(y, (list, tuple)):
            x, y = [x] * len(cohort), [y] * len(cohort)
        if not len(x) == len(y) == len(cohort):
            raise ValueError(f"batches=own: {len(x)} inputs and {len(y)} label batches for {len(cohort)} networks")
        featured = bool(self.cfg.feature_l2)

        def predict(network, inputs):
            return self.featured_forward(network, inputs, cohort) if featured else (None, network(inputs))

        def terms_on_own_batch(k: int) -> dict:
            outputs = []
            for j, network in enumerate(cohort):
                if j == k:
                    outputs.append(predict(network, x[k]))
                    continue
                with torch.no_grad(), frozen_batch_norm_statistics(network.model):
                    outputs.append(predict(network, x[k]))
            return self.terms([z for _, z in outputs], y[k], [f for f, _ in outputs] if featured else None)[k]

        if self.cfg.update_order == "simultaneous":
            terms = [terms_on_own_batch(k) for k in range(len(cohort))]
            update_together(cohort, terms)
            return detached(terms)
        logged = []
        for k, network in enumerate(cohort):
            term = terms_on_own_batch(k)
            network.optimizer.zero_grad(set_to_none=True)
            sum(term.values()).backward()
            network.step()
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

    return ARCHITECTURES[arch].features


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
