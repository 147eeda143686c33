"""Fidelity of RDML Tables 2 and 3 to the released code (parklize/rdml at 4c95be7).

Table 2: the released `get_network` keeps timm's 1000-class ImageNet head (torchversion/model.py L33, L35, L37:
`timm.create_model(..., pretrained=pretrained)` without `num_classes`), and its loop feeds one batch to every
network (torchversion/core/dml.py L151–157): both students start bit-identical and see the same inputs.
`rdml_table2` runs that reading (head=pretrained), `rdml_table2_new_heads` rdml's earlier one (head=dataset).

Table 3: the released CharCNN evaluation (text-clf/Model_CharCNN/utils.py L124–137) never calls `eval()`, and
the networks are left in train mode around it (dml.py L111–112, L207): its accuracies, and the best-validation
epoch train.py L143–147 keeps, are drawn with dropout 0.5 on. `charcnn_as_released` does the same, with masks
seeded per evaluation (rdml.train.evaluate.seed_evaluation_draws); `rdml_table3_as_released` runs it.
"""

import copy
import json
import os
from types import SimpleNamespace
from pathlib import Path

import pytest
import torch

from conftest import REPO
from rdml.config import config_values, load_config
from rdml.data.base import load_dataset
from rdml.keys import ConfigError
from rdml.models import ARCHITECTURES
from rdml.models.text import EvaluationDropout, charcnn, charcnn_as_released
from rdml.study.layouts.rdml import PUBLISHED_HEAD_NOTE
from rdml.study.params import load_params
from rdml.study.plan import plan_study, plan_tables
from rdml.train.evaluate import split_log_probs
from rdml.train.loop import train

PARAMS = load_params(REPO / "params.yaml")


def configs(study: str) -> dict:
    """Each run's resolved keys, by what it trains (data set, method, networks, seed, α)."""
    return {(r.dataset, r.method, r.archs, r.seed, r.alpha): config_values(r.config) for r in plan_study(PARAMS, study)}


def without(keys: dict, *names) -> dict:
    return {k: v for k, v in keys.items() if k not in ("out", *names)}


# ---- RDML Table 2: the published head kept, as released ----------------------------------------------------------

@pytest.mark.parametrize("suffix", ["", "_smoke"])
def test_rdml_table2_keeps_the_released_head_and_new_heads_is_the_same_study_otherwise(suffix):
    released, new_heads = configs(f"rdml_table2{suffix}"), configs(f"rdml_table2_new_heads{suffix}")
    assert released.keys() == new_heads.keys() and len(released) == (90 if not suffix else 10)
    for run, keys in released.items():
        assert keys["head"] == "pretrained" and keys["pretrained"] is True, run
        assert new_heads[run]["head"] == "dataset", run
        assert without(keys, "head") == without(new_heads[run], "head"), run


@pytest.fixture(scope="module")
def published_runs(tmp_path_factory):
    """DML (α = 2) and Ind. of one seed on tiny CIFAR-10 from timm's test ViT's "published" weights (1000-class
    head; no dropout or drop-path), with the published head kept and with new heads; crop-and-flip draws, as
    Table 2 has random crops and flips."""
    from rdml.pipeline.jobs import prepare_weights

    root = tmp_path_factory.mktemp("heads")
    before = Path.cwd()
    os.chdir(root)
    try:
        prepare_weights("test_vit")
        runs = {}
        for name, keys in {"dml_pretrained": ["method=dml", "alpha=2.0", "students=2", "head=pretrained"],
                           "ind_pretrained": ["method=independent", "head=pretrained"],
                           "dml_dataset": ["method=dml", "alpha=2.0", "students=2", "head=dataset"]}.items():
            cfg = load_config(None, ["dataset=tiny_cifar10", "arch=test_vit", "pretrained=true", "epochs=1",
                                     "batch_size=16", "augment=crop_flip", "precision=fp32", f"out=runs/{name}", *keys])
            record = train(cfg, progress=False)
            states = torch.load(Path("runs", name, "model.pt"), weights_only=False)["states"]
            runs[name] = (record, states)
        from safetensors.torch import load_file

        published = load_file(json.loads(Path("results/weights/test_vit.json").read_text())["file"])
    finally:
        os.chdir(before)
    return runs, published


