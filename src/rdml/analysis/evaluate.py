"""`rdml eval RUN`: a finished run's saved models scored again on its test split, with metrics the
training record does not keep: top-1 and top-5 accuracy, NLL and expected calibration error, per
student and for the cohort's ensemble.

The run must be one `rdml train` finished `ok`, its record sealed and consistent and its model.pt the
weights the record names (the checks a KD teacher passes: `rdml.train.verified`). The
test split is rebuilt from the record's config (dataset, split_seed, test_fraction, data_dir,
normalize; the labelled subset does not touch it) and must match the record's data fingerprint.

The models run as in training's evaluation (eval mode, float32 forward, batches of 1024, no
augmentation); the scores are computed in float64 from the logits. The ensemble is the mean of the
students' probabilities (log Σ_k p_k − log K, as `rdml.train.evaluate`), scored when K ≥ 2.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rdml.config import data_keys
from rdml.data.base import load_dataset
from rdml.keys import ConfigError
from rdml.metrics import ECE_BINS, METRICS, PRIMARY, TOP_K, calibration_error, top_k_accuracy
from rdml.train.cohort import rebuild
from rdml.train.evaluate import split_log_probs
from rdml.train.verified import VerifiedRun, verified_run

__all__ = ["EVAL_FORMAT", "ECE_BINS", "TOP_K", "evaluate_run", "find_run", "scores", "calibration_error",
           "format_table"]

EVAL_FORMAT = "rdml.eval/1"


def scores(log_probs: torch.Tensor, labels: torch.Tensor, top: int = TOP_K) -> dict:
    """Top-1 and top-k accuracy (k = min(top, classes)), mean NLL in nats and ECE (fractions, not %) of
    log-probabilities `log_probs` (n × C), by the registered metrics (rdml.metrics). Ties rank the lower
    class index first, as argmax does."""
    return {
        "top1": METRICS[PRIMARY].of_log_probs(log_probs, labels),
        f"top{top}": top_k_accuracy(log_probs, labels, top),
        "nll": METRICS["nll"].of_log_probs(log_probs, labels),
        "ece": METRICS["ece"].of_log_probs(log_probs, labels),
    }


def _fail(message: str) -> ConfigError:
    return ConfigError(f"rdml eval: {message}")


def find_run(path: str | Path) -> VerifiedRun:
    """The run at `path` (a run directory or its model.pt) with its record and model file, through the
    checks of rdml.train.verified: a finished `ok` run whose record is sealed and consistent and names the
    model file's sha256."""
    return verified_run(path, "rdml eval: ")


def _device(name: str) -> torch.device:
    from rdml.train.prepare import pick_device

    if name not in ("auto", "cpu", "cuda") and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise _fail(f"--device {name!r} is not allowed; allowed: auto, cpu, cuda, cuda:N")
    try:
        return pick_device(name)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def evaluate_run(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """Scores of every output the run's method evaluates (each student, and their ensemble when K ≥ 2) on its
    test split (float64 log-probabilities of float32 forward passes),
    with the run directory, the model's sha256, the record's config_sha256 and the data fingerprint."""
    run = find_run(path)
    run_dir, record = run.directory, run.record
    device = _device(device) if isinstance(device, str) else device
    cfg = record["config"]
    try:
        data = load_dataset(cfg["dataset"], **data_keys(cfg))
    except ConfigError as exc:
        raise _fail(f"the test split of {run_dir} cannot be rebuilt: {exc}") from None
    if data.probes is not None:
        raise _fail(f"{run_dir} trained on {cfg['dataset']}, a retrieval set with no classification test split; its "
                    "record holds the retrieval scores (mAP, rank-k) of every epoch, and `rdml audit --evaluate` "
                    "evaluates its model.pt again")
    recorded = (record.get("data") or {}).get("sha256")
    if recorded is not None and data.fingerprint["sha256"] != recorded:
        raise _fail(f"data set {cfg['dataset']} on disk no longer matches the fingerprint recorded in "
                    f"{run_dir / 'record.json'} ({data.fingerprint['sha256']} != {recorded})")
    data = data.to(device)
    try:
        cohort, method = rebuild(run.saved, cfg, data, device)  # every network the run's method declares
    except (ConfigError, ValueError, RuntimeError) as exc:
        raise _fail(f"{run.model_file}: its networks cannot be rebuilt ({exc})") from None
    log_probs, labels = split_log_probs(cohort, data, "test", method=method, dtype=torch.float64)
    models = {name: scores(lp, labels) for name, lp in log_probs.items()}
    return {
        "format": EVAL_FORMAT,
        "run": str(run_dir),
        "model": str(run.model_file),
        "model_sha256": run.model_sha256,
        "config_sha256": record["config_sha256"],
        "run_record_sha256": record.get("record_sha256"),
        "data_sha256": data.fingerprint["sha256"],
        "dataset": cfg["dataset"],
        "test_size": len(labels),
        "num_classes": data.num_classes,
        "top_k": min(TOP_K, data.num_classes),
        "ece_bins": ECE_BINS,
        "device": str(device),
        "models": models,
    }


def format_table(result: dict) -> str:
    """The scores as a plain-text table (accuracies and ECE in %, NLL in nats), under a line naming the run."""
    top = f"top{TOP_K}"
    lines = [
        f"{result['run']}: {result['dataset']} test split, {result['test_size']} examples, {result['num_classes']} classes "
        f"(model.pt sha256 {result['model_sha256'][:16]}…)",
        f"{'model':<12} {'top-1 %':>8} {'top-%d %%' % result['top_k']:>8} {'NLL':>8} {'ECE %':>8}",
    ]
    for name, s in result["models"].items():
        lines.append(f"{name:<12} {100 * s['top1']:8.2f} {100 * s[top]:8.2f} {s['nll']:8.4f} {100 * s['ece']:8.2f}")
    return "\n".join(lines)
