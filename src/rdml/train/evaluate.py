"""Test metrics per epoch, the run's summary, and divergence detection."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from rdml.data.base import Dataset

__all__ = ["evaluate", "find_divergence", "input_noise", "evaluation_noise"]


def input_noise(std: float, generator: torch.Generator) -> Callable | None:
    """x + N(0, std²) noise drawn from the CPU `generator` (reproducible on any device); None for std 0.
    The OKDPH supplement's Noisy setting adds it to normalised training and test images alike, anew on
    every access (tianlizhang/OKDPH src/data/cifar_noisy.py L16–28)."""
    if not std:
        return None
    return lambda x: x + std * torch.randn(x.shape, generator=generator).to(x.device, x.dtype)


def evaluation_noise(std: float, seed: int, epoch: int) -> Callable | None:
    """The test rows' noise of one epoch, from the run's seed and the epoch alone: the audit draws it again."""
    return input_noise(std, torch.Generator().manual_seed(seed * 1_000_003 + epoch + 700_000_000))


@torch.no_grad()
def evaluate(cohort, data: Dataset, extra: dict[str, Callable] | None = None, batch_size: int = 1024,
             split: str = "test", noise: Callable | None = None) -> dict:
    """Loss, accuracy and mean prediction entropy on the test (or validation) split per student, for the
    cohort's mean prediction, and for any extra model a method names (evaluated in eval mode like the
    students)."""
    x_all, y_all = (data.x_test, data.y_test) if split == "test" else (data.x_val, data.y_val)
    models = [s.model for s in cohort] + [m for m in (extra or {}).values() if isinstance(m, torch.nn.Module)]
    for m in models:
        m.eval()
    log_probs = [[] for _ in cohort]
    extra_log_probs = {name: [] for name in extra or {}}
    for start in range(0, len(y_all), batch_size):
        x = data.inputs(x_all[start : start + batch_size])
        if noise is not None:
            x = noise(x)
        for k, logits in enumerate(cohort.predict(x)):
            log_probs[k].append(torch.log_softmax(logits.float(), dim=-1))
        for name, model in (extra or {}).items():
            extra_log_probs[name].append(torch.log_softmax(model(x).float(), dim=-1))
    for m in models:
        m.train()
    per_student = [torch.cat(lp) for lp in log_probs]
    results = {f"student_{k}": _scores(lp, y_all) for k, lp in enumerate(per_student)}
    if len(cohort) > 1:
        ensemble = torch.logsumexp(torch.stack(per_student), dim=0) - math.log(len(cohort))
        results["ensemble"] = _scores(ensemble, y_all)
    for name, lp in extra_log_probs.items():
        results[name] = _scores(torch.cat(lp), y_all)
    return results


def _scores(log_probs: torch.Tensor, labels: torch.Tensor) -> dict:
    return {
        "loss": torch.nn.functional.nll_loss(log_probs, labels).item(),
        "acc": (log_probs.argmax(-1) == labels).sum().item() / len(labels),
        "entropy": -(log_probs.exp() * log_probs).sum(-1).mean().item(),
    }


def find_divergence(epochs: list[dict], chance: float, margin: float) -> dict | None:
    """A non-finite training loss, or a student back at chance accuracy after having been above it."""
    last = epochs[-1]
    bad = sorted(k for k, v in last["train"].items() if not math.isfinite(v))
    if bad:
        return {"epoch": last["epoch"], "reason": f"non-finite training loss ({', '.join(bad)})", "stopped": True}
    for name, scores in last["test"].items():
        if not name.startswith("student_"):
            continue
        previous_best = max((e["test"][name]["acc"] for e in epochs[:-1]), default=0.0)
        if previous_best > chance + 2 * margin and scores["acc"] <= chance + margin:
            return {
                "epoch": last["epoch"],
                "reason": f"{name} fell back to chance accuracy ({scores['acc']:.4f} <= {chance:.4f} + {margin}) "
                f"after reaching {previous_best:.4f}",
                "stopped": False,  # a crashed student stays in the cohort, as in the DML-vs-KD study
            }
    return None
