"""Data split, labelled subset and batch order; the architectures."""

import numpy as np
import pytest
import torch

from rdml.data.base import epoch_batches, load_dataset
from rdml.data.catalog import DataSpec
from rdml.losses import UNLABELLED
from rdml.models import build_model


@pytest.mark.parametrize("name", ["digits", "synthetic"])
def test_split_is_stratified_fixed_by_split_seed_and_standardised(name):
    a = load_dataset(name, split_seed=0, test_fraction=0.25)
    b = load_dataset(name, split_seed=0, test_fraction=0.25)
    c = load_dataset(name, split_seed=1, test_fraction=0.25)
    assert torch.equal(a.x_test, b.x_test) and a.fingerprint == b.fingerprint
    assert a.fingerprint["split"]["sha256"] != c.fingerprint["split"]["sha256"]
    assert not torch.equal(a.x_test, c.x_test)
    train_counts = torch.bincount(a.y_train, minlength=a.num_classes).double()
    test_counts = torch.bincount(a.y_test, minlength=a.num_classes).double()
    np.testing.assert_allclose((test_counts / (train_counts + test_counts)).numpy(), 0.25, atol=0.01)
    normalised = a.inputs(a.x_train)
    assert abs(normalised.mean().item()) < 1e-4 and abs(normalised.std().item() - 1) < 1e-3
    assert normalised.dtype == torch.float32 and a.y_train.dtype == torch.int64
    rows = {tuple(r.flatten().tolist()) for r in a.x_train}
    assert not any(tuple(r.flatten().tolist()) in rows for r in a.x_test[:50])  # disjoint


def test_labelled_subset_hides_labels_only_in_train():
    full = load_dataset("digits", split_seed=0, test_fraction=0.25)
    semi = load_dataset("digits", split_seed=0, test_fraction=0.25, labelled_fraction=0.1)
    labelled = semi.y_train != UNLABELLED
    assert semi.fingerprint["split"]["labelled_size"] == int(labelled.sum())
    assert 0.09 < labelled.float().mean().item() < 0.11
    assert torch.equal(semi.y_train[labelled], full.y_train[labelled])
    assert torch.equal(semi.y_test, full.y_test) and torch.equal(semi.x_train, full.x_train)
    assert set(semi.y_train[labelled].tolist()) == set(range(10))  # every class keeps labelled rows


@pytest.mark.parametrize("rows,batch", [(100, 10), (101, 10), (97, 32), (5, 64)])
def test_epoch_batches_cover_every_row_once_in_a_seeded_order(rows, batch):
    batches = list(epoch_batches(rows, batch, seed=3, epoch=2))
    assert sorted(torch.cat(batches).tolist()) == list(range(rows))
    assert all(len(b) >= 2 for b in batches) or rows < 2
    again = list(epoch_batches(rows, batch, seed=3, epoch=2))
    assert all(torch.equal(x, y) for x, y in zip(batches, again))
    other_epoch = torch.cat(list(epoch_batches(rows, batch, seed=3, epoch=3)))
    assert not torch.equal(torch.cat(batches), other_epoch)


@pytest.mark.parametrize("arch", ["mlp", "cnn", "cnn_wide"])
def test_architectures_forward_and_backward(arch):
    model = build_model(arch, DataSpec("images", 10, (1, 8, 8)))
    out = model(torch.randn(4, 1, 8, 8))
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_teacher_is_larger_than_the_students():
    size = {a: sum(p.numel() for p in build_model(a, DataSpec("images", 10, (1, 8, 8))).parameters()) for a in ("mlp", "cnn", "cnn_wide")}
    assert size["cnn_wide"] > 10 * max(size["mlp"], size["cnn"])
