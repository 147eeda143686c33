"""OKDDip: online knowledge distillation with diverse peers (Chen, Mei, Wang, Feng & Chen, AAAI 2020), as the
OKDPH authors run it (tianlizhang/OKDPH src/04_OKDDip.py at a562089, its models in src/models/*_okddip.py,
rdml.models.zoo.okddip).

One network: a shared trunk and n branches, the auxiliary peers 0..n−2 and the group leader n−1. With the
peers' logits z_a, their attention-weighted targets t_a = Σ_b softmax_b(q_a·k_b) z_b and the leader's logits
z_l (the network's forward, rdml.models.zoo.okddip), the loss of one batch is (L96–105)

    L = Σ_a CE(z_a, y) + CE(z_l, y) + w·r(e)·( Σ_a T²·KL(softmax(t_a/T) + 1e−7 ‖ softmax(z_a/T))
                                              + T²·KL(softmax(z̄/T) + 1e−7 ‖ softmax(z_l/T)) ),

z̄ the mean of the peers' logits; first-level distillation (each peer from its own target), second-level
(the leader from the peers' ensemble). Neither target is detached: gradients reach the teachers too (the
official KL_Loss takes them as given, L18–27). The KL is the official `KL_Loss`: the teacher's
probabilities plus 1e−7, `KLDivLoss(reduction='batchmean')`, times T·T (L22–27). T = 3 (L193), w = 1
(`--alpha`, L194), and r(e) = exp(−5(1 − min(e, ℓ)/ℓ)²) the ramp-up of Laine & Aila (L30–37) at official
epoch e (from 0; rdml epoch e + 1), ℓ = 80 (`--length`, L196; `--start_consistency 0`, L195, so it starts at
epoch 0, L146–150); ℓ = 0 gives r = 1. One optimiser steps the whole network once per batch (L107–109).

Evaluated every epoch (L63–84): each peer `branch_a` and the leader `branch_{n−1}` by their logits, and the
`ensemble`, the argmax of the MEAN OF THE PEERS' LOGITS (L80; the leader is not in it). The official script
reports, per run, the best over epochs of the best of these outputs (`best_acc = max(test_acces)`, L156–158),
the number the OKDPH supplement's tables print; Chen et al. report the leader, the model kept for
inference (the authors' train_GL.py selects epochs by `stu_test_accTop1`).

The released DenseNet-40-12 departs from the paper's branches (`densenet_as_released`, false by default;
rdml.models.zoo.okddip): one last dense block shared by every branch, the leader's logits read without its
final batch norm and ReLU, and every branch, the leader's own, a column of the peers' logits and targets,
so that there the loss and the ensemble take n columns (src/04_OKDDip.py still trains only columns 0..n−2
as peers, L99–101, and averages all n, L105, L80).
"""

from __future__ import annotations

from rdml.core.branched import BACKBONES, BranchedBaseline, branches_key, official_kl, rampup_key
from rdml.core.branched import consistency_weight as rampup_weight  # src/04_OKDDip.py L30-37
from rdml.keys import ConfigError, Key, in_range
from rdml.methods.base import METHODS, Method

__all__ = ["DiversePeers", "BACKBONES", "okddip_loss", "rampup_weight", "official_kl"]

PAPER_BRANCHES = 4  # 3 auxiliary peers and 1 leader: the OKDDip authors' default (DefangChen/OKDDip train_GL.py --num_branches 4)

KEYS = (
    branches_key("okddip", PAPER_BRANCHES, "n, the network's branches, n-1 auxiliary peers and one group leader (4: "
                 "the OKDDip authors' --num_branches; the OKDPH runs: 2, src/baseline.sh L45-47)",
                 why="n-1 peers and one leader"),
    Key("kd_weight", 1.0, "float", "okddip: w, weight of both distillation levels (src/04_OKDDip.py --alpha, L104, L194)",
        check=lambda v: in_range("kd_weight", v, 0, float("inf"), "a finite number >= 0", open_high=True)),
    Key("densenet_as_released", False, "bool", "okddip: the released DenseNet-40-12's branches (arch=okdph_densenet40_12 "
        "only): one last dense block shared by every branch, the leader a column of the peers' attention and ensemble, "
        "its logits read without its final batch norm and ReLU (src/models/densenet_okddip.py L170-180, L226-248); "
        "false: each branch its own block, the leader apart from the peers, as the paper's branches"),
    rampup_key("okddip", "l, epochs of the ramp-up exp(-5(1-e/l)^2) of the distillation weight; 0 = weight 1 "
               "throughout (src/04_OKDDip.py L30-37, --length L196)"),
)


