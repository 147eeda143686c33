"""ONE, On-the-fly Native Ensemble (Lan, Zhu & Gong, NeurIPS 2018), as the OKDPH authors run it for their
baseline (tianlizhang/OKDPH src/02_ONE.py, a562089), with the departures from Lan et al. as keys.

One network (rdml.models.zoo.one): a trunk shared by K branches, each with its own last stage and classifier
(logits z_k), and a gate g = softmax(ReLU(BN(FC(pool(trunk))))) that forms the teacher z_e = Σ_k g_k·z_k.
The loss of a batch (src/02_ONE.py L91-99) is

    L = Σ_k CE(z_k, y) + CE(z_e, y) + w(e)·Σ_k T²·KL(softmax(z_e/T) + 1e-7 ‖ softmax(z_k/T)),

the KL as `KL_Loss` writes it (L18-27: batchmean, the 1e-7 added to the teacher's probabilities), T = 3
(L180), w(e) = exp(−5(1 − min(e, 80)/80)²) at official epoch e counted from 0 (`get_current_consistency_weight`,
L30-37; `--start_consistency 0`, `--length 80`, `--alpha 1`, L181-183 and L133-137), one SGD step of the whole
network (L101-103). Lan et al.'s released code has the same loss (Lan1991Xu/ONE_NeurIPS2018 cifar_one.py
`train`: the CE of every branch and of the teacher, w(e)·Σ KL at T = 3, loss/kl_loss.py) and ramps w up with
`ramps.sigmoid_rampup(epoch, 80)` (cifar_one.py `get_current_consistency_weight`; utils/ramps.py is not in the
copy read here, so its formula is taken from the OKDPH code, which cites the same source).

Where the OKDPH code departs from Lan et al.'s released code, a key, its default Lan et al.'s:
- `detach_teacher` (true): their KL takes the teacher's probabilities as a constant (loss/kl_loss.py L19-21,
  `Variable(target_data.data, requires_grad=False)`); the OKDPH `KL_Loss` does not detach (src/02_ONE.py L24),
  so the distillation also trains the gate and every branch through z_e (false);
- `test_ensemble` (gated): their test scores the gated teacher z_e (cifar_one.py `test`, outputs4); the OKDPH
  test scores the mean of the branch logits (src/02_ONE.py L75: mean);
- `branches` (3: their ONE_ResNet has layer3_1..3 and three classifiers, models/cifar/resnet.py); the OKDPH
  runs pass `--num_branches 2` (src/baseline.sh L16-26; also the default, src/02_ONE.py L179);
- the official models' own quirks: `shared_stage` (false; the official DenseNet-40-12 sets one third dense
  block as every branch's, src/models/densenet_one.py L159-169: true) and `repeat_branch_forward` (false; the
  official VGG-16 runs its branches twice per training forward, src/models/vgg_one.py L110-119 and L146-157:
  true). Neither is Lan et al.'s (their branches are separate, each run once).

Outputs: every branch (`branch_k`, the members) and `ensemble` (what `test_ensemble` names). The official script
reports the best epoch of the best of its outputs, the branches and the mean (L143-145).
"""

from __future__ import annotations

from rdml.core.branched import (BACKBONES, TEACHER_FLOOR, BranchedBaseline, branches_key, consistency_weight,
                                 rampup_key)
from rdml.core.branched import official_kl as one_distillation  # `KL_Loss`, src/02_ONE.py L18-27
from rdml.keys import ConfigError, Key, one_of
from rdml.methods.base import METHODS, Method

__all__ = ["NativeEnsemble", "one_loss", "one_distillation", "consistency_weight", "TEACHER_FLOOR"]

KEYS = (
    branches_key("one", 3, "K, the network's branches (ONE's CIFAR networks: 3; the OKDPH runs: 2, "
                 "tianlizhang/OKDPH src/baseline.sh L16-26)"),
    Key("detach_teacher", True, "bool", "one: the gated teacher is a constant in the distillation (Lan et al.'s code); "
        "false: the OKDPH code's, whose KL also trains the gate and branches through the teacher (src/02_ONE.py L24)"),
    Key("test_ensemble", "gated", "str", "one: the ensemble output: gated (the teacher, as Lan et al. test it) or mean "
        "(the mean of the branch logits, src/02_ONE.py L75)",
        check=lambda v: one_of("test_ensemble", v, ("gated", "mean"))),
    Key("shared_stage", False, "bool", "one: the branches share one last stage (true: the official DenseNet-40-12 ONE, "
        "src/models/densenet_one.py L159-169)"),
    Key("repeat_branch_forward", False, "bool", "one: run the branches twice per training forward, the first results "
        "thrown away (true: the official VGG-16 ONE, src/models/vgg_one.py L110-119, L146-157); okdph_vgg16 only"),
    rampup_key("one", "the distillation weight's ramp-up exp(-5(1-e/L)^2) over L epochs, 0 = no ramp-up "
               "(src/02_ONE.py L30-37, L183)"),
)


