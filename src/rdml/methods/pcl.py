"""PCL: peer collaborative learning (Wu & Gong, "Peer Collaborative Learning for Online Knowledge
Distillation", AAAI 2021), as the official OKDPH code runs it for its PCL baseline (tianlizhang/OKDPH
src/06_PCL.py at a562089, networks rdml.models.zoo.pcl).

The method trains two networks of the branched backbone (L172-182): the network itself, whose B
branches ("peers") each take their own augmented view of the batch through the shared trunk and whose
ensemble classifier reads the peers' concatenated features (the "peer ensemble teacher"), and its
temporal mean (the "peer mean teacher"), a second network that no optimiser steps (its optimiser, L178,
is never used). Every batch (L144-164), both in train mode, both forward the same views (the temporal
mean's batch-norm statistics are its own, updated by its own forward); with z_k branch k's logits, z_e
the ensemble classifier's and z'_j the temporal mean's branch j, the loss is (LossWrapper, L85-97)

    L = CE(z_e, y) + Σ_k [ CE(z_k, y) + w(e)·T²·KL(p_e ‖ p_k) + w(e)·1/(B−1) Σ_{j≠k} T²·KL(p'_j ‖ p_k) ],

p = softmax(·/T), T = 3 (KDLoss, L31; PMLoss, L52), z_e and z'_j detached. One SGD step of the network,
then the temporal mean's parameters (not its buffers) move towards it (`update_ema_variables`, L107-111):
θ' ← α·θ' + (1−α)·θ with α = min(1 − 1/(t+1), decay). The ramp-up is w(e) = exp(−5(1 − e/d)²) for
e ≤ 80 and 1 after (`compute_rampup_weight`, L79-83), e the epoch counted from 0 (rdml's epoch − 1).

Two departures of the official code from the method as published are keys whose defaults are the paper's
(Wu & Gong: the mean teacher's exponential moving average, and a ramp-up over the first 80 epochs):
- `rampup_divisor` d, default 80, the ramp-up length. The official code divides by its λ = 1 instead
  (`epoch / lambd`, L83, called with the defaults λ = 1, α = 80, L89): w = 1 at epoch 1, exp(−5) ≈ 0.0067 at
  epochs 0 and 2, and below 1e-8 for epochs 3-80, so the distillation is almost off until epoch 81.
  The OKDPH studies set rampup_divisor=1.
- `ema_global_step`, default `steps`: t is the number of optimiser steps taken, this one included, as the
  mean-teacher code the official function copies passes it. The official loop passes global_step=0
  (L164), so α = min(0, decay) = 0 and the temporal mean is a copy of the network's weights after every
  step: it differs from the network only in its batch-norm statistics. The OKDPH studies set zero.
`ema_decay` is the decay, 0.999 (L164).

Evaluated and reported: the temporal-mean network alone, each of its branches on the same test batch
(`test(args, nets[1], ...)`, L194, L115-141: the batch stacked once per branch, L124), in eval mode; the
network trained and its ensemble classifier are never tested. The official best accuracy is the highest
of any branch at any epoch (`best_acc = max(metrics['test_acces'])` over branches each epoch, L197-199,
returned at L207 for each run): the best epoch of the best output, as the OKDPH supplement reports it.
The outputs here are `branch_k`, the temporal mean's branch k.

Each branch's view: `student_augment` with one augmentation per branch (the official code's default
transform list, one composition per branch, L243-251, each applied to the image anew,
src/data/cifar.py L122-126); without it every branch sees the same augmented batch.
"""

from __future__ import annotations

import math

from rdml.core.branched import BranchedBaseline, branches_key
from rdml.keys import ConfigError, Key, in_range, one_of
from rdml.methods.base import METHODS, Method

__all__ = ["PeerCollaborative", "pcl_loss", "peer_mean_distillation", "rampup_weight", "update_temporal_mean",
           "RAMPUP_EPOCHS", "EMA_GLOBAL_STEPS"]

RAMPUP_EPOCHS = 80  # compute_rampup_weight's alpha: full weight after this epoch (src/06_PCL.py L79-81)
EMA_GLOBAL_STEPS = ("steps", "zero")


