"""Semi-supervised layout, DML §4.10 and Fig. 6 (CIFAR-100): a fraction of each class's training
images keeps its label; three strategies per fraction. "1) training on the labelled data only with
single network; 2) training on labelled data only with DML (DML-labelled). 3) training on all data
with DML, where the classification loss is computed for labelled data only, and KL loss is
calculated for all the training data (DML-all)." Each DML cell holds both students of every run. At
a fraction of 1 every image is labelled, so DML-labelled and DML-all read the same (plain DML) runs.
"""

from rdml.keys import ConfigError
from rdml.study.layouts.base import Claim, Entry, TableSpec, layout

ROWS = ["Single (labelled)", "DML-labelled", "DML-all"]


@layout("semi_table", ("arch", "fractions"),
        title=("DML Fig. 6 layout", "semi-supervised learning against the labelled fraction"))
def semi_table(plan, spec: dict) -> TableSpec:
    arch, fractions = spec["arch"], [float(f) for f in spec["fractions"]]
    if len(set(fractions)) != len(fractions) or not all(0 < f <= 1 for f in fractions):
        raise ConfigError(f"semi_table.fractions={spec['fractions']}: give distinct labelled fractions in (0, 1]")
    columns, entries, claims = [], [], []
    for d in plan.datasets:
        for f in fractions:
            column = f"{d}: {100 * f:g}% labelled"
            columns.append(column)
            # DML §4.10: "Training two networks with DML consistently performs better than training a single
            # network"; "DML-all further improves the performance by exploiting the unlabelled data"
            claims.append(Claim("DML-labelled > Single", ("DML-labelled", column), (ROWS[0], column), f"{d}: DML vs single"))
            if f < 1:
                claims.append(Claim("DML-all > DML-labelled", ("DML-all", column), ("DML-labelled", column),
                                    f"{d}: DML-all vs DML-labelled"))
            for seed in plan.seeds:
                runs = {row: semi_run(plan, d, arch, f, seed, row) for row in ROWS}
                entries += [Entry(row, (column,), run, run.students) for row, run in runs.items()]
    return TableSpec("semi_table", f"Semi-supervised learning, {arch}: {{what}} (%) against the fraction of each class's "
                     "training images that keep their label; DML rows hold both students (DML Fig. 6)",
                     ROWS, columns, entries, bold_columns=columns, claims=claims,
                     figures=("curves", "fraction"))


def semi_run(plan, dataset: str, arch: str, fraction: float, seed: int, row: str):
    """The run of one strategy at one labelled fraction; plain Ind. / DML runs when all are labelled."""
    method, archs = ("independent", [arch]) if row == ROWS[0] else ("dml", [arch, arch])
    if fraction == 1.0:
        return plan.run(dataset, method, archs, seed, alpha=1.0 if method == "dml" else None)
    mode = "mimic" if row == "DML-all" else "drop"
    variant = f"lf{fraction:g}" + ("-all" if mode == "mimic" else "-labelled" if method == "dml" else "")
    return plan.run(dataset, method, archs, seed, alpha=1.0 if method == "dml" else None,
                    keys={"labelled_fraction": fraction, "unlabelled": mode}, variant=variant)
