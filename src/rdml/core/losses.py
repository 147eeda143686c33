"""What every training loss shares: the supervised cross-entropy, the unlabelled-row marker, the KL
distillation term of KDCL and OKDPH, and the checks of the losses' numbers. The two loss families have
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

__all__ = ["UNLABELLED", "supervised_cross_entropy", "kl_distillation", "check_temperature", "check_unit_interval",
           "check_non_negative"]

UNLABELLED = -1


def supervised_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the labelled rows (0 when a batch holds none, instead of NaN)."""
    labelled = (labels != UNLABELLED).sum().clamp(min=1)
    return F.cross_entropy(logits, labels, ignore_index=UNLABELLED, reduction="sum") / labelled


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
