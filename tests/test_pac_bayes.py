"""The PAC-Bayes measure of Jiang et al. (rdml.analysis.pac_bayes) against independent computations: the
bisection against hand-followed steps and a fake accuracy with a known threshold, the accuracy under
noise of a linear model against its closed form, batch-norm folding against the unfolded network in
float64, the bound against a hand computation, and the initial weights against what training built."""

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import norm as normal
from torch import nn

from conftest import randomise_batch_norm, run
from rdml.analysis.pac_bayes import (PAC_BAYES_DEFAULTS, accuracy_under_noise, fold_batch_norm, initial_students,
                                     pac_bayes_bound, pac_bayes_measures, pac_bayes_of_students, pac_bayes_spec,
                                     search_problems, search_sigma, squared_norm)
from rdml.data.base import load_dataset
from rdml.data.catalog import DataSpec
from rdml.keys import ConfigError
from rdml.models import build_model
from rdml.train.verified import verified_run


def test_defaults_are_the_released_code_s_and_bad_settings_are_refused():
    assert pac_bayes_spec(None) == {"deviation": 0.1, "sigma_low": 0.0, "sigma_high": 2.0, "search_depth": 15,
                                    "tolerance": 0.01, "draws": 10, "seed": 0, "norm": "weights"}
    assert pac_bayes_spec({"draws": 3})["draws"] == 3 and set(PAC_BAYES_DEFAULTS) == set(pac_bayes_spec({}))
    for bad, match in [({"deviaton": 0.1}, "not known"), ({"deviation": 1.5}, "deviation=1.5"),
                       ({"sigma_low": 2.0}, "sigma_low=2.0"), ({"draws": 0}, "draws=0"), ({"draws": 2.5}, "integer"),
                       ({"tolerance": 0.2}, "tolerance=0.2"), ({"norm": "l1"}, "norm='l1'"),
                       ({"seed": float("nan")}, "seed=nan"), ({"search_depth": True}, "search_depth=True")]:
        with pytest.raises(ConfigError, match=match):
            pac_bayes_spec(bad)


def test_bisection_follows_the_released_code_s_steps_by_hand():
    # accuracy 1 − σ/2: the displacement is σ/2, 0.1 at σ = 0.2. By hand, from [0, 2]: σ = 1 (0.5 > 0.1, down),
    # 0.5 (0.25, down), 0.25 (0.125: |0.125 − 0.1| = 0.025 >= 0.01, down), 0.125 (0.0625, up), 0.1875 (0.09375: within)
    sigma, steps = search_sigma(lambda s: 1 - s / 2, 1.0, 0.1, 0.0, 2.0, 15, 0.01)
    assert [s["sigma"] for s in steps] == [1.0, 0.5, 0.25, 0.125, 0.1875] and sigma == 0.1875
    assert steps[-1]["displacement"] == pytest.approx(0.09375)
    sigma, steps = search_sigma(lambda s: 1 - s / 2, 1.0, 0.1, 0.0, 2.0, 3, 0.01)  # the depth ends it first
    assert sigma == 0.25 and len(steps) == 3


def test_bisection_closes_on_a_known_threshold():
    threshold = 0.3137
    sigma, steps = search_sigma(lambda s: 0.95 if s < threshold else 0.5, 0.95, 0.1, 0.0, 2.0, 15, 0.01)
    assert len(steps) == 15 and abs(sigma - threshold) <= 2.0 / 2 ** 15
    assert search_sigma(lambda s: 0.95 if s < threshold else 0.5, 0.95, 0.1, 0.0, 2.0, 40, 0.01)[0] == \
        pytest.approx(threshold, abs=1e-9)


def linear_problem(seed=0, rows=60, features=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, features, generator=g, dtype=torch.float64)
    model = nn.Linear(features, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, features, generator=g, dtype=torch.float64))
        model.bias.copy_(torch.randn(2, generator=g, dtype=torch.float64) * 0.1)
    y = (x @ model.weight.T + model.bias).argmax(-1)
    y[:6] = 1 - y[:6]  # a few rows wrong, so the clean accuracy is below 1

    def accuracy(net):
        with torch.no_grad():
            return float((net(x).argmax(-1) == y).double().mean())

    def expected_accuracy(sigma):
        """Closed form: with N(0, σ²) on W and b, the correct logit minus the other is its clean value plus
        N(0, 2σ²(‖x‖² + 1)), so a row is right with probability Φ(margin / (σ √(2(‖x‖² + 1))))."""
        w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
        logits = x.numpy() @ w.T + b
        rows = np.arange(len(y))
        margin = logits[rows, y.numpy()] - logits[rows, 1 - y.numpy()]
        scale = sigma * np.sqrt(2 * ((x.numpy() ** 2).sum(-1) + 1))
        return float(normal.cdf(margin / scale).mean())

    return model, accuracy, expected_accuracy


