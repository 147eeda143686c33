"""OKDPH supplement layouts (Zhang et al., "Generalization Matters: Loss Minima Flattening via Parameter
Hybridization for Efficient Online Knowledge Distillation", CVPR 2023, supplementary material): the online-KD
methods as columns in the supplement's order, DML, ONE, KDCL, OKDDip, FFL, PCL and OKDPH ("Ours").

A cell is the official code's number: the best test accuracy over all epochs of the best of the run's
outputs, averaged over seeds (tianlizhang/OKDPH src/OKDPH.py L143–145: the maximum over epochs of the
maximum over all nets; the same in src/02_ONE.py L143–145, src/04_OKDDip.py L156–158, src/05_FFL.py
L139–144, src/06_PCL.py L197–199): OKDPH's students and hybrid-weight model, a branch-based method's
branches with its ensemble, leader or fusion output (rdml.methods: each method's `outputs`). Each method
trains as the official scripts run it: DML and KDCL every student on its own view with the data set's
baseline augmentation (`baseline`; src/01_DML.py L147–153, src/03_KDCL.py L141–148); ONE, OKDDip and FFL
one view with that augmentation, PCL one view per branch (src/06_PCL.py L243–251); OKDPH a composition of
supplement Table 2 for each student and its hybrid-weight model (`views`), and ω, β, γ and Δ from
supplement Tables 6 and 7 (`hybrid`). A row's #S/B is the students of a student-based method and the
branches of a branch-based one (`branches`); where the official code departs from a method's own paper,
`official` sets the departure's key (rdml.methods.one, okddip, ffl, pcl name each), and the caption says so.
"""

import re

from rdml.keys import ConfigError
from rdml.methods import METHODS
from rdml.study.layouts.base import Claim, Entry, TableSpec, layout

METHOD_NAMES = ("dml", "one", "kdcl", "okddip", "ffl", "pcl", "okdph")  # the supplement's column order
BRANCHED = ("one", "okddip", "ffl", "pcl")  # one network of `branches` branches; the others train k students
HYBRID_KEYS = ("ce_weight", "kd_weight", "hybrid_weight", "fusion_every")


def _official(spec: dict, method: str, arch: str) -> dict:
    """The keys `official` sets for a method's runs on an architecture: every entry of the method that names no
    architecture or this one, in order (a later one wins)."""
    keys = {}
    for entry in spec.get("official") or []:
        if entry.get("method") == method and entry.get("arch", arch) == arch:
            keys.update({k: v for k, v in entry.items() if k not in ("method", "arch")})
    return keys


def _hybrid(spec: dict, **where) -> dict:
    """The OKDPH keys of the `hybrid` entry that matches `where` exactly (one, or a clear error)."""
    found = [h for h in spec["hybrid"] if all(h.get(k) == v for k, v in where.items())]
    if len(found) != 1:
        raise ConfigError(f"okdph: {len(found)} `hybrid` entries match {where}; give exactly one")
    return {k: found[0][k] for k in HYBRID_KEYS}


def _runs(plan, spec: dict, dataset: str, arch: str, k: int, seed: int, keys: dict, views: list[str],
          hybrid: dict, run_dataset: str, variant: str = "") -> dict:
    """The methods' runs of one cell row, by method: k students, or one network of k branches."""
    runs = {}
    for method in spec.get("methods", METHOD_NAMES):
        extra = dict(keys)
        if method == "okdph":
            extra.update(hybrid, student_augment=views)
        elif method in BRANCHED:
            extra.update({"branches": k, **_official(spec, method, arch)})
            baseline = spec["baseline"][dataset]
            extra.update({"student_augment": [baseline] * extra["branches"]} if METHODS[method].views else {"augment": baseline})
            runs[method] = plan.run(run_dataset, method, [arch], seed, keys=extra, study_dataset=dataset,
                                    variant="-".join(filter(None, (f"b{extra['branches']}", variant))))
            continue
        else:
            extra["student_augment"] = [spec["baseline"][dataset]] * k
        runs[method] = plan.run(run_dataset, method, [arch] * k, seed, alpha=1.0 if method == "dml" else None, keys=extra,
                                variant=variant, study_dataset=dataset)
    return runs


