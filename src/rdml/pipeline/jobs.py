"""What Snakemake and DVC call: train the runs of one job, and prepare a data set.

`rdml pipeline run STUDY JOB` trains the runs of one job on one GPU slot, writes each run's metrics
file and then the job file. Snakemake hands it the job exactly as its DAG planned it (`--spec`,
planned from Snakemake's config, overrides included); DVC, which has no overrides, lets it plan the
job from params.yaml.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from rdml import paths
from rdml.config import config_from_mapping, resolve
from rdml.data.base import load_dataset
from rdml.data.catalog import DATASETS, KINDS, RESOURCES
from rdml.io import atomic_write_json
from rdml.methods import METHODS
from rdml.metrics import METRICS, PRIMARY, primary_of
from rdml.pipeline.console import LOGGER, label_output
from rdml.pipeline.slots import acquire_gpu, acquire_gpus
from rdml.study.params import load_params, slot_count, thread_count
from rdml.train.loop import train, train_distributed

__all__ = ["run_job", "measure_job", "job_threads", "metrics_of", "prepare_dataset", "prepare_weights"]

PARAMS = "params.yaml"


def job_threads(threads: int | None, params_path: str = PARAMS) -> int:
    """The torch threads of a job: the command line's, else params.yaml's `threads` (default 1), never
    torch's own choice of every core, so that a run's numbers do not depend on which command started it."""
    if threads is None:
        threads = thread_count(load_params(params_path)) if Path(params_path).is_file() else 1
    return thread_count({"threads": threads})


def _on_slot(gpus, per_gpu: int, threads: int, ranks: int = 1):
    """Take a GPU slot (rdml.pipeline.slots), or `ranks` whole GPUs for a distributed cohort, and set the job's
    threads; a shared GPU's memory is capped at 1/N."""
    slot = acquire_gpus(ranks, slot_count(gpus), per_gpu=per_gpu) if ranks > 1 else acquire_gpu(slot_count(gpus), per_gpu=per_gpu)
    torch.set_num_threads(threads)
    if slot.sharing > 1 and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(1 / slot.sharing, 0)
    return slot


def run_job(spec: dict, gpus: int | str = "auto", threads: int | None = None, per_gpu: int = 1,
            metric: str = "final") -> list[dict]:
    """Train the runs of a job spec (rdml.study.runs.Job.spec) one after the other; returns their records.

    A job runs because its outputs are missing or out of date, so each run trains anew, unless its
    finished run is already what it would train (same configuration, code, data and teacher: a job
    file lost to a failed job); an interrupted run's checkpoint (same configuration) is resumed.
    `threads`: None reads params.yaml's (job_threads). Says one line per finished run (run_line), at INFO;
    `metric`: the study's (final, best, last5, ...), which that line shows.
    """
    study, job_id = spec["study"], spec["job"]
    threads = job_threads(threads)
    configs = {run_id: config_from_mapping(keys) for run_id, keys in spec["runs"].items()}
    for cfg in configs.values():
        resolve(cfg)  # every run of the job is valid before any file of any run is touched
    # CUDA reads CUDA_VISIBLE_DEVICES when it first starts, which torch delays until first use.
    ranks = max(resolve(cfg).students if resolve(cfg).distributed else 1 for cfg in configs.values())
    slot = _on_slot(gpus, per_gpu, threads, ranks)
    try:
        command = ["rdml", "pipeline", "run", study, job_id]
        records = {run_id: _train_run(study, run_id, cfg, command, slot.source, metric) for run_id, cfg in configs.items()}
        atomic_write_json(paths.job_file(study, job_id), {
            "study": study,
            "job": job_id,
            "runs": {run_id: {"status": r["status"], "config_sha256": r["config_sha256"], "model_sha256": r["final_model"]["sha256"]}
                     for run_id, r in records.items()},
        })
    finally:
        slot.release()
    return list(records.values())


