"""Knowledge distillation from a frozen teacher: Hinton KD at α = 1, Rényi KD otherwise.

L = (1−β)·CE + β·T²/α·D_α(P_t^T‖Q_s^T)  (Rényi-KD thesis eqs. 1.15–1.16). `kd_terms` returns the named,
already weighted terms (what the trainer logs), `kd_loss` their sum.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rdml.core.divergences import check_alpha, renyi_divergence_from_log_probs
from rdml.core.losses import check_temperature, check_unit_interval, supervised_cross_entropy
from rdml.keys import ConfigError

__all__ = ["kd_terms", "kd_loss"]


def kd_terms(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    *,
    alpha: float,
    temperature: float,
    beta: float,
    temperature_squared: bool = True,
    label_smoothing: float = 0.0,
) -> dict[str, Tensor]:
    """Terms of L = (1−β)·CE(y, Q) + β·T²/α · mean_rows D_α(P_t^T ‖ Q_s^T)  (thesis eqs. 1.15–1.16).

    α = 1 is Hinton KD with the T² factor (thesis eq. 1.11). The teacher gets no gradient.
    `temperature_squared=False` drops T², as the DML-vs-KD article prints its loss:
    L = (1−α)·H(y, p^s) + α·D(p_τ^t, p_τ^s).
    `label_smoothing` ε: CE against (1−ε)·onehot + ε/C (rdml.core.losses.supervised_cross_entropy).
    """
    alpha = _check_kd_alpha(alpha)
    temperature = check_temperature(temperature)
    beta = check_unit_interval(beta, "beta")
    log_p_teacher = torch.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    log_q_student = torch.log_softmax(student_logits / temperature, dim=-1)
    divergence = renyi_divergence_from_log_probs(log_p_teacher, log_q_student, alpha).mean()
    return {
        "ce": (1.0 - beta) * supervised_cross_entropy(student_logits, labels, label_smoothing),
        "mimic": beta * (temperature**2 if temperature_squared else 1.0) / alpha * divergence,
    }


def kd_loss(student_logits, teacher_logits, labels, *, alpha, temperature, beta, temperature_squared=True,
            label_smoothing=0.0) -> Tensor:
    """(1−β)·CE + β·T²/α·mean D_α(P_t^T‖Q_s^T); see `kd_terms`."""
    terms = kd_terms(student_logits, teacher_logits, labels, alpha=alpha, temperature=temperature, beta=beta,
                     temperature_squared=temperature_squared, label_smoothing=label_smoothing)
    return terms["ce"] + terms["mimic"]


def _check_kd_alpha(alpha: object) -> float:
    value = check_alpha(alpha)
    if value == 0.0 or value == math.inf:
        raise ConfigError(f"alpha={alpha!r}: kd scales its divergence by T^2/alpha, so alpha must be in (0, inf)")
    return value
