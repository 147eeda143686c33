"""The loss-side choices of DML's Market-1501 experiments (DML §4.1, Table 5) as keys, each against an independent
float64 computation: `label_smoothing` (the official code's TF softmax_cross_entropy(label_smoothing=0.1)),
`peer_reduction` (eq. 10's 1/(K−1) or the official code's sum over peers), `confidence_penalty` (Table 5's
"Independent, Entropy": Pereyra et al.'s CE − β·H) and `feature_l2` (Table 5's "DML, L2"); the identities of runs
that leave them at their defaults, their refusals, and one short training run per key."""

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rdml.models.small
from conftest import run
from rdml.config import ConfigError, config_sha256, config_values, load_config, resolve
from rdml.core.losses import UNLABELLED, confidence_penalty, supervised_cross_entropy
from rdml.core.mutual import mutual_terms
from rdml.methods import METHODS
from rdml.methods.dml import MutualLearning
from rdml.methods.independent import Independent
from rdml.models.catalog import ARCHITECTURES, Architecture
from rdml.train.cohort import Cohort, Student

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "golden_runs.json").read_text())
NEW_KEYS = {"label_smoothing": (0.0, "0.1"), "peer_reduction": ("mean", "sum"), "feature_l2": (0.0, "0.01"),
            "confidence_penalty": (0.0, "0.5")}  # each key: its default, and a value off it


def config(*overrides: str):
    return resolve(load_config(None, ["dataset=synthetic", *overrides]))


def rows(seed: int, n: int = 7, classes: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=2.0, size=(n, classes))


def log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def tf_softmax_cross_entropy(onehot: np.ndarray, logits: np.ndarray, label_smoothing: float, weights: np.ndarray):
    """tf.losses.softmax_cross_entropy as the official DML code calls it (train_models.py L77–79), transcribed from
    tensorflow/python/ops/losses/losses_impl.py: the labels smoothed as onehot·(1 − ε) + ε/num_classes,
    softmax_cross_entropy_with_logits = −Σ_c t_c·log softmax(z)_c per row, then compute_weighted_loss with its
    default reduction SUM_BY_NONZERO_WEIGHTS (Σ w·loss / #{w ≠ 0}). A row of weight 0 is rdml's UNLABELLED."""
    if label_smoothing > 0:
        num_classes = onehot.shape[1]
        onehot = onehot * (1.0 - label_smoothing) + label_smoothing / num_classes
    losses = -(onehot * log_softmax(logits)).sum(axis=1)
    return (losses * weights).sum() / np.count_nonzero(weights)


# ---- label smoothing ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("epsilon", [0.1, 0.37])
def test_label_smoothing_is_the_cross_entropy_of_the_smoothed_one_hot_and_tf_s(epsilon):
    logits = rows(1)
    labels = np.array([0, 3, UNLABELLED, 4, 1, UNLABELLED, 2])
    labelled = labels != UNLABELLED
    target = np.zeros_like(logits)
    target[labelled, labels[labelled]] = 1.0
    smoothed = (1 - epsilon) * target + epsilon / logits.shape[1]  # (1 − ε)·onehot + ε/C
    explicit = -(smoothed * log_softmax(logits)).sum(axis=1)[labelled].mean()
    tf = tf_softmax_cross_entropy(target, logits, epsilon, labelled.astype(float))
    ours = supervised_cross_entropy(torch.tensor(logits), torch.tensor(labels), epsilon).item()
    assert ours == pytest.approx(explicit, rel=1e-12) and ours == pytest.approx(tf, rel=1e-12)
    # TF's formula is torch's own label smoothing: (1−ε)·(−log p_y) + ε·mean_c(−log p_c)
    kept = torch.tensor(logits[labelled])
    assert F.cross_entropy(kept, torch.tensor(labels[labelled]), label_smoothing=epsilon).item() == pytest.approx(tf, rel=1e-12)


