"""Test metrics per epoch, the run's summary, and divergence detection."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable

import numpy as np
import torch

from rdml import retrieval
from rdml.data.base import Dataset
from rdml.metrics import LOSS, METRICS, PRIMARY, RANKS, RETRIEVAL_PRIMARY
from rdml.methods.base import Method, student_logits, student_predictions, with_ensemble

__all__ = ["evaluate", "split_log_probs", "split_features", "retrieval_scores", "AP_RULE", "multiquery_at", "find_divergence", "divergence_after", "input_noise", "evaluation_noise",
           "EvaluationNoise", "seed_evaluation_draws"]


def input_noise(std: float, generator: torch.Generator) -> Callable | None:
    """x + N(0, std²) noise drawn from the CPU `generator` (reproducible on any device); None for std 0.
    The OKDPH supplement's Noisy setting adds it to normalised training and test images alike, anew on
    every access (tianlizhang/OKDPH src/data/cifar_noisy.py L16–28)."""
    if not std:
        return None
    return lambda x: x + std * torch.randn(x.shape, generator=generator).to(x.device, x.dtype)


class EvaluationNoise:
    """The test rows' noise of one epoch, N(0, std²), drawn for each network on its own: `noise(x, network)`.

    The official noisy test runs each network over the test loader in turn (tianlizhang/OKDPH src/OKDPH.py
    L131–133, `test` L18–30), and every pass draws each image's noise again (src/data/cifar_noisy.py L25–28,
    `torch.randn_like(image)` per image, in the loader's workers): every network sees noise of its own, fresh
    every epoch. Those draws come from the DataLoader workers' generators, seeded from a base seed that each
    pass draws from the process's global generator (torch/utils/data/dataloader.py `_base_seed`, _utils/worker.py
    `seed = base_seed + worker_id`), so they cannot be drawn again. Here network k (the students in order,
    then the method's own models, as `split_log_probs` lists them) draws from a CPU generator of its own,
    seeded from the run's seed, the epoch and k alone, batch after batch in row order: a rerun and the audit
    draw the same noise on any device. Network 0 keeps the stream that every network shared before.
    One draw per batch is the same stream as the official one per image wherever an image holds a multiple
    of 16 values (CIFAR's 3×32×32: tests/test_fidelity_okdph.py), so the noise does not depend on the
    batch size there."""

    def __init__(self, std: float, seed: int, epoch: int):
        self.std, self.seed, self.epoch = std, seed, epoch
        self._generators: dict[int, torch.Generator] = {}

    def generator_seed(self, network: int) -> int:
        return self.seed * 1_000_003 + self.epoch + 700_000_000 + 10_000_000 * network

    def __call__(self, x: torch.Tensor, network: int = 0) -> torch.Tensor:
        if network not in self._generators:
            self._generators[network] = torch.Generator().manual_seed(self.generator_seed(network))
        return x + self.std * torch.randn(x.shape, generator=self._generators[network]).to(x.device, x.dtype)


def evaluation_noise(std: float, seed: int, epoch: int) -> EvaluationNoise | None:
    """The test rows' noise of one epoch (`EvaluationNoise`), from the run's seed and the epoch alone: the audit
    draws it again; None for std 0."""
    return EvaluationNoise(std, seed, epoch) if std else None


def seed_evaluation_draws(models: list, split: str) -> None:
    """Give every module that draws at random in eval mode (an `evaluation_draws` attribute, such as the dropout
    of `charcnn_as_released`, which the released CharCNN evaluation leaves on: parklize/rdml
    text-clf/Model_CharCNN/utils.py L124–137) one CPU generator per model, seeded from the split and the model's
    place alone: every evaluation of the same weights, in training or in the audit, on any device, draws the same
    masks, and the training stream is not touched."""
    for index, model in enumerate(models):
        drawing = [m for m in model.modules() if hasattr(m, "evaluation_draws")]
        if drawing:
            generator = torch.Generator().manual_seed(900_000_000 + 1_000 * (zlib.crc32(split.encode()) % 100_000) + index)
            for module in drawing:
                module.evaluation_draws = generator


ACC, LOSS_KEY = METRICS[PRIMARY].recorded, METRICS[LOSS].recorded  # the keys of a record's scores


@torch.no_grad()
def evaluate(cohort, data: Dataset, extra: dict[str, Callable] | None = None, batch_size: int = 1024,
             split: str = "test", noise: Callable | None = None, method=None, multiquery: str | None = None) -> dict:
    """Loss, accuracy and mean prediction entropy on the test (or validation) split of every output the
    run's `method` declares (rdml.methods.base.Method.predict and .combine); without one, of each student,
    the cohort's mean prediction and any `extra` model. A retrieval set's test is its queries against its
    gallery (`retrieval_scores`), with the multi-query scores where `multiquery` names their pooling."""
    if data.probes is not None:
        return retrieval_scores(cohort, data, batch_size=batch_size, multiquery=multiquery)
    log_probs, labels = split_log_probs(cohort, data, split, extra=extra, batch_size=batch_size, noise=noise,
                                        method=method)
    return {name: _scores(lp, labels) for name, lp in log_probs.items()}


@torch.no_grad()
def split_log_probs(cohort, data: Dataset, split: str, *, extra: dict | None = None, batch_size: int = 1024,
                    noise: Callable | None = None, method=None,
                    dtype: torch.dtype = torch.float32) -> tuple[dict, torch.Tensor]:
    """Log-probabilities in `dtype` of every evaluated output (see `evaluate`) on a split of the data set
    (read through its loader), by name, and the split's labels: every network in eval mode (the students,
    and the extra models, as in training), no augmentation. What the audit and the analyses read of a
    rebuilt run (rdml.train.cohort.rebuild)."""
    extra = method.extra_models() if method is not None else (extra or {})
    per_network = isinstance(noise, EvaluationNoise)
    if method is not None and not (per_network and type(method).predict is Method.predict):
        predict = method.predict  # a method's own predict takes a list of inputs, one per network, under such noise
    else:
        predict = lambda x, c: _network_predictions(x, c, extra)  # noqa: E731
    models = [s.model for s in cohort] + [m for m in extra.values() if isinstance(m, torch.nn.Module)]
    for m in models:
        m.eval()
    seed_evaluation_draws(models, split)
    parts: dict[str, list] = {}
    labels = []
    for x, y in data.eval_batches(split, batch_size):
        labels.append(y)
        if per_network:  # each network's own draw (EvaluationNoise)
            x = [noise(x, k) for k in range(len(cohort) + len(extra))]
        elif noise is not None:
            x = noise(x)
        for name, logits in predict(x, cohort).items():
            parts.setdefault(name, []).append(torch.log_softmax(logits.to(dtype), dim=-1))
    for m in models:
        m.train()
    whole = {name: torch.cat(lp) for name, lp in parts.items()}
    return (method.combine(whole) if method is not None else with_ensemble(whole)), torch.cat(labels)


def multiquery_at(multiquery: str | None, epoch: int, epochs: int) -> str | None:
    """The multi-query pooling a run's evaluation after `epoch` of `epochs` scores with: its key's at the last epoch
    (gt_bbox holds more images than query and gallery together, so not every epoch), else None."""
    return multiquery if multiquery not in (None, "none") and epoch == epochs else None


AP_RULE = "official"  # the trapezoid AP of the Market-1501 evaluation the DML README points to (rdml.retrieval)


@torch.no_grad()
def split_features(cohort, data: Dataset, split: str, batch_size: int = 1024) -> list[np.ndarray]:
    """Each student's pooled features (`model.features`, the re-ID networks' last pooling layer: rdml.models.reid)
    of a split's rows in row order, float64, every network in eval mode, no augmentation."""
    models = [s.model for s in cohort]
    for m in models:
        m.eval()
    parts: list[list] = [[] for _ in models]
    for x, _ in data.eval_batches(split, batch_size):
        for part, model in zip(parts, models):
            part.append(model.features(x).to(torch.float64).cpu())
    for m in models:
        m.train()
    return [torch.cat(part).numpy() for part in parts]


