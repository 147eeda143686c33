"""Training on a retrieval set (DML §4.1, Market-1501): the moving average of weights the official code evaluates,
the per-epoch retrieval scores of every network and of the concatenated ensemble, and the summaries of them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from rdml import retrieval
from rdml.data.base import Dataset, Probe
from rdml.data.catalog import DATASETS
from rdml.keys import ConfigError
from rdml.train.average import WeightAverage
from rdml.train.cohort import Cohort, Student
from rdml.train.evaluate import retrieval_scores
from rdml.train.integrity import recorded_value, summarise


# ---- the moving average (TF's ExponentialMovingAverage with num_updates) ----

def _tf_average(values: list[np.ndarray], decay: float, counts: list[int]) -> np.ndarray:
    """TF's shadow in float64: starts at the initial value, then shadow -= (1 - d)(shadow - value) with
    d = min(decay, (1 + n)/(10 + n)) at the n of each update."""
    shadow = values[0].astype(np.float64)
    for value, n in zip(values[1:], counts):
        d = min(decay, (1 + n) / (10 + n))
        shadow = shadow - (1 - d) * (shadow - value)
    return shadow


def test_average_follows_tensorflow_with_the_global_step_of_every_network():
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).double() for _ in range(2)]
    average = WeightAverage(models, decay=0.9)
    history = {0: [models[0][0].weight.detach().numpy().copy()], 1: [models[1][0].weight.detach().numpy().copy()]}
    counts = {0: [], 1: []}
    for step in range(6):
        for index, model in enumerate(models):  # one step of each network in turn, as the official loop runs them
            with torch.no_grad():
                model[0].weight.add_(torch.randn_like(model[0].weight))
                model[1].running_mean.add_(1.0)
                model[1].num_batches_tracked.add_(1)
            average.update(index, model)
            history[index].append(model[0].weight.detach().numpy().copy())
            counts[index].append(2 * step + index + 1)  # the global step counts both networks' steps
    for index in (0, 1):
        expected = _tf_average(history[index], 0.9, counts[index])
        np.testing.assert_allclose(average.shadows[index]["0.weight"].numpy(), expected, rtol=1e-12)
        assert average.shadows[index]["1.num_batches_tracked"].item() == 6  # integers are copied
        mean = _tf_average([np.zeros(2)] + [np.full(2, k + 1.0) for k in range(6)], 0.9, counts[index])
        np.testing.assert_allclose(average.shadows[index]["1.running_mean"].numpy(), mean, rtol=1e-12)
    assert average.steps == 12 and average.rate() == 13 / 22 and WeightAverage(models, 0.5).rate() == 0.1


def test_swapped_holds_the_averages_inside_and_the_trained_weights_after():
    model = nn.Linear(2, 2)
    average = WeightAverage([model], decay=0.5)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        average.shadows[0]["weight"].fill_(7.0)
    with average.swapped([model]):
        assert torch.equal(model.weight, torch.full((2, 2), 7.0))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in trained.items())
    restored = WeightAverage([nn.Linear(2, 2)], decay=0.5)
    restored.load_state_dict(average.state_dict())
    assert restored.steps == average.steps and torch.equal(restored.shadows[0]["weight"], average.shadows[0]["weight"])


# ---- retrieval scores of a cohort ----

class _Features(nn.Module):
    """A network with the re-ID interface: features(x) a fixed projection of the flattened input."""

    def __init__(self, seed: int, dim: int = 5):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.projection = nn.Parameter(torch.randn(3 * 4 * 2, dim, generator=generator))
        self.head = nn.Linear(dim, 3)

    def features(self, x):
        return x.flatten(1) @ self.projection

    def forward(self, x):
        return self.head(self.features(x))


def _probe_data(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)

    def probe(ids, cams):
        x = torch.from_numpy(rng.integers(0, 256, size=(len(ids), 3, 4, 2), dtype=np.uint8))
        return Probe(x, torch.tensor(ids), torch.tensor(cams))

    query = probe([1, 2, 3, 1], [1, 2, 1, 3])
    gallery = probe([1, 1, 2, 2, 3, 0, -1, 3, 2, 0, 1], [2, 1, 1, 3, 2, 4, 1, 1, 2, 5, 6])
    multi = probe([1, 1, 2, 3, 3, 1, 2], [1, 1, 2, 1, 1, 3, 2])
    spec = DATASETS["tiny_market1501"].spec
    spec = type(spec)(spec.kind, spec.num_classes, (3, 4, 2))  # no resize: the stored size is the input size
    empty = torch.zeros((0, 3, 4, 2), dtype=torch.uint8)
    return Dataset("tiny_market1501", empty, torch.zeros(0, dtype=torch.int64), empty, torch.zeros(0, dtype=torch.int64),
                   spec, torch.tensor([0.5] * 3), torch.tensor([0.5] * 3),
                   probes={"query": query, "gallery": gallery, "multiquery": multi})


def _features(model, probe: Probe) -> np.ndarray:
    x = (probe.x.double() / 255 - 0.5) / 0.5
    return (x.flatten(1).float() @ model.projection.detach()).double().numpy()


def test_retrieval_scores_are_the_protocol_of_each_network_and_of_their_concatenation():
    data = _probe_data()
    models = [_Features(1), _Features(2)]
    cohort = Cohort([Student(m, None, None) for m in models])
    scores = retrieval_scores(cohort, data, batch_size=3, multiquery="max")
    assert list(scores) == ["student_0", "student_1", "ensemble"]
    q, g, m = (data.probes[k] for k in ("query", "gallery", "multiquery"))
    feats = {name: [_features(model, p) for model in models] for name, p in (("q", q), ("g", g), ("m", m))}
    for name, pick in (("student_0", lambda f: f[0]), ("student_1", lambda f: f[1]),
                       ("ensemble", lambda f: np.concatenate(f, axis=1))):
        single = retrieval.evaluate(retrieval.distances(pick(feats["q"]), pick(feats["g"])), q.ids, q.cams, g.ids, g.cams,
                                    ap="official")
        pooled = retrieval.pool_queries(pick(feats["m"]), m.ids, m.cams, q.ids, q.cams, pooling="max")
        multi = retrieval.evaluate(retrieval.distances(pooled, pick(feats["g"])), q.ids, q.cams, g.ids, g.cams,
                                   ap="official", ranks=(1,))
        got = scores[name]
        assert got["map"] == pytest.approx(single.mAP, abs=1e-6)
        assert [got["rank1"], got["rank5"], got["rank10"]] == pytest.approx([single.cmc[1], single.cmc[5], single.cmc[10]])
        assert got["mq_map"] == pytest.approx(multi.mAP, abs=1e-6) and got["mq_rank1"] == pytest.approx(multi.cmc[1])
    assert "mq_map" not in retrieval_scores(cohort, data, batch_size=3)["ensemble"]
    assert all(model.training for model in models)  # evaluated in eval mode, left in train mode


# ---- what a record's summary holds of retrieval scores ----

def _epoch(k: int, last: bool = False) -> dict:
    scores = {"map": 0.1 * k, "rank1": 0.2 * k, "rank5": 0.3, "rank10": 0.4, **({"mq_map": 0.5, "mq_rank1": 0.6} if last else {})}
    return {"epoch": k, "train": {}, "test": {"student_0": scores}}


def test_a_retrieval_summary_ranks_by_map_and_keeps_the_final_scores():
    epochs = [_epoch(1), _epoch(3), _epoch(2, last=True)]
    summary = summarise(epochs, [2])["student_0"]
    assert summary == {"final_map": pytest.approx(0.2), "final_rank1": pytest.approx(0.4), "final_rank5": 0.3,
                       "final_rank10": 0.4, "final_mq_map": 0.5, "final_mq_rank1": 0.6, "best_map": pytest.approx(0.3),
                       "best_epoch": 2, "last2_map": pytest.approx(0.25)}
    record = {"epochs": epochs, "summary": {"student_0": summary}}
    assert recorded_value(record, "student_0", "final", "mq_map") == 0.5
    assert recorded_value(record, "student_0", "best", "rank1") == pytest.approx(0.6)
    assert math.isnan(recorded_value(record, "student_0", "final", "map", epoch=4))
    with pytest.raises(ConfigError, match="mq_map is recorded at the final epoch only"):
        recorded_value(record, "student_0", "best", "mq_map")


# ---- training on tiny_market1501 end to end ----

MARKET = ["dataset=tiny_market1501", "epochs=2", "batch_size=16", "optimizer=adam", "lr=0.001",
          "adam_beta1=0.5", "weight_decay=0.00004", "schedule=constant", "augment=flip", "normalize=inception",
          "label_smoothing=0.1", "weight_ema=0.99", "multiquery=mean", "device=cpu", "precision=fp32",
          "memory_format=contiguous"]


COHORT = ["method=dml", "arch=reid_tiny,reid_tiny", *MARKET]


def _dml(out, *extra):
    from conftest import run

    return run(out, *COHORT, *extra)


def test_dml_on_a_retrieval_set_records_map_and_multi_query_at_the_end(tmp_path):
    record = _dml(tmp_path / "run")
    first, last = (e["test"] for e in record["epochs"])
    assert list(last) == ["student_0", "student_1", "ensemble"]
    assert set(first["student_0"]) == {"map", "rank1", "rank5", "rank10"}  # multi-query at the last epoch alone
    assert set(last["ensemble"]) == {"map", "rank1", "rank5", "rank10", "mq_map", "mq_rank1"}
    assert all(0 <= v <= 1 for scores in last.values() for v in scores.values())
    assert record["summary"]["student_1"]["final_mq_map"] == last["student_1"]["mq_map"]
    assert record["data"]["chance_acc"] == 0.0 and record["status"] == "ok"


def test_model_pt_holds_the_moving_average_and_evaluates_to_the_record(tmp_path):
    from rdml.data.base import load_dataset
    from rdml.train.cohort import rebuild
    from rdml.train.evaluate import evaluate

    record = _dml(tmp_path / "run")
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    data = load_dataset("tiny_market1501", split_seed=0, test_fraction=0.25, normalize="inception")
    cohort, method = rebuild(saved, record["config"], data, torch.device("cpu"))
    assert evaluate(cohort, data, method=method, multiquery="mean") == record["epochs"][-1]["test"]
    plain = _dml(tmp_path / "plain", "weight_ema=0")  # the trained weights themselves score otherwise
    assert plain["epochs"][-1]["test"] != record["epochs"][-1]["test"]


def test_a_killed_retrieval_run_with_a_moving_average_resumes_to_the_same_numbers(tmp_path):
    from conftest import resumes_to_the_uninterrupted_run

    resumes_to_the_uninterrupted_run(tmp_path, *COHORT)


@pytest.mark.bad_input
@pytest.mark.parametrize("keys, message", [
    (["method=okdph"], "method=okdph does not train on dataset tiny_market1501's task"),
    (["val_fraction=0.2"], "val_fraction=0.2: a retrieval set's evaluation"),
    (["input_noise=0.5"], "input_noise=0.5: a retrieval set's evaluation"),
    (["dataset=digits", "arch=mlp", "augment=none", "normalize=dataset"], "multiquery=mean: dataset digits has no queries"),
    (["optimizer=sgd"], "adam_beta1=0.5: only optimizer=adam and adamw read adam_beta1"),
    (["multiquery=median"], "multiquery"),
    (["weight_ema=1"], "weight_ema"),
])
def test_refusals_before_any_work(tmp_path, keys, message):
    from rdml.config import load_config, resolve

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        args = dict(item.split("=", 1) for item in [*MARKET, "arch=reid_tiny", f"out={tmp_path / 'run'}", *keys])  # later wins
        resolve(load_config(None, [f"{k}={v}" for k, v in args.items()]))
    assert not (tmp_path / "run").exists()


@pytest.mark.bad_input
def test_an_architecture_without_features_is_refused_on_a_retrieval_set(tmp_path, monkeypatch):
    from rdml.config import load_config, resolve
    from rdml.models.catalog import ARCHITECTURES, Architecture

    monkeypatch.setitem(ARCHITECTURES._items, "bare", Architecture("bare", "reid:reid_tiny", ("pedestrians",)))
    with pytest.raises(ConfigError, match="arch bare does not give"):
        resolve(load_config(None, [*MARKET, "arch=bare"]))


@pytest.mark.bad_input
def test_rdml_eval_refuses_a_retrieval_run_and_says_where_its_scores_are(tmp_path):
    from rdml.analysis.evaluate import evaluate_run

    _dml(tmp_path / "run", "epochs=1")
    with pytest.raises(ConfigError, match="a retrieval set with no classification test split.*rdml audit --evaluate"):
        evaluate_run(tmp_path / "run")