def test_the_smoothed_gradient_is_softmax_minus_the_smoothed_target_and_none_on_unlabelled_rows():
    epsilon, logits = 0.1, rows(2)
    labels = np.array([4, UNLABELLED, 0, 0, 2, 1, UNLABELLED])
    z = torch.tensor(logits, requires_grad=True)
    supervised_cross_entropy(z, torch.tensor(labels), epsilon).backward()
    labelled = labels != UNLABELLED
    target = np.zeros_like(logits)
    target[labelled, labels[labelled]] = 1.0
    smoothed = (1 - epsilon) * target + epsilon / logits.shape[1]
    want = (np.exp(log_softmax(logits)) - smoothed) / labelled.sum()
    want[~labelled] = 0.0
    np.testing.assert_allclose(z.grad.numpy(), want, rtol=1e-12, atol=1e-15)


def test_unlabelled_rows_get_no_smoothing_and_a_batch_of_them_none_at_all():
    logits, labels = torch.tensor(rows(3)), torch.tensor([1, UNLABELLED, 2, UNLABELLED, 0, 3, 4])
    moved = logits.clone()
    moved[labels == UNLABELLED] += torch.tensor(rows(4))[labels == UNLABELLED]  # anything else on those rows
    assert supervised_cross_entropy(moved, labels, 0.2).item() == supervised_cross_entropy(logits, labels, 0.2).item()
    nobody = torch.full((7,), UNLABELLED)
    assert supervised_cross_entropy(logits, nobody, 0.2).item() == 0.0


def test_no_smoothing_is_the_cross_entropy_every_run_had_bit_for_bit():
    logits, labels = torch.tensor(rows(5), dtype=torch.float32), torch.tensor([1, UNLABELLED, 2, 0, 0, 3, 4])
    before = F.cross_entropy(logits, labels, ignore_index=UNLABELLED, reduction="sum") / 6
    assert torch.equal(supervised_cross_entropy(logits, labels), before)
    assert torch.equal(supervised_cross_entropy(logits, labels, 0.0), before)


# ---- the peers: eq. 10's mean or the official code's sum -------------------------------------------------------------

def renyi(p_log: np.ndarray, q_log: np.ndarray, alpha: float) -> np.ndarray:
    """D_α(P ‖ Q) per row from log-probabilities: KL at α = 1, else log Σ p^α q^(1−α) / (α − 1)."""
    p, q = np.exp(p_log), np.exp(q_log)
    if alpha == 1:
        return (p * (p_log - q_log)).sum(axis=1)
    return np.log((p**alpha * q ** (1 - alpha)).sum(axis=1)) / (alpha - 1)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_three_students_mimic_their_peers_summed_or_averaged(alpha, reduction):
    logits = [rows(10 + k) for k in range(3)]
    labels = np.array([0, 1, 2, 3, 4, 0, 1])
    terms = mutual_terms([torch.tensor(z) for z in logits], torch.tensor(labels), alpha=alpha, peer_reduction=reduction,
                         label_smoothing=0.1)
    log_p = [log_softmax(z) for z in logits]
    for k in range(3):
        total = sum(renyi(log_p[j], log_p[k], alpha).mean() for j in range(3) if j != k)  # Σ_{l≠k} D(p_l ‖ p_k)
        want = total / 2 if reduction == "mean" else total  # 1/(K−1) = 1/2, or none
        assert terms[k]["mimic"].item() == pytest.approx(want, rel=1e-12)
        target = 0.9 * np.eye(5)[labels] + 0.1 / 5
        assert terms[k]["ce"].item() == pytest.approx(-(target * log_p[k]).sum(axis=1).mean(), rel=1e-12)
        assert set(terms[k]) == {"ce", "mimic"}


def official_kl_loss(logits1: np.ndarray, logits2: np.ndarray, floor: float = 1e-8) -> float:
    """kl_loss_compute(logits1, logits2) of YingZhangDUT/Deep-Mutual-Learning train_models.py L60–67:
    mean_b Σ p2·log(1e-8 + p2/(p1 + 1e-8)), i.e. KL(p2 ‖ p1) with its floors (`floor`)."""
    p1, p2 = np.exp(log_softmax(logits1)), np.exp(log_softmax(logits2))
    return float((p2 * np.log(floor + p2 / (p1 + floor))).sum(axis=1).mean())


