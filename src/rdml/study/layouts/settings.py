"""DML Table 5 layout: DML against the two nearby ideas it is compared with (DML §4.8, "Table 5 further shows that
this is more effective ..."): a network alone with an entropy regulariser (rdml: the confidence penalty of Pereyra
et al. 2017, rdml.methods.independent) and DML with an L2 loss between the networks' pooled features
(rdml.methods.dml `feature_l2`). Every network of every run; on a retrieval set the single-query mAP and rank-1."""

from rdml.metrics import PRIMARY
from rdml.study.layouts.base import Claim, Entry, TableSpec, layout, task_metric

ROWS = ("Independent", "DML", "Independent, Entropy", "DML, L2")


@layout("settings_table", ("arch", "confidence_penalty", "feature_l2"),
        title=("DML Table 5 layout", "DML against an entropy regulariser and a feature L2 loss"))
def settings_table(plan, spec: dict) -> TableSpec:
    arch = spec["arch"]
    metric = task_metric(plan.datasets)
    columns = {"mAP": "map", "rank-1": "rank1"} if metric != PRIMARY else {"top-1": PRIMARY}
    keys = {"Independent": ("independent", {}, ""), "DML": ("dml", {}, ""),
            "Independent, Entropy": ("independent", {"confidence_penalty": spec["confidence_penalty"]}, "entropy"),
            "DML, L2": ("dml", {"feature_l2": spec["feature_l2"]}, "l2")}
    rows, entries, claims = [], [], []
    for d in plan.datasets:
        named = {name: f"{d}: {name}" for name in ROWS}
        rows += list(named.values())
        # DML §4.8: DML is "more effective ... when compared with the entropy regularisation-based approach"; Table 5's
        # DML row is also above its L2 variant, whose features are pulled together (§4.9: diverse features teach)
        claims += [Claim(f"DML > {other} in {column}", (named["DML"], column), (named[other], column), f"DML vs {other}")
                   for other in ("Independent, Entropy", "DML, L2") for column in columns]
        for seed in plan.seeds:
            for name, (method, own, variant) in keys.items():
                params = tuple(f"{plan.base}.settings_table.{k}" for k in own)
                run = plan.run(d, method, [arch, arch], seed, 1.0 if method == "dml" else None, keys=own, params=params,
                               variant=variant)
                entries += [Entry(named[name], (column,), run, run.students, metric=m) for column, m in columns.items()]
    what = "{what} and rank-1 (%) of every network (single queries)" if metric != PRIMARY else "{what} (%) of every network"
    return TableSpec("settings_table", f"{arch}, two networks per run: {what}; Independent, Entropy adds the confidence penalty of Pereyra et al. 2017 (β = "
                     f"{spec['confidence_penalty']:g}), DML, L2 an L2 loss between the two networks' pooled features "
                     f"(λ = {spec['feature_l2']:g}); the paper names neither weight (DML Table 5 layout)",
                     rows, list(columns), entries, claims=claims, metric=metric)
