"""`labelled_classes`: every training row of M classes keeps its label, every other class's rows are unlabelled
(DML §4.10 on Market-1501: "we randomly select M identities as labelled in the training set, varying M from 100 to
751"); the M classes follow from split_seed; the split fingerprint records them; identities at the default kept."""

import json

import numpy as np
import pytest
import torch

import conftest
from rdml.config import ConfigError, config_from_mapping, config_sha256, config_values, data_keys, load_config, resolve
from rdml.data.base import load_dataset
from rdml.losses import UNLABELLED

MARKET = dict(normalize="inception")  # tiny_market1501: 12 training identities, 6 crops each, an official split


def load(name="synthetic", **keys):
    return load_dataset(name, split_seed=keys.pop("split_seed", 0), test_fraction=0.25,
                        **(MARKET if name == "tiny_market1501" else {}), **keys)


def labelled_set(data) -> set[int]:
    return set(data.y_train[data.y_train != UNLABELLED].tolist())


@pytest.mark.parametrize("name, classes", [("synthetic", 10), ("tiny_market1501", 12)])
@pytest.mark.parametrize("m", [1, 3, 7])
def test_every_row_of_m_classes_keeps_its_label_and_no_other_row_does(name, classes, m):
    full, semi = load(name), load(name, labelled_classes=m)
    kept = labelled_set(semi)
    assert len(kept) == m and kept <= set(range(classes))
    in_kept = torch.tensor([int(y) in kept for y in full.y_train.tolist()])
    assert torch.equal(semi.y_train[in_kept], full.y_train[in_kept])  # every row of a kept class, its own label
    assert (semi.y_train[~in_kept] == UNLABELLED).all()  # every row of another class, unlabelled
    assert torch.equal(semi.x_train, full.x_train) and torch.equal(semi.y_test, full.y_test)  # mimic: all rows stay
    assert semi.fingerprint["split"]["labelled_size"] == int(in_kept.sum())
    if semi.probes:  # a retrieval set's queries and gallery are untouched
        assert all(torch.equal(semi.probes[k].ids, full.probes[k].ids) for k in full.probes)


def test_drop_keeps_the_labelled_classes_rows_alone_in_their_order():
    full, kept = load("tiny_market1501"), load("tiny_market1501", labelled_classes=3, unlabelled="drop")
    classes = labelled_set(kept)
    rows = torch.tensor([i for i, y in enumerate(full.y_train.tolist()) if y in classes])
    assert torch.equal(kept.x_train, full.x_train[rows]) and torch.equal(kept.y_train, full.y_train[rows])
    assert len(kept.y_train) == 3 * 6 and kept.fingerprint["split"]["unlabelled"] == "drop"
    assert torch.equal(kept.mean, full.mean) and torch.equal(kept.std, full.std)


def test_the_classes_follow_from_split_seed_alone_and_a_smaller_m_keeps_a_subset():
    assert labelled_set(load(labelled_classes=4, split_seed=5)) == labelled_set(load(labelled_classes=4, split_seed=5))
    # the test split drawn before them does not move them: a different test_fraction, the same classes
    other_split = load_dataset("synthetic", split_seed=5, test_fraction=0.5, labelled_classes=4)
    assert labelled_set(other_split) == labelled_set(load(labelled_classes=4, split_seed=5))
    drawn = [frozenset(labelled_set(load(labelled_classes=4, split_seed=seed))) for seed in range(6)]
    assert len(set(drawn)) > 1  # 210 subsets of 4 of 10 classes: six seeds drawing one would be chance (< 1e-11)
    for seed in range(3):
        nested = [labelled_set(load(labelled_classes=m, split_seed=seed)) for m in range(1, 11)]
        assert all(a < b for a, b in zip(nested, nested[1:])) and nested[-1] == set(range(10))


def test_the_classes_are_spread_like_a_uniform_draw():
    """Over many split seeds each class is kept about M/C of the time (a permutation's first M, not fixed classes)."""
    counts = np.zeros(10)
    for seed in range(400):
        counts[sorted(labelled_set(load(labelled_classes=3, split_seed=seed)))] += 1
    assert counts.sum() == 1200 and np.all(np.abs(counts / 400 - 0.3) < 0.1)  # binomial sd 0.023


def test_the_fingerprint_names_the_classes_and_changes_with_them():
    base = load("tiny_market1501")
    prints = {m: load("tiny_market1501", labelled_classes=m).fingerprint for m in (3, 4, 12)}
    other_seed = load("tiny_market1501", labelled_classes=3, split_seed=1).fingerprint
    assert "labelled_classes" not in base.fingerprint["split"]
    assert [prints[m]["split"]["labelled_classes"] for m in (3, 4, 12)] == [3, 4, 12]
    hashes = [f["sha256"] for f in (base.fingerprint, *prints.values(), other_seed)]
    assert len(set(hashes)) == len(hashes)
    assert len({f["split"]["sha256"] for f in (prints[3], prints[4], other_seed)}) == 3  # the rows' mask differs
    # every row labelled: the same rows as the default, but a run that asked for M classes says so
    assert prints[12]["split"]["sha256"] == base.fingerprint["split"]["sha256"]


