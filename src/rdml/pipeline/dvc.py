"""dvc.yaml generated from the plan: one stage per data set, per job and per study's tables, with the
same commands Snakemake runs and the code each one depends on.

DVC hashes files by their bytes; rdml identifies code by its syntax tree and by what each result
runs (rdml.dependencies). So a first stage, `code` (`rdml pipeline code`, run whenever the source or
params.yaml changed), writes one code stamp per result (rdml.paths.code_stamp), rewriting a stamp only
when its identity changed; every other stage depends on its own stamp. A docstring edit or a new
method reruns `code` and nothing else; a DML-loss edit reruns `code` and the DML jobs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

import yaml

from rdml import paths
from rdml.data.catalog import DATASETS, RESOURCES
from rdml.code import SOURCE, CodeIdentity
from rdml.dependencies import data_code, measure_code, reporting_code, weights_code
from rdml.io import atomic_write_bytes
from rdml.models.pretrained import weights_file
from rdml.report.dvc_views import plot_definitions
from rdml.report.scorecard import SCORECARD
from rdml.study.params import checked_params, load_params, studies_to_build
from rdml.study.plan import measurement_partners, plan_jobs, plan_measurements, plan_study, plan_tables
from rdml.yamlfile import load_yaml
from rdml.study.reported import REPORTED
from rdml.study.runs import Job

__all__ = ["dvc_stages", "dvc_plots", "write_dvc_yaml", "code_stamps", "write_code_stamps"]

PARAMS = "params.yaml"


def code_stamps(params: dict, studies: list[str]) -> dict[str, CodeIdentity]:
    """The code identity of every result the studies build, by the stamp file DVC sees it as."""
    stamps: dict[str, CodeIdentity] = {paths.code_stamp("weights", "fetch"): weights_code(),
                                       paths.code_stamp("tables", "report"): reporting_code()}
    for study in studies:
        for job in plan_jobs(params, study):
            stamps[paths.code_stamp("train", f"{study}/{job.id}")] = job.code
            for name in _prepared(job.dataset):
                stamps[paths.code_stamp("data", name)] = data_code(name)
        for run, _ in plan_measurements(params, study).values():
            stamps[paths.code_stamp("measure", f"{study}/{run.id}")] = measure_code(run.method, run.archs, run.dataset,
                                                                                     run.teacher_archs)
    return stamps


def write_code_stamps(params_path: str = PARAMS, studies: list[str] | None = None) -> list[str]:
    """Write each stamp whose identity changed (others keep their bytes, so DVC reruns nothing for them);
    returns the stamps written."""
    params = load_params(params_path)
    written = []
    for path, identity in code_stamps(params, studies_to_build(params, studies)).items():
        body = (json.dumps(identity.describe(), indent=1, sort_keys=True) + "\n").encode()
        if not os.path.isfile(path) or Path(path).read_bytes() != body:
            atomic_write_bytes(path, body)
            written.append(path)
    return written


def _prepared(dataset: str) -> list[str]:
    """A data set and the resources or parent sets its prepare step reads, each a prepare stage."""
    return [dataset, *(name for need in DATASETS[dataset].needs for name in _prepared(need))] \
        if dataset in DATASETS else [dataset]


def dvc_stages(params: dict, studies: list[str], declared: set[str] | None = None) -> dict:
    """The stages of the studies. `declared`: the studies params.yaml itself holds (default: all); a
    `<study>_smoke` variant made from one (rdml.study.params.with_smoke_studies) depends on its parent's keys,
    the only ones in the file DVC reads.

    Every output persists: DVC would otherwise delete it before running its stage, and a stage refused
    (a bad value in params.yaml) or failed would lose the results it was to replace. Each command replaces
    its outputs itself once the new ones are complete (training, `rdml tables`)."""
    declared = set(params["studies"]) if declared is None else declared
    code = "rdml pipeline code" + "".join(f" --study {shlex.quote(s)}" for s in studies) \
        if studies != list(params.get("build") or []) else "rdml pipeline code"
    stages: dict[str, dict] = {"code": {
        "cmd": code,  # the stamps of exactly these studies
        "deps": [SOURCE, PARAMS],
        "outs": [{paths.CODE_STAMPS: kept()}],
    }}
    for study in studies:
        keys = _in_file(study, declared, params)
        runs = plan_study(params, study)
        for dataset in sorted({r.dataset for r in runs}):
            downloaded = [paths.data_folder(dataset)] if DATASETS[dataset].downloaded else []  # DVC-tracked data
            # a streamed set's folder (ImageNet: the user's archives and ~156 GB of shards) stays out of DVC's cache: its
            # stamp names the archives' sha256, the shards' marker every shard's (rdml.data.imagenet)
            outs = (_persist(*downloaded, paths.data_stamp(dataset)) if DATASETS[dataset].storage != "stream" else
                    [*({folder: kept()} for folder in downloaded), *_persist(paths.data_stamp(dataset))])
            needs = DATASETS[dataset].needs
            stages[f"prepare-{dataset}"] = {
                "cmd": f"rdml pipeline prepare {shlex.quote(dataset)}",
                "deps": [paths.code_stamp("data", dataset), *(paths.data_stamp(n) for n in needs)],
                "outs": outs,
            }
            for name in needs:  # a shared resource, or a parent data set
                folder = RESOURCES[name].folder if name in RESOURCES else name
                stages[f"prepare-{name}"] = {
                    "cmd": f"rdml pipeline prepare {shlex.quote(name)}",
                    "deps": [paths.code_stamp("data", name)],
                    "outs": _persist(paths.data_folder(folder), paths.data_stamp(name)),
                }
        for job in plan_jobs(params, study):
            for arch in job.weights:
                stages[f"weights-{arch}"] = {
                    "cmd": f"rdml pipeline weights {shlex.quote(arch)}",
                    "deps": [paths.code_stamp("weights", "fetch")],
                    "outs": _persist(str(weights_file(arch)), paths.weights_stamp(arch)),
                }
            stages[job.stage] = _train_stage(job, keys)
        measured = plan_measurements(params, study)
        for run, wanted in measured.values():
            partners = [f"{paths.run_dir(study, partner)}/model.pt" for partner in measurement_partners(wanted)]
            stages[re.sub(r"[^A-Za-z0-9_-]", "_", f"measure-{study}-{run.id.replace('/', '-')}")] = {
                "cmd": f"rdml pipeline measure {shlex.quote(study)} {shlex.quote(run.id)}",
                "deps": [paths.code_stamp("measure", f"{study}/{run.id}"), f"{run.directory}/model.pt", *partners],
                "params": [keys(f"studies.{study}")],
                "outs": [{paths.measures_file(study, run.id): kept()}],
            }
        stages[f"tables-{study}"] = {
            "cmd": f"rdml tables {shlex.quote(study)}",
            "deps": [paths.code_stamp("tables", "report"), REPORTED, *(r.directory for r in runs),
                     *(paths.measures_file(study, run_id) for run_id in measured)],
            "params": [keys(f"studies.{study}")],
            "outs": [*_persist(paths.tables_dir(study)), {paths.curves_dir(study): kept()}],
            "metrics": [{paths.summary_file(study): kept()}],
        }
    # The scorecard of every built study (rdml.report.scorecard): each `rdml tables` rewrites it, this
    # stage declares it, after the tables it reads (a change of its code reruns the tables, then it).
    stages["scorecard"] = {
        "cmd": "python -m rdml.report.scorecard",
        "deps": [REPORTED, *(paths.tables_dir(study) for study in studies)],
        "outs": [{f"{SCORECARD}.md": kept()}, {f"{SCORECARD}.html": kept()}],
    }
    return stages


def dvc_plots(params: dict, studies: list[str]) -> list[dict]:
    """The top-level plots: one per panel of each table's learning curves, its lines by name
    (rdml.report.dvc_views), instead of one plot per run and model."""
    return [plot for study in studies
            for plot in plot_definitions(study, plan_tables(params, study), params["studies"][study].get("paper"))]


def kept(**more) -> dict:
    """An output outside DVC's cache, kept while its stage runs (a new dict each: no YAML anchors)."""
    return {"cache": False, "persist": True, **more}


