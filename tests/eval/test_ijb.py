"""IJB-B / IJB-C protocol: meta readers on hand-written files, template pooling, scores, ROC and 1:N by hand."""

import math
import time

import numpy as np
import pytest

from facezoo.errors import ConfigError, DataError
from facezoo.eval.ijb import (
    evaluate_ijb_features,
    identification,
    image_features,
    read_landmarks,
    read_template_media,
    read_template_pairs,
    roc_curve,
    tar_at_far,
    template_features,
    verify_scores,
)

R2 = math.sqrt(2.0)

# Seven images in three templates, listed out of template order. Template 7: media 10 = {a, b}, media 11 = {c};
# template 3: media 20 = {d}; template 5: media 30 = {e, f}, media 31 = {g}.
TID_MID = """e.jpg 5 30
a.jpg 7 10
d.jpg 3 20
b.jpg 7 10
g.jpg 5 31
c.jpg 7 11
f.jpg 5 30
"""
NAMES = ["e.jpg", "a.jpg", "d.jpg", "b.jpg", "g.jpg", "c.jpg", "f.jpg"]
FEATS = {  # 3-d image features, chosen so every template is easy to pool by hand
    "a.jpg": (2, 0, 0),
    "b.jpg": (0, 2, 0),
    "c.jpg": (1, -1, 0),
    "d.jpg": (0, 0, 5),
    "e.jpg": (3, 0, 0),
    "f.jpg": (1, 0, 0),
    "g.jpg": (0, 2, 0),
}
PAIRS = "7 3 0\n7 5 1\n3 5 0\n5 7 1\n"


def emb_in_file_order():
    return np.array([FEATS[n] for n in NAMES], dtype=np.float32)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------ readers


def test_read_template_media_and_pairs(tmp_path):
    media = read_template_media(write(tmp_path / "ijbc_face_tid_mid.txt", TID_MID))
    assert media.names == NAMES
    assert media.templates.tolist() == [5, 7, 3, 7, 5, 7, 5]
    assert media.medias.tolist() == [30, 10, 20, 10, 31, 11, 30]
    pairs = read_template_pairs(write(tmp_path / "ijbc_template_pair_label.txt", PAIRS))
    assert pairs.t1.tolist() == [7, 7, 3, 5] and pairs.t2.tolist() == [3, 5, 5, 7]
    assert pairs.labels.tolist() == [0, 1, 0, 1]


def test_read_landmarks(tmp_path):
    text = "img/1.jpg 1 2 3 4 5 6 7 8 9 10 0.9\nimg/2.jpg 10.5 20 30 40 50 60 70 80 90 100 0.25\n"
    lm = read_landmarks(write(tmp_path / "ijbb_name_5pts_score.txt", text))
    assert lm.names == ["img/1.jpg", "img/2.jpg"]
    assert lm.points.shape == (2, 5, 2)
    np.testing.assert_array_equal(lm.points[0], [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]])
    assert lm.points[1, 0, 0] == 10.5 and lm.points[1, 4, 1] == 100
    np.testing.assert_allclose(lm.scores, [0.9, 0.25], rtol=1e-6)


