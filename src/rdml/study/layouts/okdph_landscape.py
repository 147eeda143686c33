"""OKDPH supplement §3.1, Figs. 2–5 (Zhang et al., CVPR 2023, supplementary material): the loss landscape of
two students of Base, DML and KDCL, each beside OKDPH's two, per backbone on CIFAR-10 and CIFAR-100: "our student
models converge to a broader and flatter basin, while other methods converge to two basins with various
flatness". ONE and OKDDip are left out there (their branches differ in size, "failing in the landscape comparison
by PCA"), and here.

A panel is one measurement (rdml.analysis.landscape.landscape_of_runs) of the method's run with the OKDPH run as
its partner: the four students' networks kept every `every` epochs as trajectories, their PCA plane, the grid's
training loss, drawn by the figure `landscape`. The grids (`panels`: bounds, step, the trajectories the PCA fits)
are those experiment/landscape/README.md gives per data set, backbone and method (tianlizhang/OKDPH). The runs:
DML, KDCL and OKDPH as okdph_table's two-student row (rdml.study.layouts.okdph `_runs`), and Base two networks
trained alone in one run with the baseline augmentation (grid_loss.py reads net0_ and net1_, L226, from the Base
run's folder, L239–240), each with `keep_every`: other runs than Table 3's (the key is part of a run's identity).

The supplement judges flatness by eye; the table gives rdml's number for it, each trajectory's end: the mean rise
of the training loss at its neighbours in the plane (rdml.analysis.landscape.trajectory_ends).
"""

from __future__ import annotations

import json

from rdml.keys import ConfigError
from rdml.methods import METHODS
from rdml.study.layouts.base import Entry, TableSpec, layout
from rdml.study.layouts.okdph import _hybrid, _runs

BASE = "Base"  # the supplement's name for networks trained alone (rdml's `independent`)
COMPARED = ("independent", "dml", "kdcl")  # Figs. 2–5, left to right
PANEL_KEYS = ("dataset", "arch", "method")  # what a panel is for; its other keys are the landscape's (landscape_spec)
COLUMNS = {"student_0": "S1", "student_1": "S2", "partner.student_0": "OKDPH S1", "partner.student_1": "OKDPH S2"}
EVERY = 5  # grid_loss.py --save_epoch 5 (L224): rdml epochs 1, 6, …, 296, the official 0-based 0, 5, …, 295


def _label(method: str) -> str:
    return BASE if method == "independent" else METHODS[method].label({})


def _row(dataset: str, arch: str, method: str) -> str:
    return f"{dataset}, {arch}: {_label(method)}"


def _panels(spec: dict, datasets: list[str], archs: list[str], methods: list[str]) -> dict[tuple, dict]:
    """The section's `panels` by (dataset, arch, method): exactly one for every data set, backbone and method."""
    panels = spec["panels"]
    if not isinstance(panels, list):
        raise ConfigError(f"okdph_landscape_table.panels={panels!r} is not allowed; it must be a list of "
                          "{dataset, arch, method, x_bounds, y_bounds[, step, fit]}")
    found = {}
    for i, panel in enumerate(panels):
        where = f"okdph_landscape_table.panels[{i}]"
        if not isinstance(panel, dict) or any(key not in panel for key in PANEL_KEYS):
            raise ConfigError(f"{where}={panel!r} is not allowed; it must name {', '.join(PANEL_KEYS)} and the grid")
        key = tuple(panel[k] for k in PANEL_KEYS)
        if key[0] not in datasets or key[1] not in archs or key[2] not in methods:
            raise ConfigError(f"{where}: {key} is not a panel of this table; allowed: data sets {datasets}, "
                              f"archs {archs}, methods {methods}")
        if key in found:
            raise ConfigError(f"{where}: a second panel for {key}")
        found[key] = panel
    missing = [(d, a, m) for d in datasets for a in archs for m in methods if (d, a, m) not in found]
    if missing:
        raise ConfigError(f"okdph_landscape_table.panels: no grid for {missing[:3]}{'…' if len(missing) > 3 else ''}")
    return found


def coarse(section: dict) -> dict:
    """The `_smoke` variant's grid: each panel 2 × 2 points over [−1, 1]², one checkpoint every epoch, the
    neighbours one unit away (a tiny network's plane is not the paper's)."""
    panels = [{**{k: p[k] for k in PANEL_KEYS}, "x_bounds": [-1, 1], "y_bounds": [-1, 1], "step": 2}
              for p in section.get("panels") or []]
    return {**section, "every": 1, "offsets": [0.0, 1.0], "panels": panels}


