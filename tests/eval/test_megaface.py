"""MegaFace scoring: devkit feature bytes, noise dimension, identification / verification by hand and at scale."""

import math
import struct

import numpy as np
import pytest
import torch

from facezoo.errors import ConfigError, DataError
from facezoo.eval import megaface as mf


# ---------------------------------------------------------------------------------------- feature files
def test_read_feature_hand_built(tmp_path):
    p = tmp_path / "a.jpg_x.bin"
    p.write_bytes(struct.pack("<4i", 3, 1, 4, 5) + struct.pack("<3f", 0.5, -2.0, 0.25))
    np.testing.assert_array_equal(mf.read_feature(p), np.array([0.5, -2.0, 0.25], np.float32))
    q = tmp_path / "row.bin"  # a 1 x 2 row vector is the same data
    q.write_bytes(struct.pack("<4i", 1, 2, 4, 5) + struct.pack("<2f", 1.0, 3.0))
    np.testing.assert_array_equal(mf.read_feature(q), [1.0, 3.0])


def test_write_feature_bytes(tmp_path):
    p = tmp_path / "sub" / "f.bin"
    mf.write_feature(p, [1.5, 0.0, -1.0, 2.0])
    assert p.read_bytes() == struct.pack("<4i", 4, 1, 4, 5) + struct.pack("<4f", 1.5, 0.0, -1.0, 2.0)
    assert [q.name for q in p.parent.iterdir()] == ["f.bin"]  # no temp file left


