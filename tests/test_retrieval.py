"""rdml.retrieval against independent transcriptions of the two evaluations it follows: the official Matlab code
(zhunzhong07/person-re-ranking @278f2c7, evaluation/utils/evaluation.m and compute_AP.m, transcribed line by line)
and torchreid's eval_market1501 (KaiyangZhou/deep-person-reid @f8cd150, torchreid/metrics/rank.py:94-153, with
market1501.py:71-72's dropping of -1 images), on hand-built distance matrices with junk (-1 and same identity, same
camera), distractors (identity 0), queries without a match and ties; hand-computed cases; properties."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rdml.keys import ConfigError
from rdml.retrieval import distances, evaluate, l2_normalise, pool_queries


# ---------------------------------------------------------------------------------------------------------------
# Transcriptions. Matlab's 1-based `find` indices become 0-based gallery indices; its stable `sort` becomes
# np.argsort(kind="stable"). Nothing here calls rdml.retrieval.

def compute_AP(good_image, junk_image, index):
    """evaluation/utils/compute_AP.m, line by line."""
    cmc = np.zeros(len(index))                                   # L3
    ngood = len(good_image)                                      # L4
    old_recall = 0.0                                             # L6
    old_precision = 1.0                                          # L7
    ap = 0.0                                                     # L8
    intersect_size = 0                                           # L9
    j = 0                                                        # L10
    good_now = 0                                                 # L11
    njunk = 0                                                    # L12
    for n in range(1, len(index) + 1):                           # L13
        flag = 0                                                 # L14
        if index[n - 1] in good_image:                           # L15
            cmc[n - njunk - 1:] = 1                              # L16 (cmc(n-njunk:end), 1-based)
            flag = 1                                             # L17
            good_now = good_now + 1                              # L18
        if index[n - 1] in junk_image:                           # L20
            njunk = njunk + 1                                    # L21
            continue                                             # L22
        if flag == 1:                                            # L25
            intersect_size = intersect_size + 1                  # L26
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.float64(intersect_size) / ngood          # L28 (0/0 = NaN as in Matlab)
        precision = intersect_size / (j + 1)                     # L29
        ap = ap + (recall - old_recall) * ((old_precision + precision) / 2)  # L30
        old_recall = recall                                      # L31
        old_precision = precision                                # L32
        j = j + 1                                                # L33
        if good_now == ngood:                                    # L35
            return ap, cmc                                       # L36
    return ap, cmc


def matlab_evaluation(dist, label_gallery, label_query, cam_gallery, cam_query):
    """evaluation/utils/evaluation.m, line by line; `dist` is gallery x query as there."""
    junk0 = set(np.flatnonzero(label_gallery == -1).tolist())    # L3
    ap = np.zeros(dist.shape[1])                                 # L4
    CMC = []                                                     # L5
    for k in range(dist.shape[1]):                               # L9
        score = dist[:, k]                                       # L11
        q_label = label_query[k]                                 # L12
        q_cam = cam_query[k]                                     # L13
        pos = np.flatnonzero(label_gallery == q_label)           # L14
        pos2 = cam_gallery[pos] != q_cam                         # L15
        good_image = set(pos[pos2].tolist())                     # L16
        pos3 = cam_gallery[pos] == q_cam                         # L17
        junk = set(pos[pos3].tolist())                           # L18
        junk_image = junk0 | junk                                # L19
        index = np.argsort(score, kind="stable")                 # L20
        ap[k], cmc = compute_AP(good_image, junk_image, index)   # L21
        CMC.append(cmc)
    CMC = np.sum(CMC, axis=0) / dist.shape[1]                    # L25
    ap[np.isnan(ap)] = 0                                         # L27
    return CMC, np.sum(ap) / len(ap)                             # L28


def torchreid_eval_market1501(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """torchreid/metrics/rank.py:94-153 (argsort made stable: its default quicksort leaves ties unordered)."""
    num_q, num_g = distmat.shape
    if num_g < max_rank:
        max_rank = num_g
    indices = np.argsort(distmat, axis=1, kind="stable")
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc = []
    all_AP = []
    num_valid_q = 0.
    for q_idx in range(num_q):
        q_pid = q_pids[q_idx]
        q_camid = q_camids[q_idx]
        order = indices[q_idx]
        remove = (g_pids[order] == q_pid) & (g_camids[order] == q_camid)
        keep = np.invert(remove)
        raw_cmc = matches[q_idx][keep]
        if not np.any(raw_cmc):
            continue
        cmc = raw_cmc.cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        num_valid_q += 1.
        num_rel = raw_cmc.sum()
        tmp_cmc = raw_cmc.cumsum()
        tmp_cmc = [x / (i + 1.) for i, x in enumerate(tmp_cmc)]
        tmp_cmc = np.asarray(tmp_cmc) * raw_cmc
        AP = tmp_cmc.sum() / num_rel
        all_AP.append(AP)
    assert num_valid_q > 0, 'Error: all query identities do not appear in gallery'
    all_cmc = np.asarray(all_cmc).astype(np.float32)
    all_cmc = all_cmc.sum(0) / num_valid_q
    mAP = np.mean(all_AP)
    return all_cmc, mAP


def torchreid(dist, q_ids, q_cams, g_ids, g_cams, max_rank):
    """torchreid's pipeline: market1501.py:71-72, 79-80 drop the -1 images before eval_market1501 sees them."""
    kept = g_ids != -1
    return torchreid_eval_market1501(dist[:, kept], q_ids, g_ids[kept], q_cams, g_cams[kept], max_rank)


