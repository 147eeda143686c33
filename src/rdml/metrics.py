"""The metrics rdml reports, registered by name: what each is called, its unit, which way is better,
how a table prints it, and how it is computed from a model's outputs on a split.

One registry, so that records, summaries, tables, claims, figures and the audit look a metric up
instead of spelling its key, and a metric where lower is better (NLL, ECE) is ranked, bolded and
claimed the right way round. Training records two of them per epoch and model under their `recorded`
key: top-1 accuracy as "acc" and the NLL as "loss"; `rdml eval` computes all of them. Torch is
imported inside the compute functions only, so that planning stays torch-free.

Each metric is registered by an assignment (`NAME = _metric(...)`), not a bare call: the code
identity of a result (rdml.code) counts assignments, so editing a metric reruns what reports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rdml.registry import Registry

__all__ = ["Metric", "METRICS", "PRIMARY", "LOSS", "RETRIEVAL_PRIMARY", "TASK_PRIMARY", "RANKS", "primary_of", "DIRECTIONS", "ECE_BINS", "TOP_K", "top_k_accuracy",
           "negative_log_likelihood", "calibration_error", "expected_calibration_error"]

DIRECTIONS = ("higher", "lower")  # which way a metric is better
ECE_BINS = 15  # equal-width confidence bins (i/15, (i+1)/15]
TOP_K = 5


@dataclass(frozen=True)
class Metric:
    """A metric: `function(log_probs, labels)` gives its value on a split (log_probs: n × C float64
    log-probabilities); `compute` takes the model's logits. A table prints value × `scale` with
    `digits` decimals in `unit`; differences of a metric shown in % are in points."""

    name: str
    label: str  # what captions and axes call it ("final test {label}")
    unit: str
    direction: str  # "higher" or "lower": which way is better
    scale: float
    digits: int
    function: Callable | None  # None: a retrieval metric, computed from features by rdml.retrieval
    recorded: str | None = None  # its key in a record's per-epoch scores and summary; None: training does not record it
    task: str = "classification"  # the data sets' task it scores (rdml.data.catalog.TASKS)

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"metric {self.name}: direction={self.direction!r}; allowed: {', '.join(DIRECTIONS)}")

    @property
    def sign(self) -> int:
        """+1 where higher is better, −1 where lower is: sign × value grows as the metric improves."""
        return 1 if self.direction == "higher" else -1

    @property
    def difference_unit(self) -> str:
        """What a difference of two values is in: points for a percentage."""
        return "points" if self.unit == "%" else self.unit

    def compute(self, logits, labels) -> float:
        """The metric of logits (n × C, any float type) against integer labels (n), in float64."""
        import torch

        return self.of_log_probs(torch.log_softmax(logits.to(torch.float64), dim=-1), labels)

    def of_log_probs(self, log_probs, labels) -> float:
        """The metric of log-probabilities that are already normalised (a cohort's mean prediction)."""
        if self.function is None:
            raise ValueError(f"metric {self.name} scores retrieval from features (rdml.retrieval), not predictions")
        return self.function(log_probs, labels)

    def display(self, value: float) -> str:
        return f"{self.scale * value:.{self.digits}f}"


def top_k_accuracy(log_probs, labels, k: int) -> float:
    """The fraction of rows whose label is among the k = min(k, classes) highest; ties rank the lower
    class index first, as argmax does."""
    import torch

    k = min(k, log_probs.shape[-1])
    ranked = torch.sort(log_probs, dim=-1, descending=True, stable=True).indices[:, :k]
    return float((ranked == labels[:, None]).any(dim=-1).to(torch.float64).mean())


def negative_log_likelihood(log_probs, labels) -> float:
    """The mean NLL of the labels, in nats."""
    return float(-log_probs.gather(1, labels[:, None]).mean())


def calibration_error(probs, labels, bins: int = ECE_BINS) -> float:
    """Expected calibration error Σ_b |B_b|/n · |acc(B_b) − conf(B_b)| of probabilities `probs` (n × C).

    The confidence of a row is its largest probability, its prediction the class holding it (ties: the
    lower class index, as argmax). Bins are equal-width over [0, 1]: bin i holds the confidences in
    (i/bins, (i+1)/bins], the first one also 0; empty bins add nothing.
    """
    import torch

    confidence, predicted = probs.max(dim=-1)
    correct = (predicted == labels).to(probs.dtype)
    edges = torch.arange(1, bins, dtype=torch.float64, device=probs.device) / bins  # inner edges i/bins
    index = torch.bucketize(confidence.to(torch.float64), edges, right=False)  # edges[i-1] < c <= edges[i]
    total = 0.0
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        if count:
            total += count / len(labels) * abs(float(correct[members].mean()) - float(confidence[members].mean()))
    return total


def expected_calibration_error(log_probs, labels) -> float:
    return calibration_error(log_probs.exp(), labels)


METRICS: Registry[Metric] = Registry("metric")

PRIMARY = "acc"  # top-1 accuracy: the metric of every table so far, and its key in records and run identities
LOSS = "nll"  # recorded by training as each epoch's test "loss"

def _metric(*fields) -> Metric:
    """Register a metric under its name."""
    metric = Metric(*fields)
    return METRICS.add(metric.name, metric)


TOP1 = _metric(PRIMARY, "accuracy", "%", "higher", 100.0, 2, lambda lp, y: top_k_accuracy(lp, y, 1), PRIMARY)
TOP5 = _metric("top5", "top-5 accuracy", "%", "higher", 100.0, 2, lambda lp, y: top_k_accuracy(lp, y, TOP_K))
NLL = _metric(LOSS, "loss", "nats", "lower", 1.0, 4, negative_log_likelihood, "loss")
ECE = _metric("ece", "expected calibration error", "%", "lower", 100.0, 2, expected_calibration_error)

# Person re-identification (DML §4.1, Market-1501): the benchmark's mAP and CMC rank-k of the single queries, and
# of the multi-query features (a query's identity and camera pooled over gt_bbox), from each network's pooled
# features by rdml.retrieval's official rule (trapezoid AP). Training records the single-query ones every epoch
# and the multi-query ones at the last epoch (rdml.train.evaluate).
RANKS = (1, 5, 10)
RETRIEVAL_PRIMARY = "map"
MAP = _metric(RETRIEVAL_PRIMARY, "mAP", "%", "higher", 100.0, 2, None, RETRIEVAL_PRIMARY, "retrieval")
RANK = {k: _metric(f"rank{k}", f"rank-{k}", "%", "higher", 100.0, 2, None, f"rank{k}", "retrieval") for k in RANKS}
MQ_MAP = _metric("mq_map", "multi-query mAP", "%", "higher", 100.0, 2, None, "mq_map", "retrieval")
MQ_RANK1 = _metric("mq_rank1", "multi-query rank-1", "%", "higher", 100.0, 2, None, "mq_rank1", "retrieval")
TASK_PRIMARY = {"classification": PRIMARY, "retrieval": RETRIEVAL_PRIMARY}  # what a task's summaries rank by


def primary_of(scores: dict) -> Metric:
    """The metric a summary ranks an output's epochs by: top-1 where its scores hold it, else mAP (retrieval)."""
    return METRICS[PRIMARY if METRICS[PRIMARY].recorded in scores else RETRIEVAL_PRIMARY]
