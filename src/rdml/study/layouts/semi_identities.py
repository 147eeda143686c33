"""Semi-supervised layout by class, DML §4.10 and Fig. 6 on Market-1501 (dml-deep-mutual-learning.md L292): "For
Market-1501, we randomly select M identities as labelled in the training set, varying M from 100 to 751", with the
three strategies of the CIFAR-100 part (rdml.study.layouts.semi): a single network on the labelled images, DML on
them (DML-labelled), and DML-all, "where the classification loss is computed for labelled data only, and KL loss is
calculated for all the training data". One row per M, the strategies as columns, in the task's metric (mAP on a
retrieval set). The labelled classes are `labelled_classes` (rdml.data.base.labelled_class_ids); the classifier keeps
one output per training class at every M, so the networks are the same at every M (the paper does not say).

"Single" is two networks trained alone, as DML Table 3's single-network row (rdml.study.layouts.market): every cell
holds both networks of every run, DML's too. With every class labelled the three strategies read the plain Ind. and
DML runs, which DML Table 3's scratch rows train too.
"""

from rdml.data.catalog import DATASETS
from rdml.keys import ConfigError
from rdml.study.layouts.base import Claim, Entry, TableSpec, layout, task_metric
from rdml.study.layouts.semi import ROWS as STRATEGIES

SINGLE, LABELLED, ALL = STRATEGIES  # "Single (labelled)", "DML-labelled", "DML-all": the CIFAR layout's names
SMOKE_IDENTITIES = [3, 12]  # the smoke variant's M; tiny_market1501 has 12 training identities (rdml.data.generated)


def smoke_identities(spec: dict) -> dict:
    """The smoke variant's M (tiny_market1501 has 12 training identities): a quarter of them, and all of them."""
    return {**spec, "identities": list(SMOKE_IDENTITIES)}


@layout("semi_identities_table", ("arch", "identities"),
        title=("DML Fig. 6 layout", "semi-supervised learning against the labelled identities"), smoke=smoke_identities)
def semi_identities_table(plan, spec: dict) -> TableSpec:
    arch, identities = spec["arch"], spec["identities"]
    if (not isinstance(identities, list) or not identities or len(set(identities)) != len(identities)
            or not all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in identities)):
        raise ConfigError(f"semi_identities_table.identities={identities!r}: give distinct numbers of labelled classes, "
                          "each an integer >= 1")
    rows, entries, claims = [], [], []
    for d in plan.datasets:
        classes = DATASETS[d].spec.num_classes
        if max(identities) > classes:
            raise ConfigError(f"semi_identities_table.identities={identities}: dataset {d} has {classes} training "
                              f"classes; give M in [1, {classes}]")
        for m in identities:
            row = f"{d}: M={m}"
            rows.append(row)
            # DML §4.10: "Training two networks with DML consistently performs better than training a single
            # network"; "DML-all further improves the performance by exploiting the unlabelled data"
            claims.append(Claim("DML-labelled > Single", (row, LABELLED), (row, SINGLE), f"{d}: DML vs single"))
            if m < classes:
                claims.append(Claim("DML-all > DML-labelled", (row, ALL), (row, LABELLED), f"{d}: DML-all vs DML-labelled"))
            for seed in plan.seeds:
                for column in STRATEGIES:
                    run = identities_run(plan, d, arch, m, seed, column)
                    entries.append(Entry(row, (column,), run, run.students))
    return TableSpec("semi_identities_table", f"Semi-supervised learning by identity, {arch}: {{what}} (%) against M, "
                     "the training classes whose images keep their label (every other class's images unlabelled; the "
                     "classifier keeps one output per training class); Single is two networks trained alone, and every "
                     "cell holds both networks of every run (DML Fig. 6)",
                     rows, list(STRATEGIES), entries, claims=claims, figures=("curves",), curves="columns",
                     metric=task_metric(plan.datasets))


def identities_run(plan, dataset: str, arch: str, identities: int, seed: int, column: str):
    """The run of one strategy with `identities` labelled classes; the plain Ind. and DML runs when all are."""
    method, alpha = ("independent", None) if column == SINGLE else ("dml", 1.0)
    if identities == DATASETS[dataset].spec.num_classes:
        return plan.run(dataset, method, [arch, arch], seed, alpha)
    mode = "mimic" if column == ALL else "drop"
    variant = f"lc{identities}" + {SINGLE: "", LABELLED: "-labelled", ALL: "-all"}[column]
    return plan.run(dataset, method, [arch, arch], seed, alpha, keys={"labelled_classes": identities, "unlabelled": mode},
                    variant=variant)
