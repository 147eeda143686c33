"""DML Fig. 5 (§4.9, "Does DML Makes Models More Similar?"): "the t-SNE visualisation of feature distribution on
the Market-1501 test set by two MobileNets", trained with DML and independently; "different numbers indicate
different identities". The paper names neither how many identities it drew, nor which, nor the perplexity; here
they are the measurement's keys:

- `identities` identities drawn with numpy's default_rng(`seed`) from the gallery's identities that have at least
  `min_images` images (junk −1 and distractors 0000 left out: they are no identity), numbered 1..N in the order of
  their Market-1501 ids. A seeded draw, not the lowest ids, so that the choice is a sample no one picked, and
  another seed gives another;
- every gallery image of them, each network's pooled features (rdml.train.evaluate.split_features, the features
  retrieval matches on) L2-normalised as the matching normalises them (rdml.retrieval.l2_normalise), in float64;
- per network a 2-d t-SNE (van der Maaten & Hinton 2008) by scikit-learn's TSNE: `perplexity`, the exact
  gradient, and its PCA initialisation (the first two principal components scaled so that the first has
  standard deviation 1e-4, sklearn/manifold/_t_sne.py `_fit`, init="pca", L999-1009 in scikit-learn 1.9.1)
  computed here by an exact PCA and kept in float64 where scikit-learn casts it to float32 (L1006), so that the
  whole optimisation runs in float64. With that
  initialisation and the exact gradient, TSNE draws no random numbers: `seed` (its random_state too) changes the
  identities alone.

The features are computed on the CPU whatever device measures the run: a t-SNE moves with small changes of its
input, and `rdml audit --evaluate` measures again on the CPU.

The figure is a picture; the paper prints no number. rdml's numbers beside it, per network, of the features the
picture embeds: the mean silhouette of the identities (Rousseeuw 1987; Euclidean distance of the L2-normalised
features: do the identities form apart clusters where retrieval matches?), and the linear CKA of its features
with each other network's (Kornblith et al. 2019, on the same images: §4.9's question, whether the two networks
learn alike features, as one number; mean over peers). The picture's own number, the trustworthiness of the 2-d
embedding (Venna & Kaski 2001, k = TRUST_NEIGHBOURS: are the picture's near neighbours near in the features?),
is kept with its points, not as a table's number: a t-SNE's optimisation carries a difference in the last bits
of its input (another CPU's kernels) to another picture, which a feature-space number does not."""

from __future__ import annotations

import numbers

import numpy as np

from rdml.keys import ConfigError
from rdml.retrieval import DISTRACTOR, JUNK, l2_normalise

__all__ = ["TSNE_KEYS", "TRUST_NEIGHBOURS", "PCA_SCALE", "tsne_spec", "choose_identities", "pca_initialisation", "embed",
           "linear_cka", "embed_students", "gallery_features", "tsne_of_run"]

TSNE_KEYS = ("identities", "min_images", "perplexity", "seed")
TRUST_NEIGHBOURS = 5  # scikit-learn's default n_neighbors of manifold.trustworthiness
PCA_SCALE = 1e-4  # the first principal component's standard deviation in TSNE's PCA initialisation (_t_sne.py)
FEATURE_BATCH = 64  # images per forward pass on the CPU


def _integer(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"tsne.{name}={value!r} is not allowed; it must be an integer >= {low}")
    return int(value)