def test_the_peer_sum_is_the_official_code_s_kl_loss_summed_over_peers():
    """net_loss[i] += kl_loss_compute(net_logits[i], net_logits[j]) for every j ≠ i (train_models.py L90–96): the sum
    exactly without the official floors of 1e-8, and within what they move it (4e-6 here) with them."""
    logits = [rows(20 + k) for k in range(3)]
    terms = mutual_terms([torch.tensor(z) for z in logits], torch.tensor([0] * 7), alpha=1.0, peer_reduction="sum")
    for i in range(3):
        peers = [j for j in range(3) if j != i]
        exact = sum(official_kl_loss(logits[i], logits[j], floor=0.0) for j in peers)
        assert terms[i]["mimic"].item() == pytest.approx(exact, rel=1e-12)
        assert terms[i]["mimic"].item() == pytest.approx(sum(official_kl_loss(logits[i], logits[j]) for j in peers),
                                                         abs=1e-5)


def test_for_two_students_the_peer_sum_is_the_mean():
    logits, labels = [torch.tensor(rows(30 + k)) for k in range(2)], torch.tensor([0] * 7)
    summed = mutual_terms(logits, labels, alpha=1.0, peer_reduction="sum")
    averaged = mutual_terms(logits, labels, alpha=1.0)
    assert all(torch.equal(s["mimic"], m["mimic"]) for s, m in zip(summed, averaged))


# ---- the confidence penalty ---------------------------------------------------------------------------------------

def test_the_confidence_penalty_is_minus_beta_times_the_mean_entropy_and_its_gradient():
    beta, logits = 0.7, rows(40)
    log_p = log_softmax(logits)
    p = np.exp(log_p)
    entropy = -(p * log_p).sum(axis=1)
    z = torch.tensor(logits, requires_grad=True)
    penalty = confidence_penalty(z, beta)
    assert penalty.item() == pytest.approx(-beta * entropy.mean(), rel=1e-12)
    penalty.backward()
    # ∂H/∂z_i = −p_i·(log p_i + H), so ∂(−β·mean H)/∂z = β·p·(log p + H)/N
    want = beta * p * (log_p + entropy[:, None]) / len(logits)
    np.testing.assert_allclose(z.grad.numpy(), want, rtol=1e-10, atol=1e-14)
    assert confidence_penalty(z, 0.0).item() == 0.0


# ---- the feature L2 --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_feature_l2_term_against_a_hand_computation_reaching_only_its_own_features(reduction):
    lam, rng = 0.3, np.random.default_rng(50)
    features = [torch.tensor(rng.normal(size=(7, 4)), requires_grad=True) for _ in range(3)]
    logits = [torch.tensor(rows(51 + k)) for k in range(3)]
    terms = mutual_terms(logits, torch.tensor([0] * 7), alpha=1.0, peer_reduction=reduction, features=features,
                         feature_weight=lam)
    f = [t.detach().numpy() for t in features]
    scale = 0.5 if reduction == "mean" else 1.0
    for k in range(3):
        want = lam * scale * sum(((f[k] - f[j]) ** 2).sum(axis=1).mean() for j in range(3) if j != k)
        assert terms[k]["feature_l2"].item() == pytest.approx(want, rel=1e-12)
        for t in features:
            t.grad = None
        terms[k]["feature_l2"].backward()
        gradient = lam * scale * sum(2 * (f[k] - f[j]) for j in range(3) if j != k) / 7
        np.testing.assert_allclose(features[k].grad.numpy(), gradient, rtol=1e-12)
        assert all(features[j].grad is None for j in range(3) if j != k)  # the peers' features are detached