def _entries(row: str, column: str, run) -> Entry:
    """The run's best output: OKDPH's students and hybrid-weight model (not their ensemble, which the official
    code does not test), every output of a branch-based method, a DML or KDCL run's students."""
    if run.method in BRANCHED:
        models = METHODS[run.method].outputs(run.config)
    else:
        models = run.students + (("hwm",) if run.method == "okdph" else ())
    return Entry(row, (column,), run, models, best=True)


def _claims(row: str, columns: dict[str, str], family: str) -> list[Claim]:
    ours = columns.get("okdph")
    return [Claim(f"OKDPH > {METHODS[m].label({})}", (row, ours), (row, c), family)
            for m, c in columns.items() if m != "okdph" and ours]


@layout("okdph_table", ("archs", "students", "methods", "baseline", "views", "hybrid", "official"),
        title=("OKDPH supplement Table 3 layout", "online KD methods per number of students or branches"))
def okdph_table(plan, spec: dict) -> TableSpec:
    """Supplement Table 3: two, three and four students or branches of ResNet-32 and VGG-16 on CIFAR-10/100."""
    methods = spec.get("methods", METHOD_NAMES)
    columns = [f"{arch}: {METHODS[m].label({})}" for arch in spec["archs"] for m in methods]
    rows, entries, claims = [], [], []
    for d in plan.datasets:
        for k in spec["students"]:
            row = f"{d}, {k} students"
            rows.append(row)
            views = spec["views"][d][k]
            for arch in spec["archs"]:
                hybrid = _hybrid(spec, dataset=d, arch=arch, students=k)
                named = {m: f"{arch}: {METHODS[m].label({})}" for m in methods}
                claims += _claims(row, named, f"{row}, {arch}")
                for seed in plan.seeds:
                    for method, run in _runs(plan, spec, d, arch, k, seed, {}, views, hybrid, d).items():
                        entries.append(_entries(row, named[method], run))
    return TableSpec("okdph_table", "Top-1 {what} (%) of the best output of each run (OKDPH: its hybrid-weight model "
                     "included; a branch-based method: its branches and its ensemble, leader or fusion output), as the "
                     "official code reports it; a row's number is the students or branches (OKDPH supplement Table 3 layout)", rows, columns, entries,
                     bold_columns=[], claims=claims, figures=("curves",))


@layout("okdph_data_table", ("arch", "settings", "methods", "baseline", "views", "hybrid", "official"),
        title=("OKDPH supplement Table 4 layout", "online KD methods on noisy and scarce data"))
def okdph_data_table(plan, spec: dict) -> TableSpec:
    """Supplement Table 4: DenseNet-40-12 with noisy inputs and with 10 % and 1 % of the training images.
    `settings`, in the table's row order: each a `name`, the data set it trains on per study data set
    (`datasets`) and its training keys (`train`)."""
    methods = spec.get("methods", METHOD_NAMES)
    arch = spec["arch"]
    columns = [METHODS[m].label({}) for m in methods]
    rows, entries, claims = [], [], []
    for d in plan.datasets:
        for i, how in enumerate(spec["settings"]):
            setting = how["name"]
            row = f"{d}: {setting}"
            rows.append(row)
            run_dataset = (how.get("datasets") or {}).get(d, d)
            hybrid = _hybrid(spec, dataset=d, setting=setting)
            variant = re.sub(r"[^a-z0-9]+", "", setting.lower().replace("%", "pct"))  # the setting names its runs
            claims += _claims(row, dict(zip(methods, columns)), row)
            for seed in plan.seeds:
                for method, run in _runs(plan, spec, d, arch, 2, seed, how.get("train") or {}, spec["views"][d], hybrid,
                                         run_dataset, variant).items():
                    plan.reached(f"okdph_data_table.settings[{i}].train", how.get("train"), method)
                    entries.append(_entries(row, METHODS[method].label({}), run))
    return TableSpec("okdph_data_table", f"Top-1 {{what}} (%) of the best output of each run, {arch}, with noisy and "
                     "limited data (OKDPH supplement Table 4 layout)", rows, columns, entries, claims=claims,
                     figures=("curves",))
