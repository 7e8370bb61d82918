"""SDD-FIQA's pseudo-label: the 1-D Wasserstein distance (against scipy) and Q(x) on hand-built similarity sets."""

import math

import numpy as np
import pytest
import scipy.stats
import torch

from facezoo.errors import ConfigError, DataError
from facezoo.quality.labels import Identities, draw_distinct, labels_from_features, sdd_label
from facezoo.quality.wasserstein import wasserstein_1d, wasserstein_equal


@pytest.mark.parametrize("sizes", [(1, 1), (5, 5), (3, 7), (24, 24), (10, 1)])
def test_wasserstein_matches_scipy(sizes):
    rng = np.random.default_rng(sum(sizes))
    for _ in range(20):
        u, v = rng.normal(0.3, 0.2, sizes[0]), rng.normal(0.0, 0.1, sizes[1])
        if rng.random() < 0.3:  # ties inside and across the samples
            u, v = np.round(u, 1), np.round(v, 1)
        assert wasserstein_1d(u, v) == pytest.approx(scipy.stats.wasserstein_distance(u, v), rel=1e-12, abs=1e-15)
        if sizes[0] == sizes[1]:
            w = wasserstein_equal(torch.as_tensor(u), torch.as_tensor(v))
            assert float(w) == pytest.approx(scipy.stats.wasserstein_distance(u, v), rel=1e-12, abs=1e-15)


def test_wasserstein_batched_and_errors():
    rng = np.random.default_rng(0)
    a, b = rng.random((4, 3, 6)), rng.random((4, 3, 6))
    w = wasserstein_equal(torch.as_tensor(a), torch.as_tensor(b)).numpy()
    ref = [[scipy.stats.wasserstein_distance(a[i, j], b[i, j]) for j in range(3)] for i in range(4)]
    np.testing.assert_allclose(w, ref, rtol=1e-12)
    with pytest.raises(DataError, match="non-empty"):
        wasserstein_1d([], [1.0])
    with pytest.raises(DataError, match="NaN"):
        wasserstein_1d([np.nan], [1.0])
    with pytest.raises(DataError, match="equal-size"):
        wasserstein_equal(torch.zeros(3), torch.zeros(4))


def test_pseudo_label_by_hand():
    # S^P = {0.9, 0.8, 0.7}; S^N_1 = {0.1, 0.2, 0.3}: sorted gaps 0.6, 0.6, 0.6 -> W1 = 0.6;
    # S^N_2 = {0.6, 0.0, 0.3} sorted {0, 0.3, 0.6}: gaps 0.7, 0.5, 0.3 -> W1 = 0.5; Q = (0.6 + 0.5) / 2 = 0.55
    assert sdd_label([0.9, 0.8, 0.7], [[0.1, 0.2, 0.3], [0.6, 0.0, 0.3]]) == pytest.approx(0.55, abs=1e-15)
    # overlapping sets: {0.5, 0.1} vs {0.3, 0.2}: |0.1 - 0.2| + |0.5 - 0.3| = 0.3 -> 0.15; unsigned: swapped alike
    assert sdd_label([0.5, 0.1], [[0.3, 0.2]]) == pytest.approx(0.15, abs=1e-15)
    assert sdd_label([0.3, 0.2], [[0.5, 0.1]]) == pytest.approx(0.15, abs=1e-15)
    assert sdd_label([0.4], [[0.4], [0.4]]) == 0.0
    with pytest.raises(DataError, match="positive set's size"):
        sdd_label([0.1, 0.2], [[0.1, 0.2, 0.3]])


def _unit(deg):
    t = math.radians(deg)
    return [math.cos(t), math.sin(t), 0.0]