def retrieval_scores(cohort, data: Dataset, *, batch_size: int = 1024, multiquery: str | None = None) -> dict:
    """mAP and CMC rank-k (rdml.metrics.RANKS) of every student's features, queries against the gallery, and of
    the cohort's `ensemble`: the students' features concatenated, as the official DML evaluation concatenates
    its networks' features (eval_models.py L66-67) and DML Fig. 3b matches on them; each feature L2-normalised
    before the distance (rdml.retrieval). `multiquery` ("mean" or "max"): also the scores of each query's
    identity and camera pooled over the multiquery rows (rdml.retrieval.pool_queries)."""
    query, gallery = split_features(cohort, data, "query", batch_size), split_features(cohort, data, "gallery", batch_size)
    q_ids, q_cams = (t.numpy() for t in data.probe_labels("query"))
    g_ids, g_cams = (t.numpy() for t in data.probe_labels("gallery"))
    if multiquery is not None:
        rows = split_features(cohort, data, "multiquery", batch_size)
        m_ids, m_cams = (t.numpy() for t in data.probe_labels("multiquery"))
    outputs = {f"student_{k}": k for k in range(len(cohort))}
    if len(cohort) > 1:
        outputs["ensemble"] = None
    scores = {}
    for name, k in outputs.items():
        q = query[k] if k is not None else np.concatenate(query, axis=1)
        g = gallery[k] if k is not None else np.concatenate(gallery, axis=1)
        single = retrieval.evaluate(retrieval.distances(q, g), q_ids, q_cams, g_ids, g_cams, ap=AP_RULE, ranks=RANKS)
        scores[name] = {RETRIEVAL_PRIMARY: single.mAP, **{f"rank{r}": single.cmc[r] for r in RANKS}}
        if multiquery is not None:
            m = rows[k] if k is not None else np.concatenate(rows, axis=1)
            mq = retrieval.pool_queries(m, m_ids, m_cams, q_ids, q_cams, pooling=multiquery)
            multi = retrieval.evaluate(retrieval.distances(mq, g), q_ids, q_cams, g_ids, g_cams, ap=AP_RULE, ranks=(1,))
            scores[name].update({"mq_map": multi.mAP, "mq_rank1": multi.cmc[1]})
    return scores