def test_read_features_stacks_and_checks_dim(tmp_path):
    paths = [tmp_path / f"{i}.bin" for i in range(3)]
    for i, p in enumerate(paths):
        mf.write_feature(p, [i, i + 1.0])
    np.testing.assert_array_equal(mf.read_features(paths), [[0, 1], [1, 2], [2, 3]])
    mf.write_feature(paths[1], [1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="1.bin"):
        mf.read_features(paths)


@pytest.mark.parametrize(
    "data, words",
    [
        (b"\x01\x00", "shorter"),
        (struct.pack("<4i", 2, 1, 4, 6) + bytes(8), "type=6"),  # CV_64F, not float32
        (struct.pack("<4i", 2, 1, 8, 5) + bytes(8), "elem_size=8"),
        (struct.pack("<4i", 3, 1, 4, 5) + bytes(8), "truncated"),
        (struct.pack("<4i", 2, 1, 4, 5) + bytes(12), "truncated or padded"),
    ],
)
def test_read_feature_bad_files(tmp_path, data, words):
    p = tmp_path / "bad.bin"
    p.write_bytes(data)
    with pytest.raises(DataError, match="bad.bin") as e:
        mf.read_feature(p)
    assert words in str(e.value)


def test_read_feature_missing(tmp_path):
    with pytest.raises(DataError, match="nope.bin"):
        mf.read_feature(tmp_path / "nope.bin")


# ---------------------------------------------------------------------------------------- hand-made case
def _unit(deg):
    r = np.deg2rad(np.asarray(deg, dtype=np.float64))
    return np.stack([np.cos(r), np.sin(r)], 1).astype(np.float32)


# identity A at 0, 10, 30 degrees; identity B at 180, 190, 200; distractors at 5, 22, 100, 185, 270.
# Cosine falls with the angle between two unit vectors, so rank(p, g) = 1 + #{d : angle(p, d) < angle(p, g)}.
PROBES = _unit([0, 10, 30, 180, 190, 200])
IDS = np.array(["A", "A", "A", "B", "B", "B"])
DISTRACTORS = _unit([5, 22, 100, 185, 270])
# All 5 distractors (angles from p to each distractor in the comments):
# A: (0,10) {5} -> 2; (0,30) {5,22} -> 3; (10,0) {5} -> 2; (10,30) {5,12} -> 3; (30,0) {25,8} -> 3; (30,10) {8} -> 2
# B: (180,190) {5} -> 2; (180,200) {5} -> 2; (190,180) {5} -> 2; (190,200) {5} -> 2; (200,180) {15} -> 2;
#    (200,190) {} -> 1
RANKS_ALL = [2, 3, 2, 3, 3, 2, 2, 2, 2, 2, 2, 1]
# First 2 distractors (5, 22 degrees): A as above (only 5 and 22 mattered), every B pair rank 1.
RANKS_FIRST2 = [2, 3, 2, 3, 3, 2, 1, 1, 1, 1, 1, 1]


def _cmc(ranks, r):
    return sum(x <= r for x in ranks) / len(ranks)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("block", [None, 1, 2])
def test_identification_hand_case(metric, block):
    out = mf.identification(
        PROBES,
        IDS,
        DISTRACTORS,
        ranks=(1, 2, 3),
        sizes=(2, 5),
        metric=metric,
        block=block,
    )
    assert sorted(out) == [2, 5]
    for size, ranks in [(5, RANKS_ALL), (2, RANKS_FIRST2)]:
        assert out[size]["pairs"] == 12
        for r in (1, 2, 3):
            assert out[size][f"rank{r}"] == pytest.approx(_cmc(ranks, r))
    assert out[5]["rank1"] == pytest.approx(1 / 12)


def test_identification_scale_invariant_cosine_but_not_l2():
    scaled = DISTRACTORS * 3.0  # cosine ignores norms
    out = mf.identification(PROBES, IDS, scaled, ranks=(1,))
    assert out[5]["rank1"] == pytest.approx(1 / 12)
    far = mf.identification(PROBES, IDS, scaled, ranks=(1,), metric="l2")  # 2 units away from every probe
    assert far[5]["rank1"] == 1.0


def test_identification_errors():
    with pytest.raises(ConfigError, match="sizes"):
        mf.identification(PROBES, IDS, DISTRACTORS, sizes=(6,))
    with pytest.raises(ConfigError, match="metric"):
        mf.identification(PROBES, IDS, DISTRACTORS, metric="cos")
    with pytest.raises(DataError, match="two probe images"):
        mf.identification(PROBES, np.arange(6), DISTRACTORS)
    with pytest.raises(DataError, match="3-d"):
        mf.identification(PROBES, IDS, np.zeros((4, 3)))


def test_non_finite_features_are_refused():
    for probes, dist, name in [
        (PROBES.copy(), DISTRACTORS, "probe_feats"),
        (PROBES, DISTRACTORS.copy(), "distractor_feats"),
    ]:
        (probes if name == "probe_feats" else dist)[1, 0] = np.nan
        for run in (mf.identification, mf.verification):
            with pytest.raises(DataError, match=f"{name}: .*non-finite embeddings .* for 1 of"):
                run(probes, IDS, dist)
    with pytest.raises(DataError, match="distractor_feats: .* for 1 of 5"):  # torch distractors too
        mf.identification(PROBES, IDS, torch.from_numpy(DISTRACTORS).index_fill(0, torch.tensor([2]), float("inf")))


def test_verification_hand_case():
    # genuine angles: A 10, 30, 20; B 10, 20, 10. 30 impostor angles, sorted:
    # 5,5,5,5,8,12,15,22,25,70,...
    # far=0.17: k=floor(5.1)=5 -> t = cos 12 -> genuine angles < 12 pass: 3 of 6; 5 impostors above t.
    out = mf.verification(PROBES, IDS, DISTRACTORS, far=0.17)[5]
    assert out["tar"] == pytest.approx(3 / 6)
    assert out["far"] == pytest.approx(5 / 30)
    assert out["threshold"] == pytest.approx(math.cos(math.radians(12)), abs=1e-6)
    assert (out["genuine"], out["impostors"]) == (6, 30)
    # far=0.2334: k=7 -> t = cos 22 -> angles 10, 20 pass: 5 of 6; 7 impostors above t.
    out = mf.verification(PROBES, IDS, DISTRACTORS, far=0.2334, block=2)[5]
    assert out["tar"] == pytest.approx(5 / 6)
    assert out["far"] == pytest.approx(7 / 30)
    # first 2 distractors (12 impostors, angles 5,22 | 5,12 | 25,8 | 175,158 | 175,168 | 165,178):
    # far=0.25: k=3 -> t = cos 12 -> genuine angle-10 pairs pass: 3 of 6, 3 impostors above.
    out = mf.verification(PROBES, IDS, DISTRACTORS, far=0.25, sizes=(2, 5))[2]
    assert out["tar"] == pytest.approx(3 / 6)
    assert out["far"] == pytest.approx(3 / 12)


def test_verification_below_one_impostor_is_not_measured():
    # 30 impostor pairs at 5 distractors measure FARs from 1/30 on; 12 at the first 2 from 1/12 on.
    out = mf.verification(PROBES, IDS, DISTRACTORS, far=0.05, sizes=(2, 5))
    # k = 1: t = the 2nd highest impostor score, cos 5 (four impostors tie there, none is above: achieved FAR 0)
    assert out[5]["threshold"] == pytest.approx(math.cos(math.radians(5)), abs=1e-6)
    assert out[5]["tar"] == 0.0 and out[5]["far"] == 0.0
    assert out[2]["tar"] is None and out[2]["threshold"] is None
    assert out[2]["reason"] == "n/a: needs at least 20 impostor pairs to be measured, only 12 given"
    assert (out[2]["genuine"], out[2]["impostors"]) == (6, 12)
    for far in (0.0, 1.0, 2.0):  # a false accept rate lies strictly between 0 and 1
        with pytest.raises(ConfigError, match="far"):
            mf.verification(PROBES, IDS, DISTRACTORS, far=far)


# ---------------------------------------------------------------------------------------- noise dimension
def test_add_noise_dimension():
    rng = np.random.default_rng(1)
    probes = rng.normal(size=(5, 4)).astype(np.float32)
    ids = np.array([7, 7, 7, 9, 9])
    p_noise = np.array([False, True, False, False, False])
    dist = rng.normal(size=(3, 4)).astype(np.float32)
    d_noise = np.array([False, True, False])
    p, d = mf.add_noise_dimension(probes, ids, p_noise, dist, d_noise)
    assert p.shape == (5, 5) and d.shape == (3, 5)
    np.testing.assert_array_equal(p[[0, 2, 3, 4], :4], probes[[0, 2, 3, 4]])
    np.testing.assert_array_equal(p[:, 4], 0.0)
    centre = probes[0] + probes[2]
    centre = centre / np.linalg.norm(centre)
    assert np.linalg.norm(p[1]) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(p[1, :4], centre, atol=2e-3 / np.linalg.norm(probes[0] + probes[2]) + 1e-6)
    np.testing.assert_array_equal(d[:, :4], dist)
    np.testing.assert_array_equal(d[:, 4], [0.0, 100.0, 0.0])
    with pytest.raises(DataError, match="no clean image"):
        mf.add_noise_dimension(probes, ids, [False, False, False, True, True], dist, d_noise)


def test_noise_distractor_is_pushed_out():
    # A distractor identical to every probe of A would take rank 1 from all A pairs; marked as noise it cannot.
    probes = _unit([0, 1, 2, 90, 91])
    ids = np.array([0, 0, 0, 1, 1])
    dist = _unit([1, 1, 91, 200])
    before = mf.identification(probes, ids, dist, ranks=(1,), metric="l2")[4]["rank1"]
    p, d = mf.add_noise_dimension(probes, ids, np.zeros(5, bool), dist, np.array([True, True, True, False]))
    for metric in ("l2", "cosine"):
        assert mf.identification(p, ids, d, ranks=(1,), metric=metric)[4]["rank1"] == 1.0
    assert before < 1.0


# ---------------------------------------------------------------------------------------- scale
def _brute_ranks(probes, ids, dist):
    """1 + #distractors scoring above the genuine score, every ordered pair (float64 numpy)."""
    pn = probes / np.linalg.norm(probes, axis=1, keepdims=True)
    dn = dist / np.linalg.norm(dist, axis=1, keepdims=True)
    pi, gi = np.nonzero((ids[:, None] == ids[None, :]) & ~np.eye(len(ids), dtype=bool))
    gen = np.einsum("ij,ij->i", pn[pi], pn[gi])
    above = np.zeros(len(pi), dtype=np.int64)
    for a in range(0, len(dn), 50_000):
        s = pn @ dn[a : a + 50_000].T
        above += (s[pi] > gen[:, None]).sum(1)
    return above + 1, pn, dn


def test_scale_matches_brute_force():
    rng = np.random.default_rng(0)
    n_id, per, dim, n_d = 40, 5, 64, 200_000
    centres = rng.normal(size=(n_id, dim))
    ids = np.repeat(np.arange(n_id), per)
    probes = centres[ids] + rng.normal(size=(n_id * per, dim)) * rng.uniform(0.6, 1.6, (n_id * per, 1))
    dist = rng.normal(size=(n_d, dim)).astype(np.float32)
    probes = probes.astype(np.float32)

    out = mf.identification(probes, ids, dist, ranks=(1, 5, 10), sizes=(1000, n_d), block=30_000)
    sub = 20  # identities in the full-size brute-force subset
    keep = ids < sub
    ranks_1k, _, _ = _brute_ranks(probes.astype(np.float64), ids, dist[:1000].astype(np.float64))
    for r in (1, 5, 10):
        assert out[1000][f"rank{r}"] == pytest.approx(np.mean(ranks_1k <= r), abs=1.5 / len(ranks_1k))
    ranks, pn, dn = _brute_ranks(probes[keep].astype(np.float64), ids[keep], dist.astype(np.float64))
    sub_out = mf.identification(probes[keep], ids[keep], dist, ranks=(1, 5, 10))
    for r in (1, 5, 10):
        assert sub_out[n_d][f"rank{r}"] == pytest.approx(np.mean(ranks <= r), abs=1.5 / len(ranks))
    assert 0.05 < out[n_d]["rank1"] < 0.95  # a non-trivial case
    assert out[n_d]["rank1"] <= out[1000]["rank1"]

    # verification on the subset: k = floor(1e-4 * n_imp) -> t = (k+1)-th largest impostor score
    far = 1e-4
    v = mf.verification(probes[keep], ids[keep], dist, far=far, block=40_000)[n_d]
    imp = (pn @ dn.T).ravel()
    k = math.floor(far * imp.size)
    thr = -np.partition(-imp, k)[k]
    ii, jj = np.nonzero((ids[keep][:, None] == ids[keep][None, :]) & np.triu(np.ones((sub * per,) * 2, bool), 1))
    gen = np.einsum("ij,ij->i", pn[ii], pn[jj])
    assert v["threshold"] == pytest.approx(thr, abs=1e-5)
    assert v["tar"] == pytest.approx(np.mean(gen > thr), abs=1.5 / gen.size)
    assert v["far"] == pytest.approx(k / imp.size, abs=1.5 / imp.size)
    assert v["impostors"] == imp.size and v["genuine"] == gen.size


# ---------------------------------------------------------------------------------------- search backends, scale
def _random_case(seed=0, ids=12, per=4, n_dist=3000, dim=16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))
    probes = (np.repeat(centres, per, 0) + 0.9 * rng.normal(size=(ids * per, dim))).astype(np.float32)
    labels = np.repeat(np.arange(ids), per)
    dist = rng.normal(size=(n_dist, dim)).astype(np.float32)
    return probes, labels, dist


