"""Studies in params.yaml → the runs and jobs that Snakemake and DVC both execute.

A study names its data sets, seeds, shared training keys, teacher, and the tables it wants; each
table's layout (rdml.study.layouts) names the runs its cells read, and the study's runs are exactly
those and their teachers, each once (the Ind. runs of an architecture serve the RDML table, the pair
table and the KD baseline alike). Snakemake (`workflow/`), the DVC stages and the table builder all
plan through here, so a grid is written once, in params.yaml. `plan_jobs` groups the runs into the
jobs both tools execute: one run each, or with `seeds_per_job` several seeds of one configuration.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from rdml.config import V1_METHOD_KEYS, method_keys
from rdml.gpus import count_gpus
from rdml.keys import PARTNER, ConfigError
from rdml.methods import METHODS
from rdml.study.layouts import LAYOUTS, TableSpec, entry_measurements
from rdml.study.notes import run_notes
from rdml.study.params import metric_of, slot_count, study_spec, thread_count
from rdml.study.runs import Job, Run

__all__ = ["StudyPlan", "plan_tables", "plan_study", "plan_jobs", "find_job", "plan_measurements", "measurement_partners",
           "check_devices"]


def check_devices(params: dict, name: str, runs) -> None:
    """Refuse, before any job starts, a run asking for a CUDA device on a host that has none (`gpus: 0`,
    or `gpus: auto` and nvidia-smi finds no GPU); `gpus: N` vouches for N GPUs where the jobs run
    (e.g. SLURM's compute nodes), which this host may not have."""
    wanted = sorted({r.config.device for r in runs if r.config.device.startswith("cuda")})
    if not wanted:
        return
    gpus = slot_count(params.get("gpus", "auto"))
    found = count_gpus() if gpus is None else gpus
    if found == 0:
        run = next(r for r in runs if r.config.device in wanted)
        raise ConfigError(f"studies.{name}: run {run.id} asks for device={wanted[0]}, but this host has no CUDA GPU "
                          f"(gpus={params.get('gpus', 'auto')}); allowed here: device=cpu or auto "
                          "(where the jobs run on other hosts, set gpus to their GPU count)")


def _check_device(name: str, run_id: str, device: str) -> None:
    """Refuse `cuda:N`, N >= 1: the pipeline pins each job to one GPU (CUDA_VISIBLE_DEVICES,
    rdml.pipeline.slots), which the job sees as cuda:0, so any other index could never run."""
    if device.startswith("cuda:") and int(device[5:]) >= 1:  # digits: rdml.config checked them
        raise ConfigError(f"studies.{name}: run {run_id} asks for device={device}, but the pipeline gives each job "
                          "one GPU, which it sees as cuda (or cuda:0); allowed: cuda, cuda:0, cpu or auto")


class StudyPlan:
    """Builds the runs of one study: the study's shared keys, plus what each kind of run adds."""

    def __init__(self, name: str, study: dict):
        self.name, self.study, self.base = name, study, f"studies.{name}"
        self.datasets: list[str] = list(study["datasets"])
        self.seeds: list[int] = list(study["seeds"])
        self.shared = dict(study.get("train") or {})
        self.shared_params = (f"{self.base}.train",) if self.shared else ()
        self.where = study.get("train_where") or []  # keys of some data sets or architectures, over the shared ones
        self.sections: dict[str, dict] = {}  # each section of training keys that reached a run → its keys
        self.receivers: dict[str, set[str]] = {}  # … → the methods of the runs it reached

    def reached(self, section: str, keys: dict | None, method: str) -> None:
        """Note that a section of training keys (`train`, `teacher.train`, a layout's own) reached a run of
        `method`: refuse_unread_keys holds each section to the methods it reached."""
        if keys:
            self.sections[section] = keys
            self.receivers.setdefault(section, set()).add(method)

    def run(self, dataset: str, method: str, archs, seed: int, alpha: float | None = None, teacher: Run | None = None,
            keys: dict[str, Any] | None = None, params: tuple[str, ...] = (), variant: str = "",
            study_dataset: str | None = None) -> Run:
        """One run; `study_dataset`: the study's data set a run on a derived one (a subset) stands for."""
        own, named = {}, study_dataset or dataset
        self.reached("train", self.shared, method)
        for i, where in enumerate(self.where):  # in order: a later one that applies wins
            if named in where.get("datasets", [named]) and set(archs) <= set(where.get("archs", archs)):
                own.update(where["train"])
                self.reached(f"train_where[{i}].train", where["train"], method)
        # a study's keys reach the runs whose method takes them (a method's own keys, its own runs; a key of
        # rdml.run/1, every run, as it did then: rdml.config.V1_METHOD_KEYS)
        takes = method_keys(method)
        study_keys = {k: v for k, v in {**self.shared, **own}.items() if k in takes or k in V1_METHOD_KEYS}
        options = json.dumps({**study_keys, **(keys or {})}, sort_keys=True)
        own_params = (f"{self.base}.train_where",) if own else ()
        return Run(self.name, dataset, method, tuple(archs), seed, None if alpha is None else float(alpha), teacher,
                   options, variant, self.shared_params + own_params + tuple(params))

    def independent(self, dataset: str, arch: str, seed: int) -> Run:
        return self.run(dataset, "independent", [arch], seed)

    def mutual(self, dataset: str, archs, alpha: float, seed: int, method: str = "dml") -> Run:
        return self.run(dataset, method, archs, seed, alpha)

    def teacher(self, dataset: str, arch: str) -> Run:
        """The study's pretrained teacher of `arch`: `teacher.seed` and `teacher.train` keys, when given."""
        spec = self.study.get("teacher") or {}
        self.reached("teacher.train", spec.get("train"), "teacher")
        return self.run(dataset, "teacher", [arch], spec.get("seed", 0), keys=spec.get("train") or {},
                        params=(f"{self.base}.teacher",))

    def distil(self, dataset: str, student: str, teacher: Run, alpha: float, seed: int, table: str) -> Run:
        """KD of `student` from `teacher`, with the temperature, β and T² scale the table's section sets."""
        spec = self.study[table]
        keys = {k: spec[k] for k in ("temperature", "beta", "kd_scale") if k in spec}
        return self.run(dataset, "kd", [student], seed, alpha, teacher, keys, tuple(f"{self.base}.{table}.{k}" for k in keys))


    def refuse_unread_keys(self) -> None:
        """Refuse a study's training key that no run it reaches reads (another method's key: a run of
        rdml.run/1 took it, so it would change every run's identity and nothing else)."""
        for section, keys in self.sections.items():
            methods = self.receivers[section]
            for key in keys:
                if not any(key in method_keys(m) for m in methods):
                    owners = [m for m in METHODS if key in method_keys(m)]
                    raise ConfigError(f"{self.base}.{section}.{key}: no run it reaches reads {key} (their methods: "
                                      f"{', '.join(sorted(methods))}); {key} is a key of {', '.join(owners)}, "
                                      "whose runs this study does not plan there")


class Section(dict):
    """A table's section of params.yaml as its layout reads it: a key the layout needs and the section
    lacks is a ConfigError naming both (a layout reads its required keys as section["key"])."""

    def __init__(self, where: str, allowed: tuple[str, ...], section: dict):
        super().__init__(section)
        self.where, self.allowed = where, allowed

    def __missing__(self, key):
        raise ConfigError(f"{self.where}: missing key {key!r}, which this table needs; its keys: {', '.join(self.allowed)}")


def _plan_tables(params: dict, name: str) -> tuple[StudyPlan, list[TableSpec]]:
    study = study_spec(params, name)
    plan = StudyPlan(name, study)
    return plan, [_with_run_notes(LAYOUTS[key](plan, Section(f"studies.{name}.{key}", LAYOUTS[key].keys, study[key])))
                  for key in sorted(study) if key in LAYOUTS]


def _with_run_notes(spec: TableSpec) -> TableSpec:
    """`spec` with its caption saying what its runs' keys call for (rdml.study.notes), each note once."""
    notes = dict.fromkeys(note for entry in spec.entries for note in run_notes(entry.run.config))
    return dataclasses.replace(spec, caption=" ".join([spec.caption, *notes])) if notes else spec


def plan_tables(params: dict, name: str) -> list[TableSpec]:
    """The study's tables, by layout name: one order whether the study comes from params.yaml or as
    Snakemake's JSON (sorted keys), so the claims and figures list them alike."""
    return _plan_tables(params, name)[1]


def plan_study(params: dict, name: str) -> list[Run]:
    """Every run the study's tables read, and their teachers, each once; teachers first."""
    runs: dict[str, Run] = {}

    def add(run: Run) -> None:
        if run.teacher:
            add(run.teacher)
        if runs.setdefault(run.id, run) != run:
            raise ConfigError(f"studies.{name}: run {run.id} is planned twice with different keys "
                              f"({runs[run.id].keys} and {run.keys})")

    metric = metric_of(params, name)
    reads_val: dict[str, str] = {}  # run id → what reads its validation split
    plan, tables = _plan_tables(params, name)
    for table in tables:
        for entry in table.entries:
            add(entry.run)
            if entry.partner is not None:  # a run its measurement reads beside its own
                add(entry.partner)
            if entry.choice is not None and entry.choice.by == "val":
                reads_val.setdefault(entry.run.id, f"table {table.name} chooses {entry.choice.group} by validation accuracy")
    if metric == "at_best_val":
        reads_val = {run_id: "metric=at_best_val" for run_id in runs}
    window = int(metric[4:]) if metric.startswith("last") else None
    for run in runs.values():  # every run's config resolves at plan time, before any job starts
        try:
            cfg = run.config
        except ConfigError as exc:
            raise ConfigError(f"studies.{name}: run {run.id}: {exc}") from None
        _check_device(name, run.id, cfg.device)
        if window and (window not in cfg.summary_last or cfg.epochs < window):
            raise ConfigError(f"studies.{name}: metric={metric} needs summary_last to hold {window} and epochs >= {window}; "
                              f"run {run.id} has summary_last={cfg.summary_last}, epochs={cfg.epochs}")
        if run.id in reads_val and not cfg.val_fraction:
            raise ConfigError(f"studies.{name}: {reads_val[run.id]}, which reads the validation split of run {run.id}, "
                              "but it has val_fraction=0 (no validation split); give the study's train keys "
                              "val_fraction > 0" + (", or choose another metric" if metric == "at_best_val" else ""))
    plan.refuse_unread_keys()
    teachers = {r.teacher.id for r in runs.values() if r.teacher}
    return sorted(runs.values(), key=lambda r: (r.id not in teachers, r.id))


def plan_jobs(params: dict, name: str) -> list[Job]:
    """The study's runs in jobs of up to `seeds_per_job` seeds of one configuration, teachers' jobs first."""
    per_job = study_spec(params, name).get("seeds_per_job", 1)
    configurations: dict[tuple[str, str], list[Run]] = {}
    thread_count(params)  # a job's setting, refused here like any other before a job starts
    runs = plan_study(params, name)
    check_devices(params, name, runs)
    for run in runs:
        configurations.setdefault((run.dataset, run.configuration), []).append(run)
    jobs = []
    for group in configurations.values():
        group.sort(key=lambda r: r.seed)
        jobs += [Job(name, tuple(group[i : i + per_job])) for i in range(0, len(group), per_job)]
    return jobs


def plan_measurements(params: dict, name: str) -> dict[str, tuple[Run, dict]]:
    """The runs whose final models the study's tables measure (rdml.analysis.measure), each with
    everything any table asks of it; by run id."""
    planned: dict[str, tuple[Run, dict]] = {}
    for table in plan_tables(params, name):
        for entry in table.entries:
            if entry.measure is not None:
                run, wanted = planned.setdefault(entry.run.id, (entry.run, {}))
                for measurement, spec in entry_measurements(table.measurements, entry).items():
                    if wanted.setdefault(measurement, spec) != spec:
                        raise ConfigError(f"studies.{name}: run {run.id} is measured twice with different {measurement} "
                                          f"settings ({wanted[measurement]} and {spec})")
    return planned


def measurement_partners(wanted: dict) -> list[str]:
    """The ids of the runs a run's measurements read beside it (rdml.keys.PARTNER): inputs of its measuring step."""
    return sorted({spec[PARTNER] for spec in wanted.values() if isinstance(spec, dict) and PARTNER in spec})


def find_job(params: dict, study: str, job_id: str) -> Job:
    for job in plan_jobs(params, study):
        if job.id == job_id:
            return job
    raise ConfigError(f"job {job_id!r} is not part of study {study!r} in params.yaml (see `rdml pipeline runs {study}`)")