def tsne_spec(spec: dict) -> dict:
    """The measurement's keys checked (TSNE_KEYS, each required): `identities` and `min_images` integers >= 2
    (a silhouette needs two identities, and two images of each to have a neighbour), `perplexity` a real
    number > 0, `seed` an integer >= 0; the perplexity as a float, so that the spec a table asks for and the
    one a measurements file records compare equal."""
    if not isinstance(spec, dict):
        raise ConfigError(f"tsne={spec!r} is not allowed; it must be a mapping of {', '.join(TSNE_KEYS)}")
    unknown, missing = sorted(set(spec) - set(TSNE_KEYS)), [k for k in TSNE_KEYS if k not in spec]
    if unknown or missing:
        raise ConfigError(f"tsne: {'unknown keys ' + str(unknown) if unknown else 'missing keys ' + str(missing)}; "
                          f"allowed: {', '.join(TSNE_KEYS)} (each required)")
    perplexity = spec["perplexity"]
    if isinstance(perplexity, bool) or not isinstance(perplexity, numbers.Real) or not 0 < perplexity < float("inf"):
        raise ConfigError(f"tsne.perplexity={perplexity!r} is not allowed; it must be a finite number > 0")
    return {"identities": _integer("identities", spec["identities"], 2), "min_images": _integer("min_images", spec["min_images"], 2),
            "perplexity": float(perplexity), "seed": _integer("seed", spec["seed"], 0)}


def choose_identities(gallery_ids, count: int, min_images: int, seed: int) -> list[int]:
    """`count` identities drawn without replacement by np.random.default_rng(seed).choice from the sorted gallery
    identities with at least `min_images` images, junk (−1) and distractors (0) left out; returned sorted."""
    ids = np.asarray(gallery_ids, dtype=np.int64)
    values, counts = np.unique(ids[(ids != JUNK) & (ids != DISTRACTOR)], return_counts=True)
    eligible = values[counts >= min_images]
    if len(eligible) < count:
        raise ConfigError(f"tsne.identities={count}: the gallery has {len(eligible)} identities with at least "
                          f"{min_images} images (tsne.min_images); allowed: identities <= {len(eligible)}, or a lower min_images")
    return sorted(int(i) for i in np.random.default_rng(seed).choice(eligible, size=count, replace=False))


def pca_initialisation(x: np.ndarray) -> np.ndarray:
    """TSNE's init="pca" (_t_sne.py `_fit`: the first two principal components, divided by the first's standard
    deviation and multiplied by 1e-4) by an exact PCA (svd_solver="full": no randomized solver), in float64."""
    from sklearn.decomposition import PCA

    components = PCA(n_components=2, svd_solver="full").fit_transform(np.asarray(x, dtype=np.float64))
    return components / np.std(components[:, 0]) * PCA_SCALE


def embed(x: np.ndarray, perplexity: float, seed: int) -> tuple[np.ndarray, dict]:
    """The 2-d t-SNE of the rows of `x` (float64): scikit-learn's TSNE with the exact gradient and the PCA
    initialisation in float64 (pca_initialisation); its other settings scikit-learn's defaults (learning rate
    "auto", early exaggeration 12, 1000 iterations). Returns the points and the fit's final KL divergence and
    iterations."""
    from sklearn.manifold import TSNE

    x = np.asarray(x, dtype=np.float64)
    if not perplexity < len(x):
        raise ConfigError(f"tsne.perplexity={perplexity:g} is not allowed for {len(x)} images; it must be below the "
                          "number of images (tsne.identities × their images)")
    fit = TSNE(n_components=2, perplexity=perplexity, init=pca_initialisation(x), method="exact", random_state=seed)
    points = fit.fit_transform(x)
    return points, {"kl_divergence": float(fit.kl_divergence_), "iterations": int(fit.n_iter_)}


def linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    """Linear CKA of two feature matrices of the same rows (Kornblith et al. 2019, eq. for the linear kernel):
    ||B_c^T A_c||_F^2 / (||A_c^T A_c||_F ||B_c^T B_c||_F), each column centred; 1 for features equal up to a
    rotation and a scale, whatever their widths."""
    a, b = (np.asarray(m, dtype=np.float64) for m in (a, b))
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    return float(np.linalg.norm(b.T @ a) ** 2 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)))


