"""dml's `batches` key. `own`: each network steps on a mini-batch of its own, mimicking its peers' predictions on that
batch, made in training mode without moving their batch-norm statistics, as the official DML re-ID code's loop runs
one training op per network, each dequeuing a fresh batch (YingZhangDUT/Deep-Mutual-Learning train_models.py
L197-201, L310-316). One step against a hand-written loop in float64; every network's rows and inputs in an epoch;
`shared` (the default) leaving every run as it was; resumption; refusals."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rdml.methods.dml
import rdml.models.small
from conftest import resumes_to_the_uninterrupted_run, run
from rdml.config import ConfigError, config_sha256, load_config, resolve
from rdml.data.base import load_dataset
from rdml.methods import METHODS
from rdml.methods.dml import MutualLearning
from rdml.models.catalog import ARCHITECTURES, Architecture
from rdml.train.cohort import Cohort, Student

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "golden_runs.json").read_text())
LR = 0.5
TRAIN_STEP = MutualLearning.train_step


def config(*overrides: str):
    return resolve(load_config(None, ["dataset=synthetic", *overrides]))


class Featured(nn.Module):
    """A network with pooled features and batch norm: features(x) → (N, 6), classify(f) → logits."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 6), nn.BatchNorm1d(6), nn.ReLU())
        self.head = nn.Linear(6, num_classes)

    def features(self, x):
        return self.body(x)

    def classify(self, f):
        return self.head(f)

    def forward(self, x):
        return self.classify(self.features(x))


@pytest.fixture
def featured(monkeypatch):
    """`own_featured`: Featured as a catalogue architecture, the one with features (rdml.methods.dml.has_features)."""
    monkeypatch.setattr(rdml.models.small, "own_featured", Featured, raising=False)
    monkeypatch.setitem(ARCHITECTURES._items, "own_featured", Architecture("own_featured", "small:own_featured"))
    monkeypatch.setattr(rdml.methods.dml, "has_features", lambda arch: arch == "own_featured")
    return "own_featured"


def networks(arch: str, k: int) -> list[nn.Module]:
    torch.manual_seed(3)
    build = Featured if arch == "own_featured" else rdml.models.small.cnn
    return [build((1, 8, 8), 10) for _ in range(k)]


def own_batches(k: int) -> tuple[list, list]:
    """K batches of different rows (and sizes) of the synthetic set, as normalised inputs and labels."""
    data = load_dataset("synthetic", split_seed=0, test_fraction=0.25)
    starts = [0, 9, 20, 28]
    rows = [torch.arange(starts[i], starts[i + 1]) for i in range(k)]
    return [data.inputs(data.x_train[r]) for r in rows], [data.y_train[r] for r in rows]


def hand_terms(own, peers, y, *, ensemble, reduction, smoothing, lam, own_features=None, peer_features=()):
    """Network k's terms from its logits `own` and its peers' `peers` on its batch, written out: the smoothed
    cross-entropy, Σ or mean over peers of mean_rows KL(p_j ‖ p_k) (DML_e: KL(mean_j p_j ‖ p_k)), and λ·‖f_k − f_j‖²."""
    log_p = torch.log_softmax(own, dim=1)
    target = (1 - smoothing) * F.one_hot(y, 10).double() + smoothing / 10
    ce = -(target * log_p).sum(1).mean()
    peer_p = [torch.softmax(z, dim=1) for z in peers]
    gather = (lambda values: sum(values)) if reduction == "sum" else (lambda values: sum(values) / len(values))
    if ensemble:
        teacher = sum(peer_p) / len(peer_p)
        mimic = (teacher * (teacher.log() - log_p)).sum(1).mean()
    else:
        mimic = gather([(p * (p.log() - log_p)).sum(1).mean() for p in peer_p])
    terms = {"ce": ce, "mimic": mimic}
    if lam:
        terms["feature_l2"] = lam * gather([(own_features - f).pow(2).sum(1).mean() for f in peer_features])
    return terms