def multi_query_transcription(features, ids, cams, query_ids, query_cams, pooling):
    """The Market-1501 baseline script's multiple-query features: gt_bbox files of the query's identity and camera
    (`dir([gt_dir img_name(1:7) '*.jpg'])`), each L2-normalised, `max(tmp_feature, [], 2)` or
    `mean(tmp_feature, 2)`, then "another normalization"."""
    columns = []
    for q_id, q_cam in zip(query_ids, query_cams):
        tmp_feature = features[(ids == q_id) & (cams == q_cam)].T.astype(np.float64)
        for m in range(tmp_feature.shape[1]):
            tmp_feature[:, m] = tmp_feature[:, m] / np.sqrt(np.sum(tmp_feature[:, m] ** 2))
        columns.append(tmp_feature.max(axis=1) if pooling == "max" else tmp_feature.mean(axis=1))
    hist = np.stack(columns, axis=1)
    return (hist / np.sqrt(np.sum(hist ** 2, axis=0))).T


def check_against_transcriptions(dist, q_ids, q_cams, g_ids, g_cams):
    """Both rules of rdml.retrieval against their transcriptions, every rank the transcriptions define."""
    ranks = tuple(range(1, dist.shape[1] + 1))
    cmc, mAP = matlab_evaluation(dist.T, g_ids, q_ids, g_cams, q_cams)
    ours = evaluate(dist, q_ids, q_cams, g_ids, g_cams, ap="official", ranks=ranks)
    assert ours.mAP == pytest.approx(mAP, abs=1e-12)
    assert [ours.cmc[r] for r in ranks] == pytest.approx(cmc.tolist(), abs=1e-12)
    assert ours.counted == len(q_ids)

    # torchreid's own list lengths: a CMC vector is as long as the list with its junk removed (rank.py:135), so
    # the transcription can only stack ranks up to the shortest list of a counted query
    g_clean = g_ids != -1
    valid = [i for i in range(len(q_ids))
             if ((g_ids == q_ids[i]) & (g_cams != q_cams[i])).any()]
    if not valid:
        with pytest.raises(ConfigError, match="no query has a good image"):
            evaluate(dist, q_ids, q_cams, g_ids, g_cams, ap="torchreid", ranks=ranks)
        return
    shortest = min(int((g_clean & ~((g_ids == q_ids[i]) & (g_cams == q_cams[i]))).sum()) for i in valid)
    t_cmc, t_mAP = torchreid(dist, q_ids, q_cams, g_ids, g_cams, shortest)
    ours = evaluate(dist, q_ids, q_cams, g_ids, g_cams, ap="torchreid", ranks=ranks[:shortest])
    assert ours.mAP == pytest.approx(t_mAP, abs=1e-12)
    assert [ours.cmc[r] for r in ranks[:shortest]] == pytest.approx(t_cmc.tolist(), abs=1e-6)  # float32 there
    assert ours.counted == len(valid)


