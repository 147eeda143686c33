"""Training on the streamed ImageNet path (rdml.data.imagenet, tiny_imagenet in the real archive formats): a run
killed right after a checkpoint inside an epoch (checkpoint_steps) resumes at the loader's next batch and ends with
the uninterrupted run's bits, whatever the number of decoding workers; dml_imagenet's smoke study runs in CI
through tests/test_studies.py."""

import pytest
import torch

from conftest import killed_after_checkpoint, run
from rdml.config import ConfigError, load_config
from rdml.train.checkpoint import read_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")  # tiny_imagenet's archives and shards, generated once for the module


def keys(data_dir, *more):
    return ["dataset=tiny_imagenet", "method=dml", "arch=reid_tiny", "epochs=2", "batch_size=8", "augment=inception",
            "normalize=inception", "optimizer=rmsprop_tf", "lr=0.01", "schedule=step", "step_size=1", "gamma=0.16",
            "checkpoint_steps=3", f"data_dir={data_dir}", *more]


@pytest.mark.fault
def test_a_streamed_run_killed_inside_an_epoch_resumes_at_the_loaders_next_batch_with_the_same_bits(tmp_path, data_dir):
    # 58 training images in batches of 8: 8 steps an epoch, checkpoints after steps 3 and 6 of each; the kill comes
    # right after the third checkpoint (epoch 2, step 3, after epoch 1's own). The uninterrupted run decodes in this
    # process, the killed one in two workers and the resumed one in one: every image's draws come from (seed, epoch, row).
    whole = run(tmp_path / "whole", *keys(data_dir, "loader_workers=0"))
    killed_after_checkpoint(4, lambda: run(tmp_path / "cut", *keys(data_dir, "loader_workers=2")))
    progress = read_checkpoint(tmp_path / "cut" / "checkpoint.pt")["progress"]
    assert (progress["epoch"], progress["step"]) == (2, 3)
    resumed = run(tmp_path / "cut", *keys(data_dir, "loader_workers=1"))
    assert len(resumed["resumed_at"]) == 1 and resumed["epochs"] == whole["epochs"]
    got, want = (torch.load(tmp_path / d / "model.pt", weights_only=True)["states"] for d in ("cut", "whole"))
    assert all(torch.equal(a[k], b[k]) for a, b in zip(got, want) for k in a)
    assert whole["data"]["split"]["storage"] == "stream"
    assert whole["epochs"][1]["lr"] == [pytest.approx(0.01 * 0.16)] * 2  # TF's staircase decay after one "epoch"


@pytest.mark.bad_input
def test_a_streamed_set_keeps_its_split_and_labels(data_dir):
    from rdml.train.prepare import prepare

    with pytest.raises(ConfigError, match="labelled_fraction=0.5: dataset tiny_imagenet is streamed"):
        prepare(load_config(None, keys(data_dir, "labelled_fraction=0.5")))
