"""kd_loss and mutual_loss against independent float64 computations and the papers' formulas."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rdml.losses import UNLABELLED, kd_loss, kd_terms, mutual_loss, mutual_terms


def batch(seed, rows=12, classes=7, k=2, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    logits = [torch.randn(rows, classes, generator=gen, dtype=torch.float64) * scale for _ in range(k)]
    labels = torch.randint(0, classes, (rows,), generator=gen)
    return logits, labels


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_renyi(p, q, alpha):
    if alpha == 1:
        return (p * np.log(p / q)).sum(-1)
    return np.log((p**alpha * q ** (1 - alpha)).sum(-1)) / (alpha - 1)


def np_ce(logits, labels):
    return -np.log(np_softmax(logits)[np.arange(len(labels)), labels]).mean()


@pytest.mark.parametrize("alpha", [0.05, 0.5, 1.0, 1.25, 3.5, 12.5])
@pytest.mark.parametrize("temperature,beta", [(4.0, 0.9), (1.0, 0.5), (2.5, 0.0), (3.0, 1.0)])
def test_kd_loss_is_thesis_eq_1_15(alpha, temperature, beta):
    (student, teacher), labels = batch(0)
    got = kd_loss(student, teacher, labels, alpha=alpha, temperature=temperature, beta=beta).item()
    s, t = student.numpy(), teacher.numpy()
    divergence = np_renyi(np_softmax(t / temperature), np_softmax(s / temperature), alpha).mean()
    expected = (1 - beta) * np_ce(s, labels.numpy()) + beta * temperature**2 / alpha * divergence
    assert got == pytest.approx(expected, rel=1e-10)


def test_kd_alpha_one_is_hinton_kd_with_t_squared():
    (student, teacher), labels = batch(1)
    got = kd_loss(student, teacher, labels, alpha=1.0, temperature=4.0, beta=0.9)
    hinton = 0.1 * F.cross_entropy(student, labels) + 0.9 * 16 * F.kl_div(
        F.log_softmax(student / 4, -1), F.softmax(teacher / 4, -1), reduction="batchmean"
    )
    assert got.item() == pytest.approx(hinton.item(), rel=1e-12)


def test_kd_teacher_gets_no_gradient_and_student_gradient_is_eq_1_17():
    (student, teacher), labels = batch(2)
    student.requires_grad_()
    teacher.requires_grad_()
    alpha, temperature = 2.0, 4.0
    kd_terms(student, teacher, labels, alpha=alpha, temperature=temperature, beta=1.0)["mimic"].backward()
    assert teacher.grad is None
    # d/dz [T²/α · mean D_α(P^T‖Q^T)] = T/α · (q^T − w) / N with w ∝ p^α q^(1−α)  (thesis eq. 1.17, chain rule on z/T)
    p = np_softmax(teacher.detach().numpy() / temperature)
    q = np_softmax(student.detach().numpy() / temperature)
    w = p**alpha * q ** (1 - alpha)
    w /= w.sum(-1, keepdims=True)
    expected = temperature / alpha * (q - w) / len(labels)
    np.testing.assert_allclose(student.grad.numpy(), expected, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(alpha=1.0, temperature=0.0, beta=0.5), "temperature"),
        (dict(alpha=1.0, temperature=-1.0, beta=0.5), "temperature"),
        (dict(alpha=1.0, temperature=math.nan, beta=0.5), "temperature"),
        (dict(alpha=1.0, temperature=4.0, beta=1.5), r"beta=1.5 is not allowed; it must be a number in \[0, 1\]"),
        (dict(alpha=1.0, temperature=4.0, beta=-0.1), "beta"),
        (dict(alpha=-1.0, temperature=4.0, beta=0.5), "alpha"),
        (dict(alpha=0.0, temperature=4.0, beta=0.5), r"T\^2/alpha"),
        (dict(alpha=math.inf, temperature=4.0, beta=0.5), r"T\^2/alpha"),
    ],
)
def test_kd_bad_hyper_parameters(kwargs, match):
    (student, teacher), labels = batch(3)
    with pytest.raises(ValueError, match=match):
        kd_loss(student, teacher, labels, **kwargs)


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_mutual_loss_is_dml_eq_10(k, alpha):
    logits, labels = batch(4, k=k)
    got = [v.item() for v in mutual_loss(logits, labels, alpha=alpha)]
    probs = [np_softmax(x.numpy()) for x in logits]
    for i in range(k):
        mimic = sum(np_renyi(probs[j], probs[i], alpha).mean() for j in range(k) if j != i) / (k - 1)
        assert got[i] == pytest.approx(np_ce(logits[i].numpy(), labels.numpy()) + mimic, rel=1e-10)


def test_mutual_k2_alpha1_is_dml_eqs_5_6_with_torch_kl():
    (a, b), labels = batch(5)
    loss_a, loss_b = mutual_loss([a, b], labels, alpha=1.0)
    kl = lambda target, student: F.kl_div(F.log_softmax(student, -1), F.softmax(target, -1), reduction="batchmean")
    assert loss_a.item() == pytest.approx((F.cross_entropy(a, labels) + kl(b, a)).item(), rel=1e-12)
    assert loss_b.item() == pytest.approx((F.cross_entropy(b, labels) + kl(a, b)).item(), rel=1e-12)


def test_mutual_peers_are_detached():
    logits, labels = batch(6, k=3)
    for x in logits:
        x.requires_grad_()
    losses = mutual_loss(logits, labels, alpha=1.5)
    grads = torch.autograd.grad(losses[1], logits, allow_unused=True)
    assert grads[0] is None and grads[2] is None and grads[1].abs().sum() > 0


def test_dml_e_matches_average_of_peers_in_probability_space():
    logits, labels = batch(7, k=4)
    probs = [np_softmax(x.numpy() / 2.0) for x in logits]
    got = mutual_terms(logits, labels, alpha=1.5, temperature=2.0, weight=0.7, ensemble=True)
    for i in range(4):
        avg = sum(probs[j] for j in range(4) if j != i) / 3
        expected = 0.7 * 4.0 * np_renyi(avg, probs[i], 1.5).mean()
        assert got[i]["mimic"].item() == pytest.approx(expected, rel=1e-10)


def test_dml_e_with_two_students_is_dml():
    logits, labels = batch(8)
    plain = mutual_loss(logits, labels, alpha=2.0)
    ensemble = mutual_loss(logits, labels, alpha=2.0, ensemble=True)
    for a, b in zip(plain, ensemble):
        assert a.item() == pytest.approx(b.item(), rel=1e-12)


def test_semi_supervised_ce_on_labelled_rows_mimicry_on_all():
    logits, labels = batch(9, rows=10)
    partial = labels.clone()
    partial[::2] = UNLABELLED
    terms = mutual_terms(logits, partial, alpha=1.0)
    full = mutual_terms(logits, labels, alpha=1.0)
    labelled = partial != UNLABELLED
    for t, f, x in zip(terms, full, logits):
        assert t["ce"].item() == pytest.approx(F.cross_entropy(x[labelled], labels[labelled]).item(), rel=1e-12)
        assert t["mimic"].item() == pytest.approx(f["mimic"].item(), rel=1e-12)
    none = mutual_terms(logits, torch.full_like(labels, UNLABELLED), alpha=1.0)
    assert all(t["ce"].item() == 0.0 and math.isfinite(t["mimic"].item()) for t in none)


@pytest.mark.parametrize("k", [0, 1])
def test_mutual_needs_two_students(k):
    logits, labels = batch(10, k=max(k, 1))
    with pytest.raises(ValueError, match=f"K >= 2 students, got K = {k}"):
        mutual_loss(logits[:k], labels, alpha=1.0)


def test_kd_without_t_squared_is_the_dml_vs_kd_article_s_printed_loss():
    """The DML-vs-KD article prints L_KD = (1−α)·H(y, p^s) + α·D(p_τ^t, p_τ^s): no T² on the divergence."""
    (student, teacher), labels = batch(2)
    hinton = kd_terms(student, teacher, labels, alpha=1.0, temperature=4.0, beta=0.5)
    printed = kd_terms(student, teacher, labels, alpha=1.0, temperature=4.0, beta=0.5, temperature_squared=False)
    kl = F.kl_div(F.log_softmax(student / 4, -1), F.log_softmax(teacher / 4, -1), log_target=True, reduction="batchmean")
    assert torch.allclose(printed["mimic"], 0.5 * kl, rtol=1e-5) and torch.allclose(hinton["mimic"], 16 * printed["mimic"])
    assert torch.equal(printed["ce"], hinton["ce"])


class ReleasedRenyiLoss(torch.nn.Module):
    """Transcription of RenyiLoss.forward in the released RDML code (parklize/rdml,
    torchversion/core/dml.py at 57f381f), reduction 'batchmean', eps = 1e-8."""

    def __init__(self, alpha, eps=1e-8):
        super().__init__()
        self.alpha, self.eps = max(0, alpha), eps

    def forward(self, logits_p, logits_q):
        if self.alpha == 0:
            return 0.0
        p = torch.clamp(F.softmax(logits_p, dim=1), self.eps, 1)
        q = torch.clamp(F.softmax(logits_q, dim=1), self.eps, 1)
        if abs(self.alpha - 1) <= 1e-6:
            loss = torch.sum(p * (torch.log(p) - torch.log(q)), dim=1)
        else:
            loss = torch.log(torch.sum(q * torch.pow(p / q, self.alpha), dim=1)) / (self.alpha - 1)
        return loss.mean()


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("k", [2, 3])
def test_probability_floor_is_the_released_rdml_loss_in_value_and_gradient(alpha, k):
    """The released loop: loss_i = CE + 1/(K−1)·Σ_{j≠i} RenyiLoss(Variable(out_j), out_i). Logits scaled
    up so that some probabilities fall below the 1e-8 floor, where the clamp zeroes their gradient."""
    logits, labels = batch(3, k=k, scale=9.0)
    probs = [F.softmax(l, -1) for l in logits]
    assert min(float(p.min()) for p in probs) < 1e-8, "the batch must exercise the clamp"
    ours_in = [l.clone().float().requires_grad_(True) for l in logits]
    ref_in = [l.clone().float().requires_grad_(True) for l in logits]
    ours = mutual_loss(ours_in, labels, alpha=alpha, probability_floor=1e-8)
    released = ReleasedRenyiLoss(alpha)
    ref = [F.cross_entropy(ref_in[i], labels)
           + sum(released(ref_in[j].detach(), ref_in[i]) for j in range(k) if j != i) / (k - 1) for i in range(k)]
    sum(ours).backward()
    sum(ref).backward()
    for o, r in zip(ours, ref):
        assert torch.allclose(o, r, rtol=1e-5, atol=1e-6)
    for o, r in zip(ours_in, ref_in):
        assert torch.allclose(o.grad, r.grad, rtol=1e-4, atol=1e-7)


def test_probability_floor_differs_from_the_exact_form_where_it_clamps():
    logits, labels = batch(3, scale=9.0)
    exact = mutual_terms(logits, labels, alpha=2.0)[0]["mimic"]
    clamped = mutual_terms(logits, labels, alpha=2.0, probability_floor=1e-8)[0]["mimic"]
    assert not torch.allclose(exact, clamped, rtol=1e-3)
    mild, _ = batch(4, scale=0.5)
    assert torch.allclose(mutual_terms(mild, labels, alpha=2.0)[0]["mimic"],
                          mutual_terms(mild, labels, alpha=2.0, probability_floor=1e-8)[0]["mimic"], rtol=1e-9)


@pytest.mark.parametrize("floor", [-1e-8, 1.0, float("nan")])
def test_probability_floor_out_of_range_is_refused(floor):
    logits, labels = batch(1)
    with pytest.raises(ValueError, match="probability_floor"):
        mutual_loss(logits, labels, alpha=1.0, probability_floor=floor)
