"""dvc.yaml generated from the plan: one stage per data set, per job and per study's tables, with the
same commands Snakemake runs and the code each one depends on (rdml.code)."""

from __future__ import annotations

import re
import shlex
import sys

import yaml

from rdml import paths
from rdml.data.catalog import DATASETS, RESOURCES
from rdml.io import atomic_write_bytes
from rdml.models.pretrained import weights_file
from rdml.code import DATA_CODE, MEASURE_CODE, REPORTING_CODE, TRAINING_CODE, WEIGHTS_CODE, code_paths
from rdml.study.params import load_params, studies_to_build
from rdml.study.plan import plan_jobs, plan_measurements, plan_study
from rdml.study.reported import REPORTED
from rdml.study.runs import Job

__all__ = ["dvc_stages", "write_dvc_yaml"]


def dvc_stages(params: dict, studies: list[str]) -> dict:
    stages: dict[str, dict] = {}
    for study in studies:
        runs = plan_study(params, study)
        for dataset in sorted({r.dataset for r in runs}):
            downloaded = [paths.data_folder(dataset)] if DATASETS[dataset].downloaded else []  # DVC-tracked data
            needs = DATASETS[dataset].needs
            stages[f"prepare-{dataset}"] = {
                "cmd": f"rdml pipeline prepare {shlex.quote(dataset)}",
                "deps": [*code_paths(DATA_CODE), *(paths.data_stamp(n) for n in needs)],
                "outs": [*downloaded, paths.data_stamp(dataset)],
            }
            for name in needs:  # a shared resource, or a parent data set
                folder = RESOURCES[name].folder if name in RESOURCES else name
                stages[f"prepare-{name}"] = {
                    "cmd": f"rdml pipeline prepare {shlex.quote(name)}",
                    "deps": code_paths(DATA_CODE),
                    "outs": [paths.data_folder(folder), paths.data_stamp(name)],
                }
        for job in plan_jobs(params, study):
            for arch in job.weights:
                stages[f"weights-{arch}"] = {
                    "cmd": f"rdml pipeline weights {shlex.quote(arch)}",
                    "deps": code_paths(WEIGHTS_CODE),
                    "outs": [str(weights_file(arch)), paths.weights_stamp(arch)],
                }
            stages[job.stage] = _train_stage(job)
        measured = plan_measurements(params, study)
        for run, _ in measured.values():
            stages[re.sub(r"[^A-Za-z0-9_-]", "_", f"measure-{study}-{run.id.replace('/', '-')}")] = {
                "cmd": f"rdml pipeline measure {shlex.quote(study)} {shlex.quote(run.id)}",
                "deps": [*code_paths(MEASURE_CODE), f"{run.directory}/model.pt"],
                "params": [f"studies.{study}"],
                "outs": [{paths.measures_file(study, run.id): {"cache": False}}],
            }
        stages[f"tables-{study}"] = {
            "cmd": f"rdml tables {shlex.quote(study)}",
            "deps": [*code_paths(REPORTING_CODE), REPORTED, *(r.directory for r in runs),
                     *(paths.measures_file(study, run_id) for run_id in measured)],
            "params": [f"studies.{study}"],
            "outs": [paths.tables_dir(study)],
            "metrics": [{paths.summary_file(study): {"cache": False}}],
            "plots": [{paths.curves_dir(study): {"cache": False, "x": "epoch", "y": "test_acc"}}],
        }
    return stages


def _train_stage(job: Job) -> dict:
    deps = [*code_paths(TRAINING_CODE), paths.data_stamp(job.dataset)]
    deps += [f"{teacher.directory}/model.pt" for teacher in job.teachers]
    deps += [paths.weights_stamp(arch) for arch in job.weights]
    stage = {"cmd": f"rdml pipeline run {shlex.quote(job.study)} {shlex.quote(job.id)}", "deps": deps}
    if job.params:
        stage["params"] = job.params
    # persist: DVC keeps the outputs while the command runs, which validates the whole job before it
    # replaces anything, so a bad value in params.yaml cannot destroy trained runs.
    stage["outs"] = [*({run.directory: {"persist": True}} for run in job.runs), {job.file: {"cache": False, "persist": True}}]
    stage["metrics"] = [{run.metrics: {"cache": False, "persist": True}} for run in job.runs]
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