def test_students_with_the_published_head_stay_identical_and_do_not_mimic(published_runs):
    """With the head kept, nothing breaks the tie: the students are bit-identical after an epoch of random
    crops and flips, their mimicry term is exactly 0, and its gradient vanishes up to float rounding: each
    student is the independent student of the same seed, to the last bits."""
    runs, published = published_runs
    record, states = runs["dml_pretrained"]
    first, second = states
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert record["epochs"][0]["train"]["student_0/mimic"] == record["epochs"][0]["train"]["student_1/mimic"] == 0.0
    assert first["head.weight"].shape[0] == 1000
    assert not torch.equal(first["head.weight"], published["head.weight"])  # it did train
    (independent,) = runs["ind_pretrained"][1]
    assert max((first[k] - independent[k]).abs().max().item() for k in first) < 1e-5  # DML repeats Ind. …
    moved = max((first[k] - published[k]).abs().max().item() for k in first if first[k].shape == published[k].shape)
    assert moved > 1e-3  # … while training moved the weights far more


def test_students_with_new_heads_differ_and_mimic(published_runs):
    """rdml_table2_new_heads: each student draws its own head, so they differ from the first batch on."""
    record, (first, second) = published_runs[0]["dml_dataset"]
    assert first["head.weight"].shape[0] == 10 and not torch.equal(first["head.weight"], second["head.weight"])
    assert all(e["train"][f"student_{k}/mimic"] > 1e-4 for e in record["epochs"] for k in (0, 1))


def test_the_table2_caption_says_the_students_start_identical():
    (released,) = plan_tables(PARAMS, "rdml_table2")
    (new_heads,) = plan_tables(PARAMS, "rdml_table2_new_heads")
    assert PUBLISHED_HEAD_NOTE in released.caption and "mimicry term is zero" in released.caption
    assert PUBLISHED_HEAD_NOTE not in new_heads.caption
    assert all(PUBLISHED_HEAD_NOTE not in t.caption for t in plan_tables(PARAMS, "rdml_table1"))


# ---- RDML Table 3: CharCNN evaluated with dropout on, as released ----------------------------------------------------

def test_rdml_table3_as_released_is_rdml_table3_with_the_released_evaluation():
    paper, released = configs("rdml_table3"), configs("rdml_table3_as_released")
    rename = lambda archs: tuple("charcnn_as_released" if a == "charcnn" else a for a in archs)
    assert {(d, m, rename(a), s, al) for d, m, a, s, al in paper} == set(released) and len(released) == 90
    for (d, m, a, s, al), keys in paper.items():
        theirs = released[(d, m, rename(a), s, al)]
        assert without(theirs, "arch") == without(keys, "arch") and theirs["arch"] == list(rename(a))
    assert {t.name for t in plan_tables(PARAMS, "rdml_table3_as_released")} == {"text_table", "rdml_table"}
    assert all(ARCHITECTURES["charcnn_as_released"].note in t.caption  # the text table and the every-α table
               for t in plan_tables(PARAMS, "rdml_table3_as_released"))
    assert all(ARCHITECTURES["charcnn_as_released"].note not in t.caption for t in plan_tables(PARAMS, "rdml_table3"))


def test_charcnn_as_released_trains_step_for_step_as_charcnn():
    """Same weights from the same seed, and a training step (dropout from torch's stream) gives the same weights
    and leaves the stream in the same state."""
    torch.manual_seed(3)
    ours = charcnn_as_released((150,), 4)
    torch.manual_seed(3)
    plain = charcnn((150,), 4)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), plain.state_dict().values()))
    assert list(ours.state_dict()) == list(plain.state_dict())
    chars, labels = torch.randint(0, 71, (6, 150)), torch.tensor([0, 1, 2, 3, 0, 1])
    streams = []
    for model in (ours, plain):
        torch.manual_seed(11)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        torch.nn.functional.cross_entropy(model(chars), labels).backward()
        optimizer.step()
        streams.append(torch.get_rng_state())
    assert torch.equal(*streams)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), plain.state_dict().values()))


def test_evaluation_dropout_drops_half_and_scales_the_rest():
    """In eval mode the layer still drops: values 0 or 1/(1 − p), about half of them 0 at p = 0.5."""
    layer = EvaluationDropout(0.5).eval()
    out = layer(torch.ones(200_000))
    assert set(out.unique().tolist()) == {0.0, 2.0}
    assert abs((out == 0).float().mean().item() - 0.5) < 0.005