# ---------------------------------------------------------------------------------------------------------------
# Hand-built matrices against the transcriptions

# Gallery: 10 images. Identities 1, 2, 3 are in the queries; 0 are distractors, -1 junk.
G_IDS = np.array([1, 1, 1, 2, 2, -1, 0, 0, 3, -1])
G_CAMS = np.array([1, 2, 3, 1, 2, 1, 3, 2, 1, 2])
# Queries: identity 1 in cameras 1 and 2 (same-camera junk), 2 in camera 1, 3 in camera 1 (its only gallery image is
# in camera 1: no valid match), 4 (not in the gallery at all: no match).
Q_IDS = np.array([1, 1, 2, 3, 4])
Q_CAMS = np.array([1, 2, 1, 1, 3])


def hand_matrix():
    """Distances chosen so that junk and distractors sit between the good images, with ties."""
    return np.array([
        [0.5, 0.2, 0.9, 0.3, 0.8, 0.1, 0.2, 0.7, 0.6, 0.2],   # ties at 0.2: gallery 1 (good), 6 (distractor), 9 (junk)
        [0.1, 0.9, 0.4, 0.4, 0.3, 0.3, 0.05, 0.8, 0.7, 0.6],  # its same-camera good (gallery 1) is junk
        [0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3],   # all tied: gallery order decides
        [0.4, 0.3, 0.2, 0.1, 0.5, 0.6, 0.7, 0.8, 0.05, 0.9],  # no valid match
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0],   # identity absent
    ])


def test_hand_matrix_matches_both_transcriptions():
    check_against_transcriptions(hand_matrix(), Q_IDS, Q_CAMS, G_IDS, G_CAMS)


def test_hand_matrix_without_unmatched_queries_matches_both_transcriptions():
    check_against_transcriptions(hand_matrix()[:3], Q_IDS[:3], Q_CAMS[:3], G_IDS, G_CAMS)


