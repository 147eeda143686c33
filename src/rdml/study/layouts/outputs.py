"""Every output a method evaluates, as columns: one row per data set, architecture and method; one
column per output the methods declare (rdml.methods.base.Method.outputs: the students and their
ensemble, OKDPH's hybrid-weight model, a multi-branch network's branches and its gated ensemble). The
OKDPH supplement reports the best of these outputs; this layout shows all of them, and a new method
appears in it with no layout of its own."""

from rdml.keys import ConfigError
from rdml.methods import METHODS
from rdml.study.layouts.base import Entry, TableSpec, layout


@layout("outputs_table", ("methods", "archs", "students"),
        title=("outputs layout", "every output each method evaluates"))
def outputs_table(plan, spec: dict) -> TableSpec:
    rows, columns, entries = [], [], []
    for d in plan.datasets:
        for arch in spec["archs"]:
            for name in spec["methods"]:
                method = METHODS[name]
                if method.uses_teacher:
                    raise ConfigError(f"outputs_table: method {name} distils from a teacher; the table takes methods "
                                      "that train without one")
                row = f"{d}: {arch}: {method.label({})}"
                rows.append(row)
                cohort = [arch] * max(spec.get("students", 1), method.min_students)
                for seed in plan.seeds:
                    run = plan.run(d, name, cohort, seed)
                    for output in method.outputs(run.config):
                        if output not in columns:
                            columns.append(output)
                        entries.append(Entry(row, (output,), run, (output,)))
    return TableSpec("outputs_table", "Every output each method evaluates: {what} (%)", rows, columns, entries,
                     figures=("curves",))
