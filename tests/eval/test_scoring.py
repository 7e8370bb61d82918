"""Scoring without data sets: TAR at FAR (exact rule), the ROC and InsightFace's nearest-point reading, open-set
1:N search with CMC and TPIR@FPIR, each against hand counts or a plain reference; n/a below 1/#impostors."""

import numpy as np
import pytest

from facezoo.errors import DataError
from facezoo.eval.scoring import (
    check_finite_embeddings,
    cmc_curve,
    identification,
    nearest_point,
    roc_curve,
    roc_summary,
    tar_at_far,
)

# ---------------------------------------------------------------- TAR@FAR on all pairs (exact sorted-score rule)


def test_tar_at_far_hand_case():
    # similarities: impostors -0.1 .. -1.0, genuine -0.05, -0.25, -0.35 (the distances of the old case, negated)
    imp = -np.arange(1, 11) / 10
    gen = -np.array([0.05, 0.25, 0.35])
    r = tar_at_far(gen, imp, 0.2)  # k = 2 impostors may pass: t = 3rd largest impostor = -0.3
    assert r["threshold"] == pytest.approx(-0.3)
    assert r["far"] == pytest.approx(0.2)
    assert r["tar"] == pytest.approx(2 / 3)
    # Ties: impostors -0.1, -0.2, -0.2, -0.5 at FAR 0.5 -> k = 2, t = -0.2; only -0.1 is above it -> FAR 0.25.
    r = tar_at_far([-0.15], [-0.1, -0.2, -0.2, -0.5], 0.5)
    assert (r["threshold"], r["far"], r["tar"]) == (-0.2, 0.25, 1.0)


def test_tar_at_far_from_the_top_impostors_only():
    rng = np.random.default_rng(3)
    gen, imp = rng.normal(1, 1, 50), rng.normal(0, 1, 1000)
    full = tar_at_far(gen, imp, 0.01)  # k = 10: the 11 largest impostors decide
    top = np.sort(imp)[::-1][:11]
    assert tar_at_far(gen, top, 0.01, n_impostors=1000) == full


@pytest.mark.parametrize("seed", range(5))
def test_tar_at_far_is_best_threshold_within_far(seed):
    rng = np.random.default_rng(seed)
    sim = -rng.integers(0, 40, 300) / 10.0  # many ties
    same = rng.random(300) < 0.3
    n_imp = int((~same).sum())
    for far in (1e-3, 1e-2, 0.05, 0.3):
        r = tar_at_far(sim[same], sim[~same], far)
        if far * n_imp < 1:  # fewer than 1/far impostors: not measured
            assert r == {"tar": None, "far": None, "threshold": None, "reason": r["reason"]}
            need = round(1 / far)
            assert r["reason"] == f"n/a: needs at least {need} impostor pairs to be measured, only {n_imp} given"
            continue
        best = 0.0  # brute force over every candidate threshold
        for t in np.r_[np.unique(sim), -np.inf]:
            if np.mean(sim[~same] > t) <= far:
                best = max(best, np.mean(sim[same] > t))
        assert r["tar"] == best
        assert r["far"] <= far


def test_tar_at_far_refuses_non_finite_scores():
    with pytest.raises(DataError, match="NaN"):
        tar_at_far([0.5, np.nan], np.zeros(100), 0.1)


# -------------------------------------------------------------------------------------------- ROC and TAR@FAR

# 8 pairs, scores all distinct, labels from the highest score down: 1 0 1 1 0 0 0 1 (4 genuine, 4 impostor).
ROC_LABELS = np.array([1, 0, 1, 1, 0, 0, 0, 1])
ROC_SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])


def test_roc_curve_by_hand():
    # Cumulative (fps, tps) at each score: (0,1) (1,1) (1,2) (1,3) (2,3) (3,3) (4,3) (4,4). drop_intermediate
    # removes points whose fps and tps second differences are both 0: (1,2) at 0.7, (2,3) at 0.5, (3,3) at 0.4.
    fpr, tpr, thr = roc_curve(ROC_LABELS, ROC_SCORES)
    np.testing.assert_allclose(fpr, [0, 0, 0.25, 0.25, 1, 1])
    np.testing.assert_allclose(tpr, [0, 0.25, 0.25, 0.75, 0.75, 1])
    np.testing.assert_allclose(thr, [np.inf, 0.9, 0.8, 0.6, 0.3, 0.2])
    fpr, tpr, _ = roc_curve(ROC_LABELS, ROC_SCORES, drop_intermediate=False)
    np.testing.assert_allclose(fpr, [0, 0, 0.25, 0.25, 0.25, 0.5, 0.75, 1, 1])
    np.testing.assert_allclose(tpr, [0, 0.25, 0.25, 0.5, 0.75, 0.75, 0.75, 0.75, 1])