def hand_step(models, xs, ys, *, order, featured, **loss):
    """The official loop written out in float64 with plain SGD: network k's loss on its own batch x_k, its peers
    predicting in training mode through copies (so that their running statistics stay), then its step; `sequential`
    steps each network before the next predicts, `simultaneous` predicts all before any step."""
    models = [copy.deepcopy(m).double() for m in models]
    xs = [x.double() for x in xs]

    def forward(model, x):
        f = model.features(x) if featured else None
        return f, model.classify(f) if featured else model(x)

    def loss_of(k):
        own_f, own_z = forward(models[k], xs[k])
        with torch.no_grad():
            peers = [forward(copy.deepcopy(models[j]), xs[k]) for j in range(len(models)) if j != k]
        return hand_terms(own_z, [z for _, z in peers], ys[k], own_features=own_f, peer_features=[f for f, _ in peers],
                          **loss)

    def sgd(model, terms):
        model.zero_grad()
        sum(terms.values()).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= LR * p.grad

    logged = []
    if order == "simultaneous":
        logged = [loss_of(k) for k in range(len(models))]
        for model, terms in zip(models, logged):
            sgd(model, terms)
    else:
        for k, model in enumerate(models):
            logged.append(loss_of(k))
            sgd(model, logged[-1])
    return models, logged


STEPS = [
    ("dml", 2, "sequential", "mean", 0.0, "cnn", 0.0),
    ("dml", 2, "simultaneous", "mean", 0.0, "cnn", 0.0),
    ("dml", 3, "sequential", "sum", 0.1, "cnn", 0.0),
    ("dml", 3, "simultaneous", "mean", 0.1, "cnn", 0.0),
    ("dml_e", 3, "sequential", "mean", 0.0, "cnn", 0.0),
    ("dml", 3, "sequential", "sum", 0.1, "own_featured", 0.5),
    ("dml", 2, "simultaneous", "mean", 0.0, "own_featured", 0.5),
]


@pytest.mark.parametrize("method,k,order,reduction,smoothing,arch,lam", STEPS)
def test_one_step_is_each_network_on_its_own_batch_against_its_peers_there(request, method, k, order, reduction,
                                                                              smoothing, arch, lam):
    if arch == "own_featured":
        request.getfixturevalue("featured")
    cfg = config(f"method={method}", f"arch={arch}", f"students={k}", "batches=own", f"update_order={order}",
                 f"peer_reduction={reduction}", f"label_smoothing={smoothing}", f"feature_l2={lam}")
    models = networks(arch, k)
    xs, ys = own_batches(k)
    expected, expected_terms = hand_step(models, xs, ys, order=order, featured=lam > 0, ensemble=method == "dml_e",
                                         reduction=reduction, smoothing=smoothing, lam=lam)
    cohort = Cohort([Student(m, torch.optim.SGD(m.parameters(), lr=LR), None) for m in models])
    logged = METHODS[method](cfg).train_step(xs, ys, cohort)

    for got, want in zip(logged, expected_terms):
        assert got.keys() == want.keys()
        for name in want:
            assert got[name].item() == pytest.approx(want[name].item(), rel=1e-5, abs=1e-6), name
    for model, want in zip(models, expected):  # weights, and running statistics moved by the own batch alone
        for (name, got), reference in zip(model.state_dict().items(), want.state_dict().values()):
            if name.endswith("num_batches_tracked"):
                assert got.item() == reference.item() == 1, name
            else:
                torch.testing.assert_close(got.double(), reference, rtol=1e-5, atol=1e-6, msg=name)


