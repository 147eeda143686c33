"""What every training loss shares: the supervised cross-entropy (with optional label smoothing), the
unlabelled-row marker, the confidence penalty, the KL distillation term of KDCL and OKDPH, and the checks of
the losses' numbers. The two loss families have
modules of their own, so that an edit of one reruns only the runs that use it (rdml.code):
rdml.core.distillation (Hinton / Rényi KD) and rdml.core.mutual (DML, RDML, DML_e).

Labels equal to UNLABELLED (−1) mark unlabelled rows: they get no cross-entropy but still take part
in every mimicry term, which is the semi-supervised form of DML §3.4 ("DML-all").
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from rdml.keys import real_in_range

__all__ = ["UNLABELLED", "supervised_cross_entropy", "confidence_penalty", "kl_distillation", "check_temperature",
           "check_unit_interval", "check_non_negative", "check_label_smoothing"]

UNLABELLED = -1


def supervised_cross_entropy(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy over the labelled rows (0 when a batch holds none, instead of NaN), against the
    smoothed target (1−ε)·onehot + ε/C for ε = `label_smoothing` (0: the one-hot label).

    The smoothed target is TF's `tf.losses.softmax_cross_entropy(onehot_labels, logits, label_smoothing=ε)`
    (tensorflow/tensorflow, tensorflow/python/ops/losses/losses_impl.py, softmax_cross_entropy:
    `onehot_labels * (1 - label_smoothing) + label_smoothing / num_classes`), which the official DML code
    trains every network with (YingZhangDUT/Deep-Mutual-Learning train_models.py L77–79, ε = 0.1 from
    scripts/train_dml_mobilenet_on_market.sh L41 and scripts/train_ind_mobilenet_on_market.sh L41). Its
    cross-entropy, −Σ_c t_c log p_c = (1−ε)·(−log p_y) + ε·mean_c(−log p_c), is torch's
    `F.cross_entropy(label_smoothing=ε)`, used here. Unlabelled rows get neither part."""
    labelled = (labels != UNLABELLED).sum().clamp(min=1)
    smoothing = check_label_smoothing(label_smoothing) if label_smoothing else 0.0
    return F.cross_entropy(logits, labels, ignore_index=UNLABELLED, reduction="sum", label_smoothing=smoothing) / labelled


def confidence_penalty(logits: Tensor, beta: float) -> Tensor:
    """−β · mean_rows H(softmax(z)): the confidence penalty of Pereyra et al. 2017, "Regularizing neural networks
    by penalizing confident output distributions" (ICLR workshop), L = CE − β·H(p_θ(y|x)), the DML paper's
    reference [17] for entropy regularisation (§4.8, Table 5's "Independent, Entropy"). It needs no label, so
    every row of the batch takes part, unlabelled ones too."""
    beta = check_non_negative(beta, "confidence_penalty")
    log_p = F.log_softmax(logits, dim=-1)
    entropy = -(log_p.exp() * log_p).sum(dim=-1)
    return -beta * entropy.mean()


def kl_distillation(logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """T²·KL(softmax(teacher/T) ‖ softmax(z/T)), mean over rows, as the OKDPH authors' KDCL and OKDPH scripts
    write it (F.kl_div(..., reduction='batchmean')·T·T; tianlizhang/OKDPH src/03_KDCL.py L48–52, src/OKDPH.py
    L82–86). The teacher is used as given: the caller detaches it."""
    return F.kl_div(F.log_softmax(logits / temperature, dim=1), F.softmax(teacher_logits / temperature, dim=1),
                    reduction="batchmean") * temperature * temperature


def check_temperature(temperature: object) -> float:
    return real_in_range("temperature", temperature, 0, math.inf, "a finite number > 0", open_low=True, open_high=True)


def check_unit_interval(value: object, name: str) -> float:
    return real_in_range(name, value, 0, 1, "a number in [0, 1]")


def check_non_negative(value: object, name: str) -> float:
    return real_in_range(name, value, 0, math.inf, "a finite number >= 0", open_high=True)


def check_label_smoothing(value: object) -> float:
    return real_in_range("label_smoothing", value, 0, 1, "a number in [0, 1) (0 = the one-hot label)", open_high=True)
