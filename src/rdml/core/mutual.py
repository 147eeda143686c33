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
from rdml.keys import ConfigError, one_of, real_in_range

__all__ = ["mutual_terms", "mutual_loss", "PEER_REDUCTIONS"]

# How a student's terms gather its K−1 peers: DML eq. 10's 1/(K−1) Σ_{l≠k} (the paper), or Σ_{l≠k} as the official
# DML code adds kl_loss_compute once per peer (YingZhangDUT/Deep-Mutual-Learning train_models.py L90–96).
PEER_REDUCTIONS = ("mean", "sum")


def mutual_terms(
    logits_list: Sequence[Tensor],
    labels: Tensor,
    *,
    alpha: float,
    temperature: float = 1.0,
    weight: float = 1.0,
    ensemble: bool = False,
    probability_floor: float = 0.0,
    peer_reduction: str = "mean",
    label_smoothing: float = 0.0,
    features: Sequence[Tensor] | None = None,
    feature_weight: float = 0.0,
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
    `peer_reduction="sum"` drops eq. 10's 1/(K−1), as the official DML code sums kl_loss_compute over the peers
    (YingZhangDUT/Deep-Mutual-Learning train_models.py L90–96); DML_e has one teacher and takes only "mean".
    `label_smoothing` ε: CE_k against (1−ε)·onehot + ε/C (`supervised_cross_entropy`).
    `features` (one (N, D) tensor per student) with `feature_weight` λ > 0 adds DML Table 5's "DML, L2" term,
        "feature_l2" = λ · R_{l≠k} mean_rows ‖f_k − f_l‖²,
    f_l detached as the peers' predictions are, R the same reduction over peers as the mimicry term.
    """
    k_students = len(logits_list)
    if k_students < 2:
        raise ValueError(f"mutual learning needs K >= 2 students, got K = {k_students}")
    alpha = check_alpha(alpha)
    temperature = check_temperature(temperature)
    weight = check_non_negative(weight, "weight")
    one_of("peer_reduction", peer_reduction, PEER_REDUCTIONS)
    if ensemble and peer_reduction != "mean":
        raise ConfigError(f"peer_reduction={peer_reduction}: DML_e has one teacher, the peers' average (DML eq. 11), "
                          "so there is nothing to sum over; it takes peer_reduction=mean")
    feature_weight = check_non_negative(feature_weight, "feature_l2")
    if feature_weight and (features is None or len(features) != k_students):
        raise ValueError(f"feature_l2={feature_weight:g} needs one feature tensor per student ({k_students}), got "
                         f"{'none' if features is None else len(features)}")
    if feature_weight and ensemble:
        raise ConfigError("feature_l2 is DML Table 5's \"DML, L2\" between peers; DML_e's teacher is the peers' "
                          "averaged prediction, which has no feature")
    log_probs = [torch.log_softmax(logits / temperature, dim=-1) for logits in logits_list]
    peers = [lp.detach() for lp in log_probs]
    floor = real_in_range("probability_floor", probability_floor, 0, 1, "a number in [0, 1) (0 = exact, no clamp)",
                          open_high=True)

    def divergence(log_p: Tensor, log_q: Tensor) -> Tensor:
        if floor:
            return released_renyi_divergence(log_p, log_q, alpha, floor)
        return renyi_divergence_from_log_probs(log_p, log_q, alpha)

    def over_peers(total: Tensor) -> Tensor:
        return total / (k_students - 1) if peer_reduction == "mean" else total

    scale = weight * temperature**2
    terms = []
    for k, logits in enumerate(logits_list):
        others = [j for j in range(k_students) if j != k]
        if ensemble:
            log_avg = torch.logsumexp(torch.stack([peers[j] for j in others]), dim=0) - math.log(k_students - 1)
            mimic = divergence(log_avg, log_probs[k]).mean()
        else:
            mimic = over_peers(sum(divergence(peers[j], log_probs[k]).mean() for j in others))
        term = {"ce": supervised_cross_entropy(logits, labels, label_smoothing), "mimic": scale * mimic}
        if feature_weight:
            distance = sum((features[k] - features[j].detach()).pow(2).sum(dim=-1).mean() for j in others)
            term["feature_l2"] = feature_weight * over_peers(distance)
        terms.append(term)
    return terms


def mutual_loss(logits_list, labels, *, alpha, temperature=1.0, weight=1.0, ensemble=False, probability_floor=0.0,
                peer_reduction="mean", label_smoothing=0.0, features=None, feature_weight=0.0) -> list[Tensor]:
    """The K per-student (R)DML losses; see `mutual_terms`."""
    terms = mutual_terms(logits_list, labels, alpha=alpha, temperature=temperature, weight=weight, ensemble=ensemble,
                         probability_floor=probability_floor, peer_reduction=peer_reduction,
                         label_smoothing=label_smoothing, features=features, feature_weight=feature_weight)
    return [sum(t.values()) for t in terms]
