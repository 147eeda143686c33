"""FFL: feature fusion learning (Kim, Hyun, Chung & Kwak, "Feature Fusion for Online Mutual Knowledge
Distillation", ICPR 2020, proceedings 2021), as the OKDPH authors run it for their supplement's FFL column
(tianlizhang/OKDPH src/05_FFL.py at a562089; src/baseline.sh L53-55 runs `--num_branches 2`).

Two networks, each with an optimiser and a schedule of its own (L111-125): the branched backbone
(rdml.models.zoo.ffl: the run's `arch` with its last stage once per branch) and the fusion module, which
classifies the concatenation of the branches' last maps. With the branches' logits z_1…z_B, the fused
logits z_f = fusion(maps) and the branches' mean z_e = (z_1 + … + z_B)/B, one backward pass of

    L = Σ_b CE(z_b, y) + CE(z_f, y) + w(e)·[Σ_b KL_T(z_f → z_b) + KL_T(z_e → z_f)]

steps both networks (L78-97), KL_T(t → z) = T²·(1/N)·Σ_rows Σ_c q_c·(log q_c − log softmax(z/T)_c) with
q = softmax(t/T) + 1e-7, t detached (`KLLoss`, L18-32; T = 3, L25), and w(e) = exp(−5(1 − min(e, R)/R)²)
the consistency ramp-up at official epoch e (from 0; R = 80, L35-42, L136, L179). Kim et al.'s own code
has the same loss, KLLoss and ramp-up (Jangho-Kim/FFL-pytorch train_FFL.py L174-185, utils.py L107-130).

Evaluated (L45-66): each branch (`branch_k`, the members) and the fused classifier (`fusion`), in eval
mode on the same batch. The official script logs, per epoch, the highest accuracy of all these outputs
and reports its maximum over the epochs, `best_acc` (L139-144, L152; the untrained test of L133 is not
counted): the supplement's number is the best epoch of the best output.

Where the OKDPH code departs from Kim et al.'s method (their released code, Jangho-Kim/FFL-pytorch at
546d478, which reproduces their Table 1), a key selects it; the defaults are Kim et al.'s:

- `fusion_lr`: the OKDPH script steps only the backbone's schedule (`schs[0].step()`, L140), so the
  fusion module keeps lr = 0.1 for the whole run ("constant"); Kim et al. step both schedules
  (train_FFL.py L236-237; "scheduled", the default, follows the run's schedule).
- `conv_init` (ResNet-32 only): "okdph" draws every convolution of the branched ResNet-32 from
  N(0, 2/5) (resnet_ffl.py L205-208 divides by the first stage's block count, not by n = k²·c_out);
  "he", the default, is Kim et al.'s N(0, 2/(k²·c_out)) (our_network.py L201-204).
- `branch_sharing` (VGG-16 and DenseNet-40-12): "okdph" shares VGG-16's classifier among the branches
  (vgg_ffl.py L45-53, L95) and DenseNet-40-12's last dense block (densenet_ffl.py L141-143), as the
  OKDPH models do; "none", the default, gives every branch its own, as Kim et al.'s sub-networks have.

What the OKDPH script sets that differs from Kim et al.'s code and is a shared key, not FFL's: weight decay
5e-4 for both networks (05_FFL.py L121, L171; theirs 1e-4 and 1e-5 for the fusion module, train_FFL.py
L29, L84, L88) and momentum without Nesterov (L121; theirs nesterov=True).
"""

from __future__ import annotations

from rdml.core.branched import TEACHER_FLOOR, BranchedBaseline, branches_key, consistency_weight, rampup_key
from rdml.core.branched import BACKBONES as FFL_BACKBONES  # as rdml.models.zoo.ffl, without torch
from rdml.keys import ConfigError, Key, one_of
from rdml.methods.base import METHODS, Method

__all__ = ["FeatureFusion", "ffl_kl", "ffl_terms", "ffl_loss", "consistency_weight", "FFL_BACKBONES"]

FUSION_LR = ("scheduled", "constant")
CONV_INIT = ("he", "okdph")
BRANCH_SHARING = ("none", "okdph")


