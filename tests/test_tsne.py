"""DML Fig. 5 (t-SNE of two networks' Market-1501 features, trained alone and with DML): the `tsne` measurement
against scikit-learn's TSNE called on features computed here, the identities drawn, the table's numbers against
hand computations, the figure's panels and numbers, the layout's runs (market_table's), refusals, and a tiny study
trained, measured, tabulated and drawn."""

import json
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import yaml
from matplotlib.colors import to_hex

from conftest import run
from rdml.analysis.measure import measure_run
from rdml.analysis.tsne import (PCA_SCALE, TRUST_NEIGHBOURS, choose_identities, embed_students, linear_cka,
                                tsne_spec)
from rdml.data.base import load_dataset
from rdml.keys import ConfigError
from rdml.report.figures import PALETTE, TABLE_FIGURES, save_figure
from rdml.study.params import load_params, with_smoke_studies
from rdml.study.plan import plan_jobs, plan_measurements, plan_study, plan_tables
from rdml.train.cohort import rebuild

REPO = Path(__file__).resolve().parents[1]
SPEC = {"identities": 4, "min_images": 6, "perplexity": 5.0, "seed": 0}  # tiny_market1501: 8 identities of 6 images
TINY = ["dataset=tiny_market1501", "epochs=1", "batch_size=16", "optimizer=adam", "lr=0.001", "normalize=inception",
        "device=cpu", "precision=fp32", "memory_format=contiguous"]


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


@pytest.fixture(scope="module")
def cohort_run(tmp_path_factory):
    """A finished DML cohort of two tiny re-ID networks on tiny_market1501, and its tsne measurement."""
    out = tmp_path_factory.mktemp("runs") / "dml"
    run(out, "method=dml", "arch=reid_tiny,reid_tiny", *TINY)
    return out, measure_run(out, {"tsne": SPEC}, torch.device("cpu"))


def hand_features(run_dir: Path, rows) -> list[np.ndarray]:
    """Each network's pooled features of gallery rows `rows`, read here: model.pt rebuilt, one forward pass, float64,
    each row divided by its Euclidean norm (Market_1501_evaluation.m's normalisation)."""
    record = json.loads((run_dir / "record.json").read_text())
    data = load_dataset("tiny_market1501", split_seed=record["config"]["split_seed"],
                        test_fraction=record["config"]["test_fraction"], normalize="inception")
    cohort, _ = rebuild(torch.load(run_dir / "model.pt", weights_only=True), record["config"], data, torch.device("cpu"))
    x = data.inputs(data.probes["gallery"].x[torch.as_tensor(rows)])
    features = []
    for student in cohort:
        student.model.eval()
        with torch.no_grad():
            f = student.model.features(x).double().numpy()
        features.append(f / np.sqrt((f ** 2).sum(axis=1, keepdims=True)))
    return features


def hand_silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Rousseeuw (1987): per point (b − a) / max(a, b), a its mean distance to its own cluster's other points, b the
    least mean distance to another cluster; the mean over points."""
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    values = []
    for i in range(len(x)):
        own = (labels == labels[i]) & (np.arange(len(x)) != i)
        a = d[i, own].mean()
        b = min(d[i, labels == other].mean() for other in set(labels.tolist()) - {labels[i]})
        values.append((b - a) / max(a, b))
    return float(np.mean(values))


def hand_trustworthiness(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Venna & Kaski (2001): 1 − 2 / (n k (2n − 3k − 1)) Σ_i Σ_{j in U_i} (r(i, j) − k), U_i the k nearest neighbours
    of i in the embedding that are not among its k nearest in the input, r(i, j) j's rank among i's input neighbours."""
    n = len(x)
    dx = ((x[:, None] - x[None]) ** 2).sum(-1)
    dy = ((y[:, None] - y[None]) ** 2).sum(-1)
    total = 0
    for i in range(n):
        order_x = [j for j in np.argsort(dx[i], kind="stable") if j != i]
        order_y = [j for j in np.argsort(dy[i], kind="stable") if j != i]
        rank = {j: r + 1 for r, j in enumerate(order_x)}
        total += sum(rank[j] - k for j in order_y[:k] if j not in order_x[:k])
    return 1 - 2 / (n * k * (2 * n - 3 * k - 1)) * total