def test_labels_of_hand_built_features():
    """Identity 0: unit vectors at 0, 10, 30 degrees in the xy plane; identity 7: three vectors along z (of
    different lengths: features are normalised); identity 3: one image along a fourth axis. Every inter-identity
    similarity is 0, so every sampled negative set is {0, ..., 0} and Q = the mean positive similarity (W1 to a
    point mass at 0); the single image has no positives: NaN."""
    xy = lambda deg: [math.cos(math.radians(deg)), math.sin(math.radians(deg)), 0.0, 0.0]
    z = lambda r: [0.0, 0.0, r, 0.0]
    feats = np.array([xy(0), z(2.0), xy(10), z(1.0), xy(30), z(0.5), [0, 0, 0, 1.0]])
    labels = np.array([0, 7, 0, 7, 0, 7, 3])
    c = lambda a, b: math.cos(math.radians(abs(a - b)))
    want = [
        (c(0, 10) + c(0, 30)) / 2,
        1.0,
        (c(10, 0) + c(10, 30)) / 2,
        1.0,
        (c(30, 0) + c(30, 10)) / 2,
        1.0,
        np.nan,
    ]
    for m, cap in ((1, 24), (5, None)):
        q = labels_from_features(feats, labels, m=m, max_positives=cap)
        np.testing.assert_allclose(q, want, rtol=1e-6)
    # positives capped at 1 of the 2 others: Q is the similarity to one of them, never the image's own 1.0
    q = labels_from_features(feats, labels, m=3, max_positives=1)
    assert min(abs(q[0] - c(0, 10)), abs(q[0] - c(0, 30))) < 1e-6 and q[1] == pytest.approx(1.0)


def test_labels_do_not_depend_on_chunks_ranks_or_order(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 9, 80) * 3 + 5
    feats = rng.normal(size=(80, 6)) + labels[:, None] % 4
    whole = labels_from_features(feats, labels, m=4, max_positives=3, seed=1)
    pieces = labels_from_features(feats, labels, m=4, max_positives=3, seed=1, chunk_images=7, folder=tmp_path)
    np.testing.assert_array_equal(whole, pieces)
    perm = rng.permutation(80)
    shuffled = labels_from_features(feats[perm], labels[perm], m=4, max_positives=3, seed=1)
    assert np.isfinite(whole).all() and np.isfinite(shuffled).all()
    assert not np.array_equal(whole, labels_from_features(feats, labels, m=4, max_positives=3, seed=2))
    with pytest.raises(ConfigError, match="negative sets"):
        labels_from_features(feats, labels, m=0)
    with pytest.raises(DataError, match="NaN"):
        labels_from_features(np.full((80, 6), np.nan), labels)
    with pytest.raises(DataError, match="one row per image"):
        labels_from_features(feats[:10], labels)


def test_draw_distinct_rows():
    rng = np.random.default_rng(0)
    for population, k in ((1000, 24), (30, 24), (24, 24), (5, 1)):
        x = draw_distinct(rng, population, (400, k))
        assert x.shape == (400, k) and x.min() >= 0 and x.max() < population
        assert all(len(set(row)) == k for row in x.tolist())
    counts = np.bincount(draw_distinct(rng, 10, (20000, 3)).ravel(), minlength=10)
    assert counts.min() > 0.9 * 6000 and counts.max() < 1.1 * 6000  # uniform: 60000 draws over 10 values
    with pytest.raises(DataError):
        draw_distinct(rng, 3, (1, 4))


def test_identities_chunks():
    ids = Identities(np.array([4, 1, 4, 4, 2, 1]))
    assert ids.values.tolist() == [1, 2, 4] and ids.counts.tolist() == [2, 1, 3]
    assert ids.order.tolist() == [1, 5, 4, 0, 2, 3]
    assert ids.chunks(3) == [(0, 2), (2, 3)] and ids.chunks(1) == [(0, 1), (1, 2), (2, 3)]
    assert ids.chunks(100) == [(0, 3)]


def test_torchrun_ranks_split_the_chunks_and_share_them(tmp_path, monkeypatch):
    """Two ranks (RANK/WORLD_SIZE as torchrun sets them, the process group simulated): each computes its chunks
    i % 2 == rank, reads the other's from the shared folder after the barrier, and both get the one-process labels."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 8, 60)
    feats = rng.normal(size=(60, 5)) + labels[:, None] % 3
    args = {"m": 3, "max_positives": 4, "seed": 0, "chunk_images": 9, "folder": tmp_path}
    whole = labels_from_features(feats, labels, **{**args, "folder": None})
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "barrier", lambda: None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(DataError, match="missing or damaged after every rank finished"):  # rank 0 has not run yet
        labels_from_features(feats, labels, **args)
    written = sorted(tmp_path.iterdir())
    monkeypatch.setenv("RANK", "0")
    np.testing.assert_array_equal(labels_from_features(feats, labels, **args), whole)  # its chunks + rank 1's
    assert len(written) >= 1 and len(sorted(tmp_path.iterdir())) > len(written)
    monkeypatch.setenv("RANK", "1")
    np.testing.assert_array_equal(labels_from_features(feats, labels, **args), whole)
    with pytest.raises(ConfigError, match="give folder="):
        labels_from_features(feats, labels, **{**args, "folder": None})
