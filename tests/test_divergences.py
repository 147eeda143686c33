"""renyi_divergence against an independent float64 computation and the laws the papers prove."""

import math

import numpy as np
from mpmath import mp
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rdml.divergences import renyi_divergence, renyi_divergence_from_log_probs

ALPHAS = [0.0, 0.05, 0.3, 0.5, 0.9, 0.999, 1.0, 1.001, 1.5, 2.0, 3.5, 12.5, 100.0, math.inf]


def reference(p_logits: torch.Tensor, q_logits: torch.Tensor, alpha: float) -> np.ndarray:
    """Textbook formulas in 50-digit mpmath, from thesis Definition 4 and eqs. 1.2, 1.3, 1.5."""
    mp.dps = 50
    out = []
    for p_row, q_row in zip(p_logits.tolist(), q_logits.tolist()):
        p = [mp.exp(v) for v in p_row]
        q = [mp.exp(v) for v in q_row]
        p = [v / mp.fsum(p) for v in p]
        q = [v / mp.fsum(q) for v in q]
        if alpha == 0:
            value = -mp.log(mp.fsum(qi for pi, qi in zip(p, q) if pi > 0))
        elif alpha == 1:
            value = mp.fsum(pi * mp.log(pi / qi) for pi, qi in zip(p, q))
        elif alpha == math.inf:
            value = max(mp.log(pi / qi) for pi, qi in zip(p, q))
        else:
            value = mp.log(mp.fsum(pi**alpha * qi ** (1 - alpha) for pi, qi in zip(p, q))) / (alpha - 1)
        out.append(float(value))
    return np.array(out)


def logits_pair(seed: int, rows: int = 16, classes: int = 10, scale: float = 3.0):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(rows, classes, generator=gen, dtype=torch.float64) * scale,
        torch.randn(rows, classes, generator=gen, dtype=torch.float64) * scale,
    )


@pytest.mark.parametrize("alpha", ALPHAS)
def test_matches_float64_reference(alpha):
    p, q = logits_pair(0)
    got = renyi_divergence(p, q, alpha)
    expected = reference(p, q, alpha)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-12)
    got32 = renyi_divergence(p.float(), q.float(), alpha)
    np.testing.assert_allclose(got32.numpy(), expected, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("offset", [1e-7, -1e-7, 1e-5, -1e-5])
def test_continuous_at_one_without_cancellation_in_float32(offset):
    p, q = logits_pair(1)
    kl = reference(p, q, 1.0)
    got = renyi_divergence(p.float(), q.float(), 1.0 + offset).double().numpy()
    # D_α = KL + (α−1)·Var_p[log p/q]/2 + O((α−1)²): the offset's own effect is within the tolerance.
    np.testing.assert_allclose(got, kl, rtol=1e-6 if abs(offset) < 1e-6 else 1e-4)


@pytest.mark.parametrize("alpha", [0.05, 0.5, 1 - 1e-7, 1.0, 1 + 1e-7, 2.0, 12.5, math.inf])
def test_float32_logits_of_magnitude_100(alpha):
    """Finite values and the right, non-zero gradient where a probability floor would zero it.

    P and Q put their mass on opposite classes, so Q is below 1e-40 on the classes P favours: clamping
    probabilities at 1e-8 (the released RDML code) would give those classes no gradient at all.
    """
    p = torch.tensor([[100.0, 0.0, -100.0], [100.0, -100.0, 50.0]])
    q = torch.tensor([[-100.0, 0.0, 100.0], [-100.0, 100.0, -50.0]], requires_grad=True)
    value = renyi_divergence(p, q, alpha)
    assert torch.isfinite(value).all()
    np.testing.assert_allclose(value.detach().double().numpy(), reference(p.double(), q.detach().double(), alpha), rtol=1e-5)
    value.sum().backward()
    assert torch.isfinite(q.grad).all()
    if alpha == math.inf:  # D_∞ = max_i log(p_i/q_i) is attained at class 0 on both rows.
        np.testing.assert_allclose(q.grad.numpy(), [[-1.0, 0, 1.0], [-1.0, 1.0, 0]], atol=1e-6)
        return
    expected = eq_1_17(p.double(), q.detach().double(), alpha)
    np.testing.assert_allclose(q.grad.double().numpy(), expected, rtol=1e-4, atol=1e-6)
    # Non-zero wherever the exact gradient is (for α = 0.05 it is itself below 1e-70 on row 0).
    assert ((q.grad.abs() > 0) | (torch.from_numpy(np.abs(expected)) < 1e-30)).all()
    if alpha == 0.5:  # w = softmax((lp + lq)/2) is uniform on row 0: the gradient is q − 1/3.
        np.testing.assert_allclose(q.grad[0].numpy(), [-1 / 3, -1 / 3, 2 / 3], rtol=1e-5)


def eq_1_17(p_logits, q_logits, alpha):
    """Thesis eq. 1.17 with T = 1: ∂D_α/∂z_j = q_j − p_j^α q_j^(1−α) / Σ_i p_i^α q_i^(1−α), in mpmath."""
    mp.dps = 50
    out = []
    for p_row, q_row in zip(p_logits.tolist(), q_logits.tolist()):
        p = [mp.exp(v) / mp.fsum(mp.exp(u) for u in p_row) for v in p_row]
        q = [mp.exp(v) / mp.fsum(mp.exp(u) for u in q_row) for v in q_row]
        z = mp.fsum(pi**alpha * qi ** (1 - alpha) for pi, qi in zip(p, q))
        out.append([float(qi - pi**alpha * qi ** (1 - alpha) / z) for pi, qi in zip(p, q)])
    return np.array(out)


@pytest.mark.parametrize("bad", [-0.5, -math.inf, math.nan, "2", None, True, [1.0]])
def test_bad_alpha_names_value_and_range(bad):
    p, q = logits_pair(3)
    with pytest.raises(ValueError, match=r"alpha.*\[0, inf\]"):
        renyi_divergence(p, q, bad)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        renyi_divergence(torch.zeros(2, 3), torch.zeros(2, 4), 1.0)


def test_zero_probabilities_follow_the_conventions():
    """Log-prob form: 0/0 = 0 and x/0 = ∞ (thesis Definition 4), limits 1.2 and 1.5 on partial support."""
    log = torch.log(torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.8, 0.0]], dtype=torch.float64))
    q = torch.log(torch.tensor([[0.25, 0.25, 0.5], [0.0, 0.5, 0.5]], dtype=torch.float64))
    d0 = renyi_divergence_from_log_probs(log, q, 0.0)
    np.testing.assert_allclose(d0.numpy(), [-math.log(0.5), -math.log(0.5)])
    dinf = renyi_divergence_from_log_probs(log, q, math.inf)
    assert dinf[0].item() == pytest.approx(math.log(2.0)) and dinf[1].item() == math.inf
    for alpha in [0.5, 1.0, 2.0]:
        d = renyi_divergence_from_log_probs(log, q, alpha)
        expected = math.log(sum(0.5**alpha * 0.25 ** (1 - alpha) for _ in range(2))) / (alpha - 1) if alpha != 1 else math.log(2.0)
        assert d[0].item() == pytest.approx(expected)
        assert d[1].item() == (math.inf if alpha >= 1 else pytest.approx(math.log(0.8**0.5 * 0.5**0.5) / -0.5))