@METHODS.register("one")
class NativeEnsemble(BranchedBaseline, Method):
    name = "one"
    description = ("ONE: one network of K branches on a shared trunk, each distilling from their gated ensemble "
                   "(Lan, Zhu & Gong 2018)")
    keys = KEYS
    defaults = {**Method.defaults, "arch": ["okdph_resnet32"], "temperature": 3.0}  # src/02_ONE.py L163, L180

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.students != 1 or len(set(cfg.arch)) != 1:
            raise ConfigError(f"students={cfg.students}, arch={','.join(cfg.arch)}: one trains one branched network; "
                              "give one backbone and set branches=K instead")
        if cfg.arch[0] not in BACKBONES:
            raise ConfigError(f"arch={cfg.arch[0]} has no ONE network; allowed: {', '.join(BACKBONES)}")
        if cfg.repeat_branch_forward and cfg.arch[0] != "okdph_vgg16":
            raise ConfigError(f"repeat_branch_forward=true is the official VGG-16 ONE's double pass; arch={cfg.arch[0]} "
                              "has none (allowed with okdph_vgg16 only)")

    @classmethod
    def label(cls, keys) -> str:
        return "ONE"

    @classmethod
    def caption_notes(cls, cfg) -> list[str]:
        notes = []
        if not cfg.detach_teacher:
            notes.append("ONE: the gated teacher is not detached, as in the OKDPH code (tianlizhang/OKDPH src/02_ONE.py "
                         "L24); Lan et al.'s code holds it constant in the distillation.")
        if cfg.test_ensemble == "mean":
            notes.append("ONE: its ensemble is the mean of the branch logits, as the OKDPH code tests it (src/02_ONE.py "
                         "L75); Lan et al. test the gated teacher.")
        if cfg.shared_stage:
            notes.append("ONE: the branches share their last stage, as the official DenseNet-40-12 ONE builds them "
                         "(src/models/densenet_one.py L159-169).")
        if cfg.repeat_branch_forward:
            notes.append("ONE: the branches run twice in every training forward (batch-norm statistics updated and "
                         "dropout drawn twice), as the official VGG-16 ONE does (src/models/vgg_one.py L110-157).")
        return notes

    @classmethod
    def outputs(cls, cfg) -> tuple[str, ...]:
        return (*cls.members(cfg), "ensemble")

    def networks(self, build) -> list:
        from rdml.models.zoo.one import one_network

        c = self.cfg
        return [one_network(c.arch[0], build.spec.input_shape, build.outputs, c.branches, shared_stage=c.shared_stage,
                            repeat_branch_forward=c.repeat_branch_forward)]

    def train_step(self, x, y, cohort) -> dict[str, dict]:
        """src/02_ONE.py L89-103 on one batch."""
        c = self.cfg
        network = cohort[0]
        pro, gated = network(x)
        weight = consistency_weight(self.epoch, c.rampup_epochs)
        total, terms = one_loss(pro, gated, y, weight=weight, temperature=c.temperature, detach_teacher=c.detach_teacher,
                                label_smoothing=c.label_smoothing)
        network.optimizer.zero_grad(set_to_none=True)
        total.backward()
        network.step()
        return {name: {k: v.detach() for k, v in t.items()} for name, t in terms.items()}

    def predict(self, x, cohort) -> dict:
        """Each branch's logits and the ensemble's: the gated teacher z_e, or the mean of the branch logits
        (src/02_ONE.py L70-76), by `test_ensemble`."""
        pro, gated = cohort[0](x[0] if isinstance(x, (list, tuple)) else x)
        logits = {f"branch_{k}": pro[:, :, k] for k in range(pro.size(2))}
        logits["ensemble"] = pro.mean(dim=2) if self.cfg.test_ensemble == "mean" else gated
        return logits

    def combine(self, log_probs: dict) -> dict:
        return dict(log_probs)  # every output comes from the network itself


def one_loss(pro, gated, labels, *, weight: float, temperature: float, detach_teacher: bool, label_smoothing: float = 0.0):
    """The batch loss of src/02_ONE.py L91-99, built in the official order (the branch's CE, then its KL, branch
    by branch; the teacher's CE; then loss_true + w·loss_group), and its named terms: per branch {"ce", "kd"}
    (kd = w·T²·KL), and {"ce"} of the gated teacher. Rows labelled UNLABELLED get no cross-entropy.
    `label_smoothing`: the run's (rdml.core.losses.supervised_cross_entropy)."""
    from rdml.core.losses import supervised_cross_entropy

    teacher = gated.detach() if detach_teacher else gated
    loss_true, loss_group, terms = 0, 0, {}
    for k in range(pro.size(2)):
        ce = supervised_cross_entropy(pro[:, :, k], labels, label_smoothing)
        kd = one_distillation(pro[:, :, k], teacher, temperature)
        loss_true += ce
        loss_group += kd
        terms[f"branch_{k}"] = {"ce": ce, "kd": weight * kd.detach()}
    gated_ce = supervised_cross_entropy(gated, labels, label_smoothing)
    loss_true += gated_ce
    terms["gated"] = {"ce": gated_ce}
    return loss_true + weight * loss_group, terms
