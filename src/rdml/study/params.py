"""params.yaml: its studies, checked, and the `<study>_smoke` variant of each."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import yaml

from rdml.config import is_key
from rdml.data.catalog import DATASETS
from rdml.keys import ConfigError, one_of
from rdml.models.catalog import ARCHITECTURES
from rdml.study.layouts import LAYOUTS

__all__ = ["load_params", "with_smoke_studies", "studies_to_build", "study_spec", "metric_of", "STATISTICS", "STUDY_KEYS",
           "slot_count", "jobs_per_gpu",
           "RUN_FIELDS"]

# a study's `metric`: the statistic over epochs its tables report of each table's metric (rdml.metrics);
# at_best_val: the value at the epoch of best validation accuracy
STATISTICS = ("final", "best", "last5", "last10", "at_best_val")
STUDY_KEYS = {"description", "paper", "datasets", "seeds", "seeds_per_job", "metric", "train", "train_where", "teacher"}
RUN_FIELDS = ("out", "method", "dataset", "seed", "arch", "alpha", "teacher", "students")  # set by the tables, per run


def slot_count(gpus) -> int | None:
    """params.yaml's or the command line's `gpus`: None for auto (count them), else a number >= 0."""
    if isinstance(gpus, str) and gpus.strip() == "auto":
        return None
    try:
        count = int(gpus) if not isinstance(gpus, (bool, float)) else -1
    except (TypeError, ValueError):
        count = -1
    if count < 0:
        raise ConfigError(f"gpus={gpus!r} is not allowed; allowed: auto or an integer >= 0")
    return count


def jobs_per_gpu(value) -> int:
    """params.yaml's or the command line's `jobs_per_gpu`: an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit() or int(value) < 1:
        raise ConfigError(f"jobs_per_gpu={value!r} is not allowed; allowed: an integer >= 1")
    return int(value)


def load_params(path: str | Path = "params.yaml") -> dict:
    try:
        params = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if not isinstance(params, dict) or not isinstance(params.get("studies"), dict):
        raise ConfigError(f"{path} must hold a mapping with a 'studies' mapping")
    slot_count(params.get("gpus", "auto"))
    jobs_per_gpu(params.get("jobs_per_gpu", 1))
    return with_smoke_studies(params)


def with_smoke_studies(params: dict) -> dict:
    """Add `<study>_smoke` for every study: its tables on tiny generated data shaped like the real
    data sets, one seed, one epoch, networks that need a download swapped for their tiny stand-ins,
    so that CI can put a job of every study through the pipeline."""
    studies = dict(params["studies"])
    for name, study in params["studies"].items():
        if name.endswith("_smoke") or f"{name}_smoke" in studies:
            continue
        smoke = copy.deepcopy(study)
        smoke["datasets"] = [_smoke_dataset(d) for d in study["datasets"]]
        for where in smoke.get("train_where") or []:
            if "datasets" in where:
                where["datasets"] = [_smoke_dataset(d) for d in where["datasets"]]
            if "archs" in where:
                where["archs"] = _smoke_names(where["archs"])
        for section in smoke:
            if section in LAYOUTS or section == "teacher":
                smoke[section] = _smoke_names(smoke[section])
        smoke["seeds"] = study["seeds"][:1]
        smoke["metric"] = "final"
        smoke["train"] = {**(study.get("train") or {}), "epochs": 1}
        smoke["train"]["batch_size"] = min(smoke["train"].get("batch_size", 64), 32)
        if "teacher" in smoke:
            smoke["teacher"]["train"] = {**(smoke["teacher"].get("train") or {}), "epochs": 1}
        studies[f"{name}_smoke"] = smoke
    return {**params, "studies": studies}


def _smoke_dataset(name: str) -> str:
    return DATASETS[name].smoke or name if name in DATASETS else name