class TinyReid(nn.Module):
    """A re-ID network's interface: features(x) → (N, D), classify(f) → logits, forward = classify ∘ features;
    it counts its calls."""

    def __init__(self, input_shape, num_classes, dim: int = 6):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), dim), nn.ReLU())
        self.head = nn.Linear(dim, num_classes)
        self.calls = Counter()

    def features(self, x):
        self.calls["features"] += 1
        return self.body(x)

    def classify(self, f):
        self.calls["classify"] += 1
        return self.head(f)

    def forward(self, x):
        self.calls["forward"] += 1
        return self.classify(self.features(x))


@pytest.fixture
def featured(monkeypatch):
    """`tiny_reid`: TinyReid as a catalogue architecture that says it has features."""
    monkeypatch.setattr(rdml.models.small, "tiny_reid", TinyReid, raising=False)
    monkeypatch.setitem(ARCHITECTURES._items, "tiny_reid", Architecture("tiny_reid", "small:tiny_reid", features=True))
    return "tiny_reid"


def cohort_of(models, lr: float = 0.1) -> Cohort:
    return Cohort([Student(m, torch.optim.SGD(m.parameters(), lr=lr), None) for m in models])


@pytest.mark.parametrize("order", ["simultaneous", "sequential"])
def test_a_feature_l2_step_takes_one_forward_per_student_and_its_gradient_reaches_only_that_student(featured, order):
    cfg = config("method=dml", f"arch={featured}", "feature_l2=0.5", f"update_order={order}")
    torch.manual_seed(0)
    models = [TinyReid((1, 8, 8), 10) for _ in range(2)]
    x, y = torch.randn(5, 1, 8, 8), torch.randint(0, 10, (5,))
    method = MutualLearning(cfg)

    logits, features = method.predictions(x, cohort_of(models))
    assert [m.calls for m in models] == [Counter(features=1, classify=1)] * 2  # one pass, forward never called
    for k, model in enumerate(models):
        torch.testing.assert_close(logits[k], model.head(model.body(x)), rtol=0, atol=0)
    terms = method.terms(logits, y, features)
    terms[0]["feature_l2"].backward()
    assert all(p.grad is None for p in models[1].parameters())  # the peer's features are a constant
    assert models[0].body[1].weight.grad.abs().sum() > 0
    assert models[0].head.weight.grad is None  # the L2 term is on the features, before the classifier

    for m in models:
        m.calls.clear()
        m.zero_grad()
    logged = method.train_step(x, y, cohort_of(models))
    passes = 1 if order == "simultaneous" else 2  # Algorithm 1 predicts again after each student's step
    assert [m.calls["features"] for m in models] == [passes] * 2 and all(m.calls["forward"] == 0 for m in models)
    assert all(set(t) == {"ce", "mimic", "feature_l2"} and t["feature_l2"] > 0 for t in logged)


@pytest.mark.bad_input
def test_a_network_without_features_is_refused_when_a_step_would_need_them(featured):
    method = MutualLearning(config("method=dml", f"arch={featured}", "feature_l2=0.5"))
    plain = [nn.Sequential(nn.Flatten(), nn.Linear(64, 10)) for _ in range(2)]
    with pytest.raises(ConfigError, match=r"feature_l2=0.5: Sequential has no features\(x\) and classify\(f\)"):
        method.train_step(torch.randn(3, 1, 8, 8), torch.tensor([0, 1, 2]), cohort_of(plain))


# ---- identities: a run that leaves the keys at their defaults is the run it was ---------------------------------

@pytest.mark.parametrize("name", list(GOLDEN["runs"]))
def test_a_run_at_the_keys_defaults_keeps_the_identity_rdml_gave_it_before_them(name):
    stored = GOLDEN["runs"][name]
    cfg = resolve(load_config(None, [*GOLDEN["common"], *stored["args"]]))
    values = config_values(cfg)
    for key, (default, _) in NEW_KEYS.items():
        if key in values:  # the run's method takes it: in its config, at the default …
            assert values[key] == default
    assert values["label_smoothing"] == 0.0
    assert config_sha256(cfg) == stored["config_sha256"]  # … and out of its hash, written by rdml before the keys
    assert cfg.out.endswith(stored["config_sha256"][:8])