def test_hand_matrix_values():
    """The hand matrix's numbers, worked out by hand.

    Query 0 (identity 1, camera 1): good = gallery 1, 2 (cameras 2, 3); junk = 0 (same camera), 5, 9 (-1).
    Ascending, ties in gallery order: 5 (0.1, junk), 1 (0.2, good), 6 (0.2, distractor), 9 (0.2, junk), 3 (0.3),
    0 (0.5, junk), 8, 7, 4, 2 (0.9, good). Junk removed: 1, 6, 3, 8, 7, 4, 2 -> good at positions 1 and 7.
      official AP = 1/2 * [(1 + 1/1)/2 + (1/6 + 2/7)/2] = 1/2 * [1 + 19/84] = 103/168
      torchreid AP = 1/2 * (1/1 + 2/7) = 9/14
    Query 1 (identity 1, camera 2): good = 0, 2; junk = 1 (same camera), 5, 9. Ascending: 6 (0.05), 0 (0.1, good),
    4, 5 (0.3 tie, junk), 2, 3 (0.4 tie, 2 good first), 9, 8, 7, 1. Junk removed: 6, 0, 4, 2, 3, 8, 7 ->
    good at 2 and 4 (precision before the second good: 1/3, after the negative at 3).
      official AP = 1/2 * [(0/1 + 1/2)/2 + (1/3 + 2/4)/2] = 1/2 * [1/4 + 5/12] = 1/3
      torchreid AP = 1/2 * (1/2 + 2/4) = 1/2
    Query 2 (identity 2, camera 1): good = 4; junk = 3 (same camera), 5, 9. All tied: gallery order 0, 1, 2, 3 (junk),
    4 (good) -> good at position 4 after junk.
      official AP = (0/3 + 1/4)/2 = 1/8; torchreid AP = 1/4
    Query 3 (identity 3, camera 1): its one gallery image is in camera 1 -> junk, no good image.
    Query 4 (identity 4): no gallery image.
      official: AP 0, counted; torchreid: skipped.
    official mAP = (103/168 + 1/3 + 1/8 + 0 + 0) / 5 = (103/168 + 56/168 + 21/168) / 5 = 180/840 = 3/14
    torchreid mAP = (9/14 + 1/2 + 1/4) / 3 = (18/28 + 14/28 + 7/28) / 3 = 39/84 = 13/28
    First matches: 1, 2, 4 (and none twice). CMC official: rank 1 1/5, rank 2 2/5, rank 4 3/5;
    torchreid: 1/3, 2/3, 1."""
    official = evaluate(hand_matrix(), Q_IDS, Q_CAMS, G_IDS, G_CAMS, ap="official", ranks=(1, 2, 3, 4, 5))
    assert official.mAP == pytest.approx(3 / 14)
    assert official.ap.tolist() == pytest.approx([103 / 168, 1 / 3, 1 / 8, 0, 0])
    assert official.cmc == pytest.approx({1: 1 / 5, 2: 2 / 5, 3: 2 / 5, 4: 3 / 5, 5: 3 / 5})
    assert official.first_match.tolist() == [1, 2, 4, 0, 0]
    assert official.counted == 5 and official.rule == "official"
    reid = evaluate(hand_matrix(), Q_IDS, Q_CAMS, G_IDS, G_CAMS, ap="torchreid", ranks=(1, 2, 4))
    assert reid.mAP == pytest.approx(13 / 28)
    assert reid.ap[:3].tolist() == pytest.approx([9 / 14, 1 / 2, 1 / 4]) and np.isnan(reid.ap[3:]).all()
    assert reid.cmc == pytest.approx({1: 1 / 3, 2: 2 / 3, 4: 1.0})
    assert reid.counted == 3


def test_trapezoid_and_non_interpolated_ap_by_hand():
    """One query (identity 1, camera 1); gallery ranked: negative (2), good (1, c2), junk (-1), good (1, c3),
    junk (1, c1), distractor (0). Junk removed: negative, good, good, distractor -> good at 2 and 3.
    compute_AP.m: after the negative recall 0, precision 0; the first good adds 1/2 * (0 + 1/2)/2 = 1/8; the
    second 1/2 * (1/2 + 2/3)/2 = 7/24: AP = 1/8 + 7/24 = 5/12. torchreid: (1/2 + 2/3)/2 = 7/12. Rank-1 0, rank-2 1."""
    g_ids, g_cams = np.array([2, 1, -1, 1, 1, 0]), np.array([1, 2, 1, 3, 1, 2])
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    official = evaluate(dist, [1], [1], g_ids, g_cams, ap="official", ranks=(1, 2))
    assert official.mAP == pytest.approx(5 / 12) and official.cmc == {1: 0.0, 2: 1.0}
    reid = evaluate(dist, [1], [1], g_ids, g_cams, ap="torchreid", ranks=(1, 2))
    assert reid.mAP == pytest.approx(7 / 12) and reid.cmc == {1: 0.0, 2: 1.0}
    check_against_transcriptions(dist, np.array([1]), np.array([1]), g_ids, g_cams)


def test_a_query_without_a_match_counts_zero_officially_and_is_skipped_by_torchreid():
    """Query 0 as in the test above (5/12, 7/12); query 1 (identity 9) has no match.
    official: (5/12 + 0)/2 = 5/24, rank-2 (1 + 0)/2 = 1/2. torchreid: 7/12 over the one counted query, rank-2 1."""
    g_ids, g_cams = np.array([2, 1, -1, 1, 1, 0]), np.array([1, 2, 1, 3, 1, 2])
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]] * 2)
    official = evaluate(dist, [1, 9], [1, 1], g_ids, g_cams, ap="official", ranks=(2,))
    assert official.mAP == pytest.approx(5 / 24) and official.cmc == {2: 0.5} and official.counted == 2
    reid = evaluate(dist, [1, 9], [1, 1], g_ids, g_cams, ap="torchreid", ranks=(2,))
    assert reid.mAP == pytest.approx(7 / 12) and reid.cmc == {2: 1.0} and reid.counted == 1


