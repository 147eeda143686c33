"""DML Fig. 5 layout (§4.9, "Does DML Makes Models More Similar?"): "the t-SNE visualisation of feature distribution on
the Market-1501 test set by two MobileNets", trained independently and with DML. The runs are DML Table 3's
scratch rows (rdml.study.layouts.market: two networks trained alone in one run, and a DML cohort of two), shared
with market_table, at the study's first seed: the paper draws one picture of each.

The figure `tsne` draws, per row and network, the gallery images of some identities embedded in 2-d, each as its
identity's number (rdml.analysis.tsne, which says how they are chosen and embedded). The paper prints no number;
the cells are rdml's, of the features the picture embeds: each network's mean silhouette of the identities, and
the linear CKA of the run's two networks' features (§4.9's question as a number: "do these model also produce
similar features, especially when the models have identical architecture?")."""

from rdml.analysis.tsne import tsne_spec
from rdml.data.catalog import DATASETS
from rdml.keys import ConfigError
from rdml.study.layouts.base import Entry, TableSpec, layout

ROWS = ("Independent", "DML")
COLUMNS = {"Silhouette": "silhouette", "Linear CKA": "peer_cka"}  # column → the measure it reads
SMOKE = {"identities": 4, "min_images": 6, "perplexity": 5.0}  # tiny_market1501: 8 gallery identities of 6 images


def smaller(section: dict) -> dict:
    """The `_smoke` variant: 4 identities of tiny_market1501's 8 (each has 6 gallery images), 24 points, perplexity 5."""
    return {**section, **SMOKE}


@layout("tsne_table", ("arch", "identities", "min_images", "perplexity", "tsne_seed"),
        title=("DML Fig. 5 layout", "t-SNE of two networks' features, trained alone and with DML"), smoke=smaller)
def tsne_table(plan, spec: dict) -> TableSpec:
    """`identities`, `min_images`, `perplexity` and `tsne_seed` (default 0): the measurement's keys
    (rdml.analysis.tsne.tsne_spec, checked here before any run is planned)."""
    arch = spec["arch"]
    measurement = tsne_spec({"identities": spec["identities"], "min_images": spec["min_images"],
                             "perplexity": spec["perplexity"], "seed": spec.get("tsne_seed", 0)})
    other = [d for d in plan.datasets if DATASETS[d].task != "retrieval"]
    if other:
        raise ConfigError(f"tsne_table: datasets {other} have no gallery; allowed: retrieval sets "
                          f"({', '.join(sorted(d for d, s in DATASETS.items() if s.task == 'retrieval'))})")
    seed = plan.seeds[0]
    rows, entries = [], []
    for d in plan.datasets:
        named = {name: f"{d}: {name}" for name in ROWS}
        rows += list(named.values())
        # the same calls as market_table's scratch rows, so that the runs are its own
        runs = {"Independent": plan.run(d, "independent", [arch, arch], seed),
                "DML": plan.run(d, "dml", [arch, arch], seed, 1.0)}
        for name, run in runs.items():
            entries.append(Entry(named[name], ("Silhouette",), run, run.students, measure=COLUMNS["Silhouette"]))
            # one CKA per run: student_0's with its one peer is student_1's with it
            entries.append(Entry(named[name], ("Linear CKA",), run, ("student_0",), measure=COLUMNS["Linear CKA"]))
    m = measurement
    return TableSpec(
        "tsne_table",
        f"{arch}, two networks per run, seed {seed}: the gallery images of {m['identities']} identities drawn with seed "
        f"{m['seed']} from those with at least {m['min_images']} images (junk and distractors left out), each network's "
        "pooled features L2-normalised as retrieval matches them. Silhouette: the mean silhouette of the identities "
        "in that feature space (−1 to 1; higher: identities further apart), over both networks; Linear CKA: of the "
        "run's two networks' features of the same images (Kornblith et al. 2019; 1: alike up to a rotation and a "
        f"scale). The figure embeds each network's features by t-SNE (perplexity {m['perplexity']:g}, PCA "
        "initialisation, exact gradient, float64; scikit-learn) and draws each image as its identity's number. The "
        "paper draws the figure and prints no number; these are rdml's (DML Fig. 5 layout)",
        rows, list(COLUMNS), entries, figures=("tsne",), measurements={"tsne": measurement}, scale=1.0, digits=3)
