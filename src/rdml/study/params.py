"""params.yaml: its studies, checked, and the `<study>_smoke` variant of each."""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path

from rdml.config import KEYS, OWN_KEYS, V1_METHOD_KEYS, is_key, method_keys
from rdml.data.catalog import DATASETS
from rdml.keys import ConfigError, count, one_of
from rdml.methods import METHODS
from rdml.models.catalog import ARCHITECTURES
from rdml.study.layouts import LAYOUTS
from rdml.study.layouts.okdph import HYBRID_KEYS, METHOD_NAMES
from rdml.yamlfile import load_yaml

__all__ = ["load_params", "checked_params", "with_smoke_studies", "studies_to_build", "study_spec", "check_study", "metric_of", "STATISTICS",
           "STUDY_KEYS", "TOP_KEYS",
           "slot_count", "jobs_per_gpu", "thread_count",
           "RUN_FIELDS"]

# a study's `metric`: the statistic over epochs its tables report of each table's metric (rdml.metrics);
# at_best_val: the value at the epoch of best validation accuracy
STATISTICS = ("final", "best", "last5", "last10", "at_best_val")
STUDY_KEYS = {"description", "paper", "datasets", "seeds", "seeds_per_job", "metric", "train", "train_where", "teacher"}
TOP_KEYS = ("build", "gpus", "jobs_per_gpu", "threads", "studies")  # params.yaml's own keys; `threads`: CPU threads per job
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


def jobs_per_gpu(value) -> int | str:
    """params.yaml's or the command line's `jobs_per_gpu`: an integer >= 1, or "auto" (as measured on this
    host's GPU by `make gpu-check`: rdml.pipeline.requests.resolve_jobs_per_gpu turns it into a number)."""
    if value == "auto":
        return "auto"
    try:
        return count("jobs_per_gpu", value)
    except ConfigError:
        raise ConfigError(f"jobs_per_gpu={value!r} is not allowed; allowed: auto or an integer >= 1") from None


def thread_count(params: dict) -> int:
    """params.yaml's `threads` (default 1): the CPU threads of torch in every job, whichever command
    starts it (Snakemake, DVC, `rdml pipeline run`). Intra-op threads change float32 sums, so two
    orchestrators that let torch pick its own count give one run two sets of numbers."""
    return count("threads", params.get("threads", 1))


def load_params(path: str | Path = "params.yaml") -> dict:
    """params.yaml with every study checked, at every depth, before any of them is planned (a typo in a
    study not built today is named today), and a `<study>_smoke` variant of each."""
    return checked_params(load_yaml(path, "params file"), path)


def checked_params(params, path: str | Path = "params.yaml") -> dict:
    """`load_params` of a params file already read (rdml.yamlfile.load_yaml), left as it was read."""
    if not isinstance(params, dict) or not isinstance(params.get("studies"), dict):
        raise ConfigError(f"{path} must hold a mapping with a 'studies' mapping")
    _unknown(str(path), params, TOP_KEYS)
    slot_count(params.get("gpus", "auto"))
    jobs_per_gpu(params.get("jobs_per_gpu", 1))
    thread_count(params)
    build = params.get("build", [])
    if not isinstance(build, list) or not all(isinstance(name, str) for name in build):
        raise ConfigError(f"build={build!r} is not allowed; it must be a list of study names")
    for name, study in params["studies"].items():
        check_study(name, study)
    return with_smoke_studies(params)


