"""DML Table 4 layout: Net 1 trained alone teaches Net 2 ("1 distills 2") against DML of the pair."""

from rdml.study.layouts.base import Claim, Entry, TableSpec, layout, task_metric


@layout("kd_vs_dml_table", ("pairs", "temperature", "beta", "kd_scale"),
        title=("DML Table 4 layout", "distillation from a trained Net 1 against DML"))
def kd_vs_dml_table(plan, spec: dict) -> TableSpec:
    columns = ["Ind. Net 1", "Ind. Net 2", "1 distills 2 (Net 2)", "DML Net 1", "DML Net 2"]
    rows, entries, claims = [], [], []
    for d in plan.datasets:
        for first, second in spec["pairs"]:
            row = f"{d}: {first} → {second}"
            rows.append(row)
            # DML Table 4: distillation "does indeed improve the student performance compared to independently learning
            # the student"; DML "provides a clear improvement compared to distillation (1 distills 2 versus DML Net 2)";
            # "the network that would play the role of teacher actually becomes better than a pre-trained teacher"
            claims += [Claim("1 distills 2 > Ind. Net 2", (row, "1 distills 2 (Net 2)"), (row, "Ind. Net 2"), "KD vs Ind."),
                       Claim("DML Net 2 > 1 distills 2", (row, "DML Net 2"), (row, "1 distills 2 (Net 2)"), "DML vs KD"),
                       Claim("DML Net 1 > Ind. Net 1", (row, "DML Net 1"), (row, "Ind. Net 1"), "DML vs Ind.")]
            for seed in plan.seeds:
                net_1 = plan.independent(d, first, seed)
                dml = plan.mutual(d, [first, second], 1.0, seed)
                entries += [
                    Entry(row, ("Ind. Net 1",), net_1),
                    Entry(row, ("Ind. Net 2",), plan.independent(d, second, seed)),
                    Entry(row, ("1 distills 2 (Net 2)",), plan.distil(d, second, net_1, 1.0, seed, "kd_vs_dml_table")),
                    Entry(row, ("DML Net 1",), dml, ("student_0",)),
                    Entry(row, ("DML Net 2",), dml, ("student_1",)),
                ]
    return TableSpec("kd_vs_dml_table", "Distillation from a pretrained Net 1 versus DML: {what} (%) (DML Table 4 layout)",
                     rows, columns, entries, claims=claims, figures=("curves",), curves="columns",
                     metric=task_metric(plan.datasets))
