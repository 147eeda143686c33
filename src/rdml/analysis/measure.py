"""Measurements of a finished run's final models on its training images, for the DML paper's
analyses (§4.8): the mean prediction entropy and sorted top-5 posterior (Fig. 4c), the entropy of
the teaching signal (DML: each peer; DML_e: the other students' average), and the training loss
after Gaussian noise on every parameter (Figs. 4a/4b, flat minima). The models are loaded through
the same checks as a KD teacher (a finished run, weights matching its record)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from rdml.config import data_keys
from rdml.data.base import Dataset, load_dataset
from rdml.keys import ConfigError
from rdml.train.checkpoint import load_teacher
from rdml.train.integrity import MEASURES_FORMAT, read_record, seal

__all__ = ["MEASURES_FORMAT", "MEASUREMENTS", "train_log_probs", "prediction_statistics", "noisy_losses", "measure_run"]

MEASUREMENTS = ("predictions", "noise")
TOP = 5


@torch.no_grad()
def log_probs_of(model: torch.nn.Module, data: Dataset, x: torch.Tensor, dtype=torch.float32,
                 batch_size: int = 1024) -> torch.Tensor:
    """Log-probabilities of raw inputs `x` (eval mode, float32 forward, no augmentation) in `dtype`."""
    model.eval()
    out = [torch.log_softmax(model(data.inputs(x[i : i + batch_size])).to(dtype), dim=-1)
           for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def train_log_probs(model: torch.nn.Module, data: Dataset) -> torch.Tensor:
    """Log-probabilities of every training image."""
    return log_probs_of(model, data, data.x_train)


def _entropy(log_p: torch.Tensor) -> torch.Tensor:
    """Per-row entropy −Σ p log p in nats (0·log 0 = 0)."""
    return -(log_p.exp() * log_p.nan_to_num(neginf=0.0)).sum(-1)


def prediction_statistics(log_probs: list[torch.Tensor], method: str) -> dict[str, dict]:
    """Per student: mean entropy, mean k-th largest posterior (top1..top5) and, in a cohort, the mean
    entropy of the signal it mimics: each peer's prediction (DML, averaged over peers) or the peers'
    average prediction (DML_e, DML eq. 11)."""
    stats = {}
    for k, log_p in enumerate(log_probs):
        top = log_p.exp().topk(min(TOP, log_p.shape[-1]), dim=-1).values.mean(0)
        stats[f"student_{k}"] = {"entropy": float(_entropy(log_p).mean()),
                                 **{f"top{i + 1}": float(v) for i, v in enumerate(top)}}
        peers = [lp for j, lp in enumerate(log_probs) if j != k]
        if peers and method == "dml_e":
            average = torch.logsumexp(torch.stack(peers), 0) - torch.log(torch.tensor(float(len(peers))))
            stats[f"student_{k}"]["signal_entropy"] = float(_entropy(average).mean())
        elif peers:
            stats[f"student_{k}"]["signal_entropy"] = float(torch.stack([_entropy(p).mean() for p in peers]).mean())
    return stats


@torch.no_grad()
def noisy_losses(model: torch.nn.Module, data: Dataset, sigmas: list[float], draws: int, seed: int) -> dict:
    """Mean training cross-entropy before and after adding N(0, σ²) to every parameter, `draws` times
    per σ; noise from a CPU generator seeded by `seed`, the weights restored after each draw."""
    def loss() -> float:
        return float(F.nll_loss(train_log_probs(model, data), data.y_train))

    saved = [p.detach().clone() for p in model.parameters()]
    generator = torch.Generator().manual_seed(seed)
    result = {"loss": loss()}
    for sigma in sigmas:
        values = []
        for _ in range(draws):
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=generator).to(p) * sigma)
            values.append(loss())
            for p, s in zip(model.parameters(), saved):
                p.copy_(s)
        result[f"loss@{sigma:g}"] = values
    return result


def measure_run(run_dir: str | Path, measurements: dict, device: torch.device) -> dict:
    """The requested measurements of every student of the run in `run_dir`, sealed, with the sha256 of
    the weights and of the record they come from."""
    unknown = sorted(set(measurements) - set(MEASUREMENTS))
    if unknown:
        raise ConfigError(f"measurements {unknown} are not known; allowed: {', '.join(MEASUREMENTS)}")
    run_dir = Path(run_dir)
    record = read_record(run_dir / "record.json")
    cfg = record["config"]
    head = {"format": MEASURES_FORMAT, "run": str(run_dir), "status": record["status"],
            "config_sha256": record["config_sha256"], "run_record_sha256": record.get("record_sha256"),
            "measurements": measurements}
    if record["status"] != "ok":  # a diverged run is counted as diverged in the tables, not measured
        return seal({**head, "model_sha256": None, "students": {}})
    data = load_dataset(cfg["dataset"], **data_keys(cfg)).to(device)
    models, sha = [], None
    for k in range(cfg["students"]):
        model, info = load_teacher(str(run_dir), k, data, device)
        models.append(model.to(device))
        sha = info["sha256"]
    students = {f"student_{k}": {} for k in range(len(models))}
    if "predictions" in measurements:
        for name, values in prediction_statistics([train_log_probs(m, data) for m in models], cfg["method"]).items():
            students[name].update(values)
    if "noise" in measurements:
        spec = measurements["noise"]
        for k, model in enumerate(models):
            students[f"student_{k}"].update(noisy_losses(model, data, spec["sigmas"], spec["draws"], spec["seed"] + k))
    return seal({**head, "model_sha256": sha, "students": students})
