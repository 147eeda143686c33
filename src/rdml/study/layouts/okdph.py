"""OKDPH supplement layouts (Zhang et al., "Generalization Matters: Loss Minima Flattening via Parameter
Hybridization for Efficient Online Knowledge Distillation", CVPR 2023, supplementary material): the
student-based online-KD methods as columns (DML, KDCL, OKDPH).

A cell is the official code's number: the best test accuracy over all epochs of the best of the run's
networks, the hybrid-weight model included for OKDPH (tianlizhang/OKDPH src/OKDPH.py L143–145: the
maximum over epochs of the maximum over all nets), averaged over seeds. Each method trains as the
official scripts run it, every student on its own view of each image: DML and KDCL with the data set's
baseline augmentation for all (`baseline`; src/01_DML.py L147–153, src/03_KDCL.py L141–148), OKDPH
with a composition of supplement Table 2 for each student and its hybrid-weight model (`views`, per
data set and number of students), and ω, β, γ and Δ from supplement Tables 6 and 7 (`hybrid`).
"""

import re

from rdml.keys import ConfigError
from rdml.methods import METHODS
from rdml.study.layouts.base import Claim, Entry, TableSpec, layout

METHOD_NAMES = ("dml", "kdcl", "okdph")
HYBRID_KEYS = ("ce_weight", "kd_weight", "hybrid_weight", "fusion_every")


def _hybrid(spec: dict, **where) -> dict:
    """The OKDPH keys of the `hybrid` entry that matches `where` exactly (one, or a clear error)."""
    found = [h for h in spec["hybrid"] if all(h.get(k) == v for k, v in where.items())]
    if len(found) != 1:
        raise ConfigError(f"okdph: {len(found)} `hybrid` entries match {where}; give exactly one")
    return {k: found[0][k] for k in HYBRID_KEYS}


def _runs(plan, spec: dict, dataset: str, arch: str, k: int, seed: int, keys: dict, views: list[str],
          hybrid: dict, run_dataset: str, variant: str = "") -> dict:
    """The three methods' runs of one cell row, by method."""
    runs = {}
    for method in spec.get("methods", METHOD_NAMES):
        extra = dict(keys)
        if method == "okdph":
            extra.update(hybrid, student_augment=views)
        else:
            extra["student_augment"] = [spec["baseline"][dataset]] * k
        runs[method] = plan.run(run_dataset, method, [arch] * k, seed, alpha=1.0 if method == "dml" else None, keys=extra,
                                variant=variant, study_dataset=dataset)
    return runs


def _entries(row: str, column: str, run) -> Entry:
    models = run.students + (("hwm",) if run.method == "okdph" else ())
    return Entry(row, (column,), run, models, best=True)


def _claims(row: str, columns: dict[str, str], family: str) -> list[Claim]:
    ours = columns.get("okdph")
    return [Claim(f"OKDPH > {METHODS[m].label({})}", (row, ours), (row, c), family)
            for m, c in columns.items() if m != "okdph" and ours]


@layout("okdph_table", ("archs", "students", "methods", "baseline", "views", "hybrid"),
        title=("OKDPH supplement Table 3 layout", "DML, KDCL and OKDPH per cohort"))
def okdph_table(plan, spec: dict) -> TableSpec:
    """Supplement Table 3: two, three and four students of ResNet-32 and VGG-16 on CIFAR-10/100."""
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
    return TableSpec("okdph_table", "Top-1 {what} (%) of the best network of each run (OKDPH: its hybrid-weight model "
                     "included), as the official code reports it (OKDPH supplement Table 3 layout)", rows, columns, entries,
                     bold_columns=[], claims=claims, figures=("curves",))


@layout("okdph_data_table", ("arch", "settings", "methods", "baseline", "views", "hybrid"),
        title=("OKDPH supplement Table 4 layout", "DML, KDCL and OKDPH on noisy and scarce data"))
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
    return TableSpec("okdph_data_table", f"Top-1 {{what}} (%) of the best network of each run, {arch}, with noisy and "
                     "limited data (OKDPH supplement Table 4 layout)", rows, columns, entries, claims=claims,
                     figures=("curves",))