def _brute_force(probes, labels, dist, gallery, metric, size, r):
    """Rank of g and the impostor threshold straight from full score matrices (float64 numpy)."""

    def score(a, b):
        a, b = a.astype(np.float64), b.astype(np.float64)
        if metric == "cosine":
            a = a / np.linalg.norm(a, axis=1, keepdims=True)
            b = b / np.linalg.norm(b, axis=1, keepdims=True)
            return a @ b.T
        return -((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)

    sd = score(probes, dist[:size])
    sg = score(probes, gallery)
    hits = total = 0
    for p in range(len(probes)):
        for g in range(len(probes)):
            if p != g and labels[p] == labels[g]:
                total += 1
                hits += (sd[p] > sg[p, g]).sum() < r
    return hits / total


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_torch_and_faiss_agree_with_brute_force(metric):
    probes, labels, dist = _random_case()
    sizes = (10, 300, 3000)
    kw = {"ranks": (1, 5), "far": 1e-3, "sizes": sizes, "metric": metric}
    t = mf.evaluate(probes, labels, dist, block=257, search="torch", **kw)
    f = mf.evaluate(probes, labels, dist, search="faiss", **kw)
    for s in sizes:
        for r in (1, 5):
            want = _brute_force(probes, labels, dist, probes, metric, s, r)
            assert t["identification"][s][f"rank{r}"] == pytest.approx(want)
            assert f["identification"][s][f"rank{r}"] == pytest.approx(want)
        if s == 10:  # 480 impostor pairs cannot measure FAR 1e-3: n/a from both searches
            assert t["verification"][s]["reason"] == f["verification"][s]["reason"]
            assert "needs at least 1000 impostor pairs" in t["verification"][s]["reason"]
            continue
        assert f["verification"][s]["tar"] == pytest.approx(t["verification"][s]["tar"])
        assert f["verification"][s]["threshold"] == pytest.approx(t["verification"][s]["threshold"], rel=1e-4, abs=1e-4)
    # at 3000 distractors 48 probes give 144,000 impostors: k = 144 -> the 145th largest impostor score
    p = probes / np.linalg.norm(probes, axis=1, keepdims=True)
    d = dist / np.linalg.norm(dist, axis=1, keepdims=True)
    if metric == "cosine":
        want_t = np.sort((p @ d.T).ravel())[::-1][144]
        assert t["verification"][3000]["threshold"] == pytest.approx(want_t, abs=1e-5)
    assert t["identification"][3000]["rank1"] < t["identification"][10]["rank1"]  # more distractors, harder


def test_gallery_features_masked_protocol():
    probes, labels, dist = _random_case(seed=3, n_dist=500)
    masked = probes + np.random.default_rng(9).normal(0, 1.0, probes.shape).astype(np.float32)
    got = mf.evaluate(masked, labels, dist, ranks=(1,), far=None, gallery_feats=probes)["identification"][500]
    assert got["rank1"] == pytest.approx(_brute_force(masked, labels, dist, probes, "cosine", 500, 1))
    faiss_got = mf.identification(masked, labels, dist, ranks=(1,), gallery_feats=probes, search="faiss")[500]
    assert faiss_got["rank1"] == got["rank1"]
    with pytest.raises(DataError, match="gallery_feats"):
        mf.evaluate(masked, labels, dist, gallery_feats=probes[:3])
    with pytest.raises(ConfigError, match="search"):
        mf.evaluate(masked, labels, dist, search="annoy")
