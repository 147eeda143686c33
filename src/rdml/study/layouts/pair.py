"""DML Table 2 layout: rows (Net 1, Net 2); Ind., DML, and DML − Ind. for each net."""

from rdml.study.layouts.base import Claim, Derived, Entry, TableSpec, layout


@layout("pair_table", ("pairs",),
        title=("DML Table 2 layout", "network pairs, Ind. and DML"))
def pair_table(plan, spec: dict) -> TableSpec:
    columns = ["Ind. Net 1", "Ind. Net 2", "DML Net 1", "DML Net 2", "DML − Ind. Net 1", "DML − Ind. Net 2"]
    rows, entries, derived, claims = [], [], [], []  # DML Table 2: "All the network combinations ...
    # improve performance when learning in a cohort compared to learning independently"
    for d in plan.datasets:
        for first, second in spec["pairs"]:
            row = f"{d}: {first}, {second}"
            rows.append(row)
            for net, arch, student in ((1, first, "student_0"), (2, second, "student_1")):
                for seed in plan.seeds:
                    entries.append(Entry(row, (f"Ind. Net {net}",), plan.independent(d, arch, seed)))
                    entries.append(Entry(row, (f"DML Net {net}",), plan.mutual(d, [first, second], 1.0, seed), (student,)))
                derived.append(Derived(row, f"DML − Ind. Net {net}", (row, f"DML Net {net}"), (row, f"Ind. Net {net}")))
                claims.append(Claim(f"DML > Ind., Net {net}", (row, f"DML Net {net}"), (row, f"Ind. Net {net}"),
                                    f"{d}: DML vs Ind."))
    return TableSpec("pair_table", "DML of network pairs: {what} (%), and DML − Ind. in points (DML Table 2 layout)",
                     rows, columns, entries, derived, claims=claims, figures=("curves",), curves="columns")
