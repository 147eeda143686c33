"""Person re-identification retrieval as the Market-1501 benchmark scores it (numpy, torch-free): L2-normalised
features, Euclidean distances, mAP and CMC rank-k with the benchmark's junk rule, two named AP rules, and
multi-query pooling.

Sources, read at the commits named here (lines cited as FILE:LINE):

- "official": zhunzhong07/person-re-ranking @278f2c7, `evaluation/` (the evaluation the DML README points to,
  YingZhangDUT/Deep-Mutual-Learning @34a2058 README.md:44): `Market_1501_evaluation.m` (normalisation L40-49, distance L57-59), `utils/evaluation.m` (junk, good, the
  averages) and `utils/compute_AP.m` (the trapezoid AP and the CMC after junk).
- "torchreid": KaiyangZhou/deep-person-reid @f8cd150, `torchreid/metrics/rank.py` `eval_market1501` (L94-153,
  non-interpolated AP) and `torchreid/data/datasets/image/market1501.py` (L71-72, L79-80: gallery and query images
  labelled -1 are dropped when the data set is read).
- Multi-query: person-re-ranking's `evaluation/` has no multi-query code; the Market-1501 authors' baseline script
  (header "Scalable Person Re-identification: A Benchmark, ICCV 2015"; `gt_dir = 'dataset\\gt_bbox\\'`) pools, for
  each query image, every `gt_bbox` image whose name starts with the query's first 7 characters (identity and
  camera, `dir([gt_dir img_name(1:7) '*.jpg'])`), each L2-normalised, by max (`Hist_max`) and by mean
  (`Hist_avg`), L2-normalises the pooled vector again ("another normalization") and scores it with the single
  query's own good and junk images; it reports both poolings.

Labels follow Market-1501's file names: identity -1 marks a junk gallery image (`-1_c1s1_...`), identity 0 a
distractor (`0000_...`), which counts as a negative like any other identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rdml.keys import ConfigError

__all__ = ["AP_RULES", "POOLINGS", "JUNK", "DISTRACTOR", "Retrieval", "l2_normalise", "distances", "evaluate",
           "pool_queries"]

AP_RULES = ("official", "torchreid")
POOLINGS = ("max", "mean")
JUNK = -1        # a gallery image labelled -1: neither good nor bad (utils/evaluation.m:3)
DISTRACTOR = 0   # `0000` images: an identity no query has, so always a negative


@dataclass(frozen=True)
class Retrieval:
    """What `evaluate` measured.

    mAP: the mean AP over the queries the rule counts (`counted` of them); cmc: rank k -> the fraction of counted
    queries whose first good image (junk removed) lies at rank <= k; ap: each query's AP, NaN where the rule skips
    the query (torchreid, a query without a valid match); first_match: each query's rank of its first good image
    after junk is removed (1-based), 0 where it has none; rule: the AP rule's name."""

    mAP: float
    cmc: dict[int, float]
    ap: np.ndarray
    first_match: np.ndarray
    counted: int
    rule: str


def _matrix(name: str, value, *, rows: int | None = None) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 2 or 0 in array.shape:
        raise ConfigError(f"{name} has shape {array.shape}; allowed: a 2-D array with at least one row and column")
    if rows is not None and array.shape[0] != rows:
        raise ConfigError(f"{name} has {array.shape[0]} rows; allowed: {rows} (one per label)")
    if array.dtype.kind not in "iuf":
        raise ConfigError(f"{name} has dtype {array.dtype}; allowed: integer or floating-point numbers")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ConfigError(f"{name} holds {int((~np.isfinite(array)).sum())} non-finite values (NaN or inf); "
                          "allowed: finite numbers only")
    return array


def _labels(name: str, value, length: int | None) -> np.ndarray:
    """Integer labels, one per row (`length` of them; any number where None)."""
    array = np.asarray(value)
    if array.ndim != 1 or length is not None and array.shape[0] != length:
        raise ConfigError(f"{name} has shape {array.shape}; allowed: "
                          + (f"({length},), one label per row" if length is not None else "a 1-D array"))
    if array.dtype.kind == "f" and np.isfinite(array).all() and (array == np.round(array)).all():
        array = array.astype(np.int64)  # Matlab's .mat labels are doubles
    if array.dtype.kind not in "iu":
        raise ConfigError(f"{name} has dtype {array.dtype} ({array[:3].tolist()}...); allowed: integer labels")
    return array.astype(np.int64)


