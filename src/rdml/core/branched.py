"""What the OKDPH code's branch-based baselines share (tianlizhang/OKDPH at a562089: ONE src/02_ONE.py,
OKDDip src/04_OKDDip.py, FFL src/05_FFL.py, PCL src/06_PCL.py; rdml.methods.one, okddip, ffl, pcl): each
trains one network of K branches on a shared trunk, counts the official epoch from 0 for a distillation
ramp-up, and the first three copy one ramp-up and (ONE, OKDDip) one KL term. Torch-free at import, so that
the methods' configs are checked without it. Here, not in rdml.methods, because no method module imports
another (tests/test_structure.py); nothing else from rdml but its keys.

Left apart, because the official code differs:
- PCL's ramp-up (`compute_rampup_weight`, src/06_PCL.py L79-83: math.exp, 1 after epoch 80 instead of a clip,
  a divisor apart from that length, −5·(·)**2 in another order): rdml.methods.pcl.rampup_weight;
- FFL's KL (`KLLoss`, src/05_FFL.py L18-32: the sum written out, not KLDivLoss, teacher detached inside):
  rdml.methods.ffl.ffl_kl, which gives other bits;
- PCL's KL (`KDLoss`, src/06_PCL.py L31-48: no 1e-7): rdml.core.losses.kl_distillation.
"""

from __future__ import annotations

from rdml.keys import ConfigError, Key, in_range

__all__ = ["BACKBONES", "TEACHER_FLOOR", "consistency_weight", "official_kl", "check_branch_count", "branches_key", "rampup_key",
           "BranchedBaseline"]

# the backbones every baseline branches, as rdml names them (the *_one, *_okddip, *_ffl, *_pcl entries of
# `model_dict`, src/models/__init__.py L41-60; rdml.models.zoo.okdph)
BACKBONES = ("okdph_resnet32", "okdph_vgg16", "okdph_densenet40_12")
TEACHER_FLOOR = 10 ** (-7)  # added to the teacher's probabilities (src/02_ONE.py L24, 04_OKDDip.py L24, 05_FFL.py L29)


def consistency_weight(epoch: int, length: float) -> float:
    """w(e) = exp(−5(1 − clip(e, 0, L)/L)²) at official epoch e (from 0), 1 when L = 0: the consistency ramp-up
    of Laine & Aila 2017 (arXiv:1610.02242) as `get_current_consistency_weight` writes it, word for word the
    same in src/02_ONE.py L30-37, 04_OKDDip.py L30-37 and 05_FFL.py L35-42; numpy's exp and float64, as there,
    so that the bits are the official ones (math.exp's last bit may differ)."""
    import numpy as np

    if length == 0:
        return 1.0
    current = np.clip(epoch, 0.0, length)
    phase = 1.0 - current / length
    return float(np.exp(-5.0 * phase * phase))


def official_kl(logits, teacher_logits, temperature: float):
    """T²·KL(softmax(teacher/T) + 1e-7 ‖ softmax(z/T)), batchmean: `KL_Loss`, the same in src/02_ONE.py L18-27
    and 04_OKDDip.py L18-27. The teacher as given: the caller detaches it or not (neither script does)."""
    import torch.nn.functional as F

    log_p = F.log_softmax(logits / temperature, dim=1)
    target = F.softmax(teacher_logits / temperature, dim=1) + TEACHER_FLOOR
    return temperature * temperature * F.kl_div(log_p, target, reduction="batchmean")


def check_branch_count(value, why: str = "") -> int:
    """A network's branch count: an integer >= 2 (a bool is refused); `why` is said after the rule."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ConfigError(f"branches={value!r} is not allowed; allowed: an integer >= 2" + (f" ({why})" if why else ""))
    return value


def branches_key(method: str, default: int, text: str, why: str = "") -> Key:
    """The `branches` key of a branched method: K, its network's branches, checked by `check_branch_count`."""
    return Key("branches", default, "int", f"{method}: {text}", check=lambda v: check_branch_count(v, why))


def _check_rampup_epochs(value: float) -> None:
    in_range("rampup_epochs", value, 0, float("inf"), "a finite number >= 0", open_high=True)


def rampup_key(method: str, text: str) -> Key:
    """The `rampup_epochs` key, L of `consistency_weight`: 80 in the three scripts (`--length 80`)."""
    return Key("rampup_epochs", 80.0, "float", f"{method}: {text}", check=_check_rampup_epochs)


class BranchedBaseline:
    """Mixin before rdml.methods.base.Method: outputs `branch_k`, one per branch, are the members, and the
    official epoch (from 0) of the batches to come, which the ramp-up reads, is kept between epochs and in
    checkpoints. rdml's epoch e (from 1), just ended, was official epoch e − 1, so the next is e."""

    epoch = 0

    @classmethod
    def members(cls, cfg) -> tuple[str, ...]:
        return tuple(f"branch_{k}" for k in range(cfg.branches))

    def end_epoch(self, epoch: int, cohort) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = state.get("epoch", 0)