# ---- property tests: the laws the papers prove -------------------------------------------------

rows = st.integers(min_value=2, max_value=12)


@st.composite
def distribution_pairs(draw):
    n = draw(rows)
    vals = st.floats(min_value=-15, max_value=15, allow_nan=False, width=64)
    p = draw(st.lists(vals, min_size=n, max_size=n))
    q = draw(st.lists(vals, min_size=n, max_size=n))
    return torch.tensor([p], dtype=torch.float64), torch.tensor([q], dtype=torch.float64)


positive_alphas = st.floats(min_value=0.01, max_value=50, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(distribution_pairs(), positive_alphas)
def test_non_negative_and_zero_iff_equal(pair, alpha):
    """RDML Remark 1."""
    p, q = pair
    assert renyi_divergence(p, q, alpha).item() >= -1e-12
    assert renyi_divergence(p, p + 3.0, alpha).item() == pytest.approx(0.0, abs=1e-12)
    probs_p, probs_q = torch.softmax(p, -1), torch.softmax(q, -1)
    if (probs_p - probs_q).abs().max() > 1e-3:
        assert renyi_divergence(p, q, alpha).item() > 0


@settings(max_examples=150, deadline=None)
@given(distribution_pairs(), st.lists(st.floats(min_value=0, max_value=60, allow_nan=False), min_size=2, max_size=6))
def test_non_decreasing_in_alpha(pair, alphas):
    """RDML Remark 2, including the end points 0 and ∞."""
    p, q = pair
    ordered = [0.0, *sorted(alphas), math.inf]
    values = [renyi_divergence(p, q, a).item() for a in ordered]
    for lower, upper in zip(values, values[1:]):
        assert upper >= lower - 1e-9 * max(1.0, abs(lower))


@settings(max_examples=150, deadline=None)
@given(distribution_pairs())
def test_order_one_half_is_hellinger(pair):
    """D_{1/2}(P‖Q) = −2 log(1 − H²) with H² = 1 − Σ sqrt(p q)."""
    p, q = pair
    hellinger_sq = 1 - (torch.softmax(p, -1) * torch.softmax(q, -1)).sqrt().sum().item()
    assert renyi_divergence(p, q, 0.5).item() == pytest.approx(-2 * math.log(1 - hellinger_sq), rel=1e-9, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(distribution_pairs(), st.floats(min_value=0.01, max_value=0.99))
def test_skew_symmetry(pair, alpha):
    """D_{1−α}(P‖Q) = (1−α)/α · D_α(Q‖P) for α in (0, 1)."""
    p, q = pair
    left = renyi_divergence(p, q, 1 - alpha).item()
    right = (1 - alpha) / alpha * renyi_divergence(q, p, alpha).item()
    assert left == pytest.approx(right, rel=1e-8, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(distribution_pairs(), st.floats(min_value=0.01, max_value=30))
def test_gradient_wrt_q_logits_is_thesis_eq_1_17(pair, alpha):
    p, q = pair
    q = q.clone().requires_grad_()
    renyi_divergence(p, q, alpha).sum().backward()
    np.testing.assert_allclose(q.grad.numpy(), eq_1_17(p, q.detach(), alpha), atol=1e-10)
