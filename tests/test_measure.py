"""Measurements of trained models for the DML §4.8 analyses, against direct numpy computations."""

import copy

import numpy as np
import pytest
import torch

from rdml.data.base import load_dataset
from rdml.data.catalog import DataSpec
from rdml.models import build_model
from rdml.analysis.measure import noisy_losses, prediction_statistics


def log_probs(seed, k=3, rows=50, classes=7):
    gen = torch.Generator().manual_seed(seed)
    return [torch.log_softmax(torch.randn(rows, classes, generator=gen, dtype=torch.float64) * 3, -1) for _ in range(k)]


def np_entropy(p):
    return float((-(p * np.log(p)).sum(-1)).mean())


@pytest.mark.parametrize("method", ["dml", "dml_e"])
def test_prediction_statistics_are_fig_4c_s_quantities(method):
    lps = log_probs(0)
    probs = [lp.exp().numpy() for lp in lps]
    stats = prediction_statistics(lps, method)
    for k, p in enumerate(probs):
        ours = stats[f"student_{k}"]
        assert ours["entropy"] == pytest.approx(np_entropy(p), rel=1e-9)
        top = np.sort(p, axis=-1)[:, ::-1][:, :5].mean(0)
        assert [ours[f"top{i}"] for i in range(1, 6)] == pytest.approx(list(top), rel=1e-9)
        peers = [probs[j] for j in range(3) if j != k]
        signal = np_entropy(np.mean(peers, axis=0)) if method == "dml_e" else np.mean([np_entropy(q) for q in peers])
        assert ours["signal_entropy"] == pytest.approx(signal, rel=1e-9)
    assert "signal_entropy" not in prediction_statistics(lps[:1], "independent")["student_0"]


def test_drop_keeps_only_the_labelled_rows_and_the_same_normalisation():
    """DML §4.10: "training on the labelled data only" (drop) against DML-all (mimic: every row, labels hidden)."""
    kw = dict(split_seed=3, test_fraction=0.25, labelled_fraction=0.3)
    mimic, drop = load_dataset("digits", **kw), load_dataset("digits", unlabelled="drop", **kw)
    labelled = mimic.y_train >= 0
    assert torch.equal(drop.x_train, mimic.x_train[labelled]) and torch.equal(drop.y_train, mimic.y_train[labelled])
    assert torch.equal(drop.mean, mimic.mean) and torch.equal(drop.std, mimic.std)
    counts = torch.bincount(drop.y_train, minlength=10).float() / torch.bincount(load_dataset("digits", split_seed=3,
                                                                                              test_fraction=0.25).y_train)
    assert torch.allclose(counts, torch.full((10,), 0.3), atol=0.02)  # stratified per class
    with pytest.raises(ValueError, match="unlabelled='keep' is not allowed"):
        load_dataset("digits", unlabelled="keep", **kw)


def test_noisy_losses_add_seeded_gaussian_noise_and_restore_the_weights():
    data = load_dataset("digits", split_seed=0, test_fraction=0.25)
    torch.manual_seed(0)
    model = build_model("mlp", DataSpec("images", 10, tuple(data.spec.input_shape)))
    before = copy.deepcopy(model.state_dict())
    result = noisy_losses(model, data, sigmas=[0.05, 0.5], draws=2, seed=7)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    # the same draws by hand: one generator, every parameter in order, each draw from the clean weights
    generator = torch.Generator().manual_seed(7)
    for sigma in (0.05, 0.5):
        for draw in range(2):
            noisy = copy.deepcopy(model).eval()
            with torch.no_grad():
                for p in noisy.parameters():
                    p.add_(torch.randn(p.shape, generator=generator) * sigma)
                logits = noisy(data.inputs(data.x_train)).double()
            loss = torch.nn.functional.cross_entropy(logits, data.y_train).item()
            assert result[f"loss@{sigma:g}"][draw] == pytest.approx(loss, rel=1e-5)
    with torch.no_grad():
        clean = torch.nn.functional.cross_entropy(model.eval()(data.inputs(data.x_train)).double(), data.y_train).item()
    assert result["loss"] == pytest.approx(clean, rel=1e-5)
    assert np.mean(result["loss@0.5"]) > result["loss"]