@pytest.mark.parametrize("method,key", [("independent", "label_smoothing"), ("dml", "label_smoothing"),
                                        ("dml", "peer_reduction"), ("dml", "feature_l2"),
                                        ("independent", "confidence_penalty")])
def test_each_key_counts_in_an_identity_off_its_default(featured, method, key):
    base = [f"method={method}", f"arch={featured}"]
    plain, other = config(*base), config(*base, f"{key}={NEW_KEYS[key][1]}")
    assert config_sha256(other) != config_sha256(plain)
    assert config_sha256({**config_values(other), key: NEW_KEYS[key][0]}) == config_sha256(plain)


def test_labels_name_the_table_5_rows():
    assert METHODS["independent"].label({"confidence_penalty": 0.5}) == "Ind. + entropy β=0.5"
    assert METHODS["independent"].label({"confidence_penalty": 0.0}) == "Ind."
    assert METHODS["dml"].label({"feature_l2": 0.01}) == "DML, L2 λ=0.01"
    assert METHODS["dml"].label({"peer_reduction": "sum", "alpha": 2.0}) == "RDML α=2 (Σ peers)"
    assert METHODS["dml"].label({"peer_reduction": "mean", "feature_l2": 0.0}) == "DML"


def test_caption_notes_say_what_departs_from_the_paper(featured):
    (cp,) = Independent.caption_notes(config("method=independent", "confidence_penalty=0.5"))
    assert "Pereyra" in cp and "Entropy-SGD [4]" in cp and "β = 0.5" in cp
    notes = MutualLearning.caption_notes(config("method=dml", f"arch={featured}", "peer_reduction=sum", "feature_l2=0.01"))
    assert len(notes) == 2 and "without DML eq. 10's 1/(K−1)" in notes[0] and "λ = 0.01; the paper gives no λ" in notes[1]
    assert MutualLearning.caption_notes(config("method=dml")) == []


# ---- refusals -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,message", [
    (["label_smoothing=1"], r"label_smoothing=1.0 is not allowed; it must be a number in \[0, 1\)"),
    (["method=independent", "label_smoothing=-0.1"], r"label_smoothing=-0.1 is not allowed"),
    (["peer_reduction=max"], r"peer_reduction='max' is not allowed; allowed: mean, sum"),
    (["method=dml_e", "students=3", "peer_reduction=sum"], r"peer_reduction=sum: dml_e has one teacher, the average of"),
    (["method=dml_e", "students=3", "feature_l2=0.1"], r"feature_l2=0.1: DML Table 5's \"DML, L2\" .* use method=dml"),
    (["feature_l2=0.1"], r"feature_l2=0.1 compares the students' pooled features, and arch mlp exposes none"),
    (["arch=mlp,tiny_reid", "feature_l2=0.1"], r"and arch mlp exposes none"),
    (["arch=tiny_reid", "feature_l2=0.1", "fuse_students=true"], r"feature_l2=0.1 with fuse_students=true: the fused"),
    (["feature_l2=-1"], r"feature_l2=-1.0 is not allowed; it must be a finite number >= 0"),
    (["method=independent", "confidence_penalty=-0.5"], r"confidence_penalty=-0.5 is not allowed"),
    (["method=independent", "confidence_penalty=inf"], r"confidence_penalty=inf is not allowed"),
    (["method=dml", "confidence_penalty=0.5"], r"confidence_penalty is not a key of method dml; it is a key of independent"),
    (["method=independent", "feature_l2=0.5"], r"feature_l2 is not a key of method independent; it is a key of dml, dml_e"),
])
@pytest.mark.bad_input
def test_the_keys_refuse_what_they_cannot_mean(featured, overrides, message):
    with pytest.raises(ConfigError, match=message):
        config(*overrides)


# ---- one short run per key, through rdml's entry point -------------------------------------------------------------