@layout("okdph_landscape_table", ("archs", "methods", "every", "offsets", "baseline", "views", "hybrid", "panels"),
        title=("OKDPH supplement Figs. 2–5 layout", "loss landscapes of Base, DML and KDCL beside OKDPH"),
        smoke=coarse)
def okdph_landscape_table(plan, spec: dict) -> TableSpec:
    """Supplement Figs. 2–5: a row per data set, backbone (`archs`) and method (`methods`, of Base, DML, KDCL),
    its four cells each student's rise of the training loss around its trajectory's end (the method's S1 and
    S2, OKDPH's S1 and S2: one measurement of the method's run beside the OKDPH run), mean over seeds; the
    figure `landscape` draws each row's plane. `every`: the runs' keep_every (5); `offsets`: along_path's
    (−1, 0, 1); `panels`: per row its grid (rdml.analysis.landscape.landscape_spec: x_bounds, y_bounds, step,
    fit)."""
    from rdml.analysis.landscape import landscape_spec  # imports torch: only when a study plans this table

    archs, methods = spec["archs"], spec.get("methods", list(COMPARED))
    if not isinstance(archs, list) or not archs or len(set(archs)) != len(archs):
        raise ConfigError(f"okdph_landscape_table.archs={archs!r} is not allowed; it must be a list of distinct architectures")
    if not isinstance(methods, list) or not methods or not set(methods) <= set(COMPARED) or len(set(methods)) != len(methods):
        raise ConfigError(f"okdph_landscape_table.methods={methods!r} is not allowed; allowed: distinct methods of "
                          f"{', '.join(COMPARED)}")
    every, offsets = spec.get("every", EVERY), spec.get("offsets", [-1.0, 0.0, 1.0])
    panels = _panels(spec, plan.datasets, archs, methods)
    keep = {"keep_every": every}
    rows, entries = [], []
    for d in plan.datasets:
        views, baseline = spec["views"][d], spec["baseline"][d]
        if not isinstance(views, list) or len(views) != 3:
            raise ConfigError(f"okdph_landscape_table.views.{d}={views!r} is not allowed; it must list 3 augmentations: "
                              "the two students' and the hybrid-weight model's")
        for arch in archs:
            hybrid = _hybrid(spec, dataset=d, arch=arch)
            for method in methods:
                grid = {k: v for k, v in panels[d, arch, method].items() if k not in PANEL_KEYS}
                settings = landscape_spec({**grid, "every": every, "offsets": offsets}, len(COLUMNS))  # refused here
                rows.append(row := _row(d, arch, method))
                for seed in plan.seeds:
                    okdph = _runs(plan, {**spec, "methods": ["okdph"]}, d, arch, 2, seed, keep, views, hybrid, d)["okdph"]
                    if method == "independent":
                        run = plan.run(d, "independent", [arch, arch], seed, keys={"augment": baseline, **keep})
                    else:
                        run = _runs(plan, {**spec, "methods": [method]}, d, arch, 2, seed, keep, views, hybrid, d)[method]
                    entries += [Entry(row, (column,), run, (student,), measure="landscape_rise", partner=okdph,
                                      settings=json.dumps(settings, sort_keys=True)) for student, column in COLUMNS.items()]
    return TableSpec(
        "okdph_landscape_table",
        "Rise of the training loss (mean cross-entropy, nats, lower: flatter) around the end of each student's "
        "trajectory in the panel's PCA plane: the mean over the points "
        f"{offsets} × {offsets} away from its last kept checkpoint (but itself) minus the loss there, mean over "
        f"seeds. S1, S2: the row's method's two students; OKDPH S1, S2: OKDPH's, in the same plane. The networks are "
        f"kept every {every} epochs (rdml epochs 1, {1 + every}, …; the official checkpoints counted from 0); the "
        "plane, grid and paths are experiment/landscape/grid_loss.py's (rdml.analysis.landscape), the grids as its "
        "README gives them, drawn as the figure. The supplement judges the basins by eye and prints no number; this "
        "one is rdml's. Fig. 2's caption says ResNet32, its text ResNet110; both are rows here (OKDPH supplement "
        "Figs. 2–5 layout)",
        rows, list(COLUMNS.values()), entries, figures=("landscape",),
        measurements={"landscape": {}}, scale=1.0, digits=3)
