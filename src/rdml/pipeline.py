"""What Snakemake and DVC call: one planned run, and the DVC stages generated from the plan.

`rdml pipeline run STUDY RUN` trains one run of params.yaml on one GPU slot and writes its metrics
file; `rdml pipeline dvc-yaml` writes dvc.yaml with one stage per run of the studies to build, so
both tools execute the same set of runs with the same command.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml

from rdml.config import config_from_mapping
from rdml.data import load_dataset
from rdml.plan import RESULTS, Run, find_run, load_params, plan_study, studies_to_build
from rdml.record import atomic_write_bytes, atomic_write_json
from rdml.slots import acquire_gpu
from rdml.trainer import train
from rdml.vision import VISION_DATASETS, fetch

__all__ = ["run_planned", "metrics_of", "dvc_stages", "write_dvc_yaml", "DATA_STAGE_OUT"]

CODE_DEP = "src/rdml"
DATA_STAGE_OUT = RESULTS + "/data/{dataset}.json"


def run_planned(study: str, run_id: str, params_path: str = "params.yaml", threads: int | None = None) -> dict:
    """Train run `run_id` of `study` as params.yaml defines it; returns its record."""
    params = load_params(params_path)
    run = find_run(params, study, run_id)
    gpus = params.get("gpus", "auto")
    # CUDA reads CUDA_VISIBLE_DEVICES when it first starts, which torch delays until first use.
    slot = acquire_gpu(None if gpus == "auto" else int(gpus))
    if threads:
        torch.set_num_threads(threads)
    keys = dict(run.keys)
    if run.teacher:
        keys["teacher"] = run.teacher_directory
    cfg = config_from_mapping({**keys, "out": run.directory})
    record = train(cfg, argv=["rdml", "pipeline", "run", study, run_id], progress=False, replace=True,
                   environment_extra={"gpu_slot": slot.source})
    Path(run.metrics).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run.metrics, metrics_of(record))
    slot.release()
    return record


def metrics_of(record: dict) -> dict:
    """The DVC metrics of a run: status and the summary accuracies."""
    return {"status": record["status"], "label": record["label"], **(record["summary"] or {})}


def dvc_stages(params: dict, studies: list[str]) -> dict:
    """dvc.yaml's stages: prepare each data set, train each run, build each study's tables."""
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
        for run in runs:
            stages[run.stage] = _train_stage(run)
        stages[f"tables-{study}"] = {
            "cmd": f"rdml tables {study}",
            "deps": [CODE_DEP, *(r.directory for r in runs)],
            "params": [f"studies.{study}.metric"],
            "outs": [f"{RESULTS}/{study}/tables"],
        }
    return stages


def _train_stage(run: Run) -> dict:
    deps = [CODE_DEP, DATA_STAGE_OUT.format(dataset=run.dataset)]
    if run.teacher:
        deps.append(f"{run.teacher_directory}/model.pt")
    stage = {"cmd": f"rdml pipeline run {run.study} {run.id}", "deps": deps}
    if run.params:
        stage["params"] = list(run.params)
    stage["outs"] = [run.directory]
    stage["metrics"] = [{run.metrics: {"cache": False}}]
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
        fetch(name, data_dir)
    data = load_dataset(name, split_seed=0, test_fraction=0.25, data_dir=data_dir)
    summary = {"name": name, "files": data.fingerprint["files"], "num_classes": data.num_classes,
               "input_shape": list(data.input_shape), "rows": len(data.y_train) + len(data.y_test)}
    path = Path(DATA_STAGE_OUT.format(dataset=name))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, summary)
    return summary