def _smoke_names(value, within_list: bool = False):
    """A layout section with every architecture or data set that has a smoke stand-in replaced by it (in
    values and mapping keys alike); a list of them (or of pairs) keeps each stand-in once, a pair keeps
    both members, and a list nothing was replaced in stays as it is."""
    if isinstance(value, dict):
        return {_smoke_names(k): _smoke_names(v) for k, v in value.items()}
    if isinstance(value, list):
        mapped = [_smoke_names(v, True) for v in value]
        if within_list or mapped == value:
            return mapped
        return [v for i, v in enumerate(mapped) if v not in mapped[:i]]
    if isinstance(value, str) and value in ARCHITECTURES and ARCHITECTURES[value].smoke:
        return ARCHITECTURES[value].smoke
    if isinstance(value, str) and value in DATASETS:
        return _smoke_dataset(value)
    return value


def studies_to_build(params: dict, requested: list[str] | None = None) -> list[str]:
    names = list(requested or params.get("build") or [])
    for name in names:
        study_spec(params, name)
    return names


def study_spec(params: dict, name: str) -> dict:
    """The study's section of params.yaml, its keys checked (table sections by their layouts)."""
    studies = params["studies"]
    if name not in studies:
        raise ConfigError(f"study {name!r} is not in params.yaml; allowed: {', '.join(sorted(studies))}")
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):  # it names folders and reaches shell commands
        raise ConfigError(f"study name {name!r} is not allowed; use letters, digits and _ only")
    study = studies[name]
    allowed = STUDY_KEYS | set(LAYOUTS)
    unknown = set(study) - allowed
    if unknown:
        raise ConfigError(f"studies.{name}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")
    sections = {key: LAYOUTS[key].keys for key in study if key in LAYOUTS} | {"teacher": ("arch", "seed", "train")}
    for section, allowed_keys in sections.items():
        unknown = set(study.get(section) or {}) - set(allowed_keys)
        if unknown:
            raise ConfigError(f"studies.{name}.{section}: unknown key(s) {', '.join(sorted(unknown))}; "
                              f"allowed: {', '.join(allowed_keys)}")
    sections = [("train", study.get("train")), ("teacher.train", (study.get("teacher") or {}).get("train"))]
    for i, where in enumerate(study.get("train_where") or []):
        at = f"studies.{name}.train_where[{i}]"
        if not isinstance(where, dict) or set(where) - {"datasets", "archs", "train"} or "train" not in where:
            raise ConfigError(f"{at} must hold `train` keys and the `datasets` and/or `archs` they apply to")
        unknown = set(where.get("datasets", [])) - set(study["datasets"])
        if unknown:
            raise ConfigError(f"{at}.datasets: {', '.join(sorted(unknown))} not among the study's datasets")
        for arch in where.get("archs", []):
            ARCHITECTURES[arch]
        sections.append((f"train_where[{i}].train", where["train"]))
    for section, keys in sections:
        for key in keys or {}:
            if key in RUN_FIELDS:
                raise ConfigError(f"studies.{name}.{section}.{key}: the table layouts set {key} per run; "
                                  f"a study's shared keys may not (they set: {', '.join(RUN_FIELDS)})")
            if not is_key(key):
                raise ConfigError(f"studies.{name}.{section}.{key} is not a training key (see `rdml train --help`)")
    for dataset in study["datasets"]:
        DATASETS[dataset]
    per_job = study.get("seeds_per_job", 1)
    if not isinstance(per_job, int) or isinstance(per_job, bool) or per_job < 1:
        raise ConfigError(f"studies.{name}.seeds_per_job={per_job!r} is not allowed; it must be an integer >= 1")
    one_of(f"studies.{name}.metric", study.get("metric", "final"), STATISTICS)
    return study


def metric_of(params: dict, study: str) -> str:
    """The study's metric: the statistic over epochs (final, best, last5, last10, at_best_val) its tables report."""
    return study_spec(params, study).get("metric", "final")
