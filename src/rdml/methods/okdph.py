"""OKDPH: online knowledge distillation with parameter hybridization (Zhang et al., CVPR 2023; supplement
eqs. 1 and 2), as the official code runs it (tianlizhang/OKDPH src/OKDPH.py, unchanged since f65b661).

The hybrid-weight model (HWM) is a copy of the students' architecture with no optimiser of its own
(L125). At the start of every batch it takes the plain mean of the students' state dicts, buffers
included (batch-norm statistics and num_batches_tracked; `update_hwm`, L33–47, L68). Every network,
the HWM too, is in train mode (L62–63) and forwards its own view of the batch: student m view m, the
HWM the last one (L70–73). With the students' logits z_m and the HWM's z_hwm, student m's loss is
supplement eq. 1,

    L_m = ω·CE(z_m, y) + (1−ω)·CE(z_hwm, y) + β·T²·KL(softmax(z_en/T) ‖ softmax(z_m/T)),

z_en the mean of the students' AND the HWM's logits, detached (L75–88; T = 4, L185). CE(z_hwm, y)
gives the students no gradient (the HWM's weights are a copy, not a function of theirs), so ω only
scales a student's own cross-entropy; it is logged as the official loss counts it. The students step
one after another from the logits of before any step (L90–95). Fusion is supplement eq. 2,
θ_m ← γ·θ_hwm + (1−γ)·θ_m over the whole state dict (`fusion`, L50–58; γ = 1 loads the HWM's state,
γ = 0 changes nothing), the optimiser's state untouched, every Δ = `fusion_every`:

- `<n>b`: right after student m's step, in every batch whose index within the epoch ii (from 0) has
  ii % n == 0, from the HWM of that batch: its weights the mean of the students before the batch's
  steps, its batch-norm statistics updated by its own forward on the batch (L101–103);
- `<n>e`: after the epoch's test and learning-rate step, when the official epoch (from 0) is a multiple
  of n: after rdml epochs 1, 1+n, 1+2n, … (rdml counts from 1), from the HWM as it is, that of the
  epoch's last batch, not recomputed (L137–141).

The students start from identical weights (L119–121; `same_init`, which rdml.train.cohort.build_cohort
honours), so every student needs one architecture. The HWM is evaluated every epoch beside the
students ("hwm", L132–133).
"""

from __future__ import annotations

import re

from rdml.keys import ConfigError, Key, in_range
from rdml.methods.base import METHODS, Method, detached, student_logits, update_in_turn

__all__ = ["ParameterHybridization", "okdph_terms", "load_hybrid", "fuse", "fusion_interval"]

FUSION_EVERY = re.compile(r"([1-9][0-9]*)([be])")


def fusion_interval(value: str) -> tuple[int, str] | None:
    """Δ as supplement Tables 6–7 write it: "5b" → (5, "b") every 5 batches, "1e" → (1, "e") every epoch,
    "none" → None (no fusion; the official `--interval ""`, src/OKDPH.py L205–215)."""
    if value == "none":
        return None
    found = FUSION_EVERY.fullmatch(value) if isinstance(value, str) else None
    if not found:
        raise ConfigError(f"fusion_every={value!r} is not allowed; it must be <n>b (fuse every n batches), <n>e (every n "
                          "epochs) with n >= 1, or none, as supplement Tables 6-7 write the interval (5b, 1e)")
    return int(found[1]), found[2]


KEYS = (
    Key("ce_weight", 1.0, "float", "okdph: omega, weight of each student's cross-entropy, (1-omega) on the hybrid-weight "
        "model's (OKDPH supplement eq. 1)", check=lambda v: in_range("ce_weight", v, 0, 1, "a number in [0, 1]")),
    Key("kd_weight", 0.5, "float", "okdph: beta, weight of the distillation from the mean logits of the students and the "
        "hybrid-weight model (OKDPH supplement eq. 1)",
        check=lambda v: in_range("kd_weight", v, 0, float("inf"), "a finite number >= 0", open_high=True)),
    Key("hybrid_weight", 1.0, "float", "okdph: gamma, fusion proportion, theta_m <- gamma*theta_hwm + (1-gamma)*theta_m "
        "(OKDPH supplement eq. 2)", check=lambda v: in_range("hybrid_weight", v, 0, 1, "a number in [0, 1]")),
    Key("fusion_every", "1e", "str", "okdph: Delta, fusion interval: <n>b every n batches, <n>e every n epochs, or none "
        "(OKDPH supplement Tables 6-7)", check=fusion_interval),
)


