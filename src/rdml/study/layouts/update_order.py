"""DML Fig. 2b layout: DML of two networks updated one after the other (Algorithm 1, "sequential") against both
updated at once from the same predictions ("distributed": "each network is trained on a separate GPU … the
predictions and parameters of two networks are updated simultaneously", §4.5). With `distributed: true` that column
trains one process per network (rdml.train.distributed, `distributed=true`), as the paper ran it; with false, both
networks in one process (rdml.methods.dml `update_order=simultaneous`), which computes the same terms. A row per
data set, every network of every run; the curves figure draws each order's test metrics per epoch (Fig. 2b's
convergence)."""

from rdml.config import method_keys
from rdml.study.layouts.base import Claim, Entry, TableSpec, layout, task_metric

SEQUENTIAL = "sequential (Algorithm 1)"
TOGETHER = {True: "distributed (a process per network)", False: "simultaneous (one process)"}


@layout("update_order_table", ("arch", "distributed"), title=("DML Fig. 2b layout", "sequential against distributed DML updates"))
def update_order_table(plan, spec: dict) -> TableSpec:
    arch, spread = spec["arch"], bool(spec.get("distributed", False))
    # the run of the study's own order is its DML run (no variant): the other column's is named by its keys
    studied = plan.shared.get("update_order", method_keys("dml")["update_order"].default)
    columns = {SEQUENTIAL: {"update_order": "sequential"},
               TOGETHER[spread]: {"update_order": "simultaneous", **({"distributed": True} if spread else {})}}
    rows, entries, claims = [], [], []
    for d in plan.datasets:
        row = f"{d}: {arch}"
        rows.append(row)
        # DML §4.5: "our DML's performance is further boosted by distributed training"
        claims.append(Claim("distributed > sequential", (row, TOGETHER[spread]), (row, SEQUENTIAL),
                            "distributed vs sequential"))
        for seed in plan.seeds:
            for column, keys in columns.items():
                own = keys["update_order"] == studied and not keys.get("distributed")
                variant = "" if own else "distributed" if keys.get("distributed") else keys["update_order"]
                run = plan.run(d, "dml", [arch, arch], seed, 1.0, keys=keys, variant=variant)
                entries.append(Entry(row, (column,), run, run.students))
    how = ("each on a process and device of its own exchanging their logits (DML §4.5's distributed training)" if spread
           else "both in one process (the terms of DML §4.5's distributed training)")
    return TableSpec("update_order_table", f"{arch}, DML of two networks: {{what}} (%) of every network, updated one after "
                     f"the other (Algorithm 1) or both at once from the same predictions, {how} (DML Fig. 2b layout)",
                     rows, list(columns), entries, claims=claims, figures=("curves",), curves="columns",
                     metric=task_metric(plan.datasets))
