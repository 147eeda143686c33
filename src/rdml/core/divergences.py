"""Rényi divergence between categorical distributions, exact for every order α in [0, ∞].

D_α(P‖Q) = 1/(α−1) · log Σ_i p_i^α q_i^(1−α)           (RDML eq. 3.4; thesis Definition 4)
D_0(P‖Q) = −log Σ_{i: p_i>0} q_i                          (thesis eq. 1.2)
D_1(P‖Q) = Σ_i p_i log(p_i/q_i) = KL(P‖Q)                 (thesis eq. 1.3)
D_∞(P‖Q) = max_{i: p_i>0} log(p_i/q_i)                    (thesis eq. 1.5)

Everything is computed from log-probabilities, never by clamping probabilities: clamping at a floor
(as the released RDML code does at 1e-8) biases the value and zeroes the gradient of every class below
the floor (`released_renyi_divergence` reproduces that clamp, opt-in, for the as-released study).
Near α = 1 the general formula is 0/0; there it is evaluated as log1p(E_p[expm1(s·d)])/s with s = α−1 and d = log p − log q, which has no cancellation, so α → 1 is continuous up to α = 1 itself.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rdml.keys import real_in_range

__all__ = ["check_alpha", "renyi_divergence", "renyi_divergence_from_log_probs", "released_renyi_divergence"]


def check_alpha(alpha: object, *, name: str = "alpha") -> float:
    """Return alpha as a float, or raise a ValueError (ConfigError) naming it and the allowed range [0, inf]."""
    return real_in_range(name, alpha, 0, math.inf, "a real number in [0, inf]")


def renyi_divergence(p_logits: Tensor, q_logits: Tensor, alpha: float) -> Tensor:
    """Per-row D_α(P‖Q) with P = softmax(p_logits), Q = softmax(q_logits) over the last dimension."""
    _check_same_shape(p_logits, q_logits)
    return renyi_divergence_from_log_probs(
        torch.log_softmax(p_logits, dim=-1), torch.log_softmax(q_logits, dim=-1), alpha
    )


def renyi_divergence_from_log_probs(log_p: Tensor, log_q: Tensor, alpha: float) -> Tensor:
    """Per-row D_α(P‖Q) from log-probabilities over the last dimension.

    Entries of −inf stand for zero probabilities and follow the conventions 0/0 = 0 and x/0 = ∞
    (thesis Definition 4), so hard targets and distributions with disjoint support are exact too.
    """
    alpha = check_alpha(alpha)
    _check_same_shape(log_p, log_q)
    in_support = log_p > -math.inf
    if alpha == 0.0:
        return -torch.logsumexp(log_q.masked_fill(~in_support, -math.inf), dim=-1)
    # log(p/q) on the support of P; +inf where q = 0 < p.
    log_ratio = torch.where(in_support, log_p - log_q, torch.zeros_like(log_p))
    if alpha == math.inf:
        return log_ratio.masked_fill(~in_support, -math.inf).amax(dim=-1)
    if alpha == 1.0:
        return (log_p.exp() * log_ratio).sum(dim=-1)
    s = alpha - 1.0
    scaled = s * log_ratio
    # Rows where every |s·d| <= 1 take the cancellation-free form; the others the log-sum-exp form.
    # Arguments of the branch not taken are replaced by 0 so that neither branch can make a NaN
    # gradient through torch.where.
    near = (scaled.abs() <= 1.0).all(dim=-1, keepdim=True)
    safe_scaled = torch.where(near, scaled, torch.zeros_like(scaled))
    near_value = torch.log1p((log_p.exp() * torch.expm1(safe_scaled)).sum(dim=-1)) / s
    exponents = torch.where(in_support, log_p + scaled, torch.full_like(log_p, -math.inf))
    far_exponents = torch.where(near, torch.zeros_like(exponents), exponents)
    far_value = torch.logsumexp(far_exponents, dim=-1) / s
    return torch.where(near.squeeze(-1), near_value, far_value)


def released_renyi_divergence(log_p: Tensor, log_q: Tensor, alpha: float, floor: float) -> Tensor:
    """Per-row D_α(P‖Q) as the released RDML code computes it (parklize/rdml, torchversion/core/dml.py,
    `RenyiLoss.forward`): p and q clamped to [floor, 1] (the code's eps = 1e-8), then
    Σ p·(log p − log q) where |α − 1| <= 1e-6, else log Σ q·(p/q)^α / (α − 1); and 0 at α = 0, where
    that code returns 0 instead of D_0. Opt-in (`probability_floor`) for the as-released study only:
    the clamp biases the value and zeroes the gradient of every class below the floor.
    """
    alpha = check_alpha(alpha)
    _check_same_shape(log_p, log_q)
    if not 0.0 < floor < 1.0:
        raise ValueError(f"floor={floor!r}: the clamp floor must be in (0, 1)")
    if alpha == 0.0:
        return torch.zeros(log_p.shape[:-1], dtype=log_p.dtype, device=log_p.device)
    p = log_p.exp().clamp(floor, 1.0)
    q = log_q.exp().clamp(floor, 1.0)
    if abs(alpha - 1.0) <= 1e-6:
        return (p * (p.log() - q.log())).sum(dim=-1)
    return torch.log((q * (p / q).pow(alpha)).sum(dim=-1)) / (alpha - 1.0)


def _check_same_shape(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"the two distributions must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() == 0:
        raise ValueError("distributions need at least one dimension (the classes), got a scalar")
