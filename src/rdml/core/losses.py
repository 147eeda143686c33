"""Distillation losses: Hinton / Rényi KD from a frozen teacher, (Rényi) deep mutual learning, and the
KL distillation term of KDCL and OKDPH.

Labels equal to UNLABELLED (−1) mark unlabelled rows: they get no cross-entropy but still take part
in every mimicry term, which is the semi-supervised form of DML §3.4 ("DML-all").

Each loss has a `*_terms` form returning its named, already weighted terms (what the trainer logs)
and a plain form returning their sum; `kl_distillation` is one term, which KDCL and OKDPH weigh themselves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from rdml.core.divergences import check_alpha, released_renyi_divergence, renyi_divergence_from_log_probs
from rdml.keys import ConfigError, real_in_range

__all__ = [
    "UNLABELLED",
    "supervised_cross_entropy",
    "kd_terms",
    "kd_loss",
    "mutual_terms",
    "mutual_loss",
    "kl_distillation",
]

UNLABELLED = -1


def supervised_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the labelled rows (0 when a batch holds none, instead of NaN)."""
    labelled = (labels != UNLABELLED).sum().clamp(min=1)
    return F.cross_entropy(logits, labels, ignore_index=UNLABELLED, reduction="sum") / labelled


def kd_terms(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    *,
    alpha: float,
    temperature: float,
    beta: float,
    temperature_squared: bool = True,
) -> dict[str, Tensor]:
    """Terms of L = (1−β)·CE(y, Q) + β·T²/α · mean_rows D_α(P_t^T ‖ Q_s^T)  (thesis eqs. 1.15–1.16).

    α = 1 is Hinton KD with the T² factor (thesis eq. 1.11). The teacher gets no gradient.
    `temperature_squared=False` drops T², as the DML-vs-KD article prints its loss:
    L = (1−α)·H(y, p^s) + α·D(p_τ^t, p_τ^s).
    """
    alpha = _check_kd_alpha(alpha)
    temperature = _check_temperature(temperature)
    beta = _check_unit_interval(beta, "beta")
    log_p_teacher = torch.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    log_q_student = torch.log_softmax(student_logits / temperature, dim=-1)
    divergence = renyi_divergence_from_log_probs(log_p_teacher, log_q_student, alpha).mean()
    return {
        "ce": (1.0 - beta) * supervised_cross_entropy(student_logits, labels),
        "mimic": beta * (temperature**2 if temperature_squared else 1.0) / alpha * divergence,
    }


def kd_loss(student_logits, teacher_logits, labels, *, alpha, temperature, beta, temperature_squared=True) -> Tensor:
    """(1−β)·CE + β·T²/α·mean D_α(P_t^T‖Q_s^T); see `kd_terms`."""
    terms = kd_terms(student_logits, teacher_logits, labels, alpha=alpha, temperature=temperature, beta=beta,
                     temperature_squared=temperature_squared)
    return terms["ce"] + terms["mimic"]


def mutual_terms(
    logits_list: Sequence[Tensor],
    labels: Tensor,
    *,
    alpha: float,
    temperature: float = 1.0,
    weight: float = 1.0,
    ensemble: bool = False,
    probability_floor: float = 0.0,
) -> list[dict[str, Tensor]]:
    """Per-student terms of (Rényi) deep mutual learning, every peer detached.

    DML / RDML (DML eq. 10, RDML eq. 3.3):
        L_k = CE_k + w·T² · 1/(K−1) · Σ_{j≠k} mean_rows D_α(P_j^T ‖ P_k^T)
    DML_e (DML eq. 11, `ensemble=True`): the peers are replaced by their average,
        L_k = CE_k + w·T² · mean_rows D_α(P_avg^T ‖ P_k^T),  P_avg = 1/(K−1) Σ_{j≠k} P_j^T.
    α = 1 is DML (KL); any other α is RDML. The papers use T = 1 and w = 1; with T ≠ 1 the T² factor
    keeps the mimicry gradient on the scale of the cross-entropy, as in Hinton KD.
    `probability_floor` > 0 swaps D_α for the released RDML code's clamped form
    (`rdml.core.divergences.released_renyi_divergence`); 0, the default, keeps the exact one.
    """
    k_students = len(logits_list)
    if k_students < 2:
        raise ValueError(f"mutual learning needs K >= 2 students, got K = {k_students}")
    alpha = check_alpha(alpha)
    temperature = _check_temperature(temperature)
    weight = _check_non_negative(weight, "weight")
    log_probs = [torch.log_softmax(logits / temperature, dim=-1) for logits in logits_list]
    peers = [lp.detach() for lp in log_probs]
    floor = real_in_range("probability_floor", probability_floor, 0, 1, "a number in [0, 1) (0 = exact, no clamp)",
                          open_high=True)

    def divergence(log_p: Tensor, log_q: Tensor) -> Tensor:
        if floor:
            return released_renyi_divergence(log_p, log_q, alpha, floor)
        return renyi_divergence_from_log_probs(log_p, log_q, alpha)

    scale = weight * temperature**2
    terms = []
    for k, logits in enumerate(logits_list):
        others = [peers[j] for j in range(k_students) if j != k]
        if ensemble:
            log_avg = torch.logsumexp(torch.stack(others), dim=0) - math.log(k_students - 1)
            mimic = divergence(log_avg, log_probs[k]).mean()
        else:
            mimic = sum(divergence(o, log_probs[k]).mean() for o in others)
            mimic = mimic / (k_students - 1)
        terms.append({"ce": supervised_cross_entropy(logits, labels), "mimic": scale * mimic})
    return terms


def mutual_loss(logits_list, labels, *, alpha, temperature=1.0, weight=1.0, ensemble=False,
                probability_floor=0.0) -> list[Tensor]:
    """The K per-student (R)DML losses; see `mutual_terms`."""
    terms = mutual_terms(logits_list, labels, alpha=alpha, temperature=temperature, weight=weight, ensemble=ensemble,
                         probability_floor=probability_floor)
    return [t["ce"] + t["mimic"] for t in terms]


def kl_distillation(logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """T²·KL(softmax(teacher/T) ‖ softmax(z/T)), mean over rows, as the OKDPH authors' KDCL and OKDPH scripts
    write it (F.kl_div(..., reduction='batchmean')·T·T; tianlizhang/OKDPH src/03_KDCL.py L48–52, src/OKDPH.py
    L82–86). The teacher is used as given: the caller detaches it."""
    return F.kl_div(F.log_softmax(logits / temperature, dim=1), F.softmax(teacher_logits / temperature, dim=1),
                    reduction="batchmean") * temperature * temperature


def _check_kd_alpha(alpha: object) -> float:
    value = check_alpha(alpha)
    if value == 0.0 or value == math.inf:
        raise ConfigError(f"alpha={alpha!r}: kd scales its divergence by T^2/alpha, so alpha must be in (0, inf)")
    return value


def _check_temperature(temperature: object) -> float:
    return real_in_range("temperature", temperature, 0, math.inf, "a finite number > 0", open_low=True, open_high=True)


def _check_unit_interval(value: object, name: str) -> float:
    return real_in_range(name, value, 0, 1, "a number in [0, 1]")


def _check_non_negative(value: object, name: str) -> float:
    return real_in_range(name, value, 0, math.inf, "a finite number >= 0", open_high=True)