def l2_normalise(features) -> np.ndarray:
    """Each row divided by its Euclidean norm (Market_1501_evaluation.m:40-49 divides each image's feature, a
    column there, by `sqrt(sum(feat.^2))`). A zero row has no direction and is refused (Matlab would give NaN)."""
    array = _matrix("features", features)
    norms = np.sqrt((array ** 2).sum(axis=1, keepdims=True))
    zero = np.flatnonzero(norms[:, 0] == 0)
    if zero.size:
        raise ConfigError(f"features rows {zero[:5].tolist()} are all zero; allowed: rows with a nonzero norm")
    return array / norms


def distances(query, gallery, *, normalise: bool = True) -> np.ndarray:
    """Euclidean distances, (n_query, n_gallery), between the rows of `query` and `gallery`, each L2-normalised
    first unless normalise=False. Market_1501_evaluation.m:58-59 computes
    `sqrt(|g|^2 + |q|^2 - 2 g q')` (gallery x query, single precision); here query x gallery as torchreid's
    `distmat` (rank.py:98), in float64, the square clipped at 0 before the root (rounding can make it -1e-16)."""
    query_array, gallery_array = _matrix("query", query), _matrix("gallery", gallery)
    if query_array.shape[1] != gallery_array.shape[1]:
        raise ConfigError(f"query has {query_array.shape[1]} feature dimensions and gallery {gallery_array.shape[1]}; "
                          "allowed: the same number")
    if normalise:
        query_array, gallery_array = l2_normalise(query_array), l2_normalise(gallery_array)
    squared = ((query_array ** 2).sum(1)[:, None] + (gallery_array ** 2).sum(1)[None, :]
               - 2 * query_array @ gallery_array.T)
    return np.sqrt(np.clip(squared, 0, None))


def _ranks(values, gallery_size: int) -> tuple[int, ...]:
    try:
        ranks = tuple(values)
    except TypeError:
        raise ConfigError(f"ranks={values!r}; allowed: a sequence of integers from 1 to {gallery_size}") from None
    wrong = [r for r in ranks
             if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 1 <= r <= gallery_size]
    if wrong:
        raise ConfigError(f"ranks {wrong!r} are not allowed; allowed: integers from 1 to {gallery_size} "
                          "(the gallery's size)")
    return tuple(int(r) for r in ranks)


def _official_ap(hit_positions: np.ndarray) -> float:
    """compute_AP.m's trapezoid rule on the list with junk removed (its `j` counts only non-junk images, L29, L33):
    at each good image the recall rises by 1/ngood (L28) and the area added is that rise times the mean of the
    precision before and after it (L30), the precision before the first image being 1 (L7). Only good images
    change the recall, so with hits k = 1..n at positions p_k (1-based):
    AP = (1/n) sum_k ((k-1)/(p_k-1) + k/p_k) / 2, (k-1)/(p_k-1) read as 1 where p_k = 1."""
    n = hit_positions.size
    k = np.arange(1, n + 1, dtype=np.float64)
    p = hit_positions.astype(np.float64)
    before = np.where(p == 1, 1.0, (k - 1) / np.maximum(p - 1, 1))
    return float(((before + k / p) / 2).sum() / n)


def _torchreid_ap(hit_positions: np.ndarray) -> float:
    """rank.py:140-144: the precision at each good image (cumulative matches over the 1-based position), summed
    over the good images and divided by their number (non-interpolated)."""
    k = np.arange(1, hit_positions.size + 1, dtype=np.float64)
    return float((k / hit_positions).sum() / hit_positions.size)