def test_the_measurement_is_sklearn_s_tsne_of_each_network_s_normalised_gallery_features(cohort_run):
    """Every gallery image of the drawn identities, in gallery order; per network scikit-learn's TSNE called here on
    the features computed here (exact gradient, its PCA initialisation in float64); the silhouette, the CKA and the
    trustworthiness against their formulas."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    out, measured = cohort_run
    found = measured["tsne"]
    data = load_dataset("tiny_market1501", split_seed=0, test_fraction=0.25, normalize="inception")
    ids = data.probes["gallery"].ids.numpy()
    assert found["spec"] == SPEC and found["identities"] == choose_identities(ids, 4, 6, 0)
    assert found["rows"] == [i for i, identity in enumerate(ids) if identity in found["identities"]]
    assert found["identity"] == ids[found["rows"]].tolist() and len(found["rows"]) == 4 * 6
    features = hand_features(out, found["rows"])
    labels = np.array(found["identity"])
    for k, x in enumerate(features):
        student = f"student_{k}"
        pcs = PCA(n_components=2, svd_solver="full").fit_transform(x)
        fit = TSNE(n_components=2, perplexity=5.0, init=pcs / np.std(pcs[:, 0]) * PCA_SCALE, method="exact", random_state=0)
        points = fit.fit_transform(x)
        assert points.dtype == np.float64
        drawn = found["students"][student]
        np.testing.assert_allclose(np.column_stack([drawn["x"], drawn["y"]]), points, rtol=1e-9, atol=1e-9)
        assert drawn["kl_divergence"] == pytest.approx(fit.kl_divergence_, rel=1e-9)
        assert drawn["trustworthiness"] == pytest.approx(hand_trustworthiness(x, points, TRUST_NEIGHBOURS), abs=1e-12)
        values = measured["students"][student]
        assert values["silhouette"] == pytest.approx(hand_silhouette(x, labels), rel=1e-9)
        assert values["peer_cka"] == pytest.approx(linear_cka(features[0], features[1]), rel=1e-9)
    again = measure_run(out, {"tsne": SPEC}, torch.device("cpu"))
    assert again["tsne"] == found and again["students"] == measured["students"]  # deterministic on the CPU


def test_linear_cka_is_the_centred_gram_matrices_alignment():
    """tr(K L) / sqrt(tr(K K) tr(L L)) of the centred linear kernels (Kornblith et al. 2019 eq. 4's HSIC form); 1
    under a rotation and a scale, below 1 for unrelated features, symmetric."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(30, 7)), rng.normal(size=(30, 5))
    centre = np.eye(30) - 1 / 30
    k, m = centre @ a @ a.T @ centre, centre @ b @ b.T @ centre
    assert linear_cka(a, b) == pytest.approx(np.trace(k @ m) / np.sqrt(np.trace(k @ k) * np.trace(m @ m)), rel=1e-12)
    rotation, _ = np.linalg.qr(rng.normal(size=(7, 7)))
    assert linear_cka(a, 3.0 * a @ rotation + 1.0) == pytest.approx(1.0, rel=1e-12)
    assert linear_cka(a, b) == pytest.approx(linear_cka(b, a), rel=1e-12) and linear_cka(a, b) < 0.5


def test_embed_students_holds_every_point_and_the_table_s_numbers():
    """Two networks' features of three clusters: per network the silhouette (formula) and the CKA of its features
    with its peer; every point with its identity; a lone network has no peer_cka."""
    rng = np.random.default_rng(0)
    labels = np.repeat([5, 9, 12], 8)
    centres = rng.normal(size=(3, 10)) * 3
    features = [centres[np.searchsorted([5, 9, 12], labels)] + rng.normal(size=(24, 10)) for _ in range(2)]
    summaries, embedding = embed_students(features, labels, tsne_spec(SPEC))
    normalised = [f / np.sqrt((f ** 2).sum(1, keepdims=True)) for f in features]
    assert embedding["identity"] == labels.tolist() and set(embedding["students"]) == {"student_0", "student_1"}
    for k, name in enumerate(("student_0", "student_1")):
        assert summaries[name]["silhouette"] == pytest.approx(hand_silhouette(normalised[k], labels), rel=1e-9)
        assert summaries[name]["peer_cka"] == pytest.approx(linear_cka(normalised[0], normalised[1]), rel=1e-12)
        assert len(embedding["students"][name]["x"]) == len(embedding["students"][name]["y"]) == 24
    alone, _ = embed_students(features[:1], labels, tsne_spec(SPEC))
    assert set(alone["student_0"]) == {"silhouette"}


def test_identities_are_a_seeded_draw_of_those_with_enough_images():
    """Only identities with at least min_images images, never junk (−1) or distractors (0), sorted; one seed one
    draw; over seeds every eligible identity comes up."""
    counts = {-1: 50, 0: 50, 3: 5, 7: 2, 8: 6, 11: 9, 14: 4, 20: 7, 31: 5}
    ids = np.concatenate([np.full(n, identity) for identity, n in counts.items()])
    np.random.default_rng(1).shuffle(ids)
    eligible = {i for i, n in counts.items() if n >= 5 and i > 0}
    draws = {tuple(choose_identities(ids, 3, 5, seed)) for seed in range(40)}
    assert all(set(d) <= eligible and list(d) == sorted(d) and len(set(d)) == 3 for d in draws)
    assert set().union(*draws) == eligible and len(draws) > 1
    assert choose_identities(ids, 3, 5, 4) == choose_identities(ids.copy(), 3, 5, 4)
    assert choose_identities(ids, 5, 5, 0) == sorted(eligible)
    tiny = load_dataset("tiny_market1501", split_seed=0, test_fraction=0.25).probes["gallery"].ids.numpy()
    assert len(choose_identities(tiny, 8, 6, 0)) == 8  # its 8 test identities, 6 gallery images each


def tsne_entries(spec):
    return {(e.row, e.columns[0]): e for e in spec.entries}


def test_the_layout_reads_market_table_s_scratch_runs_at_the_first_seed(params):
    """Rows Independent and DML, the runs market_table's scratch rows train (none of its own), seed 0 alone; each
    network's silhouette and one CKA per run; the DML run measured for the t-SNE beside entropy_table's predictions."""
    specs = {spec.name: spec for spec in plan_tables(params, "dml_market")}
    table, market = specs["tsne_table"], specs["market_table"]
    assert table.rows == ["market1501: Independent", "market1501: DML"] and table.columns == ["Silhouette", "Linear CKA"]
    assert table.figures == ("tsne",)
    assert table.measurements == {"tsne": {"identities": 7, "min_images": 20, "perplexity": 30.0, "seed": 0}}
    entries = tsne_entries(table)
    scratch = {e.row: e.run for e in market.entries if e.run.seed == 0 and "scratch" in e.row}
    assert entries["market1501: Independent", "Silhouette"].run == scratch["market1501: mobilenetv1_100, scratch"]
    assert entries["market1501: DML", "Silhouette"].run == scratch["market1501: mobilenetv1_100+DML, scratch"]
    assert {e.run.seed for e in table.entries} == {0} and {len(e.run.archs) for e in table.entries} == {2}
    assert all(e.students == ("student_0", "student_1") for e in table.entries if e.columns == ("Silhouette",))
    assert all(e.students == ("student_0",) and e.measure == "peer_cka" for e in table.entries if e.columns == ("Linear CKA",))
    without = {**params, "studies": {"dml_market": {k: v for k, v in params["studies"]["dml_market"].items()
                                                    if k != "tsne_table"}}}
    assert [r.id for r in plan_study(params, "dml_market")] == [r.id for r in plan_study(without, "dml_market")]
    measured = plan_measurements(params, "dml_market")
    dml = entries["market1501: DML", "Silhouette"].run.id
    assert measured[dml][1] == {"predictions": {}, "tsne": table.measurements["tsne"]}
    smoke = {s.name: s for s in plan_tables(params, "dml_market_smoke")}["tsne_table"]
    assert smoke.measurements["tsne"] == SPEC and smoke.rows == ["tiny_market1501: Independent", "tiny_market1501: DML"]
    assert with_smoke_studies(params)["studies"]["dml_market_smoke"]["tsne_table"]["arch"] == "reid_tiny"


def fabricated_measurement(seed: int, students: int = 2) -> dict:
    rng = np.random.default_rng(seed)
    identity = [101, 101, 101, 205, 205, 999, 999, 999]
    return {"spec": {"identities": 3, "min_images": 2, "perplexity": 2.0, "seed": 0}, "identities": [101, 205, 999],
            "rows": list(range(8)), "identity": identity,
            "students": {f"student_{k}": {"x": rng.normal(size=8).tolist(), "y": rng.normal(size=8).tolist(),
                                          "kl_divergence": 0.5, "iterations": 999, "trustworthiness": 0.9 + 0.01 * k}
                         for k in range(students)}}


def test_the_figure_draws_each_image_as_its_identity_s_number(params, tmp_path):
    """A 2 × 2 grid (Independent, DML × network 1, 2), each point a text: its identity's number (1..N in id order)
    at its place, in its identity's colour; the legend names each number's identity; every point in the data file."""
    spec = {s.name: s for s in plan_tables(params, "dml_market")}["tsne_table"]
    entries = tsne_entries(spec)
    measured = {entries[row, "Silhouette"].run.id: {"tsne": fabricated_measurement(i)} for i, row in enumerate(spec.rows)}
    table = SimpleNamespace(name=spec.name, rows=spec.rows, columns=spec.columns, measured=measured,
                            study={"paper": "DML Tables 3-5, Figs. 2b and 3"})
    drawn = TABLE_FIGURES["tsne"](spec, table, None)
    panels = [ax for ax in drawn.figure.axes if ax.get_visible()]
    assert [ax.get_title().split("\n")[0] for ax in panels] == [f"{row}, network {k}" for row in spec.rows for k in (1, 2)]
    assert panels[1].get_title().endswith("trustworthiness 0.910")
    numbers = {101: "1", 205: "2", 999: "3"}
    for ax, (row, student) in zip(panels, [(row, s) for row in spec.rows for s in ("student_0", "student_1")]):
        points = measured[entries[row, "Silhouette"].run.id]["tsne"]["students"][student]
        texts = ax.texts
        assert [t.get_text() for t in texts] == [numbers[i] for i in fabricated_measurement(0)["identity"]]
        assert [t.get_position() for t in texts] == list(zip(points["x"], points["y"]))
        assert [to_hex(t.get_color()) for t in texts] == [PALETTE[int(t.get_text()) - 1].lower() for t in texts]
        left, right = ax.get_xlim()
        assert left < min(points["x"]) and right > max(points["x"])  # every number inside the panel
    legend = [t.get_text() for t in drawn.figure.legends[0].get_texts()]
    assert legend == ["1: identity 0101", "2: identity 0205", "3: identity 0999"]
    assert len(drawn.data) == 4 * 8 and set(drawn.data.network) == {"network 1", "network 2"}
    assert list(drawn.data.columns) == ["panel", "run", "network", "number", "identity", "x", "y", "trustworthiness"]
    assert "DML Tables 3-5, Figs. 2b and 3" in drawn.figure.get_suptitle()
    written = save_figure(drawn, tmp_path)
    assert [p.name for p in written] == ["fig_tsne_tsne_table.png", "fig_tsne_tsne_table.pdf", "fig_tsne_tsne_table.csv"]
    plt.close("all")
    unmeasured = SimpleNamespace(**{**vars(table), "measured": {}})
    assert TABLE_FIGURES["tsne"](spec, unmeasured, None) is None


STUDY = {"datasets": ["tiny_market1501"], "seeds": [0, 1], "metric": "final", "paper": "DML Fig. 5",
         "train": {"epochs": 1, "batch_size": 16, "optimizer": "adam", "lr": 0.001, "normalize": "inception",
                   "device": "cpu", "precision": "fp32", "memory_format": "contiguous"},
         "tsne_table": {"arch": "reid_tiny", "identities": 4, "min_images": 6, "perplexity": 5, "tsne_seed": 0}}


@pytest.mark.bad_input
@pytest.mark.parametrize("change, match", [
    ({"identities": 1}, r"tsne.identities=1 is not allowed; it must be an integer >= 2"),
    ({"min_images": 1.5}, r"tsne.min_images=1.5 is not allowed; it must be an integer >= 2"),
    ({"perplexity": 0}, r"tsne.perplexity=0 is not allowed; it must be a finite number > 0"),
    ({"perplexity": "30"}, r"tsne.perplexity='30' is not allowed"),
    ({"tsne_seed": -1}, r"tsne.seed=-1 is not allowed; it must be an integer >= 0"),
])
def test_bad_section_keys_are_refused_when_planned(change, match):
    study = {**STUDY, "tsne_table": {**STUDY["tsne_table"], **change}}
    with pytest.raises(ConfigError, match=match):
        plan_tables({"studies": {"t": study}}, "t")


@pytest.mark.bad_input
def test_a_set_without_a_gallery_is_refused_when_planned():
    study = {**STUDY, "datasets": ["synthetic"], "tsne_table": {**STUDY["tsne_table"], "arch": "cnn"}}
    with pytest.raises(ConfigError, match=r"tsne_table: datasets \['synthetic'\] have no gallery; allowed: retrieval sets"):
        plan_tables({"studies": {"t": study}}, "t")


@pytest.mark.bad_input
@pytest.mark.parametrize("spec, match", [
    ({**SPEC, "identities": 9}, r"tsne.identities=9: the gallery has 8 identities with at least 6 images"),
    ({**SPEC, "min_images": 7}, r"the gallery has 0 identities with at least 7 images"),
    ({**SPEC, "perplexity": 24.0}, r"tsne.perplexity=24 is not allowed for 24 images"),
    ({**SPEC, "neighbours": 3}, r"tsne: unknown keys \['neighbours'\]; allowed: identities, min_images, perplexity, seed"),
])
def test_a_measurement_the_gallery_cannot_give_is_refused(cohort_run, spec, match):
    with pytest.raises(ConfigError, match=match):
        measure_run(cohort_run[0], {"tsne": spec}, torch.device("cpu"))


@pytest.mark.bad_input
def test_too_few_images_for_the_trustworthiness_are_refused():
    features = [np.random.default_rng(0).normal(size=(10, 4))]
    with pytest.raises(ConfigError, match=r"tsne: 10 images; the trustworthiness of k = 5 neighbours needs more than 10"):
        embed_students(features, np.repeat([1, 2], 5), {**SPEC, "perplexity": 2.0})


@pytest.mark.bad_input
def test_a_run_without_a_gallery_is_refused(tmp_path):
    run(tmp_path / "run", "method=dml", "arch=mlp,mlp", "epochs=1")
    with pytest.raises(ConfigError, match=r"was trained on synthetic, which has no gallery"):
        measure_run(tmp_path / "run", {"tsne": SPEC}, torch.device("cpu"))


@pytest.mark.slow  # trains two tiny cohorts, measures, tabulates and draws (~10 s)
def test_a_tiny_study_is_trained_measured_tabulated_and_drawn(tmp_path, monkeypatch):
    """As the pipeline runs it: market_table's two scratch runs trained once for both tables, the tsne_table's seed
    measured, each cell read from the measures file, the figure written beside its data file."""
    import pandas as pd

    from rdml.audit import audit_cell
    from rdml.pipeline.jobs import measure_job, run_job
    from rdml.report.write import write_tables

    study = {**STUDY, "market_table": {"arch": "reid_tiny", "pretrained": [False]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"build": ["t"], "studies": {"t": study}}, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    try:
        params = load_params("params.yaml")
        assert len(plan_study(params, "t")) == 4  # two runs per seed, market_table's; tsne_table adds none
        for job in plan_jobs(params, "t"):
            run_job(job.spec(), gpus=0, threads=1)
        measured = plan_measurements(params, "t")
        assert {r.seed for r, _ in measured.values()} == {0} and len(measured) == 2
        for run_, wanted in measured.values():
            measure_job({"study": "t", "run": run_.id, "directory": run_.directory, "measurements": wanted}, gpus=0, threads=1)
        write_tables("t", "params.yaml")
    finally:
        torch.set_num_threads(threads)
    tables = tmp_path / "results" / "t" / "tables"
    sidecar = json.loads((tables / "tsne_table.cells.json").read_text())
    for run_, _ in measured.values():
        row = "tiny_market1501: DML" if run_.method == "dml" else "tiny_market1501: Independent"
        students = json.loads((tmp_path / "results" / "t" / "measures" / f"{run_.id}.json").read_text())["students"]
        silhouette = sidecar["cells"][f"{row}|Silhouette"]
        assert silhouette["n"] == 2 and silhouette["mean"] == pytest.approx(
            np.mean([students[s]["silhouette"] for s in ("student_0", "student_1")]), rel=1e-12)
        assert sidecar["cells"][f"{row}|Linear CKA"]["mean"] == students["student_0"]["peer_cka"]
    assert "| tiny_market1501: DML |" in (tables / "tsne_table.md").read_text()
    drawn = pd.read_csv(tables / "fig_tsne_tsne_table.csv")
    assert len(drawn) == 2 * 2 * 24 and set(drawn.number) == {1, 2, 3, 4}
    assert all((tables / f"fig_tsne_tsne_table.{s}").stat().st_size > 0 for s in ("png", "pdf"))
    # rdml audit --evaluate measures the run again: the same numbers, exactly, on this CPU
    lines = []
    assert audit_cell(tables / "tsne_table.cells.json", "tiny_market1501: DML|Silhouette", tmp_path, out=lines.append,
                      evaluate=True) == []
    assert any(line.strip().startswith("measured again") and "ok (exact" in line for line in lines), lines
