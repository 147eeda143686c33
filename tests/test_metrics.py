"""The registered metrics against independent float64 computations, and a metric where lower is better
driving a table's ranking and its claims' direction (fabricated sealed records, as in test_tables.py)."""

import numpy as np
import pytest
import torch

from rdml.keys import ConfigError
from rdml.metrics import ECE_BINS, METRICS, PRIMARY, Metric
from rdml.study.layouts import LAYOUTS, Claim, Entry, TableSpec
from rdml.study.plan import plan_study
from rdml.report.claims import claims_table
from rdml.report.table import build_tables
from rdml.train.integrity import recorded_value, summarise, write_record


def softmax64(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def hand_ece(p: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Σ_b |B_b|/n · |acc − conf| with bin i = (i/bins, (i+1)/bins] (bin 0 also holds 0), by loops."""
    members: dict[int, list[int]] = {}
    for row in range(len(labels)):
        confidence = p[row].max()
        i = next(b for b in range(bins) if confidence <= (b + 1) / bins)
        members.setdefault(i, []).append(row)
    total = 0.0
    for rows in members.values():
        accuracy = sum(int(np.argmax(p[r]) == labels[r]) for r in rows) / len(rows)
        confidence = sum(float(p[r].max()) for r in rows) / len(rows)
        total += len(rows) / len(labels) * abs(accuracy - confidence)
    return total


@pytest.fixture
def outputs():
    generator = np.random.default_rng(7)
    logits = generator.normal(0.0, 2.0, size=(300, 10))
    logits[:5, :3] = 1.5  # ties: the lower class index ranks first, as argmax
    labels = generator.integers(0, 10, size=300)
    labels[:5] = [0, 1, 2, 1, 0]
    return logits, labels


def test_every_metric_against_an_independent_float64_computation(outputs):
    logits, labels = outputs
    p = softmax64(logits)
    order = np.argsort(-p, axis=1, kind="stable")
    expected = {
        "acc": float(np.mean(order[:, 0] == labels)),
        "top5": float(np.mean([labels[i] in order[i, :5] for i in range(len(labels))])),
        "nll": float(-np.mean(np.log(p[np.arange(len(labels)), labels]))),
        "ece": hand_ece(p, labels, ECE_BINS),
    }
    for name, value in expected.items():
        got = METRICS[name].compute(torch.tensor(logits, dtype=torch.float32), torch.tensor(labels))
        assert got == pytest.approx(value, rel=1e-6, abs=1e-7), name  # float32 logits, float64 metric
        got64 = METRICS[name].compute(torch.tensor(logits), torch.tensor(labels))
        assert got64 == pytest.approx(value, rel=1e-12, abs=1e-14), name
    assert expected["acc"] < expected["top5"] and 0 < expected["ece"] < 1


def test_top1_is_what_training_records_as_acc(outputs):
    """Training's evaluation: argmax of the float32 log-probabilities, hits / n."""
    logits, labels = outputs
    x, y = torch.tensor(logits, dtype=torch.float32), torch.tensor(labels)
    log_probs = torch.log_softmax(x, dim=-1)
    assert METRICS[PRIMARY].compute(x, y) == (log_probs.argmax(-1) == y).sum().item() / len(y)
    assert METRICS["nll"].compute(x, y) == pytest.approx(torch.nn.functional.nll_loss(log_probs, y).item(), rel=1e-6)


def test_ece_bin_edges_and_hand_cases():
    """One row of confidence 0.9 and wrong: ECE 0.9; two rows of 0.5, one right: 0; one right at 13/15: 2/15."""
    probs = torch.tensor([[0.9, 0.1], [0.5, 0.5]], dtype=torch.float64)
    assert METRICS["ece"].of_log_probs(probs[:1].log(), torch.tensor([1])) == pytest.approx(0.9, abs=1e-15)
    # 0.5 and 0.5: argmax 0, right once and wrong once in one bin → |0.5 − 0.5| = 0
    assert METRICS["ece"].of_log_probs(probs[1:].log().expand(2, 2), torch.tensor([0, 1])) == pytest.approx(0.0, abs=1e-15)
    edge = torch.tensor([[2 / 15, 13 / 15]], dtype=torch.float64)  # right with confidence 13/15: |1 − 13/15|
    assert METRICS["ece"].of_log_probs(edge.log(), torch.tensor([1])) == pytest.approx(2 / 15, abs=1e-12)


def test_the_registry_says_each_metric_s_unit_direction_and_record_key():
    retrieval = ["map", "rank1", "rank5", "rank10", "mq_map", "mq_rank1"]  # Market-1501 (rdml.retrieval)
    assert list(METRICS) == ["acc", "top5", "nll", "ece", *retrieval] and PRIMARY == "acc"
    assert [METRICS[n].direction for n in METRICS] == ["higher", "higher", "lower", "lower"] + ["higher"] * 6
    assert [METRICS[n].recorded for n in METRICS] == ["acc", None, "loss", None, *retrieval]  # what training writes
    assert [METRICS[n].task for n in METRICS] == ["classification"] * 4 + ["retrieval"] * 6
    assert METRICS["acc"].display(0.98765) == "98.77" and METRICS["acc"].difference_unit == "points"
    assert METRICS["nll"].unit == "nats" and METRICS["nll"].sign == -1
    with pytest.raises(ValueError, match="metric map scores retrieval from features"):
        METRICS["map"].of_log_probs(torch.zeros(1, 2), torch.tensor([0]))
    with pytest.raises(ConfigError, match="metric='top3' is not allowed; allowed: acc, ece, map, mq_map"):
        METRICS["top3"]
    with pytest.raises(ValueError, match="direction"):
        Metric("x", "x", "%", "sideways", 100.0, 2, lambda lp, y: 0.0)


def test_a_metric_training_does_not_record_cannot_fill_a_table():
    record = {"epochs": [{"test": {"student_0": {"acc": 0.5, "loss": 1.0}}}], "summary": {"student_0": {}}}
    with pytest.raises(ConfigError, match="metric ece is not in training records"):
        recorded_value(record, "student_0", "final", "ece")


# A throwaway metric where lower is better ("error", recorded as "err") and a table layout that reports it.
PARAMS = {"studies": {"t": {"datasets": ["synthetic"], "seeds": [0, 1, 2], "metric": "last5",
                            "err_table": {"archs": ["mlp"]}}}}


def err_table(plan, spec: dict) -> TableSpec:
    arch = spec["archs"][0]
    rows = ["Ind.", "DML"]
    entries = []
    for seed in plan.seeds:
        entries += [Entry("Ind.", ("error",), plan.independent("synthetic", arch, seed)),
                    Entry("DML", ("error",), plan.mutual("synthetic", [arch, arch], 1.0, seed), ("student_0", "student_1"))]
    claims = [Claim("DML < Ind. in error", ("DML", "error"), ("Ind.", "error"), "error")]
    return TableSpec("err_table", "Test {what} (%)", rows, ["error"], entries, bold_columns=["error"], claims=claims,
                     metric="err")


@pytest.fixture
def lower_is_better(monkeypatch):
    err_table.keys = ("archs",)
    monkeypatch.setitem(METRICS._items, "err", Metric("err", "error", "%", "lower", 100.0, 2,
                                                       lambda lp, y: 1 - METRICS[PRIMARY].of_log_probs(lp, y), "err"))
    monkeypatch.setitem(LAYOUTS._items, "err_table", err_table)


def fabricate(root, errors: dict[str, float]) -> None:
    """A sealed record per run: every student's error is errors[method] + 0.01·seed in each of 5 epochs."""
    for run in plan_study(PARAMS, "t"):
        err = errors[run.method] + 0.01 * run.seed
        names = [*run.students, "ensemble"][: len(run.archs) + (len(run.archs) > 1)]
        epochs = [{"test": {n: {"acc": 1 - err, "loss": 1.0, "err": err + 0.001 * e} for n in names}} for e in range(5)]
        write_record(root / run.directory / "record.json", {
            "format": "rdml.run/2", "status": "ok", "config_sha256": run.config_sha256, "config": {"summary_last": [5]},
            "epochs": epochs, "summary": summarise(epochs, [5])})


@pytest.mark.parametrize("dml,verdict", [(0.10, "supported"), (0.30, "contradicted")])
def test_a_lower_is_better_metric_turns_the_claim_and_the_bold_around(tmp_path, lower_is_better, dml, verdict):
    fabricate(tmp_path, {"independent": 0.20, "dml": dml})
    table = build_tables(PARAMS, "t", tmp_path)[0]
    assert table.metric.name == "err"
    assert table.cells[("DML", "error")].mean == pytest.approx(dml + 0.01 + 0.002)  # last-5 mean over seeds
    assert table.best_row("error") == ("DML" if dml < 0.20 else "Ind.")  # the lowest error is the best
    assert "Bold: the lowest mean of a column" in table.caption and "mean test error of the last 5 epochs" in table.caption
    markdown, _, rows, _ = claims_table([table])
    (row,) = rows
    assert row["verdict"] == verdict and row["high"] == ["DML", "error"] and row["low"] == ["Ind.", "error"]
    assert row["difference"] == pytest.approx(100 * (dml - 0.20))  # better − worse, in points: a decrease is better
    assert ("-10.000" if dml < 0.20 else "+10.000") in markdown and "lower is better (error)" in markdown
    assert table.sidecar("t", "last5")["score"] == "err"

