"""(Rényi) deep mutual learning: every peer a teacher (DML eq. 10; RDML eq. 3.3 for α ≠ 1), or the
peers' average as one teacher (DML_e, DML eq. 11). `mutual_terms` returns each student's named, already
weighted terms (what the trainer logs), `mutual_loss` their sums.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from rdml.core.divergences import check_alpha, released_renyi_divergence, renyi_divergence_from_log_probs
from rdml.core.losses import check_non_negative, check_temperature, supervised_cross_entropy
from rdml.keys import real_in_range

__all__ = ["mutual_terms", "mutual_loss"]


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
    temperature = check_temperature(temperature)
    weight = check_non_negative(weight, "weight")
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
