"""OKDPH supplement §3.3, Table 5 (Zhang et al., CVPR 2023, supplementary material): the PAC-Bayes bound
of Base, DML, KDCL and OKDPH ("Ours") per backbone on CIFAR-10 and CIFAR-100, "our method achieves the
lowest PAC-Bayes bound on all kinds of backbones"; and its Fig. 1, the same four methods' bound of VGG16
"in different epochs" (okdph_pac_bayes_epochs_table: the runs keep their networks every `every` epochs).

The bound is Jiang et al.'s (2020) as rdml.analysis.pac_bayes computes it on each student's final weights
(rdml.analysis.measure). The supplement gives no formula and the official repository no code for it;
which of the two bounds it prints, against the initial weights (`init`, Jiang et al. eq. 48) or against
the origin (`orig`, eq. 49), it does not say, so the section's `bound` picks one and the caption names it.
The runs are okdph_table's two-student runs (rdml.study.layouts.okdph `_runs`: DML and KDCL each student on
its own view with the data set's baseline augmentation, OKDPH a composition per student and one for its
hybrid-weight model, ω, β, γ and Δ from supplement Table 6), and Base one network trained alone with the
baseline augmentation (tianlizhang/OKDPH src/00_Base.py L129–137: 'hflip' on CIFAR-10, 'hflip+rot' on
CIFAR-100, the SGD loop of the others).
"""

from rdml.keys import ConfigError
from rdml.methods import METHODS
from rdml.study.layouts.base import Claim, Entry, TableSpec, layout
from rdml.study.layouts.okdph import _hybrid, _runs

BASE = "Base"  # the supplement's name for one network trained alone (rdml's `independent`)
STUDENT_METHODS = ("dml", "kdcl", "okdph")  # two students each, as okdph_table's 2-student row
BOUNDS = {"init": "‖w − w_0‖², against each student's initial weights w_0 (Jiang et al. eq. 48)",
          "orig": "‖w‖², against the origin (Jiang et al. eq. 49)"}


def _label(method: str) -> str:
    return BASE if method == "independent" else METHODS[method].label({})


@layout("okdph_pac_bayes_table", ("archs", "bound", "baseline", "views", "hybrid", "pac_bayes"),
        title=("OKDPH supplement Table 5 layout", "PAC-Bayes bound of Base, DML, KDCL and OKDPH per backbone"))
def okdph_pac_bayes_table(plan, spec: dict) -> TableSpec:
    """Supplement Table 5: rows the backbones (`archs`), columns each data set's Base, DML, KDCL and OKDPH; a
    cell the mean over students and seeds of the `bound` ("init" or "orig") of each student's final weights.
    `views`: per data set, the two students' and the hybrid-weight model's compositions; `hybrid`: one entry
    per data set and backbone; `pac_bayes`: the measurement's settings (rdml.analysis.pac_bayes.pac_bayes_spec)."""
    from rdml.analysis.pac_bayes import pac_bayes_spec  # imports torch: only when a study plans this table

    bound = spec["bound"]
    if bound not in BOUNDS:
        raise ConfigError(f"okdph_pac_bayes_table.bound={bound!r} is not allowed; allowed: {', '.join(BOUNDS)}")
    archs = spec["archs"]
    if not isinstance(archs, list) or not archs or len(set(archs)) != len(archs):
        raise ConfigError(f"okdph_pac_bayes_table.archs={archs!r} is not allowed; it must be a list of distinct architectures")
    measurements = {"pac_bayes": pac_bayes_spec(spec.get("pac_bayes"))}
    methods = ("independent", *STUDENT_METHODS)
    columns = [f"{d}: {_label(m)}" for d in plan.datasets for m in methods]
    rows, entries, claims = list(archs), [], []
    # the methods' student runs exactly as okdph_table plans them (its `methods` section key)
    student_spec = {**spec, "methods": list(STUDENT_METHODS)}
    for d in plan.datasets:
        views = spec["views"][d]
        if not isinstance(views, list) or len(views) != 3:
            raise ConfigError(f"okdph_pac_bayes_table.views.{d}={views!r} is not allowed; it must list 3 augmentations: "
                              "the two students' and the hybrid-weight model's")
        baseline = spec["baseline"][d]
        for arch in archs:
            hybrid = _hybrid(spec, dataset=d, arch=arch)
            named = {m: f"{d}: {_label(m)}" for m in methods}
            # "our method achieves the lowest PAC-Bayes bound on all kinds of backbones" (§3.3): the table's metric
            # is higher-is-better, so each claim's higher cell is the other method's
            claims += [Claim(f"OKDPH < {_label(m)}", (arch, named[m]), (arch, named["okdph"]), f"{d}, {arch}")
                       for m in methods if m != "okdph"]
            for seed in plan.seeds:
                runs = {"independent": plan.run(d, "independent", [arch], seed, keys={"augment": baseline}),
                        **_runs(plan, student_spec, d, arch, 2, seed, {}, views, hybrid, d)}
                entries += [Entry(arch, (named[m],), run, run.students, measure=f"pac_bayes_{bound}")
                            for m, run in runs.items()]
    return TableSpec(
        "okdph_pac_bayes_table",
        "PAC-Bayes bound (·10^6, as the supplement prints it) of each student's final weights, mean over students and "
        f"seeds: Jiang et al.'s (2020) bound with {BOUNDS[bound]}, σ the largest Gaussian noise that moves the training accuracy by "
        f"{measurements['pac_bayes']['deviation']:g} (rdml.analysis.pac_bayes). The supplement does not say which "
        "bound it prints; this table uses "
        + ("orig, since the official scripts save each epoch's weights after its training and never the initial "
           "ones (src/00_Base.py L93–95, src/OKDPH.py L150–152), and Fig. 1's bound falls as training goes on, "
           "as ‖w‖² under weight decay does and ‖w − w_0‖², zero at the start, does not; "
           if bound == "orig" else
           "init, the bound whose prior sits at the initial weights, as Jiang et al. derive it (eq. 48); ")
        + "both are in each run's measurements. OKDPH: its two students, not its hybrid-weight model. The bound "
        "depends on how σ is searched and on the network's folding, so compare the order of the methods within "
        "a backbone (the paper: OKDPH lowest), not the values (OKDPH supplement Table 5 layout)",
        rows, columns, entries, claims=claims, measurements=measurements, scale=1e-6, digits=2)