# The fingerprints of the data sets as rdml wrote them before labelled_classes existed (commit a0bcdb0), split seed 3.
BEFORE = [
    ("synthetic", {}, "9c063565afe16e5cd14caa1b505283fe1e06574d8b4c50657a3edec2d25781e5"),
    ("tiny_market1501", MARKET, "daace94da5a252b62a74dae2b80da25b9b870fcdad3ebace3b2adf35010836bc"),
    ("synthetic", dict(labelled_fraction=0.5, unlabelled="drop", val_fraction=0.2),
     "6f5009a4feee9ba68b17d5420810ba2a0b074d191ad64af851ead1ca40811d0c"),
]


@pytest.mark.parametrize("name, keys, sha256", BEFORE, ids=["synthetic", "tiny_market1501", "semi_val"])
def test_fingerprints_at_the_default_are_the_ones_written_before(name, keys, sha256):
    data = load_dataset(name, split_seed=3, test_fraction=0.25, **keys)
    assert data.fingerprint["sha256"] == sha256
    assert load_dataset(name, split_seed=3, test_fraction=0.25, labelled_classes=0, **keys).fingerprint == data.fingerprint


def test_identity_counts_the_key_only_when_set():
    """A key added later counts in a run's identity only away from its default (rdml.config._counts): runs written
    before it keep their hash (pinned from commit a0bcdb0), a record without the key hashes as one with 0."""
    plain = resolve(config_from_mapping({"dataset": "synthetic", "method": "dml"}))
    assert config_sha256(plain) == "3a66dce4135a24aad7b203c15e1197537f1c9aadd0a3fd74d8f37dc47a790224"
    semi = {"dataset": "tiny_market1501", "method": "dml", "arch": "reid_tiny", "labelled_fraction": 0.5, "unlabelled": "drop"}
    assert config_sha256(resolve(config_from_mapping(semi))) == \
        "3c2c09ecf8ebcf0e2dfaec857a17bc91572e9e412efbb69f0cd4ed1103569056"
    stored = json.loads(json.dumps(config_values(plain)))  # as a record stores it
    assert config_sha256({k: v for k, v in stored.items() if k != "labelled_classes"}) == config_sha256(stored)
    by_class = resolve(config_from_mapping({"dataset": "synthetic", "method": "dml", "labelled_classes": 3}))
    assert config_sha256(by_class) != config_sha256(plain)
    assert data_keys(vars(by_class))["labelled_classes"] == 3 and data_keys({})["labelled_classes"] == 0


def test_a_run_trains_on_the_labelled_classes_and_records_them(tmp_path):
    """DML-labelled: the unlabelled classes' rows dropped; the record's data fingerprint is load_dataset's."""
    record = conftest.run(tmp_path / "run", "labelled_classes=4", "unlabelled=drop", "epochs=1", "students=2")
    expected = load_dataset("synthetic", **data_keys(record["config"]))
    assert record["status"] == "ok" and record["config"]["labelled_classes"] == 4
    assert record["data"]["sha256"] == expected.fingerprint["sha256"] and record["data"]["num_classes"] == 10
    assert record["data"]["split"]["labelled_size"] == len(expected.y_train) == 4 * 60  # 60 training rows a class


@pytest.mark.bad_input
@pytest.mark.parametrize("keys, message", [
    ({"labelled_classes": 11}, "labelled_classes=11: dataset synthetic has 10 classes; give M in [1, 10] (0 = off)"),
    ({"labelled_classes": -1}, "labelled_classes=-1 is not allowed; it must be an integer >= 0 (0 = off)"),
    ({"labelled_classes": 3, "labelled_fraction": 0.5}, "labelled_classes=3 with labelled_fraction=0.5: "
     "labelled_classes labels every row of M classes"),
])
def test_a_config_outside_the_classes_or_with_a_fraction_is_refused(keys, message):
    with pytest.raises(ConfigError) as refused:
        resolve(load_config(None, ["dataset=synthetic", *(f"{k}={v}" for k, v in keys.items())]))
    assert message in str(refused.value)


@pytest.mark.bad_input
def test_a_count_that_is_not_an_integer_is_refused():
    with pytest.raises(ConfigError, match="labelled_classes"):
        load_config(None, ["labelled_classes=2.5"])


@pytest.mark.bad_input
@pytest.mark.parametrize("keys, message", [
    ({"labelled_classes": 13}, "labelled_classes=13 is not allowed for dataset tiny_market1501; it must be an integer in "
     "[1, 12] (its classes), or 0 (off)"),
    ({"labelled_classes": -2}, "labelled_classes=-2 is not allowed"),
    ({"labelled_classes": 2.0}, "labelled_classes=2.0 is not allowed"),
    ({"labelled_classes": True}, "labelled_classes=True is not allowed"),
    ({"labelled_classes": 3, "labelled_fraction": 0.5}, "labelled_classes=3 with labelled_fraction=0.5"),
])
def test_load_dataset_refuses_them_itself(keys, message):
    with pytest.raises(ConfigError) as refused:
        load("tiny_market1501", **keys)
    assert message in str(refused.value)
