"""DML §4.7–4.8 layout: DML and DML_e for each cohort size K, every student of every run in a cell.
With K = 2 DML_e is DML (the average of one peer is that peer), so that cell reads the DML runs."""

from rdml.study.layouts.base import layout, Entry, TableSpec


@layout("cohort_table", ("arch", "sizes"))
def cohort_table(plan, spec: dict) -> TableSpec:
    arch = spec["arch"]
    rows, entries = [], []
    for d in plan.datasets:
        for k in spec["sizes"]:
            row = f"{d}: K={k}"
            rows.append(row)
            for seed in plan.seeds:
                dml = plan.mutual(d, [arch] * k, 1.0, seed)
                dml_e = plan.mutual(d, [arch] * k, 1.0, seed, method="dml_e") if k > 2 else dml
                entries += [Entry(row, ("DML",), dml, dml.students), Entry(row, ("DML_e",), dml_e, dml_e.students)]
    return TableSpec("cohort_table", f"Cohort size, {arch} students: {{what}} (%) over every student; with K = 2 DML_e "
                     "is DML (DML §4.7–4.8 layout)", rows, ["DML", "DML_e"], entries)
