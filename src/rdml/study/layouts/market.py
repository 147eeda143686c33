"""DML Table 3 layout: person re-identification on Market-1501 (DML §4.3). A network trained alone and in a
DML cohort of two, from random initial weights and from published ImageNet weights; each cell holds mAP or
rank-1 of the single queries and of the multiple queries (a query's identity and camera pooled over gt_bbox),
of every network: a DML cell is "the average of the two networks" the paper reports, over seeds."""

from rdml.keys import one_of
from rdml.study.layouts.base import Claim, Entry, TableSpec, layout

# column → the recorded metric it reports (rdml.metrics): single query (SQ), multi-query (MQ)
COLUMNS = {"SQ mAP": "map", "SQ rank-1": "rank1", "MQ mAP": "mq_map", "MQ rank-1": "mq_rank1"}


FEATURES = ("each", "concatenated")


@layout("market_table", ("arch", "pretrained", "features"),
        title=("DML Table 3 layout", "a network alone and with DML, from scratch and from ImageNet weights"))
def market_table(plan, spec: dict) -> TableSpec:
    """`features`: each (default: every network's own, as Table 3 reports "the averaged performance of the two
    networks") or concatenated (a DML cohort matched on its networks' concatenated features, as the official
    evaluation does: eval_models.py L66-67); the multi-query columns where the study's runs score them."""
    arch, features = spec["arch"], spec.get("features", "each")
    one_of("market_table.features", features, FEATURES)
    scored = plan.shared.get("multiquery", "none") != "none"  # the runs score multiple queries at their last epoch
    columns = {c: m for c, m in COLUMNS.items() if scored or not m.startswith("mq_")}
    rows, entries, claims = [], [], []
    for d in plan.datasets:
        for pretrained in spec["pretrained"]:
            start = "ImageNet" if pretrained else "scratch"
            keys = {"pretrained": True} if pretrained else {}
            alone, mutual = f"{d}: {arch}, {start}", f"{d}: {arch}+DML, {start}"
            rows += [alone, mutual]
            # DML §4.3: "DML improves the performance of MobileNet ... both with and without pretraining"
            claims += [Claim(f"DML > Ind. in {column}, {start}", (mutual, column), (alone, column), f"DML vs Ind., {start}")
                       for column in columns]
            for seed in plan.seeds:
                # "Each MobileNet is trained in a two-network cohort and the averaged performance of the two networks
                # in the cohort is reported" (Table 3's caption): the row alone is two networks trained alone
                variant = "imagenet" if pretrained else ""
                single = plan.run(d, "independent", [arch, arch], seed, keys=keys, variant=variant)
                cohort = plan.run(d, "dml", [arch, arch], seed, 1.0, keys=keys, variant=variant)
                for row, run, read in ((alone, single, single.students),
                                       (mutual, cohort, ("ensemble",) if features == "concatenated" else cohort.students)):
                    entries += [Entry(row, (column,), run, read, metric=metric) for column, metric in columns.items()]
    queries = ("the single queries (SQ) and the multiple queries (MQ: each query's identity and camera pooled over "
               "gt_bbox)" if len(columns) > 2 else "the single queries (SQ)")
    read = ("every network of every run (a DML cell averages the cohort's two networks, as DML Table 3 reports)"
            if features == "each" else "every network trained alone, and each DML cohort matched on its two networks' "
            "concatenated features (the official evaluation, eval_models.py L66-67)")
    return TableSpec("market_table", f"Market-1501, {arch}: {{what}} and rank-1 (%) of {queries}, {read}; retrieval by "
                     "the L2-normalised pooled features, the official Market-1501 protocol (trapezoid AP)", rows,
                     list(columns), entries, claims=claims, metric="map", bold_columns=list(columns))
