"""IJB-B / IJB-C protocol: meta readers on hand-written files, template pooling (against the previous torch
index_add_ pooling), pair scores, and the release end to end."""

import math
import time

import numpy as np
import pytest
import torch

from facezoo.errors import ConfigError, DataError
from facezoo.eval.ijb import evaluate_ijb_features, image_features, template_features, verify_scores
from facezoo.eval.ijb_meta import read_landmarks, read_template_media, read_template_pairs
from facezoo.eval.scoring import roc_summary

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


def torch_pooling(img_feats, templates, medias):
    """The pooling facezoo used before (kept here as the reference): torch index_add_ in float64 over chunks of
    rows, media means, then template sums over media in (template, media) order, then sklearn's normalize."""
    n = templates.shape[0]
    order = np.lexsort((medias, templates))
    t_sorted, m_sorted = templates[order], medias[order]
    change = np.r_[True, (t_sorted[1:] != t_sorted[:-1]) | (m_sorted[1:] != m_sorted[:-1])]
    starts = np.flatnonzero(change)
    media_of_image = np.empty(n, np.int64)
    media_of_image[order] = np.cumsum(change) - 1

    def sums(x, group, n_groups, chunk=32768):
        out = torch.zeros((n_groups, x.shape[1]), dtype=torch.float64)
        index = torch.from_numpy(group)
        for a in range(0, x.shape[0], chunk):
            out.index_add_(0, index[a : a + chunk], torch.from_numpy(np.ascontiguousarray(x[a : a + chunk])).double())
        return out.numpy()

    media_means = sums(img_feats, media_of_image, starts.size) / np.diff(np.append(starts, n))[:, None]
    media_templates = t_sorted[starts]
    tchange = np.r_[True, media_templates[1:] != media_templates[:-1]]
    template_sums = sums(media_means, np.cumsum(tchange) - 1, int(tchange.sum()))
    norms = np.sqrt(np.einsum("ij,ij->i", template_sums, template_sums))
    norms[norms == 0] = 1
    return template_sums / norms[:, None], media_templates[tchange]


@pytest.mark.parametrize("chunk_rows", [40_000, 70_000])
def test_numpy_pooling_equals_the_previous_torch_pooling(chunk_rows):
    """Bit for bit: each media and template sum is the same sequential float64 sum, in the same order."""
    rng = np.random.default_rng(chunk_rows)
    n, dim = chunk_rows, 24  # more rows than one torch chunk of 32,768
    templates = rng.integers(0, 900, n) * 7 - 3000  # unsorted, negative ids too
    medias = rng.integers(0, 5, n) + templates * 10  # media ids unique to a template, 1..5 media per template
    big = rng.integers(0, n, 30)
    templates[big], medias[big] = 424242, 1  # one long media (30+ images): many summation steps
    scale = 10.0 ** rng.integers(-4, 5, (n, 1))  # mixed magnitudes make any change of summation order visible
    feats = (rng.standard_normal((n, dim)) * scale).astype(np.float32)
    got, tids = template_features(feats, templates, medias)
    want, want_ids = torch_pooling(feats, templates, medias)
    np.testing.assert_array_equal(tids, want_ids)
    assert got.dtype == want.dtype == np.float64
    np.testing.assert_array_equal(got, want)


def unique_gram_scores(feats, r1, r2, max_entries):
    """The Gram-slice scoring facezoo used before (reference): np.unique(r2, return_inverse=True) over all pairs."""
    starts = np.flatnonzero(np.r_[True, r1[1:] != r1[:-1]])
    u1 = r1[starts]
    group = np.cumsum(np.r_[0, (r1[1:] != r1[:-1]).astype(np.int64)])
    u2, inv2 = np.unique(r2, return_inverse=True)
    right = np.ascontiguousarray(feats[u2].T)
    step = max(1, max_entries // u2.shape[0])
    bounds = np.append(starts, r1.shape[0])
    out = np.empty(r1.shape[0], feats.dtype)
    for j in range(0, u1.shape[0], step):
        a, b = bounds[j], bounds[min(j + step, u1.shape[0])]
        out[a:b] = (feats[u1[j : j + step]] @ right)[group[a:b] - j, inv2[a:b]]
    return out


@pytest.mark.parametrize("max_entries", [1 << 24, 5000])
def test_lookup_table_gram_equals_the_previous_np_unique_gram(max_entries):
    rng = np.random.default_rng(7)
    ids = np.arange(400) * 3 + 11
    feats = rng.standard_normal((400, 32)).astype(np.float32)
    r1 = np.sort(rng.integers(0, 150, 20_000))  # sorted by the first template, as the release lists pairs
    r2 = rng.integers(0, 400, 20_000)
    r2[r2 % 5 == 0] = 399  # a few templates used often, some rows never used
    got = verify_scores(feats, ids, ids[r1], ids[r2], gram_ratio=10**9, max_gram_entries=max_entries)
    np.testing.assert_array_equal(got, unique_gram_scores(feats, r1, r2, max_entries))


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
    # 2 impostor pairs measure no FAR below 1/2: every IJB FAR is n/a; at FAR 0.5 genuine scores top every impostor
    assert all(v["reason"].endswith("only 2 given") for v in r["tar_at_far"].values())
    assert evaluate_ijb_features(tmp_path, "ijbc", emb, flip, fars=(0.5,))["tar_at_far"]["5e-01"]["tar"] == 1.0
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


def test_evaluate_ijb_features_refuses_non_finite_embeddings(tmp_path):
    make_release(tmp_path)
    emb = emb_in_file_order()
    emb[2, 1] = np.nan
    with pytest.raises(DataError, match="IJBC: .*non-finite embeddings .* for 1 of 7 images"):
        evaluate_ijb_features(tmp_path, "IJBC", emb, use_flip=False)
    flip = np.zeros_like(emb)
    flip[4, 0] = np.inf
    with pytest.raises(DataError, match="emb_flip .* for 1 of 7 images"):
        evaluate_ijb_features(tmp_path, "IJBC", emb_in_file_order(), flip)


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
    r = roc_summary(labels, scores, (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1))
    t_total = time.perf_counter() - start
    print(f"\n2M pairs x 128-d: scores {t_score:.2f} s, scores + ROC + TAR@FAR {t_total:.2f} s")
    check = rng.integers(0, n_pairs, 1000)
    np.testing.assert_allclose(scores[check], np.einsum("ij,ij->i", feats[i1[check]], feats[i2[check]]), atol=1e-5)
    assert len(r["tar_at_far"]) == 6
    assert t_total < 15.0