def test_network_0_on_the_shared_batch_steps_as_in_a_shared_run_and_network_1_not():
    """Network 0's first step sees network 1 before its step on network 0's batch in either run; network 1 then steps
    on a batch of its own."""
    xs, ys = own_batches(2)
    own, shared = networks("cnn", 2), networks("cnn", 2)
    MutualLearning(config("arch=cnn", "batches=own", "update_order=sequential")).train_step(
        xs, ys, Cohort([Student(m, torch.optim.SGD(m.parameters(), lr=LR), None) for m in own]))
    MutualLearning(config("arch=cnn", "update_order=sequential")).train_step(
        xs[0], ys[0], Cohort([Student(m, torch.optim.SGD(m.parameters(), lr=LR), None) for m in shared]))
    torch.testing.assert_close(own[0][0].weight, shared[0][0].weight, rtol=0, atol=1e-7)
    assert not torch.allclose(own[1][0].weight, shared[1][0].weight, atol=1e-4)


def test_one_batch_for_all_is_every_network_on_that_batch():
    """The autotuner times a step on one batch: with batches=own every network's batch is then that one."""
    cfg = config("arch=cnn", "batches=own", "students=3", "update_order=sequential")
    xs, ys = own_batches(1)
    one, listed = networks("cnn", 3), networks("cnn", 3)
    for models, x, y in ((one, xs[0], ys[0]), (listed, xs * 3, ys * 3)):
        MutualLearning(cfg).train_step(x, y, Cohort([Student(m, torch.optim.SGD(m.parameters(), lr=LR), None)
                                                     for m in models]))
    for a, b in zip(one, listed):
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


# ---- the loop: every network's batches and inputs in an epoch ----------------------------------------------------

def recorded_steps(tmp_path, monkeypatch, name, *args):
    """Train on the synthetic set and return each step's (inputs, labels) as the method was given them."""
    steps = []

    def spy(self, x, y, cohort):
        steps.append((x, y))
        return TRAIN_STEP(self, x, y, cohort)

    monkeypatch.setattr(MutualLearning, "train_step", spy)
    run(tmp_path / name, "arch=cnn", "batch_size=50", "epochs=2", "memory_format=contiguous", *args)  # no timed steps
    return steps


def own_order(n_rows: int, seed: int, epoch: int, k: int) -> torch.Tensor:
    """Network k's epoch order as batches=own documents it: epoch_batches' for k = 0, else torch.randperm under the
    seed numpy's SeedSequence((seed, epoch, k, 0)) gives as its first 64-bit word."""
    if k == 0:
        return torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    word = int(np.random.SeedSequence((seed, epoch, k, 0)).generate_state(1, np.uint64)[0])
    return torch.randperm(n_rows, generator=torch.Generator().manual_seed(word))


def test_each_network_sees_every_row_once_an_epoch_in_an_order_of_its_own(tmp_path, monkeypatch):
    steps = recorded_steps(tmp_path, monkeypatch, "own", "batches=own", "students=3", "seed=4")
    data = load_dataset("synthetic", split_seed=0, test_fraction=0.25)
    n = len(data.y_train)
    row_of = {data.inputs(data.x_train[i : i + 1]).numpy().tobytes(): i for i in range(n)}
    assert len(row_of) == n  # every row's input tells it apart
    per_epoch = math.ceil(n / 50) - (n % 50 == 1)
    assert len(steps) == 2 * per_epoch
    for epoch in (1, 2):
        epoch_steps = steps[(epoch - 1) * per_epoch : epoch * per_epoch]
        orders = []
        for k in range(3):
            seen = [row_of[x[k][i : i + 1].numpy().tobytes()] for x, _ in epoch_steps for i in range(len(x[k]))]
            labels = torch.cat([y[k] for _, y in epoch_steps])
            assert sorted(seen) == list(range(n))  # every row once
            assert torch.equal(labels, data.y_train[seen])
            assert seen == own_order(n, 4, epoch, k).tolist()
            orders.append(seen)
        assert len({tuple(o) for o in orders}) == 3