def test_a_distractor_is_a_negative_and_ties_keep_gallery_order():
    """Gallery: distractor (0, c2), good (1, c2), all at the same distance. Stable order: distractor first, good at
    position 2. official AP = (0/1 + 1/2)/2 = 1/4, torchreid 1/2, rank-1 0. Swapped, the good image is first: 1."""
    dist = np.array([[0.5, 0.5]])
    assert evaluate(dist, [1], [1], [0, 1], [2, 2], ranks=(1,)).mAP == pytest.approx(1 / 4)
    assert evaluate(dist, [1], [1], [0, 1], [2, 2], ap="torchreid", ranks=(1,)).mAP == pytest.approx(1 / 2)
    assert evaluate(dist, [1], [1], [0, 1], [2, 2], ranks=(1,)).cmc == {1: 0.0}
    swapped = evaluate(dist, [1], [1], [1, 0], [2, 2], ranks=(1,))
    assert swapped.mAP == 1.0 and swapped.cmc == {1: 1.0}


def test_a_single_good_image_at_rank_three():
    """official: (0/2 + 1/3)/2 = 1/6; torchreid: 1/3 (the trapezoid's lower mAP)."""
    dist = np.array([[0.1, 0.2, 0.3]])
    assert evaluate(dist, [1], [1], [2, 3, 1], [2, 2, 2], ranks=(3,)).mAP == pytest.approx(1 / 6)
    assert evaluate(dist, [1], [1], [2, 3, 1], [2, 2, 2], ap="torchreid", ranks=(3,)).mAP == pytest.approx(1 / 3)


def test_labels_read_from_matlab_doubles():
    dist = np.array([[0.1, 0.2]])
    assert evaluate(dist, np.array([1.0]), np.array([1.0]), np.array([1.0, 2.0]), np.array([2.0, 1.0]),
                    ranks=(1,)).mAP == 1.0


# ---------------------------------------------------------------------------------------------------------------
# Generated matrices against the transcriptions, and properties

@st.composite
def retrieval_case(draw):
    n_query, n_gallery = draw(st.integers(1, 5)), draw(st.integers(1, 9))
    # coarse distances: ties are common
    dist = np.array(draw(st.lists(st.integers(0, 4), min_size=n_query * n_gallery, max_size=n_query * n_gallery)),
                    dtype=np.float64).reshape(n_query, n_gallery)
    g_ids = np.array(draw(st.lists(st.sampled_from([-1, 0, 1, 2, 3]), min_size=n_gallery, max_size=n_gallery)))
    g_cams = np.array(draw(st.lists(st.integers(1, 3), min_size=n_gallery, max_size=n_gallery)))
    q_ids = np.array(draw(st.lists(st.integers(1, 4), min_size=n_query, max_size=n_query)))
    q_cams = np.array(draw(st.lists(st.integers(1, 3), min_size=n_query, max_size=n_query)))
    return dist, q_ids, q_cams, g_ids, g_cams


@settings(max_examples=300, deadline=None)
@given(retrieval_case())
def test_generated_matrices_match_both_transcriptions(case):
    check_against_transcriptions(*case)


