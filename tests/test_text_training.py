"""RDML Table 3 runs end to end on a tiny corpus: the released schedule read from the logged learning rates,
a validation split evaluated every epoch, the vocabulary of the training rows, and the run's models
evaluated again from model.pt."""

import pytest
import torch

from rdml.analysis.evaluate import evaluate_run
from rdml.config import load_config
from rdml.data.base import load_dataset
from rdml.train.loop import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("text") / "run"
    # The paper's "weight decay" of 0.5 is the released StepLR's gamma: `optim.lr_scheduler.StepLR(optimizer,
    # step_size=config.lr_step_size, gamma=config.lr_decay)` (text-clf/Model_CharCNN/train.py L98-105).
    cfg = load_config(None, ["dataset=tiny_ag_news", "arch=fasttext", "method=dml", "alpha=1.5", "epochs=7", "batch_size=8",
                             "optimizer=sgd", "momentum=0", "nesterov=false", "weight_decay=0", "lr=0.5", "schedule=step",
                             "step_size=3", "gamma=0.5", "val_fraction=0.25", "normalize=none", f"out={out}"])
    return train(cfg, progress=False), out


def test_the_learning_rate_halves_every_three_epochs(run):
    record, _ = run
    assert [e["lr"] for e in record["epochs"]] == [[0.5 * 0.5 ** ((epoch - 1) // 3)] * 2 for epoch in range(1, 8)]


def test_validation_is_evaluated_every_epoch_and_summarised(run):
    record, _ = run
    split = record["data"]["split"]
    assert split["val_fraction"] == 0.25 and split["val_size"] > 0
    assert all(set(e["val"]) == {"student_0", "student_1", "ensemble"} for e in record["epochs"])
    for name, summary in record["summary"].items():
        val = [e["val"][name]["acc"] for e in record["epochs"]]
        chosen = max(i for i, v in enumerate(val) if v == max(val))
        assert summary["best_val_epoch"] == chosen + 1
        assert summary["at_best_val_acc"] == record["epochs"][chosen]["test"][name]["acc"]


def test_the_vocabulary_is_the_training_rows(run):
    """A token met only in validation rows has no vector: the released code built its vocabulary from its
    training split, so such a token is <unk>, whose vector is zero."""
    data = load_dataset("tiny_ag_news", split_seed=0, test_fraction=0.25, val_fraction=0.25, normalize="none")
    full = load_dataset("tiny_ag_news", split_seed=0, test_fraction=0.25, normalize="none")
    seen = torch.zeros(len(data.embeddings), dtype=torch.bool)
    seen[data.x_train.words.values] = True
    assert (data.embeddings[~seen] == 0).all() and torch.equal(data.embeddings[seen], full.embeddings[seen])
    only_val = torch.zeros_like(seen)
    only_val[data.x_val.words.values] = True
    only_val &= ~seen & full.embeddings.abs().sum(1).gt(0)
    assert only_val.any()  # the check above had something to zero


def test_a_text_run_evaluates_again_from_its_model_file(run):
    record, out = run
    result = evaluate_run(out)
    for name in ("student_0", "student_1"):
        assert result["models"][name]["top1"] == pytest.approx(record["epochs"][-1]["test"][name]["acc"])
