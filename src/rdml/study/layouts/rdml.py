"""RDML Tables 1 and 2 layout: rows Ind., then DML and RDML for each α (α = 1, DML, always included);
columns data set × architecture × student index, the two students of each run re-indexed ascending
by their value as the paper does; column-wise best in bold."""

from rdml.methods import METHODS
from rdml.study.layouts.base import Claim, Entry, TableSpec, layout


@layout("rdml_table", ("archs", "alphas"))
def rdml_table(plan, spec: dict) -> TableSpec:
    alphas = sorted({1.0, *map(float, spec["alphas"])})
    independent = METHODS["independent"].label({})

    def label(alpha: float) -> str:
        return METHODS["dml"].label({"alpha": alpha})

    columns = [f"{d}/{arch}/{i}" for d in plan.datasets for arch in spec["archs"] for i in (0, 1)]
    entries = []
    for d in plan.datasets:
        for arch in spec["archs"]:
            for seed in plan.seeds:
                entries.append(Entry(independent, (f"{d}/{arch}/0",), plan.independent(d, arch, seed)))
                for alpha in alphas:
                    entries.append(Entry(label(alpha), (f"{d}/{arch}/0", f"{d}/{arch}/1"),
                                         plan.mutual(d, [arch, arch], alpha, seed), ("student_0", "student_1"), ranked=True))
    # RDML §5: RDML "can improve" on DML (each α ≠ 1 against DML, one family per column), and DML on Ind.
    claims = [Claim(f"{label(a)} > DML", (label(a), c), (label(1.0), c), f"RDML vs DML, {c}")
              for c in columns for a in alphas if a != 1.0]
    claims += [Claim("DML > Ind.", (label(1.0), c), (independent, c), f"DML vs Ind., {c}") for c in columns[::2]]
    return TableSpec("rdml_table", "Top-1 {what} (%); students re-indexed ascending (RDML Tables 1–2 layout)",
                     [independent, *map(label, alphas)], columns, entries, bold_columns=columns, claims=claims,
                     figures=("curves", "best_alpha"))