def test_roc_curve_ties_share_one_point():
    # Scores 0.5 (genuine) and 0.5 (impostor) tie: one point (fps 1, tps 2) after the 0.9 genuine.
    fpr, tpr, thr = roc_curve([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1], drop_intermediate=False)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])
    np.testing.assert_allclose(thr, [np.inf, 0.9, 0.5, 0.1])


def test_tar_at_far_nearest_point_insightface_tie_rule():
    fpr, tpr, _ = roc_curve(ROC_LABELS, ROC_SCORES)
    # 1e-6, 0.1: nearest FPR is 0 (points with TPR 0 and 0.25): the later point, 0.25.
    assert [tpr[nearest_point(fpr, f)] for f in (1e-6, 0.1)] == [0.25, 0.25]
    r = roc_summary(ROC_LABELS, ROC_SCORES, fars=(1e-6, 0.1, 0.25, 0.6, 0.7))
    t = {k: v["tar"] for k, v in r["tar_at_far"].items()}
    # 4 impostors measure FARs from 1/4 on: 1e-6 and 0.1 are n/a with the count they need.
    # 0.25: FPR 0.25 at TPR 0.25 and 0.75 -> 0.75.  0.6: |0.25-0.6| < |1-0.6| -> 0.75.
    # 0.7: |1-0.7| < |0.25-0.7| -> FPR 1 points, the later has TPR 1 (the dropped curve has no FPR 0.75 point).
    assert t == {"1e-06": None, "1e-01": None, "2.5e-01": 0.75, "6e-01": 0.75, "7e-01": 1.0}
    assert r["tar_at_far"]["1e-01"]["reason"] == "n/a: needs at least 10 impostor pairs to be measured, only 4 given"
    assert r["tar_at_far"]["1e-06"]["reason"].startswith("n/a: needs at least 1000000 impostor pairs")
    assert r["tar_at_far"]["2.5e-01"]["threshold"] == 0.6
    full = roc_summary(ROC_LABELS, ROC_SCORES, fars=(0.7,), drop_intermediate=False)
    assert full["tar_at_far"]["7e-01"] == {"tar": 0.75, "far": 0.75, "threshold": 0.4}
    # AUC by hand: area under the step curve = P(genuine score > impostor score) = (4 + 3 + 3 + 0) / 16.
    assert r["auc"] == pytest.approx(10 / 16)


def ref_roc(labels, scores, drop):
    """sklearn's definition written plainly: one point per distinct threshold, then the collinear-drop rule."""
    pts = []
    for t in sorted(set(scores.tolist()), reverse=True):
        above = [y for y, s in zip(labels, scores) if s >= t]
        pts.append((above.count(0), above.count(1)))
    if drop and len(pts) > 2:
        kept = [pts[0]]
        for i in range(1, len(pts) - 1):
            (f0, t0), (f1, t1), (f2, t2) = pts[i - 1], pts[i], pts[i + 1]
            if f2 - 2 * f1 + f0 != 0 or t2 - 2 * t1 + t0 != 0:
                kept.append(pts[i])
        pts = kept + [pts[-1]]
    fps, tps = np.array([0] + [p[0] for p in pts]), np.array([0] + [p[1] for p in pts])
    return fps / fps[-1], tps / tps[-1]


@pytest.mark.parametrize("drop", [True, False])
def test_roc_curve_matches_plain_definition_with_ties(drop):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(labels * 0.7, 0.5), 1)  # rounding makes many ties
    fpr, tpr, _ = roc_curve(labels, scores, drop)
    rf, rt = ref_roc(labels, scores, drop)
    np.testing.assert_allclose(fpr, rf)
    np.testing.assert_allclose(tpr, rt)


def test_roc_needs_both_classes():
    with pytest.raises(DataError, match="both genuine"):
        roc_curve([1, 1], [0.1, 0.2])


# ------------------------------------------------------------------------------------------- open-set 1:N search