def evaluate(distances, q_ids, q_cams, g_ids, g_cams, *, ap: str = "official",
             ranks=(1, 5, 10)) -> Retrieval:
    """mAP and CMC at `ranks` of a (n_query, n_gallery) distance matrix, smaller is closer.

    Both rules, per query: the gallery sorted by ascending distance, ties in gallery order (Matlab's `sort` is
    stable, evaluation.m:20; torchreid's `np.argsort` default, rank.py:107, leaves ties unordered, so the stable
    order is used for both); good = same identity, other camera (evaluation.m:14-16); junk = gallery images labelled
    -1 (evaluation.m:3, dropped when torchreid reads the data set, market1501.py:71-72, 79-80) and same identity,
    same camera (evaluation.m:17-19, rank.py:122); junk is removed from the list and everything else, distractors
    (identity 0) included, is a negative. CMC rank k: the first good image at rank <= k of that list
    (compute_AP.m:15-16, `cmc(n-njunk:end) = 1`; rank.py:132-133).

    ap="official": trapezoid AP (compute_AP.m:28-31). A query without a good image gets AP 0 and CMC 0 and counts
    in both averages: compute_AP gives 0/0 = NaN (L28-30), evaluation.m:27 sets NaN AP to 0, L25 and L28 divide by
    every query.
    ap="torchreid": non-interpolated AP (rank.py:140-144). A query without a good image is skipped (rank.py:128-130)
    and the averages divide by the queries counted (L150-151); where no query has one, torchreid fails (L147), and so
    does this (ConfigError).

    Query identities may not be -1 (a junk label has no identity; torchreid drops such images)."""
    if ap not in AP_RULES:
        raise ConfigError(f"ap={ap!r} is not an AP rule; allowed: {', '.join(AP_RULES)}")
    matrix = _matrix("distances", distances)
    n_query, n_gallery = matrix.shape
    q_ids, q_cams = _labels("q_ids", q_ids, n_query), _labels("q_cams", q_cams, n_query)
    g_ids, g_cams = _labels("g_ids", g_ids, n_gallery), _labels("g_cams", g_cams, n_gallery)
    ranks = _ranks(ranks, n_gallery)
    junk_queries = np.flatnonzero(q_ids == JUNK)
    if junk_queries.size:
        raise ConfigError(f"queries {junk_queries[:5].tolist()} are labelled {JUNK} (junk); allowed: query identities "
                          f"other than {JUNK}")

    order = np.argsort(matrix, axis=1, kind="stable")
    ap_values = np.full(n_query, np.nan)
    first_match = np.zeros(n_query, dtype=np.int64)
    for index in range(n_query):
        ids, cams = g_ids[order[index]], g_cams[order[index]]
        same = ids == q_ids[index]
        junk = (ids == JUNK) | (same & (cams == q_cams[index]))
        hits = np.flatnonzero((same & ~junk)[~junk]) + 1  # 1-based positions of the good images, junk removed
        if hits.size == 0:
            if ap == "official":
                ap_values[index] = 0.0
            continue
        first_match[index] = hits[0]
        ap_values[index] = _official_ap(hits) if ap == "official" else _torchreid_ap(hits)

    counted = ~np.isnan(ap_values)
    if not counted.any():
        raise ConfigError(f"no query has a good image (same identity, other camera) in the gallery, which "
                          f"ap={ap!r} cannot average (torchreid rank.py:147); allowed: at least one such query")
    cmc = {rank: float(((first_match[counted] >= 1) & (first_match[counted] <= rank)).mean()) for rank in ranks}
    return Retrieval(mAP=float(ap_values[counted].mean()), cmc=cmc, ap=ap_values, first_match=first_match,
                     counted=int(counted.sum()), rule=ap)


def pool_queries(features, ids, cams, query_ids, query_cams, *, pooling: str) -> np.ndarray:
    """Multi-query features, (n_query, d): for each query (identity, camera), every row of `features` (the
    `gt_bbox` images' features) with that identity and camera, each L2-normalised, pooled by `pooling` ("max":
    the baseline script's `Hist_max`, elementwise max; "mean": its `Hist_avg`), then L2-normalised again. The
    query image itself is not added: the script pools `gt_bbox` files only. No default: the script reports both
    poolings and the DML paper does not say which its multi-query column uses. A query whose identity and camera
    have no row is refused (the script would fail assigning an empty max)."""
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling={pooling!r} is not a multi-query pooling; allowed: {', '.join(POOLINGS)}")
    rows = l2_normalise(features)
    ids, cams = _labels("ids", ids, rows.shape[0]), _labels("cams", cams, rows.shape[0])
    query_ids = _labels("query_ids", query_ids, None)
    query_cams = _labels("query_cams", query_cams, query_ids.shape[0])
    if query_ids.size == 0:
        raise ConfigError("query_ids is empty; allowed: at least one query")
    pooled = np.empty((query_ids.size, rows.shape[1]))
    for index, (identity, camera) in enumerate(zip(query_ids, query_cams)):
        members = rows[(ids == identity) & (cams == camera)]
        if members.shape[0] == 0:
            raise ConfigError(f"query {index} (identity {identity}, camera {camera}) has no image of that identity "
                              "and camera to pool; allowed: queries whose identity and camera the pooled set holds")
        pooled[index] = members.max(axis=0) if pooling == "max" else members.mean(axis=0)
    norms = np.sqrt((pooled ** 2).sum(axis=1, keepdims=True))
    if (norms == 0).any():
        raise ConfigError(f"pooled query features {np.flatnonzero(norms[:, 0] == 0)[:5].tolist()} are all zero; "
                          "allowed: pooled features with a nonzero norm")
    return pooled / norms