KEYS = (
    branches_key("ffl", 2, "number of branches of the backbone, each fused (Kim et al. 2020 use 2; "
                 "tianlizhang/OKDPH src/baseline.sh L53-55 --num_branches 2)"),
    rampup_key("ffl", "R of the consistency ramp-up exp(-5(1-min(e,R)/R)^2) on the distillation, e the epoch from "
               "0; 0 = no ramp-up (src/05_FFL.py L35-42, L179: a float there too)"),
    Key("fusion_lr", "scheduled", "str", "ffl: the fusion module's learning rate: scheduled (follows the run's "
        "schedule, Kim et al.'s code) or constant (stays lr: the OKDPH script steps only the backbone's schedule, "
        "src/05_FFL.py L140)", check=lambda v: one_of("fusion_lr", v, FUSION_LR)),
    Key("conv_init", "he", "str", "ffl: ResNet-32 convolution init: he, N(0, 2/(k^2 c_out)) (Kim et al.'s code), or "
        "okdph, N(0, 2/5) (src/models/resnet_ffl.py L205-208)", check=lambda v: one_of("conv_init", v, CONV_INIT)),
    Key("branch_sharing", "none", "str", "ffl: none (every branch its own layers, Kim et al.) or okdph (VGG-16's "
        "branches share the classifier, DenseNet-40-12's their last dense block: src/models/vgg_ffl.py L95, "
        "densenet_ffl.py L141-143)", check=lambda v: one_of("branch_sharing", v, BRANCH_SHARING)),
)


@METHODS.register("ffl")
class FeatureFusion(BranchedBaseline, Method):
    name = "ffl"
    description = ("FFL: branches of one backbone and a fusion module over their last maps teach each other "
                   "(Kim, Hyun, Chung & Kwak, ICPR 2020)")
    keys = KEYS
    defaults = {**Method.defaults, "arch": ["okdph_resnet32"], "temperature": 3.0}  # src/05_FFL.py L25, L162

    @classmethod
    def check(cls, cfg) -> None:
        if len(cfg.arch) != 1 or cfg.students != 1:
            raise ConfigError(f"arch={','.join(cfg.arch)}, students={cfg.students}: ffl trains one branched network "
                              "(give one arch, and the number of branches as branches=)")
        if cfg.arch[0] not in FFL_BACKBONES:
            raise ConfigError(f"arch={cfg.arch[0]}: ffl branches one of {', '.join(FFL_BACKBONES)}, as the OKDPH code "
                              "builds them (src/models/*_ffl.py)")

    @classmethod
    def label(cls, keys) -> str:
        return "FFL"

    @classmethod
    def caption_notes(cls, cfg) -> list[str]:
        notes = []
        if cfg.fusion_lr == "constant":
            notes.append("FFL: the fusion module keeps its initial learning rate for the whole run, as the OKDPH script "
                         "steps only the backbone's schedule (tianlizhang/OKDPH src/05_FFL.py L140); Kim et al. "
                         "decay both.")
        if cfg.conv_init == "okdph" and cfg.arch[0] == "okdph_resnet32":
            notes.append("FFL: ResNet-32's convolutions start from N(0, 2/5), as the OKDPH code draws them "
                         "(src/models/resnet_ffl.py L208), not He's N(0, 2/(k²·c_out)).")
        if cfg.branch_sharing == "okdph" and cfg.arch[0] != "okdph_resnet32":
            shared = "classifier" if cfg.arch[0] == "okdph_vgg16" else "last dense block"
            notes.append(f"FFL: the branches share one {shared}, as the OKDPH model does "
                         f"(src/models/{'vgg_ffl.py L95' if shared == 'classifier' else 'densenet_ffl.py L141-143'}).")
        return notes

    @classmethod
    def outputs(cls, cfg) -> tuple[str, ...]:
        return (*cls.members(cfg), "fusion")  # src/05_FFL.py L58-63

    def networks(self, build) -> list:
        """The branched backbone, then the fusion module, drawn in that order from the init seed (L111-119)."""
        from rdml.models.zoo.ffl import ffl_backbone, fusion_module

        c, arch = self.cfg, self.cfg.arch[0]
        backbone = ffl_backbone(arch, build.spec.input_shape, build.outputs, c.branches, c.conv_init,
                                c.branch_sharing == "okdph")
        return [backbone, fusion_module(arch, build.outputs, c.branches)]

    def predict(self, x, cohort) -> dict:
        """Every branch and the fused classifier on one batch (L55-63); under per-network test noise, the
        first network's draw feeds both, as the official single pass does."""
        x = x[0] if isinstance(x, (list, tuple)) else x
        logits, maps = cohort[0](x)
        return {**{f"branch_{k}": z for k, z in enumerate(logits)}, "fusion": cohort[1](maps)}

    def train_step(self, x, y, cohort) -> dict:
        backbone, fusion = cohort
        logits, maps = backbone(x)  # L78-79
        fused = fusion(maps)
        loss, terms = ffl_loss(logits, fused, y, temperature=self.cfg.temperature,
                               weight=consistency_weight(self.epoch, self.cfg.rampup_epochs),
                               label_smoothing=self.cfg.label_smoothing)
        backbone.optimizer.zero_grad(set_to_none=True)  # L93-97
        fusion.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.hold_fusion_lr(fusion)
        backbone.step()
        fusion.step()
        return {name: {k: v.detach() for k, v in t.items()} for name, t in terms.items()}

    def end_epoch(self, epoch: int, cohort) -> None:
        """After the epoch's schedule step: the fusion module's rate back to lr where it stays constant (its
        schedule stepped with the others'), so the record and a checkpoint hold the rate it trains with."""
        super().end_epoch(epoch, cohort)
        self.hold_fusion_lr(cohort[1])

    def hold_fusion_lr(self, fusion) -> None:
        if self.cfg.fusion_lr == "constant":
            for group in fusion.optimizer.param_groups:
                group["lr"] = self.cfg.lr