@METHODS.register("okdph")
class ParameterHybridization(Method):
    name = "okdph"
    description = ("online KD with parameter hybridization: students distil from their and a hybrid-weight model's mean "
                   "logits and are fused with it (OKDPH supplement eqs. 1-2)")
    keys = KEYS
    defaults = {**Method.defaults, "temperature": 4.0}  # src/OKDPH.py L185
    min_students = 2
    views = True
    extra_views = 1  # the HWM's view, the last one (src/OKDPH.py L72, L203)
    same_init = True  # src/OKDPH.py L119-121 (without --diff_init)

    def __init__(self, cfg, teacher=None):
        super().__init__(cfg, teacher)
        self.interval = fusion_interval(cfg.fusion_every)
        self.hwm = None  # built from the cohort on the first batch
        self.hwm_run = None  # the HWM as it runs on the device
        self.batch = 0  # index of the next batch within its epoch (the official `ii`)
        self.saved_hwm = None  # a checkpoint's HWM state, until there is an HWM to load it into

    @classmethod
    def check(cls, cfg) -> None:
        if len(set(cfg.arch)) != 1:
            raise ConfigError(f"arch={','.join(cfg.arch)}: okdph averages the students' weights into its hybrid-weight "
                              "model, so every student needs the same architecture")

    @classmethod
    def label(cls, keys) -> str:
        return "OKDPH"

    @classmethod
    def caption_notes(cls, cfg) -> list[str]:
        if cfg.student_augment:
            return []
        return ["OKDPH: the students and the hybrid-weight model see the same augmented batch, so students that start "
                "identical stay identical; the paper gives each network its own transform composition (OKDPH supplement "
                "§1.2, Table 2)."]

    def train_step(self, x, y, cohort) -> list[dict]:
        if isinstance(x, (list, tuple)) and len(x) != len(cohort) + 1:
            raise ValueError(f"okdph takes one view per student and one for the hybrid-weight model: {len(cohort) + 1}, "
                             f"got {len(x)}")
        hwm = self.hybridize(cohort)
        logits = student_logits(x, cohort)  # students first, then the HWM, as src/OKDPH.py L71-73
        hwm_logits = self.hwm_run(x[-1] if isinstance(x, (list, tuple)) else x)
        c = self.cfg
        terms = okdph_terms(logits, hwm_logits, y, ce_weight=c.ce_weight, kd_weight=c.kd_weight, temperature=c.temperature,
                            label_smoothing=c.label_smoothing)
        every, level = self.interval or (0, "")
        fusing = level == "b" and self.batch % every == 0
        update_in_turn(cohort, terms, after=(lambda student: fuse(student.model, hwm, c.hybrid_weight)) if fusing else None)
        self.batch += 1
        return detached(terms)

    def end_epoch(self, epoch: int, cohort) -> None:
        """Epoch-level fusion after official epoch `epoch − 1` when it is a multiple of n (src/OKDPH.py L137–141),
        but not after the last epoch: the official code's last fusion only reaches the weights it saves, and
        rdml's model.pt must be the students its record evaluated (the audit evaluates them again)."""
        every, level = self.interval or (0, "")
        if level == "e" and (epoch - 1) % every == 0 and epoch < self.cfg.epochs and self.hwm is not None:
            for student in cohort:
                fuse(student.model, self.hwm, self.cfg.hybrid_weight)
        self.batch = 0  # the official `ii` restarts with every epoch's loader (src/OKDPH.py L66)

    def hybridize(self, cohort):
        """The HWM, built on first use as a copy of student 0 (src/OKDPH.py L125), loaded with the students'
        mean state (L68) and in train mode (L62–63)."""
        import copy

        if self.hwm is None:
            self.hwm = copy.deepcopy(cohort[0].model).requires_grad_(False)
            for p in self.hwm.parameters():
                p.grad = None
            runner = getattr(cohort, "runner", None)  # the device's precision, layout and compilation, where known
            self.hwm_run = runner(self.hwm) if runner is not None else self.hwm
            if self.saved_hwm is not None:
                self.hwm.load_state_dict(self.saved_hwm)
                self.saved_hwm = None
        self.hwm.train()
        load_hybrid(self.hwm, [student.model for student in cohort])
        return self.hwm

    def extra_models(self) -> dict:
        return {"hwm": self.hwm} if self.hwm is not None else {}

    @classmethod
    def outputs(cls, cfg) -> tuple[str, ...]:
        return (*super().outputs(cfg), "hwm")  # src/OKDPH.py L132-133

    def state_dict(self) -> dict:
        return {"batch": self.batch, "hwm": self.hwm.state_dict() if self.hwm is not None else self.saved_hwm}

    def load_state_dict(self, state: dict) -> None:
        self.batch = state.get("batch", 0)
        saved = state.get("hwm")
        if self.hwm is not None and saved is not None:
            self.hwm.load_state_dict(saved)
        else:
            self.saved_hwm = saved