class Students(list):
    """The least of a cohort that split_log_probs reads: each student's `model`, and `predict`."""

    def predict(self, x):
        return [s.model(x) for s in self]


def test_charcnn_as_released_evaluates_with_dropout_reproducibly_without_moving_the_training_stream():
    data = load_dataset("tiny_ag_news", split_seed=0, test_fraction=0.25, normalize="none")
    torch.manual_seed(0)
    ours = charcnn_as_released(data.spec.input_shape, data.num_classes)
    plain = charcnn(data.spec.input_shape, data.num_classes)
    plain.load_state_dict(ours.state_dict())
    log_probs = lambda *models: split_log_probs(Students(SimpleNamespace(model=m) for m in models), data, "test")[0]

    stream = torch.get_rng_state()
    first = log_probs(ours)["student_0"]
    assert torch.equal(torch.get_rng_state(), stream)  # evaluating draws nothing from torch's stream
    torch.rand(100)  # the stream moves on, as training moves it
    assert torch.equal(log_probs(ours)["student_0"], first)  # seeded per evaluation: the same masks every time
    assert ours.training  # put back in train mode, as every evaluation does
    assert not torch.equal(log_probs(plain)["student_0"], first)  # eval-mode CharCNN: dropout was on
    twin = copy.deepcopy(ours)  # the same weights in the second place draw masks of their own
    both = log_probs(ours, twin)
    assert torch.equal(both["student_0"], first) and not torch.equal(both["student_1"], first)


@pytest.fixture(scope="module")
def text_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("charcnn")
    runs = {}
    for arch in ("charcnn", "charcnn_as_released"):
        cfg = load_config(None, ["dataset=tiny_ag_news", f"arch={arch}", "method=dml", "alpha=1.5", "epochs=2",
                                 "batch_size=16", "optimizer=adam", "lr=0.001", "val_fraction=0.25", "normalize=none",
                                 f"out={root / arch}"])
        runs[arch] = (train(cfg, progress=False), root / arch)
    return runs


def test_a_charcnn_as_released_run_trains_as_charcnn_and_evaluates_with_dropout(text_runs):
    (plain, plain_dir), (ours, ours_dir) = text_runs["charcnn"], text_runs["charcnn_as_released"]
    assert [e["train"] for e in ours["epochs"]] == [e["train"] for e in plain["epochs"]]  # training, loss for loss
    mine = torch.load(ours_dir / "model.pt", weights_only=False)["states"]
    theirs = torch.load(plain_dir / "model.pt", weights_only=False)["states"]
    assert all(torch.equal(a[k], b[k]) for a, b in zip(mine, theirs) for k in a)  # … and weight for weight
    for split in ("test", "val"):
        assert all(ours["epochs"][i][split]["student_0"]["loss"] != plain["epochs"][i][split]["student_0"]["loss"]
                   for i in range(2))


def test_a_charcnn_as_released_run_audits_exactly(text_runs):
    """The audit rebuilds the run and evaluates it again: the seeded masks give exactly the recorded accuracy."""
    from rdml.audit import _evaluated
    from rdml.config import data_keys
    from rdml.train.evaluate import evaluate

    record, out = text_runs["charcnn_as_released"]
    data = load_dataset("tiny_ag_news", **data_keys(record["config"]))
    lines = []
    assert _evaluated(out / "model.pt", record, data, lines.append) == []
    assert "(tolerance exact" in lines[-1]
    from rdml.train.cohort import rebuild
    from rdml.train.integrity import FINISHED
    from rdml.train.verified import verified_run

    run = verified_run(out / "model.pt", "", FINISHED, unsealed=True)
    cohort, method = rebuild(run.saved, record["config"], data, torch.device("cpu"))
    again = evaluate(cohort, data, method=method)
    assert again == record["epochs"][-1]["test"]  # loss and entropy too, not only the accuracy


def test_a_fused_cohort_of_charcnn_as_released_is_refused_with_a_reason():
    from torch.func import functional_call, stack_module_state, vmap

    models = [charcnn_as_released((150,), 4).eval() for _ in range(2)]
    params, buffers = stack_module_state(models)
    one = lambda p, b, x: functional_call(models[0], (p, b), (x,))
    with pytest.raises(ConfigError, match="set fuse_students=false"):
        vmap(one, in_dims=(0, 0, None), randomness="different")(params, buffers, torch.randint(0, 71, (3, 150)))