def ffl_kl(logits, teacher, temperature: float):
    """`KLLoss` (src/05_FFL.py L22-32): T²·Σ q·(log q − log softmax(z/T)) / N, q = softmax(t/T) + 1e-7 detached. The
    sum written out, not ONE's and OKDDip's KLDivLoss (rdml.core.branched.official_kl): other bits."""
    import torch.nn.functional as F

    predict = F.log_softmax(logits / temperature, dim=1)
    target = F.softmax(teacher.detach() / temperature, dim=1) + TEACHER_FLOOR
    return temperature * temperature * ((target * (target.log() - predict)).sum(1).sum() / target.size()[0])


def ffl_terms(logits: list, fused, labels, *, temperature: float, weight: float, label_smoothing: float = 0.0) -> dict:
    """Each output's terms, {"ce": CE, "kd": w·KL_T}: branch b distils from the fused logits, the fusion module
    from the branches' mean, both detached (src/05_FFL.py L81-90). Rows labelled UNLABELLED get no
    cross-entropy but are distilled. `label_smoothing`: the run's (rdml.core.losses.supervised_cross_entropy)."""
    return ffl_loss(logits, fused, labels, temperature=temperature, weight=weight, label_smoothing=label_smoothing)[1]


def ffl_loss(logits: list, fused, labels, *, temperature: float, weight: float, label_smoothing: float = 0.0):
    """(L, terms): L summed as the official loop sums it (CE terms in order, then w·(the KL terms in order);
    L81-92), so its gradient is the official one bit for bit; `terms` as `ffl_terms`."""
    from rdml.core.losses import supervised_cross_entropy

    ensemble = logits[0]
    for z in logits[1:]:  # L82, L86
        ensemble = ensemble + z
    ensemble = ensemble / len(logits)
    ce = [supervised_cross_entropy(z, labels, label_smoothing) for z in logits] + [
        supervised_cross_entropy(fused, labels, label_smoothing)]
    kl = [ffl_kl(z, fused, temperature) for z in logits] + [ffl_kl(fused, ensemble, temperature)]
    loss_ce, loss_kl = ce[0], kl[0]
    for term in ce[1:]:
        loss_ce = loss_ce + term
    for term in kl[1:]:
        loss_kl = loss_kl + term
    names = [f"branch_{k}" for k in range(len(logits))] + ["fusion"]
    terms = {name: {"ce": c, "kd": weight * k} for name, c, k in zip(names, ce, kl)}
    return loss_ce + loss_kl * weight, terms
