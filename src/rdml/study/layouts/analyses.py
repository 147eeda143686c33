"""The DML paper's analyses of trained models (§4.8), read from measurements of the runs' final
weights on their training images (rdml.analysis.measure):

- `entropy_table` (Fig. 4c): mean prediction entropy and mean sorted top-5 posterior of Ind. and
  DML students ("the entropy values averaged over all training samples of the DML trained model and
  the independently trained model, which are 1.7099 and 0.2602"), and the entropy of the teaching
  signal of DML against DML_e in a cohort of K ("DML (0.2805) than DML_e (0.1562)").
- `flat_minima_table` (Figs. 4a/4b): training loss before and after "adding independent Gaussian
  noise with variable standard deviation σ to each model parameter", mean ± sd over students,
  seeds and noise draws.
"""

from rdml.keys import ConfigError
from rdml.study.layouts.base import Claim, Entry, TableSpec, layout

TOP = [f"Top-{i}" for i in range(1, 6)]


@layout("entropy_table", ("arch", "cohort"),
        title=("DML §4.8 layout", "prediction entropy on the training images"))
def entropy_table(plan, spec: dict) -> TableSpec:
    arch, k = spec["arch"], int(spec["cohort"])
    if k < 3:
        raise ConfigError(f"entropy_table.cohort={spec['cohort']}: DML_e differs from DML only with K >= 3 students")
    columns = ["Entropy", *TOP, "Teaching-signal entropy"]
    measures = ["entropy", *(f"top{i}" for i in range(1, 6)), "signal_entropy"]
    rows, entries, claims = [], [], []
    for d in plan.datasets:
        cohorts = {f"{d}: Ind.": lambda s: plan.independent(d, arch, s),
                   f"{d}: DML": lambda s: plan.mutual(d, [arch] * 2, 1.0, s),
                   f"{d}: DML (K={k})": lambda s: plan.mutual(d, [arch] * k, 1.0, s),
                   f"{d}: DML_e (K={k})": lambda s: plan.mutual(d, [arch] * k, 1.0, s, method="dml_e")}
        rows += list(cohorts)
        for row, make in cohorts.items():
            for seed in plan.seeds:
                run = make(seed)
                wanted = zip(columns, measures) if len(run.archs) > 1 else zip(columns[:-1], measures[:-1])
                entries += [Entry(row, (column,), run, run.students, measure=m) for column, m in wanted]
        claims += [Claim("DML entropy > Ind. entropy", (f"{d}: DML", "Entropy"), (f"{d}: Ind.", "Entropy"), f"{d}: entropy"),
                   Claim("DML teaching signal entropy > DML_e's", (f"{d}: DML (K={k})", "Teaching-signal entropy"),
                         (f"{d}: DML_e (K={k})", "Teaching-signal entropy"), f"{d}: teaching signal")]
    return TableSpec("entropy_table", f"{arch} on the training images: mean prediction entropy (nats), mean k-th largest "
                     "posterior, and the mean entropy of the signal each student mimics (DML: each peer; DML_e: the "
                     "peers' average), over students and seeds (DML §4.8, Fig. 4c)", rows, columns, entries,
                     claims=claims, measurements={"predictions": {}}, scale=1.0, digits=4)


@layout("flat_minima_table", ("arch", "sigmas", "draws", "noise_seed"),
        title=("DML Figs. 4a–4b layout", "training loss under parameter noise"))
def flat_minima_table(plan, spec: dict) -> TableSpec:
    arch, sigmas, draws = spec["arch"], [float(s) for s in spec["sigmas"]], int(spec["draws"])
    if not sigmas or any(s <= 0 for s in sigmas) or len(set(sigmas)) != len(sigmas) or draws < 1:
        raise ConfigError(f"flat_minima_table: sigmas={spec['sigmas']}, draws={spec['draws']}: give distinct σ > 0 and "
                          "draws >= 1")
    columns = ["σ = 0", *(f"σ = {s:g}" for s in sigmas)]
    measures = ["loss", *(f"loss@{s:g}" for s in sigmas)]
    rows, entries = [], []
    # Fig. 4b: "after adding this perturbation the training loss of the independent model jumps up while the loss
    # of the DML model increases much less"
    claims = [Claim(f"Ind. loss > DML loss, {c}", (f"{d}: Ind.", c), (f"{d}: DML", c), f"{d}: loss under noise")
              for d in plan.datasets for c in columns[1:]]
    for d in plan.datasets:
        rows += [f"{d}: Ind.", f"{d}: DML"]
        for seed in plan.seeds:
            for row, run in ((f"{d}: Ind.", plan.independent(d, arch, seed)), (f"{d}: DML", plan.mutual(d, [arch] * 2, 1.0, seed))):
                entries += [Entry(row, (column,), run, run.students, measure=m) for column, m in zip(columns, measures)]
    noise = {"sigmas": sigmas, "draws": draws, "seed": int(spec.get("noise_seed", 0))}
    return TableSpec("flat_minima_table", f"{arch}: training loss before and after N(0, σ²) noise on every parameter, "
                     f"mean ± sd over students, seeds and {draws} noise draws per σ (DML §4.8, Figs. 4a/4b)",
                     rows, columns, entries, claims=claims, measurements={"noise": noise}, scale=1.0, digits=4)