def test_identification_by_hand():
    # Gallery: identity 1 = e1, identity 2 = {e2, e4} (best of the two counts), identity 3 = e3.
    gallery = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    gallery_ids = np.array([1, 2, 3, 2])
    probes = np.array(
        [
            [0.6, 0.8, 0, 0],  # id 1: true 0.6 < id 2's 0.8 -> rank 2
            [0, 0, 0.6, 0.8],  # id 2: true 0.8 (via e4) > id 3's 0.6 -> rank 1
            [0, 0, 2, 0],  # id 3: true 1.0 (norm removed) -> rank 1
            [0.8, 0, 0.6, 0],  # non-mated, max 0.8
            [0.28, 0.96, 0, 0],  # non-mated, max 0.96
            [0, 0, 0, 1],  # non-mated, max 1.0
            [0.6, 0, 0, 0.8],  # non-mated, max 0.8 (tie)
            [0.5, 0.5, 0.5, 0.5],  # non-mated, max 0.5
        ]
    )
    probe_ids = np.array([1, 2, 3, 9, 8, 7, 6, 5])
    r = identification(gallery, gallery_ids, probes, probe_ids, ranks=(1, 2, 5), fpirs=(0.01, 0.2, 0.5, 0.8))
    assert r["ranks"].tolist() == [2, 1, 1]
    assert r["cmc"] == pytest.approx({1: 2 / 3, 2: 1.0, 5: 1.0})
    assert (r["num_mated"], r["num_nonmated"]) == (3, 5)
    # Non-mated maxima, descending: 1.0, 0.96, 0.8, 0.8, 0.5. Threshold = the (floor(fpir*5)+1)-th, accept if >.
    tp = r["tpir_at_fpir"]
    # FPIR 0.01 needs 100 non-mated searches, there are 5: n/a (k = 0 would only say "none accepted").
    assert tp["1e-02"] == {
        "tpir": None,
        "fpir": None,
        "threshold": None,
        "reason": "n/a: needs at least 100 non-mated searches to be measured, only 5 given",
    }
    assert tp["2e-01"]["threshold"] == pytest.approx(0.96) and tp["2e-01"]["fpir"] == pytest.approx(0.2)
    assert tp["2e-01"]["tpir"] == pytest.approx(1 / 3)
    assert tp["5e-01"]["threshold"] == pytest.approx(0.8) and tp["5e-01"]["fpir"] == pytest.approx(0.4)  # tie
    assert tp["5e-01"]["tpir"] == pytest.approx(1 / 3)  # probe 2's 0.8 is not above the tied 0.8
    assert tp["8e-01"]["threshold"] == pytest.approx(0.5) and tp["8e-01"]["tpir"] == pytest.approx(2 / 3)
    # Gallery order and probe blocking do not matter.
    perm = np.array([3, 1, 0, 2])
    r2 = identification(gallery[perm], gallery_ids[perm], probes, probe_ids, ranks=(1, 2, 5), fpirs=(0.2, 0.8), block=3)
    assert r2["cmc"] == r["cmc"] and r2["ranks"].tolist() == [2, 1, 1]
    assert r2["tpir_at_fpir"]["8e-01"]["tpir"] == tp["8e-01"]["tpir"]


def test_cmc_curve():
    np.testing.assert_allclose(cmc_curve(np.array([1, 3, 1, 7]), 5), [0.5, 0.5, 0.75, 0.75, 0.75])


def test_identification_with_one_unsorted_entry_per_identity():
    # IJB galleries list one template per subject in file order, not sorted by subject.
    gallery, ids = np.eye(3), np.array([30, 10, 20])
    probes = np.array([[0.6, 0.8, 0], [0, 0.28, 0.96], [1, 0, 0]])
    r = identification(gallery, ids, probes, np.array([30, 10, 99]), ranks=(1, 2))
    assert r["ranks"].tolist() == [2, 2]  # 30 scores 0.6 < 10's 0.8; 10 scores 0.28 < 20's 0.96
    assert r["cmc"] == {1: 0.0, 2: 1.0} and r["num_nonmated"] == 1


def test_identification_rejects_mismatched_shapes():
    with pytest.raises(DataError, match="gallery"):
        identification(np.ones((3, 4)), [1, 2], np.ones((2, 4)), [1, 2])


def test_non_finite_embeddings_are_counted_per_image_across_views_and_chunks():
    emb, flip = np.ones((70_000, 4), np.float32), np.ones((70_000, 4), np.float32)
    emb[3, 0], emb[65_540, 2], flip[3, 1], flip[69_999, 3] = np.nan, np.inf, np.nan, -np.inf
    # image 3 is bad in both views (one image), 65,540 lies in the second 65,536-row chunk, 69,999 only in the flip
    with pytest.raises(DataError, match="lfw: .*non-finite embeddings \\(NaN or inf\\) for 3 of 70000 images"):
        check_finite_embeddings([emb, flip], "lfw")
    check_finite_embeddings([np.ones((70_000, 4)), np.zeros((70_000, 4))], "lfw")  # zeros are finite: no error
