"""Cohort-size layout, rdml's CIFAR counterpart of DML Fig. 3 (which the paper ran on Market-1501 with
MobileNets, in mAP): for each cohort size K, K networks trained alone (Ind.), with DML and with DML_e;
each cell holds every student of every run (Fig. 3a, the average single network), and the ensemble
columns the cohort's mean prediction (Fig. 3b). With K = 2 DML_e is DML (the average of one peer is
that peer), so that cell reads the DML runs."""

from rdml.metrics import PRIMARY
from rdml.study.layouts.base import Claim, Entry, TableSpec, layout, task_metric

COLUMNS = ["Ind.", "DML", "DML_e", "Ind. ensemble", "DML ensemble", "DML_e ensemble"]


def smallest_sizes(spec: dict) -> dict:
    """The smoke variant's cohorts: the two smallest sizes (K = 3 is the first where DML_e differs from DML)."""
    return {**spec, "sizes": sorted(spec["sizes"])[:2]}


@layout("cohort_table", ("arch", "sizes"),
        title=("DML Fig. 3 layout", "cohort size, Ind., DML and DML ensemble"), smoke=smallest_sizes)
def cohort_table(plan, spec: dict) -> TableSpec:
    arch = spec["arch"]
    rows, entries, claims = [], [], []
    for d in plan.datasets:
        for k in spec["sizes"]:
            row = f"{d}: K={k}"
            rows.append(row)
            # DML §4.7: DML beats Ind. for a single network and as an ensemble (Fig. 3a/3b); DML_e "leads to worse
            # performance than DML with K − 1 teachers" (§3.3)
            claims += [Claim(f"DML > Ind., K={k}", (row, "DML"), (row, "Ind."), "DML vs Ind."),
                       Claim(f"DML ensemble > Ind. ensemble, K={k}", (row, "DML ensemble"), (row, "Ind. ensemble"),
                             "DML vs Ind. ensembles")]
            if k > 2:
                claims.append(Claim(f"DML > DML_e, K={k}", (row, "DML"), (row, "DML_e"), "DML vs DML_e"))
            for seed in plan.seeds:
                alone = plan.run(d, "independent", [arch] * k, seed)
                dml = plan.mutual(d, [arch] * k, 1.0, seed)
                dml_e = plan.mutual(d, [arch] * k, 1.0, seed, method="dml_e") if k > 2 else dml
                for name, run in (("Ind.", alone), ("DML", dml), ("DML_e", dml_e)):
                    entries += [Entry(row, (name,), run, run.students), Entry(row, (f"{name} ensemble",), run, ("ensemble",))]
    metric = task_metric(plan.datasets)
    if metric == PRIMARY:
        ensemble, source = "its students' mean probabilities", "rdml's CIFAR counterpart of DML Fig. 3a/3b, which used Market-1501"
    else:  # DML Fig. 3b: "matching based on concatenated feature of all members"
        ensemble, source = "matching on its students' concatenated features", "DML Fig. 3a/3b"
    return TableSpec("cohort_table", f"Cohort size, {arch} students: {{what}} (%) of every student, and of the cohort's "
                     f"ensemble ({ensemble}); Ind. trains the K students alone; with K = 2 DML_e is DML ({source})",
                     rows, COLUMNS, entries, claims=claims, figures=("curves",), curves="columns", metric=metric)