def okdph_terms(logits: list, hwm_logits, labels, *, ce_weight: float, kd_weight: float, temperature: float,
                label_smoothing: float = 0.0) -> list[dict]:
    """Each student's terms of supplement eq. 1, {"ce": ω·CE(z_m, y), "hwm_ce": (1−ω)·CE(z_hwm, y),
    "kd": β·T²·KL(softmax(z_en/T) ‖ softmax(z_m/T))}, z_en the mean of the students' and the HWM's logits,
    detached (tianlizhang/OKDPH src/OKDPH.py L75–88). "hwm_ce" has no gradient. Rows labelled UNLABELLED get no
    cross-entropy but are distilled. `label_smoothing`: the run's (rdml.core.losses.supervised_cross_entropy)."""
    import torch

    from rdml.core.losses import kl_distillation, supervised_cross_entropy

    ensemble = torch.stack([*logits, hwm_logits]).mean(dim=0).detach()  # L75
    hwm_ce = supervised_cross_entropy(hwm_logits.detach(), labels, label_smoothing)  # L76
    return [{"ce": ce_weight * supervised_cross_entropy(z, labels, label_smoothing), "hwm_ce": (1 - ce_weight) * hwm_ce,
             "kd": kd_weight * kl_distillation(z, ensemble, temperature)} for z in logits]


def load_hybrid(hwm, models) -> None:
    """Load θ_hwm into `hwm`: every entry of the models' state dicts (parameters and buffers) averaged as
    `update_hwm` does with hwm='mean', Σ_j v_j·(1/N) accumulated in order, then load_state_dict (src/OKDPH.py
    L33–47): integer buffers (num_batches_tracked) are summed as floats and truncated on loading, as there."""
    rate = 1.0 / len(models)
    load_weighted(hwm.state_dict(), [m.state_dict() for m in models], [rate] * len(models))


def fuse(model, hwm, gamma: float) -> None:
    """Supplement eq. 2 on the whole state dict, θ_m ← γ·θ_hwm + (1−γ)·θ_m (`fusion`, src/OKDPH.py L50–58):
    γ = 1 loads the HWM's state, γ = 0 leaves the model as it is."""
    if gamma == 0:
        return
    own, source = model.state_dict(), hwm.state_dict()
    if gamma == 1:
        load_weighted(own, [source], None)
    else:
        load_weighted(own, [source, own], [gamma, 1.0 - gamma])


def load_weighted(target: dict, states: list[dict], weights: list[float] | None) -> None:
    """Write Σ_i w_i·states_i[k] into every tensor target[k] in place, accumulated as the official dict
    comprehensions do (s_0·w_0, then s_i·w_i + sum; float addition commutes, so the bits are theirs) and cast
    to the target's dtype as load_state_dict's copy does; `weights=None` copies states[0]. One multi-tensor
    kernel per operation (torch._foreach_*) instead of one per tensor: the HWM is rebuilt every batch."""
    import torch

    if weights is None:
        with torch.no_grad():
            torch._foreach_copy_(list(target.values()), [states[0][k] for k in target])
        return
    floats = [k for k, v in target.items() if v.is_floating_point()]
    with torch.no_grad():
        if floats:
            total = torch._foreach_mul([states[0][k] for k in floats], weights[0])
            for state, weight in zip(states[1:], weights[1:]):
                total = torch._foreach_add(torch._foreach_mul([state[k] for k in floats], weight), total)
            torch._foreach_copy_([target[k] for k in floats], total)
        for k in (k for k, v in target.items() if not v.is_floating_point()):
            mixed = states[0][k] * weights[0]
            for state, weight in zip(states[1:], weights[1:]):
                mixed = state[k] * weight + mixed
            target[k].copy_(mixed)