def test_a_label_smoothed_run_records_its_cross_entropy(tmp_path):
    record = run(tmp_path / "r", "method=independent", "label_smoothing=0.1", "epochs=2")
    assert record["status"] == "ok" and record["config"]["label_smoothing"] == 0.1 and record["label"] == "Ind."
    for epoch in record["epochs"]:
        assert set(epoch["train"]) == {"student_0/ce", "student_0/total"}
        # no prediction gets a smoothed cross-entropy below the smoothed target's own entropy
        t = np.full(10, 0.1 / 10)
        t[0] += 0.9
        assert epoch["train"]["student_0/ce"] >= -(t * np.log(t)).sum()


def test_a_run_summing_over_peers_records_its_mimicry(tmp_path):
    record = run(tmp_path / "r", "method=dml", "students=3", "peer_reduction=sum", "epochs=2")
    assert record["status"] == "ok" and record["label"] == "DML (Σ peers)"
    train = record["epochs"][0]["train"]
    for k in range(3):
        assert train[f"student_{k}/mimic"] > 0
        assert train[f"student_{k}/total"] == pytest.approx(train[f"student_{k}/ce"] + train[f"student_{k}/mimic"], rel=1e-5)


def test_an_entropy_regularised_run_records_its_penalty(tmp_path):
    beta = 0.5
    record = run(tmp_path / "r", "method=independent", f"confidence_penalty={beta}", "epochs=2")
    assert record["status"] == "ok" and record["label"] == "Ind. + entropy β=0.5"
    for epoch in record["epochs"]:
        train = epoch["train"]
        assert -beta * math.log(10) <= train["student_0/confidence"] < 0  # −β·H, H in (0, log C]
        assert train["student_0/total"] == pytest.approx(train["student_0/ce"] + train["student_0/confidence"], rel=1e-5)


def test_a_feature_l2_run_records_its_feature_distance(tmp_path, featured):
    record = run(tmp_path / "r", "method=dml", f"arch={featured}", "feature_l2=0.01", "epochs=2")
    assert record["status"] == "ok" and record["label"] == "DML, L2 λ=0.01"
    for epoch in record["epochs"]:
        for k in range(2):
            terms = {name: epoch["train"][f"student_{k}/{name}"] for name in ("ce", "mimic", "feature_l2", "total")}
            assert terms["feature_l2"] > 0
            assert terms["total"] == pytest.approx(terms["ce"] + terms["mimic"] + terms["feature_l2"], rel=1e-5)


def test_kd_smooths_its_cross_entropy_too():
    from rdml.core.distillation import kd_terms

    student, teacher, labels = torch.tensor(rows(60)), torch.tensor(rows(61)), torch.tensor([0, 1, 2, 3, 4, 0, 1])
    terms = kd_terms(student, teacher, labels, alpha=1.0, temperature=4.0, beta=0.9, label_smoothing=0.1)
    target = 0.9 * np.eye(5)[labels.numpy()] + 0.1 / 5
    assert terms["ce"].item() == pytest.approx(0.1 * -(target * log_softmax(rows(60))).sum(axis=1).mean(), rel=1e-12)


def test_a_table_caption_says_its_runs_smooth_their_labels():
    from rdml.study.notes import run_notes

    assert run_notes(config("method=independent")) == []
    (note,) = run_notes(config("method=independent", "label_smoothing=0.1"))
    assert "ε = 0.1" in note and "official DML code" in note


@pytest.mark.slow  # torch.compile on the CPU, ~10 s
def test_a_compiled_feature_l2_run_trains_as_the_uncompiled_one(tmp_path, featured):
    args = ("method=dml", f"arch={featured}", "feature_l2=0.01", "epochs=1")
    compiled, plain = run(tmp_path / "c", *args, "compile=true"), run(tmp_path / "p", *args, "compile=false")
    for name, value in plain["epochs"][0]["train"].items():
        assert compiled["epochs"][0]["train"][name] == pytest.approx(value, rel=1e-4)