def test_accuracy_under_noise_of_a_linear_model_is_its_closed_form_and_the_weights_come_back():
    model, accuracy, expected = linear_problem()
    before = copy.deepcopy(model.state_dict())
    for sigma in (0.1, 0.5, 2.0):
        mean = accuracy_under_noise(model, accuracy, sigma, 2000, torch.Generator().manual_seed(1))
        assert mean == pytest.approx(expected(sigma), abs=0.01)  # 2000 draws: standard error < 0.002
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    # seeded: the same generator state gives the same mean, another seed another
    a = accuracy_under_noise(model, accuracy, 0.5, 5, torch.Generator().manual_seed(3))
    assert a == accuracy_under_noise(model, accuracy, 0.5, 5, torch.Generator().manual_seed(3))


def test_sigma_of_a_linear_model_drops_the_expected_accuracy_by_the_deviation_and_the_bounds_are_eqs_48_49():
    model, accuracy, expected = linear_problem()
    start = copy.deepcopy(model)
    with torch.no_grad():
        start.weight.add_(0.3), start.bias.sub_(0.2)
    spec = {"draws": 400, "search_depth": 30, "tolerance": 0.005}
    result = pac_bayes_measures(model, start, accuracy, 60, spec)
    clean = result["accuracy"]
    assert clean == pytest.approx(54 / 60) and result["converged"]
    target = brentq(lambda s: expected(s) - (clean - 0.1), 1e-4, 10.0)  # independent root of the closed form
    assert abs(expected(result["sigma"]) - (clean - 0.1)) < 0.005 + 0.01  # tolerance + Monte-Carlo error
    assert result["sigma"] == pytest.approx(target, rel=0.25)
    # the norms over the weight matrix alone (no bias), by numpy
    w, w0 = model.weight.detach().numpy(), start.weight.detach().numpy()
    distance, size = float(((w - w0) ** 2).sum()), float((w ** 2).sum())
    sigma = result["sigma"]
    assert result["squared_distance"] == pytest.approx(distance, rel=1e-12)
    assert result["pac_bayes_init"] == pytest.approx(distance / (4 * sigma ** 2) + math.log(60 / sigma) + 10, rel=1e-12)
    assert result["pac_bayes_orig"] == pytest.approx(size / (4 * sigma ** 2) + math.log(60 / sigma) + 10, rel=1e-12)
    b, b0 = model.bias.detach().numpy(), start.bias.detach().numpy()
    assert squared_norm(model, "parameters", start) == pytest.approx(distance + float(((b - b0) ** 2).sum()), rel=1e-12)


def test_bound_by_hand():
    # 3 / (4 · 0.25) + ln(100 / 0.5) + 10 = 3 + 5.298317366548036 + 10
    assert pac_bayes_bound(3.0, 0.5, 100) == pytest.approx(18.298317366548036, rel=1e-14)
    with pytest.raises(ValueError, match="not > 0"):
        pac_bayes_bound(3.0, 0.0, 100)