def _network_predictions(x, cohort, extra: dict) -> dict:
    """`student_predictions`, where x may be a list of inputs, one per network: the students' (student k on
    x[k]), then the extra models' in their order."""
    if not isinstance(x, (list, tuple)):
        return student_predictions(x, cohort, extra)
    if len(x) != len(cohort) + len(extra):
        raise ValueError(f"{len(x)} inputs for {len(cohort)} students and {len(extra)} other models")
    logits = {f"student_{k}": z for k, z in enumerate(student_logits(x[: len(cohort)], cohort))}
    logits.update({name: model(inputs) for (name, model), inputs in zip(extra.items(), x[len(cohort):])})
    return logits


def _scores(log_probs: torch.Tensor, labels: torch.Tensor) -> dict:
    return {
        LOSS_KEY: torch.nn.functional.nll_loss(log_probs, labels).item(),
        ACC: (log_probs.argmax(-1) == labels).sum().item() / len(labels),  # top-1, as rdml.metrics computes it
        "entropy": -(log_probs.exp() * log_probs).sum(-1).mean().item(),
    }


def find_divergence(epochs: list[dict], chance: float, margin: float, members: Iterable[str] | None = None) -> dict | None:
    """A non-finite training loss, or a member of the cohort (`members`, by default the students) back at
    chance accuracy after having been above it."""
    last = epochs[-1]
    bad = sorted(k for k, v in last["train"].items() if not math.isfinite(v))
    if bad:
        return {"epoch": last["epoch"], "reason": f"non-finite training loss ({', '.join(bad)})", "stopped": True}
    watched = None if members is None else set(members)
    for name, scores in last["test"].items():
        if not (name.startswith("student_") if watched is None else name in watched) or ACC not in scores:
            continue  # retrieval scores have no chance level: a non-finite loss is what marks them diverged
        previous_best = max((e["test"][name][ACC] for e in epochs[:-1]), default=0.0)
        if previous_best > chance + 2 * margin and scores[ACC] <= chance + margin:
            return {
                "epoch": last["epoch"],
                "reason": f"{name} fell back to chance accuracy ({scores[ACC]:.4f} <= {chance:.4f} + {margin}) "
                f"after reaching {previous_best:.4f}",
                "stopped": False,  # a crashed student stays in the cohort, as in the DML-vs-KD study
            }
    return None


def divergence_after(diverged: dict | None, epochs: list[dict], chance: float, margin: float,
                     members: Iterable[str] | None = None) -> dict | None:
    """The run's `diverged` entry once its latest epoch is in: a first finding, or a stopping one that
    follows a crash (the crash kept as `earlier`); what the loop records and the audit replays."""
    found = find_divergence(epochs, chance, margin, members)
    if found and (not diverged or found["stopped"] and not diverged["stopped"]):
        return {**found, "earlier": diverged} if diverged else found
    return diverged