def _persist(*outs: str) -> list[dict]:
    return [{out: {"persist": True}} for out in outs]


def _in_file(study: str, declared: set[str], params: dict):
    """The params.yaml key DVC reads for a key of the study: a smoke variant's is its parent's."""
    parent = study.removesuffix("_smoke")
    if study in declared or parent == study or parent not in params["studies"]:
        return lambda key: key
    return lambda key: re.sub(rf"^studies\.{re.escape(study)}(?=\.|$)", f"studies.{parent}", key)


def _train_stage(job: Job, keys=lambda key: key) -> dict:
    deps = [paths.code_stamp("train", f"{job.study}/{job.id}"), paths.data_stamp(job.dataset)]
    deps += [f"{teacher.directory}/model.pt" for teacher in job.teachers]
    deps += [paths.weights_stamp(arch) for arch in job.weights]
    stage = {"cmd": f"rdml pipeline run {shlex.quote(job.study)} {shlex.quote(job.id)}", "deps": deps}
    if job.params:
        stage["params"] = sorted({keys(p) for p in job.params})
    # persist: DVC keeps the outputs while the command runs, which validates the whole job before it
    # replaces anything, so a bad value in params.yaml cannot destroy trained runs.
    stage["outs"] = [*_persist(*(run.directory for run in job.runs)), {job.file: kept()}]
    stage["metrics"] = [{run.metrics: kept()} for run in job.runs]
    return stage


def write_dvc_yaml(params_path: str = PARAMS, out: str = "dvc.yaml", studies: list[str] | None = None) -> str:
    raw = load_yaml(params_path, "params file")  # read once, by the one YAML reader
    params = checked_params(raw, params_path)
    declared = set(raw["studies"])  # before the smoke variants were added
    built = studies_to_build(params, studies)
    body = {"stages": dvc_stages(params, built, declared), "plots": dvc_plots(params, built)}
    text = "# Generated from params.yaml by `rdml pipeline dvc-yaml`; do not edit by hand.\n" + yaml.safe_dump(
        body, sort_keys=False, width=200, allow_unicode=True
    )
    if out == "-":
        sys.stdout.write(text)
    else:
        atomic_write_bytes(out, text.encode())
    return text