@pytest.mark.parametrize(
    "reader, name, text, line",
    [
        (read_template_pairs, "p.txt", "1 2 1\n3 4 0\n5 7\n8 9 1\n", 3),  # a missing label
        (read_template_pairs, "p.txt", "1 2 1\n3 4 2\n", 2),  # label not 0/1
        (read_template_pairs, "p.txt", "1 2 1\n3 x 0\n", 2),  # non-integer id
        (read_template_media, "m.txt", "a.jpg 1 2\nb.jpg one 2\n", 2),
        (read_template_media, "m.txt", "a.jpg 1 2 9\n", 1),
        (read_landmarks, "l.txt", "a.jpg 1 2 3 4 5 6 7 8 9 10 0.9\nb.jpg 1 2 3 4 5 6 7 8 9 0.9\n", 2),
        (read_landmarks, "l.txt", "a.jpg 1 2 3 4 5 6 7 8 9 ten 0.9\n", 1),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, reader, name, text, line):
    path = write(tmp_path / name, text)
    with pytest.raises(DataError, match=f"{name}:{line}:"):
        reader(path)


def test_missing_file_is_data_error(tmp_path):
    for reader in (read_template_media, read_template_pairs, read_landmarks):
        with pytest.raises(DataError, match="not found"):
            reader(tmp_path / "absent.txt")


# ------------------------------------------------------------------------------------------ features, templates


def test_image_feature_options_in_insightface_order():
    emb, flip, score = np.array([[3.0, 0.0], [0.0, 4.0]]), np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([0.5, 2.0])
    # flip sum -> (4, 0), (0, 4); keep norm; x score -> (2, 0), (0, 8)
    np.testing.assert_allclose(image_features(emb, flip, score), [[2, 0], [0, 8]])
    # normalise after the flip sum, before the score: (1, 0) * 0.5, (0, 1) * 2
    np.testing.assert_allclose(image_features(emb, flip, score, use_norm=False), [[0.5, 0], [0, 2]])
    np.testing.assert_allclose(image_features(emb, use_flip=False, use_detector_score=False), emb)
    with pytest.raises(ConfigError, match="emb_flip"):
        image_features(emb)
    with pytest.raises(ConfigError, match="faceness"):
        image_features(emb, flip)


def test_template_features_mean_within_media_sum_over_media():
    templates, medias = np.array([5, 7, 3, 7, 5, 7, 5]), np.array([30, 10, 20, 10, 31, 11, 30])
    feats, tids = template_features(emb_in_file_order(), templates, medias)
    assert tids.tolist() == [3, 5, 7]
    # 3: d = (0,0,5) -> (0,0,1); 5: mean(e,f) + g = (2,0,0) + (0,2,0) -> (1,1,0)/sqrt2;
    # 7: mean(a,b) + c = (1,1,0) + (1,-1,0) = (2,0,0) -> (1,0,0)  (a plain mean of a,b,c would not be on an axis)
    np.testing.assert_allclose(feats, [[0, 0, 1], [1 / R2, 1 / R2, 0], [1, 0, 0]], atol=1e-12)


def test_template_features_zero_template_stays_zero():
    feats, tids = template_features(np.array([[1.0, -1.0], [-1.0, 1.0], [3.0, 4.0]]), [1, 1, 2], [8, 9, 10])
    assert tids.tolist() == [1, 2]
    np.testing.assert_array_equal(feats[0], [0, 0])
    np.testing.assert_allclose(feats[1], [0.6, 0.8])


# ---------------------------------------------------------------------------------------------------- scoring


def test_verify_scores_hand_fixture():
    feats = np.array([[0, 0, 1], [1 / R2, 1 / R2, 0], [1, 0, 0]])
    s = verify_scores(feats, np.array([3, 5, 7]), np.array([7, 7, 3, 5]), np.array([3, 5, 5, 7]))
    np.testing.assert_allclose(s, [0, 1 / R2, 0, 1 / R2], atol=1e-12)
    with pytest.raises(DataError, match=r"\[4\]"):
        verify_scores(feats, np.array([3, 5, 7]), np.array([7, 4]), np.array([3, 5]))


@pytest.mark.parametrize(
    "gram_ratio, max_entries, block, id_scale",
    [(0, 1 << 24, 1000, 1), (10**9, 1 << 24, 1000, 1), (10**9, 50, 333, 1), (0, 1 << 24, 7, 10**9), (10**9, 50, 1, -1)],
)
def test_verify_scores_both_paths_match_rowwise_dot(gram_ratio, max_entries, block, id_scale):
    rng = np.random.default_rng(0)
    ids = np.sort(rng.choice(10_000, size=300, replace=False) * id_scale)  # large / negative ids: binary search
    feats = rng.standard_normal((300, 16))
    t1, t2 = rng.choice(ids, 2500), rng.choice(ids, 2500)  # unsorted t1: exercises the reorder
    rows = {t: i for i, t in enumerate(ids)}
    expected = np.array([feats[rows[a]] @ feats[rows[b]] for a, b in zip(t1, t2)])
    got = verify_scores(feats, ids, t1, t2, block=block, gram_ratio=gram_ratio, max_gram_entries=max_entries)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


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
    r = tar_at_far(ROC_LABELS, ROC_SCORES, fars=(1e-6, 0.1, 0.25, 0.6, 0.7))
    t = {k: v["tar"] for k, v in r["tar_at_far"].items()}
    # 1e-6, 0.1: nearest FPR is 0 (points with TPR 0 and 0.25): the later point, 0.25.
    # 0.25: FPR 0.25 at TPR 0.25 and 0.75 -> 0.75.  0.6: |0.25-0.6| < |1-0.6| -> 0.75.
    # 0.7: |1-0.7| < |0.25-0.7| -> FPR 1 points, the later has TPR 1 (the dropped curve has no FPR 0.75 point).
    assert t == {"1e-06": 0.25, "1e-01": 0.25, "2e-01": 0.75, "6e-01": 0.75, "7e-01": 1.0}
    assert r["tar_at_far"]["2e-01"]["threshold"] == 0.6
    full = tar_at_far(ROC_LABELS, ROC_SCORES, fars=(0.7,), drop_intermediate=False)
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


# --------------------------------------------------------------------------------------------- 1:N identification


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
    assert tp["1e-02"]["threshold"] == pytest.approx(1.0) and tp["1e-02"]["fpir"] == 0.0
    assert tp["1e-02"]["tpir"] == 0.0  # probe 3's 1.0 is not above 1.0
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


# -------------------------------------------------------------------------------------------------- end to end


def make_release(root, lm_names=NAMES):
    # faceness scores: 3 for image c, 1 for the rest
    lines = [f"{n} 1 2 3 4 5 6 7 8 9 10 {3 if n == 'c.jpg' else 1}" for n in lm_names]
    write(root / "meta" / "ijbc_face_tid_mid.txt", TID_MID)
    write(root / "meta" / "ijbc_template_pair_label.txt", PAIRS)
    write(root / "meta" / "ijbc_name_5pts_score.txt", "\n".join(lines) + "\n")


def test_evaluate_ijb_features_from_files(tmp_path):
    make_release(tmp_path / "IJBC")
    emb = emb_in_file_order()
    flip = np.zeros_like(emb)
    r = evaluate_ijb_features(tmp_path, "ijbc", emb, flip)  # finds <root>/IJBC/meta
    # With c weighted by 3: template 7 = (1,1,0) + (3,-3,0) = (4,-2,0) -> (2,-1,0)/sqrt5; template 5 = (1,1,0)/sqrt2.
    # Pairs (7,3) (7,5) (3,5) (5,7): 0, 1/sqrt10, 0, 1/sqrt10.
    np.testing.assert_allclose(r["scores"], [0, 1 / math.sqrt(10), 0, 1 / math.sqrt(10)], atol=1e-12)
    assert (r["num_images"], r["num_templates"], r["num_pairs"], r["num_genuine"], r["num_impostor"]) == (7, 3, 4, 2, 2)
    assert all(v["tar"] == 1.0 for v in r["tar_at_far"].values())  # genuine scores above every impostor
    assert r["options"] == {"flip": True, "norm": True, "detector_score": True}
    r = evaluate_ijb_features(tmp_path / "IJBC", "IJBC", emb, use_flip=False, use_detector_score=False)
    np.testing.assert_allclose(r["scores"], [0, 1 / R2, 0, 1 / R2], atol=1e-12)


def test_evaluate_ijb_features_rejects_mismatched_files(tmp_path):
    make_release(tmp_path, lm_names=NAMES[:3] + ["x.jpg"] + NAMES[4:])
    with pytest.raises(DataError, match="name_5pts_score.txt:4:"):
        evaluate_ijb_features(tmp_path, "IJBC", emb_in_file_order(), use_flip=False)
    with pytest.raises(DataError, match="7 images"):
        evaluate_ijb_features(tmp_path, "IJBC", np.zeros((6, 3)), use_flip=False)
    with pytest.raises(ConfigError, match="IJBB, IJBC"):
        evaluate_ijb_features(tmp_path, "IJBA", emb_in_file_order())


# ------------------------------------------------------------------------------------------------------- speed


def test_scale_two_million_pairs_in_seconds():
    rng = np.random.default_rng(0)
    n_templates, n_pairs, dim = 5000, 2_000_000, 128
    ids = np.arange(n_templates) * 3 + 1
    feats = rng.standard_normal((n_templates, dim)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    i1, i2 = rng.integers(0, n_templates, n_pairs), rng.integers(0, n_templates, n_pairs)
    labels = (rng.random(n_pairs) < 0.002).astype(np.int64)
    start = time.perf_counter()
    scores = verify_scores(feats, ids, ids[i1], ids[i2])
    t_score = time.perf_counter() - start
    r = tar_at_far(labels, scores)
    t_total = time.perf_counter() - start
    print(f"\n2M pairs x 128-d: scores {t_score:.2f} s, scores + ROC + TAR@FAR {t_total:.2f} s")
    check = rng.integers(0, n_pairs, 1000)
    np.testing.assert_allclose(scores[check], np.einsum("ij,ij->i", feats[i1[check]], feats[i2[check]]), atol=1e-5)
    assert len(r["tar_at_far"]) == 6
    assert t_total < 15.0