def test_network_0_takes_a_shared_run_s_inputs_and_the_others_draws_of_their_own(tmp_path, monkeypatch):
    augmented = ["augment=crop_flip", "input_noise=0.3", "students=2"]
    shared = recorded_steps(tmp_path, monkeypatch, "shared", *augmented)
    own = recorded_steps(tmp_path, monkeypatch, "own", *augmented, "batches=own")
    assert len(own) == len(shared)
    assert all(torch.equal(x[0], sx) and torch.equal(y[0], sy) for (x, y), (sx, sy) in zip(own, shared))
    assert not any(x[1].shape == x[0].shape and torch.equal(x[1], x[0]) for x, _ in own)
    again = recorded_steps(tmp_path, monkeypatch, "again", *augmented, "batches=own")
    assert all(torch.equal(a, b) for (x, _), (z, _) in zip(own, again) for a, b in zip(x, z))


def test_a_killed_and_resumed_run_is_the_uninterrupted_one(tmp_path):
    resumes_to_the_uninterrupted_run(tmp_path, "method=dml", "arch=cnn", "students=3", "batches=own",
                                     "update_order=sequential", "augment=crop_flip", "batch_size=50")


# ---- shared: every run as it was ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n, r in GOLDEN["runs"].items() if "method=dml" in r["args"] or "method=dml_e" in r["args"]])
def test_batches_shared_keeps_every_dml_run_s_identity(name):
    args = [*GOLDEN["common"], *GOLDEN["runs"][name]["args"]]
    stored = GOLDEN["runs"][name]["config_sha256"]
    identity = [config_sha256(resolve(load_config(None, [*args, *more]))) for more in ([], ["batches=shared"], ["batches=own"])]
    assert identity[0] == identity[1] == stored != identity[2]


def test_batches_shared_trains_the_run_of_today_bit_for_bit(tmp_path):
    """The same run with batches left out and with batches=shared: the same identity, epochs and weights (the golden
    runs, tests/test_golden.py, hold today's numbers)."""
    args = ["arch=mlp,cnn", "epochs=2", "augment=crop_flip", "update_order=sequential"]
    before, after = run(tmp_path / "a", *args), run(tmp_path / "b", *args, "batches=shared")
    assert before["config_sha256"] == after["config_sha256"] and before["epochs"] == after["epochs"]
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["states"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["states"]
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


# ---- what tables say, and what is refused ---------------------------------------------------------------------------

def test_label_and_caption_note():
    assert METHODS["dml"].label({"batches": "own"}) == "DML (own batches)"
    assert METHODS["dml"].label({"batches": "own", "peer_reduction": "sum"}) == "DML (Σ peers, own batches)"
    assert METHODS["dml"].label({"batches": "shared", "peer_reduction": "sum"}) == "DML (Σ peers)"
    assert METHODS["dml_e"].label({"batches": "own", "alpha": 2.0}) == "RDML_e α=2 (own batches)"
    assert MutualLearning.caption_notes(config()) == []
    sequential = MutualLearning.caption_notes(config("batches=own", "update_order=sequential"))
    simultaneous = MutualLearning.caption_notes(config("batches=own"))
    assert len(sequential) == len(simultaneous) == 1
    assert "mini-batch of its own" in sequential[0] and "train_models.py L197–201, L310–316" in sequential[0]
    assert "as the official loop runs them" in sequential[0]
    assert "update_order=simultaneous" in simultaneous[0]


@pytest.mark.bad_input
@pytest.mark.parametrize("args,message", [
    (["batches=own", "student_augment=crop_flip,none"],
     r"batches=own with student_augment=crop_flip,none: student_augment gives each student a view of one shared batch"),
    (["batches=own", "fuse_students=true"], r"batches=own with fuse_students=true: the fused forward runs every student"),
    (["method=dml_e", "students=3", "batches=own", "fuse_students=true"], r"batches=own with fuse_students=true"),
    (["batches=mine"], r"batches='mine' is not allowed; allowed: own, shared"),
    (["method=independent", "batches=own"], r"batches is not a key of method independent; it is a key of dml, dml_e"),
])
def test_what_cannot_work_is_refused_before_anything_is_written(tmp_path, args, message):
    with pytest.raises(ConfigError, match=message):
        run(tmp_path / "r", "arch=cnn", *args)
    assert not (tmp_path / "r").exists()