@settings(max_examples=200, deadline=None)
@given(retrieval_case(), st.sampled_from(["official", "torchreid"]))
def test_ap_in_unit_interval_and_cmc_non_decreasing(case, rule):
    dist, q_ids, q_cams, g_ids, g_cams = case
    ranks = tuple(range(1, dist.shape[1] + 1))
    try:
        result = evaluate(dist, q_ids, q_cams, g_ids, g_cams, ap=rule, ranks=ranks)
    except ConfigError:
        assert rule == "torchreid"  # no query with a good image
        return
    counted = result.ap[~np.isnan(result.ap)]
    assert ((counted >= 0) & (counted <= 1 + 1e-12)).all() and 0 <= result.mAP <= 1 + 1e-12
    values = [result.cmc[r] for r in ranks]
    assert all(a <= b for a, b in zip(values, values[1:])) and 0 <= values[0] and values[-1] <= 1
    # the trapezoid never exceeds the non-interpolated AP: at the k-th good image, at position p, the precision
    # before it, (k-1)/(p-1), is at most k/p since k <= p
    matched = result.first_match > 0
    if rule == "official" and matched.any():
        other = evaluate(dist, q_ids, q_cams, g_ids, g_cams, ap="torchreid", ranks=ranks)
        assert (result.ap[matched] <= other.ap[matched] + 1e-12).all()


@settings(max_examples=200, deadline=None)
@given(retrieval_case(), st.sampled_from(["official", "torchreid"]))
def test_a_perfect_ranking_scores_one(case, rule):
    """Every good image closer than every other image: AP 1 and rank-1 1 for each query with a good image (and
    for the mean, once the queries without one are dropped)."""
    _, q_ids, q_cams, g_ids, g_cams = case
    good = (g_ids[None, :] == q_ids[:, None]) & (g_cams[None, :] != q_cams[:, None])
    keep = good.any(axis=1)
    if not keep.any():
        return
    q_ids, q_cams, good = q_ids[keep], q_cams[keep], good[keep]
    dist = np.where(good, 0.0, 1.0)
    result = evaluate(dist, q_ids, q_cams, g_ids, g_cams, ap=rule, ranks=(1,))
    assert result.mAP == 1.0 and result.cmc == {1: 1.0}


# ---------------------------------------------------------------------------------------------------------------
# Distances and multi-query pooling

def test_distances_are_euclidean_between_l2_normalised_rows():
    rng = np.random.default_rng(0)
    query, gallery = rng.normal(size=(4, 6)), rng.normal(size=(7, 6))
    qn = query / np.linalg.norm(query, axis=1, keepdims=True)
    gn = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    expected = np.array([[np.linalg.norm(q - g) for g in gn] for q in qn])
    assert distances(query, gallery) == pytest.approx(expected, abs=1e-12)
    # the scale of a row does not matter; Market_1501_evaluation.m's sqrt(|g|^2 + |q|^2 - 2 g q')
    assert distances(query * 5, gallery * 0.1) == pytest.approx(expected, abs=1e-12)
    assert distances(query, query).diagonal() == pytest.approx(np.zeros(4), abs=1e-7)
    raw = np.array([[np.linalg.norm(q - g) for g in gallery] for q in query])
    assert distances(query, gallery, normalise=False) == pytest.approx(raw, abs=1e-12)
    assert l2_normalise([[3, 4]]).tolist() == [[0.6, 0.8]]


def test_pooling_by_hand():
    """Identity 1, camera 1: rows [3, 4] and [0, 2] -> [0.6, 0.8] and [0, 1]; max [0.6, 1] / sqrt(1.36); mean
    [0.3, 0.9] / sqrt(0.9). The camera-2 row [1, 0] of identity 1 is another query's."""
    features = np.array([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]])
    ids, cams = np.array([1, 1, 1]), np.array([1, 1, 2])
    assert pool_queries(features, ids, cams, [1, 1], [1, 2], pooling="max") == pytest.approx(
        np.array([[0.6, 1.0], [1.0, 0.0]]) / np.array([[math.sqrt(1.36)], [1.0]]))
    assert pool_queries(features, ids, cams, [1], [1], pooling="mean") == pytest.approx(
        np.array([[0.3, 0.9]]) / math.sqrt(0.9))