EVERY = 25  # rdml epochs 1, 26, …, 276: the official 0-based 0, 25, …, 275, so Fig. 1's "175-th epoch" (§3.3) too


def _epoch_row(epoch: int) -> str:
    return f"epoch {epoch}"


@layout("okdph_pac_bayes_epochs_table", ("arch", "bound", "every", "baseline", "views", "hybrid", "pac_bayes"),
        title=("OKDPH supplement Fig. 1 layout", "PAC-Bayes bound of Base, DML, KDCL and OKDPH per epoch"))
def okdph_pac_bayes_epochs_table(plan, spec: dict) -> TableSpec:
    """Supplement Fig. 1 ("PAC-Bayes bound of models trained on VGG16 in different epochs", §3.3): rows the
    epochs the runs keep (`every`: keep_every, rdml epochs 1, 1+every, …) and the last, columns each data set's
    Base, DML, KDCL and OKDPH, a cell the mean over students and seeds of the `bound` at that epoch
    (rdml.analysis.measure.pac_bayes_epochs), drawn as the figure `pac_bayes_epochs`. The runs are
    okdph_pac_bayes_table's for the backbone `arch`, with `keep_every` set: other runs than Table 5's (the key
    is part of a run's identity), trained alike."""
    from rdml.analysis.measure import epoch_measure  # imports torch: only when a study plans this table
    from rdml.analysis.pac_bayes import pac_bayes_spec

    bound, arch, every = spec["bound"], spec["arch"], spec.get("every", EVERY)
    if bound not in BOUNDS:
        raise ConfigError(f"okdph_pac_bayes_epochs_table.bound={bound!r} is not allowed; allowed: {', '.join(BOUNDS)}")
    if not isinstance(arch, str) or not arch:
        raise ConfigError(f"okdph_pac_bayes_epochs_table.arch={arch!r} is not allowed; it must name one architecture")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"okdph_pac_bayes_epochs_table.every={every!r} is not allowed; it must be an integer >= 1 "
                          "(the runs keep epochs 1, 1+every, …)")
    measurements = {"pac_bayes_epochs": pac_bayes_spec(spec.get("pac_bayes"))}
    methods = ("independent", *STUDENT_METHODS)
    columns = [f"{d}: {_label(m)}" for d in plan.datasets for m in methods]
    student_spec = {**spec, "methods": list(STUDENT_METHODS)}
    keep = {"keep_every": every}
    entries, epochs = [], set()
    for d in plan.datasets:
        views = spec["views"][d]
        if not isinstance(views, list) or len(views) != 3:
            raise ConfigError(f"okdph_pac_bayes_epochs_table.views.{d}={views!r} is not allowed; it must list 3 augmentations: "
                              "the two students' and the hybrid-weight model's")
        hybrid = _hybrid(spec, dataset=d, arch=arch)
        for seed in plan.seeds:
            runs = {"independent": plan.run(d, "independent", [arch], seed, keys={"augment": spec["baseline"][d], **keep}),
                    **_runs(plan, student_spec, d, arch, 2, seed, keep, views, hybrid, d)}
            for method, run in runs.items():
                # the epochs measure_run measures: those keep_every keeps (rdml.train.checkpoint), then the last
                measured = sorted({*range(1, run.config.epochs + 1, every), run.config.epochs})
                epochs.update(measured)
                entries += [Entry(_epoch_row(e), (f"{d}: {_label(method)}",), run, run.students,
                                  measure=epoch_measure(f"pac_bayes_{bound}", e)) for e in measured]
    return TableSpec(
        "okdph_pac_bayes_epochs_table",
        f"PAC-Bayes bound (·10^6, as the supplement's Table 5 prints it) of {arch}'s students after each epoch (rows: "
        f"the networks kept every {every} epochs, rdml epochs counting from 1, the official code's from 0, and the "
        "last), mean over students and seeds: Jiang et al.'s (2020) bound with "
        f"{BOUNDS[bound]}, σ searched at every epoch as for the final weights (rdml.analysis.pac_bayes, deviation "
        f"{measurements['pac_bayes_epochs']['deviation']:g}). Fig. 1 prints no numbers and does not name its data "
        "set; the supplement says the bound falls as training goes on, rises slightly at the 175th epoch, and "
        "rises least for OKDPH. OKDPH: its two students, not its hybrid-weight model (OKDPH supplement Fig. 1 layout)",
        [_epoch_row(e) for e in sorted(epochs)], columns, entries, figures=("pac_bayes_epochs",),
        measurements=measurements, scale=1e-6, digits=2)
