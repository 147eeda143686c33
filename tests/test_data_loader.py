"""The data set's loader (rdml.data.base.Dataset.train_batches / eval_batches): what training and
evaluation read instead of indexing a set's tensors, checked against the tensors themselves."""

import pytest
import torch

from rdml.data.base import epoch_batches, load_dataset


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", split_seed=0, test_fraction=0.25, val_fraction=0.2)


def test_training_batches_are_the_epoch_order_of_the_rows(data):
    batches = list(data.train_batches(64, seed=3, epoch=2))
    rows = list(epoch_batches(len(data.y_train), 64, seed=3, epoch=2))
    assert len(batches) == len(rows) == data.steps_per_epoch(64)
    for batch, expected in zip(batches, rows):
        assert torch.equal(batch.labels, data.y_train[expected])
        assert torch.equal(batch.inputs(), data.inputs(data.x_train[expected]))
        flipped = batch.inputs(lambda x, sizes, size: x.flip(-1))  # an augmentation gets the raw rows
        assert torch.equal(flipped, data.inputs(data.x_train[expected].flip(-1)))
    assert sorted(torch.cat([b.rows for b in batches]).tolist()) == list(range(len(data.y_train)))


@pytest.mark.parametrize("split", ["train", "test", "val"])
def test_evaluated_splits_come_whole_and_in_row_order(data, split):
    x = {"train": data.x_train, "test": data.x_test, "val": data.x_val}[split]
    y = {"train": data.y_train, "test": data.y_test, "val": data.y_val}[split]
    batches = list(data.eval_batches(split, 100))
    assert [len(b[1]) for b in batches[:-1]] == [100] * (len(batches) - 1) and data.split_size(split) == len(y)
    assert torch.equal(torch.cat([b[0] for b in batches]), data.inputs(x))
    assert torch.equal(torch.cat([b[1] for b in batches]), y)


def test_a_split_the_set_does_not_have_is_named_with_the_ones_it_has():
    data = load_dataset("synthetic", split_seed=0, test_fraction=0.25)
    assert data.split_size("val") == 0
    with pytest.raises(ValueError, match="no 'val' split; it has: train, test"):
        list(data.eval_batches("val", 10))
    with pytest.raises(ValueError, match="no 'query' split"):
        data.split_size("query")