def _train_run(study: str, run_id: str, cfg, command: list[str], gpu_slot: str, metric: str = "final") -> dict:
    """The job runs because something it depends on changed: train anew, unless an interrupted run of
    the same configuration can resume or the finished run is already what it would train (rdml.train.loop
    same_run); replace what is stale or damaged only once all is validated."""
    started, record_file = time.perf_counter(), Path(cfg.out) / "record.json"
    before = record_file.stat().st_mtime_ns if record_file.is_file() else None
    label_output(run_id)
    LOGGER.debug("%s %s: training (%s)", study, run_id, cfg.out)
    try:
        if resolve(cfg).distributed:  # one process per student: torchrun on this machine, srun in a SLURM allocation
            record = train_distributed(cfg, argv=command, threads=torch.get_num_threads(), replace=True, retrain=True,
                                       environment_extra={"gpu_slot": gpu_slot})
        else:
            record = train(cfg, argv=command, progress=False, replace=True, retrain=True,
                           environment_extra={"gpu_slot": gpu_slot})
        atomic_write_json(paths.metrics_file(study, run_id), metrics_of(record))
    except Exception as exc:
        LOGGER.info("%s %s: failed (%s: %s) after %.1f s", study, run_id, type(exc).__name__, exc, time.perf_counter() - started)
        raise
    finally:
        label_output("")
    kept = before is not None and record_file.stat().st_mtime_ns == before  # a finished run checked, not trained
    LOGGER.info("%s", run_line(study, run_id, record, METHODS[cfg.method].members(resolve(cfg)), metric,
                               time.perf_counter() - started, kept))
    return record


def run_line(study: str, run_id: str, record: dict, members, metric: str, seconds: float, kept: bool = False) -> str:
    """A finished run in one line: its id, status, the study's metric of each member (students, branches)
    and the seconds it took (its epochs' when it was already trained and only checked)."""
    summary = record.get("summary") or {}
    last = (record.get("epochs") or [{}])[-1].get("test") or {}
    primary = primary_of(next(iter(last.values()))) if last else METRICS[PRIMARY]  # top-1, or mAP on a retrieval set
    key = f"{metric}_{primary.recorded}"
    values = " ".join(f"{summary[m][key]:.4f}" if summary.get(m, {}).get(key) is not None else "-" for m in members)
    trained = record.get("epoch_seconds") or []
    took = f"already trained ({sum(trained):.1f} s of epochs)" if kept else f"{seconds:.1f} s"
    return f"{study} {run_id}: {record['status']}, {metric} test {primary.recorded} {values}, {took}"


def measure_job(spec: dict, gpus: int | str = "auto", threads: int | None = None, per_gpu: int = 1) -> str:
    """Measure one run's final models (rdml.analysis.measure) on one GPU slot; returns the file written."""
    from rdml.analysis.measure import measure_run

    slot = _on_slot(gpus, per_gpu, job_threads(threads))
    try:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        out = paths.measures_file(spec["study"], spec["run"])
        atomic_write_json(out, measure_run(spec["directory"], spec["measurements"], device))
    finally:
        slot.release()
    return out


def metrics_of(record: dict) -> dict:
    """The DVC metrics of a run: status and the summary accuracies."""
    return {"status": record["status"], "label": record["label"], **(record["summary"] or {})}


def prepare_dataset(name: str, data_dir: str = "data") -> dict:
    """Download a data set where that applies (checksums verified), load it once, write its stamp; or
    fetch a resource that data sets share (rdml.data.catalog.RESOURCES)."""
    if name in RESOURCES:
        import importlib

        module, function = RESOURCES[name].fetch.split(":")
        path, sha256 = getattr(importlib.import_module(f"rdml.data.{module}"), function)(data_dir)
        summary = {"name": name, "file": str(path), "sha256": sha256}
        atomic_write_json(paths.data_stamp(name), summary)
        return summary
    source = DATASETS[name]
    if source.downloaded:
        import importlib

        importlib.import_module(f"rdml.data.{source.module}").prepare(name, data_dir)
    data = load_dataset(name, split_seed=0, test_fraction=0.25, data_dir=data_dir,
                        normalize=KINDS[source.spec.kind].normalizations[0])
    summary = {"name": name, "files": data.fingerprint["files"], "num_classes": data.num_classes,
               "input_shape": list(data.spec.input_shape), "rows": len(data.y_train) + len(data.y_test)}
    atomic_write_json(paths.data_stamp(name), summary)
    return summary


def prepare_weights(arch: str, data_dir: str = "data", source: str | None = None) -> dict:
    """Fetch an architecture's published weights (timm's hub or torchvision's address, or the local file `source`),
    write its stamp."""
    from rdml.models.pretrained import fetch_weights

    summary = fetch_weights(arch, data_dir, source)
    atomic_write_json(paths.weights_stamp(arch), summary)
    return summary