@METHODS.register("okddip")
class DiversePeers(BranchedBaseline, Method):
    name = "okddip"
    description = ("OKDDip: one network of auxiliary peers, each distilled from its attention-weighted peers, and a "
                   "leader distilled from the peers' mean (Chen et al., AAAI 2020)")
    keys = KEYS
    defaults = {**Method.defaults, "arch": ["okdph_resnet32"], "temperature": 3.0}  # src/04_OKDDip.py L176, L193

    @classmethod
    def check(cls, cfg) -> None:
        if len(set(cfg.arch)) == 1 and cfg.students != 1:
            raise ConfigError(f"students={cfg.students}: okddip trains one network of `branches` branches; set "
                              "branches=<n> and leave students at 1")
        if len(cfg.arch) != 1 or cfg.arch[0] not in BACKBONES:
            raise ConfigError(f"arch={','.join(cfg.arch)}: okddip builds one branched network from one backbone, one of "
                              f"{', '.join(BACKBONES)}")
        if cfg.densenet_as_released and cfg.arch[0] != "okdph_densenet40_12":
            raise ConfigError(f"densenet_as_released=true is the released DenseNet-40-12's branches; arch={cfg.arch[0]} "
                              "has no other (set it with arch=okdph_densenet40_12 only)")

    @classmethod
    def label(cls, keys) -> str:
        return "OKDDip"

    @classmethod
    def caption_notes(cls, cfg) -> list[str]:
        notes = []
        if cfg.branches != PAPER_BRANCHES:
            lone = cfg.branches == 2 and not cfg.densenet_as_released
            notes.append(f"OKDDip with {cfg.branches} branches ({cfg.branches - 1} peer{'s' * (cfg.branches > 2)} and the "
                         f"leader; the OKDDip authors' code has {PAPER_BRANCHES})"
                         + (": one peer, whose attention over the peers is a 1×1 softmax, so its target is its own "
                            "logits." if lone else "."))
        if cfg.densenet_as_released:
            notes.append("OKDDip's DenseNet-40-12 as released (src/models/densenet_okddip.py L170–180, L226–248): its "
                         "branches share one last dense block, the leader is attended to and averaged as a peer, and "
                         "its logits are read without its final batch norm and ReLU.")
        return notes

    @classmethod
    def outputs(cls, cfg) -> tuple[str, ...]:
        return (*cls.members(cfg), "ensemble")  # src/04_OKDDip.py L66-81: peers, leader, the peers' mean logits

    def networks(self, build) -> list:
        from rdml.models.zoo.okddip import okddip_network

        c = self.cfg
        return [okddip_network(c.arch[0], build.spec.input_shape, build.outputs, c.branches, c.densenet_as_released)]

    def train_step(self, x, y, cohort) -> dict:
        network = cohort[0]
        pro, x_m, leader = network(x)
        loss, terms = okddip_loss(pro, x_m, leader, y, self.cfg.branches, temperature=self.cfg.temperature,
                                  weight=self.cfg.kd_weight * self.rampup(), label_smoothing=self.cfg.label_smoothing)
        network.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        network.step()
        return terms

    def rampup(self) -> float:
        return rampup_weight(self.epoch, self.cfg.rampup_epochs)

    def predict(self, x, cohort) -> dict:
        if isinstance(x, (list, tuple)):  # one input per network under per-network test noise: one network here
            x = x[0]
        pro, _, leader = cohort[0](x)
        peers = self.cfg.branches - 1
        return {**{f"branch_{a}": pro[:, :, a] for a in range(peers)}, f"branch_{peers}": leader,
                "ensemble": pro.mean(dim=2)}  # L73-81

    def combine(self, log_probs: dict) -> dict:
        return dict(log_probs)  # the ensemble is formed from logits in `predict`, as L80 does


def okddip_loss(pro, x_m, leader, labels, branches: int, *, temperature: float, weight: float,
                label_smoothing: float = 0.0):
    """The official loss of one batch (src/04_OKDDip.py L96–105), summed in its order, and its named terms per
    branch, detached: {"ce", "kd"} of each peer branch_a (kd = w·r·T²·KL(t_a ‖ z_a)) and of the leader
    (kd = w·r·T²·KL(z̄ ‖ z_l)). `weight` is w·r(e). Rows labelled UNLABELLED get no cross-entropy.
    `label_smoothing`: the run's (rdml.core.losses.supervised_cross_entropy)."""
    import torch

    from rdml.core.losses import supervised_cross_entropy

    ce, kd = [], []
    loss_true, loss_group = 0, 0
    for a in range(branches - 1):  # L99-101
        ce.append(supervised_cross_entropy(pro[:, :, a], labels, label_smoothing))
        kd.append(official_kl(pro[:, :, a], x_m[:, :, a], temperature))
        loss_true = loss_true + ce[-1]
        loss_group = loss_group + kd[-1]
    ce.append(supervised_cross_entropy(leader, labels, label_smoothing))
    kd.append(official_kl(leader, torch.mean(pro, dim=2), temperature))
    loss = loss_true + ce[-1] + weight * (loss_group + kd[-1])  # L103-105
    terms = {f"branch_{k}": {"ce": c.detach(), "kd": (weight * d).detach()} for k, (c, d) in enumerate(zip(ce, kd))}
    return loss, terms