class ConvUsedTwice(nn.Module):
    """A convolution whose output feeds its BN and a skip: the BN cannot be folded into it."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Linear(4, 3), nn.BatchNorm1d(3)

    def forward(self, x):
        y = self.conv(x)
        return self.bn1(self.fc((self.bn(y) + y).mean((2, 3))))


@pytest.mark.parametrize("arch, folded, kept", [("cnn", 2, 0), ("resnet32", 31, 0), ("okdph_resnet32", 33, 0),
                                                ("wrn_20_8", 7, 6), ("densenet40_12", 0, 39), ("okdph_vgg16", 13, 0),
                                                ("okdph_densenet40_12", 18, 21), ("okdph_resnet110", 112, 0),
                                                ("okdph_wrn20_8", 22, 0), ("skip", 1, 1)])
def test_folding_computes_what_the_unfolded_network_computes_in_eval_mode(arch, folded, kept):
    torch.manual_seed(0)
    model = ConvUsedTwice() if arch == "skip" else build_model(arch, DataSpec("images", 10, (3, 32, 32)))
    randomise_batch_norm(model)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 1.5), m.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    reference = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        expected = reference(x.double())
        result = fold_batch_norm(reference)
        assert (len(result.folded), len(result.kept)) == (folded, kept)
        assert torch.allclose(result.module(x.double()), expected, rtol=1e-10, atol=1e-10)
        single = fold_batch_norm(model)  # float32, folded in float64 then rounded
        assert torch.allclose(single.module(x).double(), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    remaining = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in result.module.modules())
    assert remaining == kept
    assert model.training and all(p.dtype == torch.float32 for p in model.parameters())  # the original untouched


def test_initial_students_are_the_weights_training_started_from(tmp_path, monkeypatch):
    import rdml.train.loop as loop

    started = []

    def recording(*args, **kwargs):
        cohort = build(*args, **kwargs)
        started.append([copy.deepcopy(s.model.state_dict()) for s in cohort])  # autotune's timed cohorts too
        return cohort

    build = loop.build_cohort
    monkeypatch.setattr(loop, "build_cohort", recording)
    run(tmp_path / "r", "method=dml", "arch=cnn,cnn", "epochs=1", "seed=4", "init_seed=11")
    finished = verified_run(tmp_path / "r", "")
    data = load_dataset("synthetic", **{k: finished.record["config"][k] for k in ("split_seed", "test_fraction")})
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    rebuilt = initial_students(finished, data)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random state is kept
    assert started and all(len(built) == len(rebuilt) == 2 for built in started)
    for built in started:  # the trained cohort, built last, and any the autotuner timed first
        for model, weights in zip(rebuilt, built):
            assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    trained = [finished.model(k, data) for k in range(2)]
    assert not torch.equal(trained[0].state_dict()["0.weight"], started[-1][0]["0.weight"])  # training moved them

    spec = {"draws": 2, "search_depth": 3, "seed": 5}
    measured = pac_bayes_of_students(finished, trained, data, spec, torch.device("cpu"))
    assert set(measured) == {"student_0", "student_1"}
    from rdml.analysis.pac_bayes import training_accuracy
    m = len(data.y_train)
    for k in range(2):  # student k's noise seeded by seed + k
        alone = pac_bayes_measures(trained[k], rebuilt[k], lambda net: training_accuracy(net, data), m,
                                   {**spec, "seed": 5 + k})
        assert measured[f"student_{k}"] == alone
        assert measured[f"student_{k}"]["m"] == m and measured[f"student_{k}"]["batch_norm_folded"] == 2
        assert len(alone["search"]) <= 3 and alone["converged"] == (abs(alone["search"][-1]["displacement"] - 0.1) < 0.01)


# ---- the audit of a bound measured on another device: the recorded σ path measured again ----------------------

SMALL = {"draws": 2, "search_depth": 5, "seed": 3}


@pytest.fixture(scope="module")
def measured_pair(tmp_path_factory):
    from rdml.analysis.measure import measure_run

    out = tmp_path_factory.mktemp("pb") / "r"
    run(out, "method=dml", "arch=cnn,cnn", "epochs=2")
    return out, measure_run(out, {"pac_bayes": SMALL}, torch.device("cpu"))


def test_replaying_a_recorded_search_measures_its_own_sigmas_and_ends_where_it_did(measured_pair):
    """Along its own path, a search measures exactly what it recorded; along another path, that path's σ values."""
    from rdml.analysis.measure import measure_run

    out, measured = measured_pair
    again = measure_run(out, {"pac_bayes": SMALL}, torch.device("cpu"), measured["students"])
    assert again["students"] == measured["students"]
    student = measured["students"]["student_0"]
    assert len(student["search"]) >= 2 and search_problems(student, SMALL) == []
    other = {"student_0": {"search": [{"sigma": 0.25}, {"sigma": 0.125}]}}
    replayed = measure_run(out, {"pac_bayes": SMALL}, torch.device("cpu"), other)["students"]
    assert [step["sigma"] for step in replayed["student_0"]["search"]] == [0.25, 0.125]
    assert replayed["student_0"]["sigma"] == 0.125 and replayed["student_1"] == measured["students"]["student_1"]


@pytest.mark.parametrize("forge, caught", [
    (None, None),
    pytest.param(lambda s: s["search"][-1].update(accuracy=s["search"][-1]["accuracy"] * 0.98), "search measures",
                 marks=pytest.mark.tamper),
    pytest.param(lambda s: s.update(sigma=s["sigma"] / 2, pac_bayes_orig=s["pac_bayes_orig"] * 4), "is not the bisection",
                 marks=pytest.mark.tamper),
])
def test_a_bound_measured_on_another_device_audits_along_its_recorded_path(measured_pair, forge, caught):
    """Measured on a GPU (so said), the audit measures each recorded σ again on this CPU within MEASURE_RTOL,
    and checks the path is the bisection of its own accuracies: a changed accuracy or σ is caught."""
    from rdml.audit import _measured_again

    out, measured = measured_pair
    content = copy.deepcopy(measured)
    content["measured_on"].update(device="cuda:0", device_name="NVIDIA H100 80GB HBM3")
    if forge is not None:
        forge(content["students"]["student_0"])
    problems = _measured_again(Path("m.json"), out, content, lambda line: None)
    assert (problems == []) if caught is None else any(caught in p for p in problems), problems
