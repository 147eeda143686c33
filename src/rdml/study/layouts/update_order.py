"""DML Fig. 2b layout: DML of two networks updated one after the other (Algorithm 1, "sequential") against both
updated at once from the same predictions ("distributed": "the predictions and parameters of two networks are
updated simultaneously", §4.5), one process here (rdml.methods.dml `update_order`). A row per data set, every
network of every run; the curves figure draws each order's test metrics per epoch (Fig. 2b's convergence)."""

from rdml.config import method_keys
from rdml.study.layouts.base import Claim, Entry, TableSpec, layout, task_metric

ORDERS = {"sequential": "sequential (Algorithm 1)", "simultaneous": "simultaneous (distributed)"}


@layout("update_order_table", ("arch",), title=("DML Fig. 2b layout", "sequential against simultaneous DML updates"))
def update_order_table(plan, spec: dict) -> TableSpec:
    arch = spec["arch"]
    # the run of the study's own order is its DML run (no variant): the other order's is named by it
    studied = plan.shared.get("update_order", method_keys("dml")["update_order"].default)
    rows, entries, claims = [], [], []
    for d in plan.datasets:
        row = f"{d}: {arch}"
        rows.append(row)
        # DML §4.5: "our DML's performance is further boosted by distributed training"
        claims.append(Claim("simultaneous > sequential", (row, ORDERS["simultaneous"]), (row, ORDERS["sequential"]),
                            "distributed vs sequential"))
        for seed in plan.seeds:
            for order, column in ORDERS.items():
                run = plan.run(d, "dml", [arch, arch], seed, 1.0, keys={"update_order": order},
                               variant="" if order == studied else order)
                entries.append(Entry(row, (column,), run, run.students))
    return TableSpec("update_order_table", f"{arch}, DML of two networks: {{what}} (%) of every network, updated one after "
                     "the other (Algorithm 1) or both at once from the same predictions (DML §4.5's distributed "
                     "training, in one process) (DML Fig. 2b layout)", rows, list(ORDERS.values()), entries,
                     claims=claims, figures=("curves",), curves="columns", metric=task_metric(plan.datasets))