KEYS = (
    branches_key("pcl", 3, "number of branches (peers) of the network, >= 2 (the official default, tianlizhang/OKDPH "
                 "src/06_PCL.py L233)", why="the peers of one network"),
    Key("rampup_divisor", 80.0, "float", "pcl: d in the distillation ramp-up exp(-5(1-e/d)^2), e <= 80; 80 as "
        "published, 1 as the official code divides (src/06_PCL.py L83)",
        check=lambda v: in_range("rampup_divisor", v, 0, float("inf"), "a finite number > 0", open_low=True,
                                 open_high=True)),
    Key("ema_decay", 0.999, "float", "pcl: decay of the temporal-mean network's moving average (src/06_PCL.py L164)",
        check=lambda v: in_range("ema_decay", v, 0, 1, "a number in [0, 1]")),
    Key("ema_global_step", "steps", "str", "pcl: the step count t in the moving average's min(1-1/(t+1), decay): "
        "steps (the optimiser steps taken, as published) or zero (the official global_step=0, src/06_PCL.py L164: "
        "the temporal mean copies the network every step)",
        check=lambda v: one_of("ema_global_step", v, EMA_GLOBAL_STEPS)),
)


@METHODS.register("pcl")
class PeerCollaborative(BranchedBaseline, Method):
    name = "pcl"
    description = ("peer collaborative learning: the branches of one network distil from their ensemble classifier and "
                   "from each other's temporal mean (Wu & Gong 2021)")
    keys = KEYS
    defaults = {"arch": ["okdph_resnet32"], "temperature": 3.0}  # src/06_PCL.py L217; KDLoss/PMLoss T=3, L31, L52
    views = True

    def __init__(self, cfg, teacher=None):
        super().__init__(cfg, teacher)
        self.steps = 0  # optimiser steps taken, beside the official epoch (BranchedBaseline)

    @classmethod
    def check(cls, cfg) -> None:
        from rdml.models.zoo.pcl import PCL_NETWORKS

        if cfg.students != 1:
            raise ConfigError(f"students={cfg.students}: pcl trains one network of several branches; set branches=K "
                              "and give one architecture")
        one_of("arch", cfg.arch[0], PCL_NETWORKS)
        if cfg.student_augment and len(cfg.student_augment) != cfg.branches:
            raise ConfigError(f"student_augment={','.join(cfg.student_augment)} names {len(cfg.student_augment)} "
                              f"augmentations; pcl with branches={cfg.branches} takes one per branch, {cfg.branches}")

    @classmethod
    def view_count(cls, cfg) -> int:
        """Views of each batch a step takes: one per branch."""
        return cfg.branches

    @classmethod
    def label(cls, keys) -> str:
        return "PCL"

    @classmethod
    def caption_notes(cls, cfg) -> list[str]:
        notes = []
        if not cfg.student_augment:
            notes.append("PCL: every branch sees the same augmented batch; the paper and the official code augment "
                         "each branch's input on its own (tianlizhang/OKDPH src/06_PCL.py L243-251).")
        if cfg.rampup_divisor != RAMPUP_EPOCHS:
            d = f"{cfg.rampup_divisor:g}"
            notes.append(f"PCL: the distillation ramp-up exp(-5(1-e/{d})^2) for epochs e <= 80 (from 0) divides by {d}, "
                         "not by the ramp-up length 80" + (", as the official code does (src/06_PCL.py L79-83): the "
                         "distillation is almost off for epochs 2-80" if cfg.rampup_divisor == 1 else "") + ".")
        if cfg.ema_global_step == "zero":
            notes.append("PCL: the temporal-mean network copies the trained network's weights after every step (the "
                         "official global_step=0, src/06_PCL.py L109 and L164), not a moving average; only its "
                         "batch-norm statistics are its own.")
        return notes

    @classmethod
    def outputs(cls, cfg) -> tuple[str, ...]:
        """The members: the temporal-mean network's branches, which the official code tests (src/06_PCL.py L194)."""
        return cls.members(cfg)

    def networks(self, build) -> list:
        """The network, then its temporal mean, drawn in that order (src/06_PCL.py L172-176); the temporal mean's
        parameters take no gradient (`param.detach_()` with ema=True, resnet_pcl.py L164-166)."""
        from rdml.models.zoo.pcl import PCL_NETWORKS

        make = PCL_NETWORKS[self.cfg.arch[0]]
        network = make(build.spec.input_shape, build.outputs, self.cfg.branches)
        mean = make(build.spec.input_shape, build.outputs, self.cfg.branches).requires_grad_(False)
        return [network, mean]

    def train_step(self, x, y, cohort) -> dict[str, dict]:
        """One batch of src/06_PCL.py L149-164."""
        import torch

        network, mean = cohort[0], cohort[1]
        c = self.cfg
        logits, ensemble = network(x)  # L152
        with torch.no_grad():
            mean_logits, _ = mean(x)  # L153
        total, terms = pcl_loss(logits, ensemble, mean_logits, y, weight=rampup_weight(self.epoch, c.rampup_divisor),
                                temperature=c.temperature, label_smoothing=c.label_smoothing)
        network.optimizer.zero_grad(set_to_none=True)  # L157-159
        total.backward()
        network.step()
        self.steps += 1
        step = self.steps if c.ema_global_step == "steps" else 0
        update_temporal_mean(mean.model, network.model, c.ema_decay, step)  # L164
        return {name: {k: v.detach() for k, v in t.items()} for name, t in terms.items()}

    def predict(self, x, cohort) -> dict:
        """The temporal-mean network's branches, every branch on the same batch (src/06_PCL.py L124); under
        per-network test noise, the temporal mean's own draw (network 1)."""
        inputs = x[1] if isinstance(x, (list, tuple)) else x
        logits, _ = cohort[1](inputs)
        return {f"branch_{k}": z for k, z in enumerate(logits)}

    def combine(self, log_probs: dict) -> dict:
        return dict(log_probs)  # no output formed from others: the official code tests none

    def state_dict(self) -> dict:
        return {**super().state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.steps = state.get("steps", 0)


def rampup_weight(epoch: int, divisor: float) -> float:
    """w(e) = exp(−5(1 − e/d)²) for e ≤ 80, else 1 (`compute_rampup_weight` with λ = 1, src/06_PCL.py L79-83,
    which divides by λ where the ramp-up length d belongs). Not the other baselines' ramp-up
    (rdml.core.branched.consistency_weight): no clip but a cut after epoch 80, math.exp, −5·(·)**2, as written
    there."""
    if epoch > RAMPUP_EPOCHS:
        return 1.0
    return 1.0 * math.exp(-5 * (1 - epoch / divisor) ** 2)


def peer_mean_distillation(logits, targets: list, temperature: float):
    """1/(B−1) Σ_j T²·KL(softmax(z'_j/T) ‖ softmax(z/T)) over the other branches' temporal-mean logits z'_j,
    detached (`PMLoss`, src/06_PCL.py L51-63)."""
    from rdml.core.losses import kl_distillation

    loss = 0
    for target in targets:
        loss = loss + kl_distillation(logits, target.detach(), temperature)
    return loss / len(targets)


def pcl_loss(logits: list, ensemble, mean_logits: list, labels, *, weight: float, temperature: float,
             label_smoothing: float = 0.0):
    """The loss of src/06_PCL.py L85-97, summed in its order, and its terms by name: "ensemble" {"ce"}, and each
    "branch_k" {"ce", "pe": w·T²·KL(p_e ‖ p_k), "pm": w·PMLoss}. Rows labelled UNLABELLED get no cross-entropy
    but are distilled. `label_smoothing`: the run's (rdml.core.losses.supervised_cross_entropy)."""
    from rdml.core.losses import kl_distillation, supervised_cross_entropy

    if len(mean_logits) != len(logits) or len(logits) < 2:
        raise ValueError(f"{len(logits)} branches and {len(mean_logits)} temporal-mean branches: pcl needs the same "
                         "number, at least 2")
    total = supervised_cross_entropy(ensemble, labels, label_smoothing)  # L88
    terms = {"ensemble": {"ce": total}}
    for k, z in enumerate(logits):  # L91-96
        ce = supervised_cross_entropy(z, labels, label_smoothing)
        pe = kl_distillation(z, ensemble.detach(), temperature) * weight
        pm = peer_mean_distillation(z, [m for j, m in enumerate(mean_logits) if j != k], temperature)
        total = total + (ce + pe + pm * weight)  # as L96 writes it: the graph, and so the gradients' sums, are its
        terms[f"branch_{k}"] = {"ce": ce, "pe": pe, "pm": pm.detach() * weight}
    return total, terms


def update_temporal_mean(mean, model, decay: float, global_step: int) -> None:
    """θ' ← α·θ' + (1−α)·θ over the parameters (not the buffers), α = min(1 − 1/(t+1), decay)
    (`update_ema_variables`, src/06_PCL.py L107-111)."""
    import torch

    alpha = min(1 - 1 / (global_step + 1), decay)
    with torch.no_grad():
        for mean_param, param in zip(mean.parameters(), model.parameters()):
            mean_param.mul_(alpha).add_(param, alpha=1 - alpha)
