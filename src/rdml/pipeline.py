"""What Snakemake and DVC call: one planned job, and the DVC stages generated from the plan.

`rdml pipeline run STUDY JOB` trains the runs of one job of params.yaml on one GPU slot, writes each
run's metrics file and then the job file; `rdml pipeline dvc-yaml` writes dvc.yaml with one stage per
job of the studies to build, so both tools execute the same jobs with the same command.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml

from rdml.config import config_from_mapping
from rdml.data import load_dataset
from rdml.plan import RESULTS, Job, Run, find_job, load_params, plan_jobs, plan_study, studies_to_build
from rdml.record import atomic_write_bytes, atomic_write_json
from rdml.slots import acquire_gpu
from rdml.trainer import train
from rdml.vision import VISION_DATASETS, write_tensor_cache

__all__ = ["run_planned", "metrics_of", "dvc_stages", "write_dvc_yaml", "DATA_STAGE_OUT"]

CODE_DEP = "src/rdml"
DATA_STAGE_OUT = RESULTS + "/data/{dataset}.json"


def run_planned(study: str, job_id: str, params_path: str = "params.yaml", threads: int | None = None) -> list[dict]:
    """Train the runs of job `job_id` of `study` as params.yaml defines them; returns their records.

    A job runs because its outputs are missing or out of date, so each run trains anew; only an
    interrupted run's checkpoint (same configuration) is resumed.
    """
    params = load_params(params_path)
    job = find_job(params, study, job_id)
    gpus = params.get("gpus", "auto")
    # CUDA reads CUDA_VISIBLE_DEVICES when it first starts, which torch delays until first use.
    slot = acquire_gpu(None if gpus == "auto" else int(gpus))
    if threads:
        torch.set_num_threads(threads)
    command = ["rdml", "pipeline", "run", study, job.id]
    records = [_train_run(run, command, slot.source) for run in job.runs]
    atomic_write_json(job.file, {
        "study": study,
        "job": job.id,
        "runs": {run.id: {"status": r["status"], "config_sha256": r["config_sha256"], "model_sha256": r["final_model"]["sha256"]}
                 for run, r in zip(job.runs, records)},
    })
    slot.release()
    return records


def _train_run(run: Run, command: list[str], gpu_slot: str) -> dict:
    for stale in ("record.json", "model.pt"):
        (Path(run.directory) / stale).unlink(missing_ok=True)
    keys = dict(run.keys)
    if run.teacher:
        keys["teacher"] = run.teacher_directory
    cfg = config_from_mapping({**keys, "out": run.directory})
    record = train(cfg, argv=command, progress=False, replace=True,
                   environment_extra={"gpu_slot": gpu_slot})
    atomic_write_json(run.metrics, metrics_of(record))
    return record


def metrics_of(record: dict) -> dict:
    """The DVC metrics of a run: status and the summary accuracies."""
    return {"status": record["status"], "label": record["label"], **(record["summary"] or {})}


def dvc_stages(params: dict, studies: list[str]) -> dict:
    """dvc.yaml's stages: prepare each data set, train each job, build each study's tables."""
    stages: dict[str, dict] = {}
    for study in studies:
        runs = plan_study(params, study)
        for dataset in sorted({r.dataset for r in runs}):
            downloaded = [f"data/{dataset}"] if dataset in VISION_DATASETS else []  # the DVC-tracked data folder
            stages[f"prepare-{dataset}"] = {
                "cmd": f"rdml pipeline prepare {dataset}",
                "deps": [CODE_DEP],
                "outs": [*downloaded, DATA_STAGE_OUT.format(dataset=dataset)],
            }
        for job in plan_jobs(params, study):
            stages[job.stage] = _train_stage(job)
        stages[f"tables-{study}"] = {
            "cmd": f"rdml tables {study}",
            "deps": [CODE_DEP, *(r.directory for r in runs)],
            "params": [f"studies.{study}.metric"],
            "outs": [f"{RESULTS}/{study}/tables"],
        }
    return stages


def _train_stage(job: Job) -> dict:
    deps = [CODE_DEP, DATA_STAGE_OUT.format(dataset=job.dataset)]
    deps += sorted({f"{run.teacher_directory}/model.pt" for run in job.runs if run.teacher})
    stage = {"cmd": f"rdml pipeline run {job.study} {job.id}", "deps": deps}
    if job.params:
        stage["params"] = job.params
    stage["outs"] = [*(run.directory for run in job.runs), {job.file: {"cache": False}}]
    stage["metrics"] = [{run.metrics: {"cache": False}} for run in job.runs]
    return stage


def write_dvc_yaml(params_path: str = "params.yaml", out: str = "dvc.yaml", studies: list[str] | None = None) -> str:
    params = load_params(params_path)
    body = {"stages": dvc_stages(params, studies_to_build(params, studies))}
    text = "# Generated from params.yaml by `rdml pipeline dvc-yaml`; do not edit by hand.\n" + yaml.safe_dump(
        body, sort_keys=False, width=200
    )
    if out == "-":
        sys.stdout.write(text)
    else:
        atomic_write_bytes(out, text.encode())
    return text


def prepare_dataset(name: str, data_dir: str = "data") -> dict:
    """Download a data set where that applies (checksums verified), load it once, write its fingerprint."""
    if name in VISION_DATASETS:
        write_tensor_cache(name, data_dir)
    data = load_dataset(name, split_seed=0, test_fraction=0.25, data_dir=data_dir)
    summary = {"name": name, "files": data.fingerprint["files"], "num_classes": data.num_classes,
               "input_shape": list(data.input_shape), "rows": len(data.y_train) + len(data.y_test)}
    path = Path(DATA_STAGE_OUT.format(dataset=name))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, summary)
    return summary
