"""Rényi-KD thesis Table 3.2 layout: per data set the vanilla student and one row per α of KD from
the study's teacher; average accuracy and improvement over vanilla in points, also at `at_epochs`."""

from rdml.study.layouts.base import Claim, Derived, Entry, TableSpec, layout


@layout("kd_table", ("student", "alphas", "temperature", "beta", "kd_scale", "at_epochs"),
        title=("Rényi-KD thesis Table 3.2 layout", "Rényi KD per α against the vanilla student"))
def kd_table(plan, spec: dict) -> TableSpec:
    student, teacher_arch = spec["student"], plan.study["teacher"]["arch"]
    at_epochs = spec.get("at_epochs", [])
    columns = ["Average accuracy", "Improvement"]
    for e in at_epochs:
        columns += [f"Average accuracy (epoch {e})", f"Improvement (epoch {e})"]
    rows, entries, derived, claims = [], [], [], []
    for d in plan.datasets:
        teacher = plan.teacher(d, teacher_arch)
        vanilla = f"{d}: vanilla {student}"
        runs_of = {vanilla: [plan.independent(d, student, seed) for seed in plan.seeds]}
        for alpha in map(float, spec["alphas"]):
            runs_of[f"{d}: α={alpha:g}"] = [plan.distil(d, student, teacher, alpha, seed, "kd_table") for seed in plan.seeds]
        rows += runs_of
        for epoch in [None, *at_epochs]:
            suffix = "" if epoch is None else f" (epoch {epoch})"
            for row, runs in runs_of.items():
                entries += [Entry(row, ("Average accuracy" + suffix,), run, epoch=epoch) for run in runs]
                if row != vanilla:
                    derived.append(Derived(row, "Improvement" + suffix, (row, "Average accuracy" + suffix),
                                           (vanilla, "Average accuracy" + suffix)))
                    # thesis §3.2: KD improves on vanilla for every α, and some α ≠ 1 on standard KD (α = 1)
                    column = "Average accuracy" + suffix
                    claims.append(Claim(f"{row[len(d) + 2:]} > vanilla", (row, column), (vanilla, column),
                                        f"{d}: KD vs vanilla{suffix}"))
                    if row != f"{d}: α=1" and f"{d}: α=1" in runs_of:
                        claims.append(Claim(f"{row[len(d) + 2:]} > α=1", (row, column), (f"{d}: α=1", column),
                                            f"{d}: Rényi KD vs KD{suffix}"))
    return TableSpec("kd_table", f"Rényi KD, student {student} from teacher {teacher_arch}: {{what}} (%) per α and "
                     "improvement over vanilla in points (thesis Table 3.2 layout)", rows, columns, entries, derived,
                     bold_columns=[c for c in columns if c.startswith("Average")], claims=claims,
                     figures=("curves", "box", "alpha_difference"))