def _unknown(at: str, section: dict, allowed, what: str = "key") -> None:
    """Refuse the keys of `section` not in `allowed`, naming them, a close match, and the allowed ones."""
    unknown = [str(key) for key in section if key not in allowed]
    if unknown:
        close = difflib.get_close_matches(unknown[0], [str(a) for a in allowed], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        shown = sorted(map(str, allowed)) if isinstance(allowed, (set, frozenset)) else map(str, allowed)  # as declared
        raise ConfigError(f"{at}: unknown {what}(s) {', '.join(sorted(unknown))}; allowed: {', '.join(shown)}{hint}")


def _mapping(at: str, value, what: str = "a mapping") -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{at}={value!r} is not allowed; it must be {what}")
    return value


def _list(at: str, value, what: str) -> list:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{at}={value!r} is not allowed; it must be {what}")
    return value


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
            if section in LAYOUTS and LAYOUTS[section].smoke is not None:  # the layout's own (a coarse grid)
                smoke[section] = LAYOUTS[section].smoke(smoke[section])
        smoke["seeds"] = study["seeds"][:1]
        smoke["metric"] = "final"
        smoke["train"] = {**(study.get("train") or {}), "epochs": 1}
        smoke["train"]["batch_size"] = min(smoke["train"].get("batch_size", 64), 32)
        if smoke["train"].get("loader_workers"):  # a tiny streamed set: two decoding processes still decode in workers
            smoke["train"]["loader_workers"] = min(smoke["train"]["loader_workers"], 2)
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
    """The study's section of params.yaml, checked at every depth (`check_study`)."""
    studies = params["studies"]
    if name not in studies:
        raise ConfigError(f"study {name!r} is not in params.yaml; allowed: {', '.join(sorted(studies))}")
    return check_study(name, studies[name])


def check_study(name: str, study) -> dict:
    """A study's section (from params.yaml, or as Snakemake passes it, JSON) with every key at every depth
    checked: its own keys, each table layout's section, `teacher`, `train`, `train_where`, and OKDPH's
    sections. Returns it as the layouts read it (an OKDPH `views` mapping keyed by cohort sizes written
    as JSON strings gets integer keys, as params.yaml gives them)."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", str(name)):  # it names folders and reaches shell commands
        raise ConfigError(f"study name {name!r} is not allowed; use letters, digits and _ only")
    at = f"studies.{name}"
    _mapping(at, study, "a mapping of the study's keys")
    allowed = STUDY_KEYS | set(LAYOUTS)
    _unknown(at, study, allowed)
    missing = [key for key in ("datasets", "seeds") if key not in study]
    if missing:
        raise ConfigError(f"{at}: missing key(s) {', '.join(missing)}; a study names its datasets and seeds")
    for dataset in _list(f"{at}.datasets", study["datasets"], "a list of data sets"):
        DATASETS[dataset]
    seeds = _list(f"{at}.seeds", study["seeds"], "a list of integer seeds")
    if not all(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 for seed in seeds):
        raise ConfigError(f"{at}.seeds={seeds!r} is not allowed; it must be a list of integers >= 0")
    twice = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if twice:  # one seed is one run: listed twice, a cell would count the run twice
        raise ConfigError(f"{at}.seeds lists seed {twice[0]} more than once ({seeds}); each seed must appear once")
    sections = {key: LAYOUTS[key].keys for key in study if key in LAYOUTS}
    if "teacher" in study:
        sections["teacher"] = ("arch", "seed", "train")
    if not any(key in LAYOUTS for key in study):
        raise ConfigError(f"{at}: no table; give at least one of: {', '.join(sorted(LAYOUTS))}")
    for section, allowed_keys in sections.items():
        _unknown(f"{at}.{section}", _mapping(f"{at}.{section}", study[section]), allowed_keys)
    trains = [("train", study.get("train")), ("teacher.train", (study.get("teacher") or {}).get("train"))]
    for i, where in enumerate(study.get("train_where") or []):
        where_at = f"{at}.train_where[{i}]"
        if not isinstance(where, dict) or set(where) - {"datasets", "archs", "train"} or "train" not in where:
            raise ConfigError(f"{where_at} must hold `train` keys and the `datasets` and/or `archs` they apply to")
        unknown = set(where.get("datasets", [])) - set(study["datasets"])
        if unknown:
            raise ConfigError(f"{where_at}.datasets: {', '.join(sorted(unknown))} not among the study's datasets")
        for arch in where.get("archs", []):
            ARCHITECTURES[arch]
        trains.append((f"train_where[{i}].train", where["train"]))
    for section in ("okdph_table", "okdph_data_table"):
        if section in study:
            study = {**study, section: _okdph_section(f"{at}.{section}", section, study[section], study, trains)}
    for section, keys in trains:
        _train_keys(f"{at}.{section}", keys)
    per_job = study.get("seeds_per_job", 1)
    if not isinstance(per_job, int) or isinstance(per_job, bool) or per_job < 1:
        raise ConfigError(f"{at}.seeds_per_job={per_job!r} is not allowed; it must be an integer >= 1")
    one_of(f"{at}.metric", study.get("metric", "final"), STATISTICS)
    return study


def _train_keys(at: str, keys) -> None:
    """A study's shared training keys: a mapping of keys some run takes, none that the layouts set per run."""
    for key in _mapping(at, {} if keys is None else keys, "a mapping of training keys (see `rdml train --help`)"):
        if key in RUN_FIELDS:
            raise ConfigError(f"{at}.{key}: the table layouts set {key} per run; "
                              f"a study's shared keys may not (they set: {', '.join(RUN_FIELDS)})")
        if not is_key(key):
            close = difflib.get_close_matches(str(key), [*KEYS, *OWN_KEYS, *V1_METHOD_KEYS], n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"{at}.{key} is not a training key{hint} (see `rdml train --help`)")


def _okdph_section(at: str, layout: str, spec: dict, study: dict, trains: list) -> dict:
    """An OKDPH layout's section (rdml.study.layouts.okdph): `methods`, `students`, `baseline`, `views`,
    `hybrid` and `settings`, each entry's keys named when unknown or missing, and the OKDPH keys of each
    `hybrid` entry checked as `rdml train` checks them. Appends each setting's `train` to `trains`."""
    datasets = study["datasets"]
    methods = _list(f"{at}.methods", spec.get("methods", list(METHOD_NAMES)), "a list of methods")
    for method in methods:
        one_of(f"{at}.methods", method, METHOD_NAMES)
    fewest = max(METHODS[m].min_students for m in methods)
    if layout == "okdph_table":
        sizes = _list(f"{at}.students", spec.get("students"), f"a list of cohort sizes, integers >= {fewest}")
        if not all(isinstance(k, int) and not isinstance(k, bool) and k >= fewest for k in sizes):
            raise ConfigError(f"{at}.students={sizes!r} is not allowed; it must be a list of integers >= {fewest}")
        where_keys = ("dataset", "arch", "students")
    else:
        settings = _list(f"{at}.settings", spec.get("settings"), "a list of settings, each a name, datasets and train")
        for i, setting in enumerate(settings):
            setting_at = f"{at}.settings[{i}]"
            _unknown(setting_at, _mapping(setting_at, setting), ("name", "datasets", "train"))
            if "name" not in setting:
                raise ConfigError(f"{setting_at}: missing key name")
            _unknown(f"{setting_at}.datasets", _mapping(f"{setting_at}.datasets", setting.get("datasets") or {}),
                     datasets, "data set")
            for dataset in (setting.get("datasets") or {}).values():
                DATASETS[dataset]
            trains.append((f"{layout}.settings[{i}].train", setting.get("train")))
        where_keys = ("dataset", "setting")
    if set(methods) - {"okdph"}:
        baseline = _mapping(f"{at}.baseline", spec.get("baseline"), "a mapping of each data set to its augmentation")
        _unknown(f"{at}.baseline", baseline, datasets, "data set")
        _missing(f"{at}.baseline", baseline, datasets, "data set")
    views = dict(_mapping(f"{at}.views", spec.get("views"), "a mapping of each data set to its students' augmentations"))
    _unknown(f"{at}.views", views, datasets, "data set")
    _missing(f"{at}.views", views, datasets, "data set")
    if layout == "okdph_table":
        for dataset, by_size in views.items():
            by_size = {int(k) if isinstance(k, str) and k.isdigit() else k: v  # Snakemake's JSON: string keys
                       for k, v in _mapping(f"{at}.views.{dataset}", by_size, "a mapping of cohort sizes").items()}
            _missing(f"{at}.views.{dataset}", by_size, sizes, "cohort size")  # other sizes may wait there
            _unknown(f"{at}.views.{dataset}", by_size, [k for k in by_size if isinstance(k, int)], "cohort size")
            views[dataset] = by_size
    okdph = method_keys("okdph")
    for i, entry in enumerate(_list(f"{at}.hybrid", spec.get("hybrid"), "a list of OKDPH keys per table row")):
        entry_at = f"{at}.hybrid[{i}]"
        _unknown(entry_at, _mapping(entry_at, entry), (*where_keys, *HYBRID_KEYS))
        _missing(entry_at, entry, (*where_keys, *HYBRID_KEYS))
        for key in HYBRID_KEYS:
            value = okdph[key].parse(entry[key])
            if okdph[key].check is not None:
                okdph[key].check(value)
    return {**spec, "views": views}


def _missing(at: str, section: dict, wanted, what: str = "key") -> None:
    missing = [str(key) for key in wanted if key not in section]
    if missing:
        raise ConfigError(f"{at}: missing {what}(s) {', '.join(missing)}")


def metric_of(params: dict, study: str) -> str:
    """The study's metric: the statistic over epochs (final, best, last5, last10, at_best_val) its tables report."""
    return study_spec(params, study).get("metric", "final")