@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_pooling_matches_the_baseline_script(pooling):
    rng = np.random.default_rng(1)
    features = rng.normal(size=(30, 5))
    ids, cams = rng.integers(1, 4, size=30), rng.integers(1, 4, size=30)
    pairs = sorted({(int(i), int(c)) for i, c in zip(ids, cams)})
    query_ids, query_cams = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    assert pool_queries(features, ids, cams, query_ids, query_cams, pooling=pooling) == pytest.approx(
        multi_query_transcription(features, ids, cams, query_ids, query_cams, pooling), abs=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Refusals

DIST = np.array([[0.1, 0.2, 0.3]])
GOOD = dict(q_ids=[1], q_cams=[1], g_ids=[1, 2, 3], g_cams=[2, 2, 2])


@pytest.mark.bad_input
@pytest.mark.parametrize("change, message", [
    ({"ap": "interpolated"}, r"ap='interpolated' is not an AP rule; allowed: official, torchreid"),
    ({"distances": np.array([0.1, 0.2, 0.3])}, r"distances has shape \(3,\); allowed: a 2-D array"),
    ({"distances": np.zeros((1, 0))}, r"distances has shape \(1, 0\)"),
    ({"distances": np.array([[0.1, np.nan, 0.3]])}, r"distances holds 1 non-finite values"),
    ({"distances": np.array([["a", "b", "c"]])}, r"distances has dtype <U1"),
    ({"q_ids": [1, 2]}, r"q_ids has shape \(2,\); allowed: \(1,\)"),
    ({"g_cams": [2, 2]}, r"g_cams has shape \(2,\); allowed: \(3,\)"),
    ({"g_ids": [1.5, 2, 3]}, r"g_ids has dtype float64"),
    ({"q_ids": [-1]}, r"queries \[0\] are labelled -1 \(junk\)"),
    ({"ranks": (0,)}, r"ranks \[0\] are not allowed; allowed: integers from 1 to 3"),
    ({"ranks": (1, 4)}, r"ranks \[4\] are not allowed"),
    ({"ranks": (True,)}, r"ranks \[True\] are not allowed"),
    ({"ranks": 5}, r"ranks=5; allowed: a sequence of integers"),
    ({"ap": "torchreid", "q_ids": [9]}, r"no query has a good image .* ap='torchreid'"),
])
def test_evaluate_refuses(change, message):
    arguments = {"distances": DIST, **GOOD, "ap": "official", "ranks": (1,), **change}
    with pytest.raises(ConfigError, match=message):
        evaluate(arguments.pop("distances"), arguments.pop("q_ids"), arguments.pop("q_cams"), arguments.pop("g_ids"),
                 arguments.pop("g_cams"), **arguments)


@pytest.mark.bad_input
@pytest.mark.parametrize("call, message", [
    (lambda: distances(np.ones((2, 3)), np.ones((2, 4))), r"query has 3 feature dimensions and gallery 4"),
    (lambda: distances(np.array([[1.0, 0.0], [0.0, 0.0]]), np.ones((2, 2))), r"features rows \[1\] are all zero"),
    (lambda: distances(np.ones((2, 2)), np.array([[np.inf, 1.0]])), r"gallery holds 1 non-finite values"),
    (lambda: pool_queries(np.ones((2, 2)), [1, 1], [1, 1], [1], [1], pooling="median"),
     r"pooling='median' is not a multi-query pooling; allowed: max, mean"),
    (lambda: pool_queries(np.ones((2, 2)), [1, 1], [1, 1], [1], [2], pooling="max"),
     r"query 0 \(identity 1, camera 2\) has no image of that identity and camera"),
    (lambda: pool_queries(np.ones((2, 2)), [1], [1, 1], [1], [1], pooling="max"),
     r"ids has shape \(1,\); allowed: \(2,\)"),
    (lambda: pool_queries(np.ones((2, 2)), [1, 1], [1, 1], [1, 1], [1], pooling="mean"),
     r"query_cams has shape \(1,\); allowed: \(2,\)"),
    (lambda: pool_queries(np.ones((2, 2)), [1, 1], [1, 1], [], [], pooling="mean"), r"query_ids is empty"),
    (lambda: pool_queries(np.array([[1.0, 0.0], [-1.0, 0.0]]), [1, 1], [1, 1], [1], [1], pooling="mean"),
     r"pooled query features \[0\] are all zero"),
])
def test_distances_and_pooling_refuse(call, message):
    with pytest.raises(ConfigError, match=message):
        call()