def embed_students(features: list[np.ndarray], identities, spec: dict) -> tuple[dict, dict]:
    """Per network (`student_k`) the t-SNE of its L2-normalised features and the numbers beside it (the module
    docstring). `identities`: each row's identity. Returns (summaries, embedding): per network the numbers of its
    features, which a table reads (`silhouette`, and `peer_cka` where it has peers); and the picture, every
    point per network with the fit's KL divergence, iterations and trustworthiness, which a figure draws."""
    from sklearn.manifold import trustworthiness
    from sklearn.metrics import silhouette_score

    identities = np.asarray(identities, dtype=np.int64)
    rows = len(identities)
    if rows <= 2 * TRUST_NEIGHBOURS:
        raise ConfigError(f"tsne: {rows} images; the trustworthiness of k = {TRUST_NEIGHBOURS} neighbours needs more "
                          f"than {2 * TRUST_NEIGHBOURS}: raise tsne.identities or tsne.min_images")
    normalised = [l2_normalise(f) for f in features]
    summaries, students = {}, {}
    for k, x in enumerate(normalised):
        name = f"student_{k}"
        points, fit = embed(x, spec["perplexity"], spec["seed"])
        summaries[name] = {"silhouette": float(silhouette_score(x, identities, metric="euclidean"))}
        peers = [linear_cka(x, other) for j, other in enumerate(normalised) if j != k]
        if peers:
            summaries[name]["peer_cka"] = float(np.mean(peers))
        students[name] = {"x": points[:, 0].tolist(), "y": points[:, 1].tolist(), **fit,
                          "trustworthiness": float(trustworthiness(x, points, n_neighbors=TRUST_NEIGHBOURS))}
    return summaries, {"identity": identities.tolist(), "students": students}


def gallery_features(models, data, rows) -> list[np.ndarray]:
    """Each model's pooled features (rdml.train.evaluate.split_features, float64) of the gallery rows `rows`,
    computed on the CPU (the models moved there), in the order of `rows`."""
    import dataclasses
    from types import SimpleNamespace

    import torch

    from rdml.data.base import Probe
    from rdml.train.evaluate import split_features

    gallery = data.probes["gallery"]
    index = torch.as_tensor(np.asarray(rows, dtype=np.int64))
    cpu = torch.device("cpu")
    chosen = Probe(gallery.x[index.to(gallery.x.device)].to(cpu), gallery.ids[index], gallery.cams[index])  # ids: CPU
    subset = dataclasses.replace(data, probes={"gallery": chosen}, mean=data.mean.to(cpu), std=data.std.to(cpu))
    with torch.no_grad():
        return split_features([SimpleNamespace(model=m.to(cpu)) for m in models], subset, "gallery", FEATURE_BATCH)


def tsne_of_run(run, data, spec: dict) -> tuple[dict, dict]:
    """The `tsne` measurement of a finished run (rdml.train.verified.VerifiedRun) of one network per student on a
    retrieval set: the identities drawn (choose_identities), their gallery images' features per network on the
    CPU (each network rebuilt from model.pt there), embedded (embed_students). Returns (per student its summary,
    the embedding: the spec, the identities in their numbering's order, each point's gallery row and identity,
    and per student its points, with the scikit-learn that fitted them)."""
    import sklearn

    spec = tsne_spec(spec)
    if not data.probes or "gallery" not in data.probes:
        raise ConfigError(f"tsne: run {run.directory} was trained on {data.name}, which has no gallery; the t-SNE of "
                          "DML Fig. 5 reads a retrieval set's gallery (Market-1501)")
    ids = data.probes["gallery"].ids.cpu().numpy()
    chosen = choose_identities(ids, spec["identities"], spec["min_images"], spec["seed"])
    rows = np.flatnonzero(np.isin(ids, chosen))
    models = [run.model(k, data) for k in range(run.record["config"]["students"])]
    summaries, embedding = embed_students(gallery_features(models, data, rows), ids[rows], spec)
    return summaries, {"spec": spec, "identities": chosen, "rows": rows.tolist(), **embedding,
                       "scikit_learn": sklearn.__version__}
