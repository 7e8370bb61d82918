"""Verification metrics against hand computations and a plain loop-by-loop reference of InsightFace's protocol."""

import math
import time

import numpy as np
import pytest

from facezoo.errors import ConfigError, DataError
from facezoo.eval.metrics import (
    EUCLIDEAN_THRESHOLDS,
    EUCLIDEAN_VAL_THRESHOLDS,
    kfold_accuracy,
    kfold_splits,
    kfold_val,
    pair_scores,
    slinear_interp,
    verification_metrics,
)
from facezoo.eval.scoring import tar_at_far

# ---------------------------------------------------------------- plain reference, written as plainly as possible


def ref_folds(n, nfolds):
    """Contiguous folds; the first n % nfolds get one extra pair (sklearn KFold without shuffle)."""
    folds, start = [], 0
    for f in range(nfolds):
        size = n // nfolds + (1 if f < n % nfolds else 0)
        folds.append(list(range(start, start + size)))
        start += size
    return folds


def ref_correct(dist, same, idx, t):
    return sum(1 for i in idx if (dist[i] < t) == bool(same[i]))


def ref_accuracy(dist, same, nfolds, thresholds):
    """Per fold: scan thresholds in order, keep the first with the highest training accuracy."""
    n = len(dist)
    accs, thrs = [], []
    for test in ref_folds(n, nfolds):
        train = [i for i in range(n) if i not in test]
        best_acc, best_t = -1.0, None
        for t in thresholds:
            acc = ref_correct(dist, same, train, t) / len(train)
            if acc > best_acc:
                best_acc, best_t = acc, t
        accs.append(ref_correct(dist, same, test, best_t) / len(test))
        thrs.append(best_t)
    return accs, thrs


def ref_interp(far, thr, target):
    """Last grid segment whose left FAR <= target (at most the second to last), linear inside it, 0 if flat."""
    j = 0
    for i in range(len(far) - 1):
        if far[i] <= target:
            j = i
    if far[j] == far[j + 1]:
        return 0.0
    return thr[j] + (target - far[j]) * (thr[j + 1] - thr[j]) / (far[j + 1] - far[j])


def ref_val(dist, same, nfolds, thresholds, target):
    n = len(dist)
    vals, fars = [], []
    for test in ref_folds(n, nfolds):
        train = [i for i in range(n) if i not in test]
        imp_train = [i for i in train if not same[i]]
        far_train = [sum(1 for i in imp_train if dist[i] < t) / len(imp_train) for t in thresholds]
        t = ref_interp(far_train, thresholds, target) if max(far_train) >= target else 0.0
        gen_test = [i for i in test if same[i]]
        imp_test = [i for i in test if not same[i]]
        vals.append(sum(1 for i in gen_test if dist[i] < t) / len(gen_test))
        fars.append(sum(1 for i in imp_test if dist[i] < t) / len(imp_test))
    return vals, fars


def random_case(rng, n, grid):
    """Distances drawn from a few grid values (ties, and exact hits of the strict `<`) plus noise-free offsets."""
    choices = np.concatenate([grid[rng.integers(0, len(grid), 6)], rng.uniform(grid[0], grid[-1], 4)])
    dist = choices[rng.integers(0, len(choices), n)]
    same = rng.random(n) < 0.5
    same[0], same[1] = True, False  # both classes in every case
    return dist, same


# ---------------------------------------------------------------- folds


@pytest.mark.parametrize("n,nfolds", [(20, 10), (23, 10), (7, 2), (6000, 10), (5, 1)])
def test_kfold_splits_match_sklearn_layout(n, nfolds):
    splits = kfold_splits(n, nfolds)
    expected = ref_folds(n, nfolds) if nfolds > 1 else [list(range(n))]
    assert [list(test) for _, test in splits] == expected
    for train, test in splits:
        if nfolds > 1:
            assert sorted(set(train) | set(test)) == list(range(n)) and not set(train) & set(test)
        else:
            assert list(train) == list(range(n))


# ---------------------------------------------------------------- accuracy: hand case


def test_accuracy_hand_case_uneven_folds():
    # 7 pairs, 2 folds -> fold 0 = pairs 0..3 (4 pairs), fold 1 = pairs 4..6.
    dist = [0.2, 1.2, 0.7, 0.4, 1.8, 1.1, 2.5]
    same = [True, False, True, True, False, True, False]
    grid = np.array([0.5, 1.0, 1.5, 2.0])
    # fold 0: train (1.8 F, 1.1 T, 2.5 F) correct = 2, 2, 3, 2 -> t = 1.5;
    #         test at 1.5: 0.2 T ok, 1.2 F wrongly accepted, 0.7 T ok, 0.4 T ok -> 3/4.
    # fold 1: train (0.2 T, 1.2 F, 0.7 T, 0.4 T) correct = 3, 4, 3, 3 -> t = 1.0;
    #         test at 1.0: 1.8 F ok, 1.1 T wrongly rejected, 2.5 F ok -> 2/3.
    r = kfold_accuracy(dist, same, nfolds=2, thresholds=grid)
    assert r["fold_thresholds"].tolist() == [1.5, 1.0]
    assert r["fold_accuracy"].tolist() == pytest.approx([3 / 4, 2 / 3])
    # Test-fold ROC averaged over folds: fold 0 TPR at grid = 2/3, 1, 1, 1; fold 1 TPR = 0, 0, 1, 1.
    assert r["tpr"] == pytest.approx([(2 / 3 + 0) / 2, 0.5, 1.0, 1.0])
    # fold 0 FPR = 0, 0, 1, 1 (one impostor at 1.2); fold 1 FPR = 0, 0, 0, 1/2 (impostors 1.8, 2.5).
    assert r["fpr"] == pytest.approx([0, 0, 0.5, 0.75])

    # The same through embeddings: unit vectors at angle a have squared distance 2 - 2 cos a.
    angles = np.arccos(1 - np.asarray(dist) / 2)
    e1 = np.tile([3.0, 0.0], (7, 1))  # not unit length: verification_metrics normalises
    e2 = np.stack([np.cos(angles), np.sin(angles)], 1) * 0.5
    m = verification_metrics(e1, e2, same, nfolds=2, thresholds=grid)
    assert m["accuracy"] == pytest.approx(17 / 24)  # (3/4 + 2/3) / 2
    assert m["accuracy_std"] == pytest.approx(1 / 24)  # population std of two values = half their gap
    assert m["threshold"] == pytest.approx(1.25)


def test_pair_scores_closed_form():
    e1 = np.array([[3.0, 4.0], [1.0, 0.0]])
    e2 = np.array([[4.0, 3.0], [0.0, -2.0]])
    cos = np.array([24 / 25, 0.0])
    assert pair_scores(e1, e2) == pytest.approx(2 - 2 * cos)
    assert pair_scores(e1, e2, "cosine") == pytest.approx(cos)
    with pytest.raises(ConfigError, match="cosine"):
        pair_scores(e1, e2, "cosin")


def test_strict_less_at_threshold():
    # Both genuine distances sit exactly on grid values: d < t is false at t == d.
    grid = EUCLIDEAN_THRESHOLDS
    dist = np.array([grid[30], grid[30], grid[150], grid[150]])
    same = np.array([True, True, False, False])
    r = kfold_accuracy(dist, same, nfolds=1, thresholds=grid)
    # nfolds=1: train = test = all; the first perfect threshold is the grid value right after grid[30].
    assert r["fold_thresholds"][0] == grid[31]
    assert r["fold_accuracy"][0] == 1.0


# ---------------------------------------------------------------- accuracy: fast == plain on many random cases


@pytest.mark.parametrize("seed", range(12))
def test_accuracy_matches_plain_reference(seed):
    rng = np.random.default_rng(seed)
    n = [20, 23, 31, 47, 10, 59][seed % 6]
    nfolds = [10, 10, 3, 10, 2, 7][seed % 6]
    grid = EUCLIDEAN_THRESHOLDS if seed < 6 else np.arange(0, 4, 0.25)
    dist, same = random_case(rng, n, grid)
    accs, thrs = ref_accuracy(dist, same, nfolds, grid)
    r = kfold_accuracy(dist, same, nfolds, grid)
    assert r["fold_thresholds"].tolist() == thrs
    assert r["fold_accuracy"].tolist() == accs


@pytest.mark.parametrize("seed", range(8))
def test_val_matches_plain_reference(seed):
    rng = np.random.default_rng(100 + seed)
    n = [40, 43, 37, 60][seed % 4]
    nfolds = [10, 10, 4, 5][seed % 4]
    grid = np.arange(0, 4, 0.05)
    dist, same = random_case(rng, n, grid)
    for f in ref_folds(n, nfolds):  # every fold keeps both classes so VAL and FAR are defined
        same[f[0]], same[f[1]] = True, False
    target = [0.1, 0.25, 0.5, 0.9][seed % 4]
    vals, fars = ref_val(dist, same, nfolds, grid, target)
    r = kfold_val(dist, same, nfolds, grid, target)
    assert r["val"] == pytest.approx(vals, abs=1e-12)
    assert r["far"] == pytest.approx(fars, abs=1e-12)


# ---------------------------------------------------------------- VAL@FAR: interpolation


def test_slinear_interp_hand_values():
    thr = [0.0, 0.5, 1.0, 1.5, 2.0]
    far = [0.0, 0.25, 0.5, 0.75, 1.0]
    assert slinear_interp(far, thr, 0.375) == pytest.approx(0.75)  # halfway between grid points
    assert slinear_interp(far, thr, 0.25) == pytest.approx(0.5)
    far = [0.0, 0.5, 0.5, 0.75, 1.0]  # repeated FAR: the last threshold with that FAR starts the segment
    assert slinear_interp(far, thr, 0.5) == pytest.approx(1.0)
    assert slinear_interp(far, thr, 0.6) == pytest.approx(1.0 + 0.5 * 0.1 / 0.25)
    assert slinear_interp(far, thr, 0.3) == pytest.approx(0.3)
    assert slinear_interp([0.0, 0.0, 0.5, 0.5], [0, 1, 2, 3], 0.5) == 0.0  # flat end segment: de Boor gives 0


def test_slinear_interp_matches_old_scipy_interp1d():
    # scipy < 1.11 built interp1d(kind='slinear') as an order-1 B-spline on knots [x0, x, x_last], allowing
    # repeated x; newer scipy rejects duplicates, so build that spline directly.
    interpolate = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(5)
    for _ in range(50):
        x = np.sort(rng.integers(0, 6, 12) / 5.0)
        y = np.arange(12) * 0.1
        spline = interpolate.BSpline.construct_fast(np.r_[x[0], x, x[-1]], y, 1)
        for v in np.unique(np.r_[x, rng.uniform(x[0], x[-1], 5)]):
            assert slinear_interp(x, y, v) == pytest.approx(float(spline(v)), abs=1e-12)


def test_val_hand_case_interpolation_matters():
    # Fold A = pairs 0..3, fold B = pairs 4..7; grid 0, 0.5, ..., 2.0; target FAR 0.25.
    dist = [0.1, 0.6, 0.3, 1.2, 0.3, 0.9, 0.4, 1.7]
    same = [True, True, False, False, True, True, False, False]
    grid = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    # Test A, train B impostors (0.4, 1.7): FAR 0, .5, .5, .5, 1 -> t = 0 + 0.25/0.5 * 0.5 = 0.25.
    #   genuine 0.1 accepted, 0.6 not -> VAL 0.5; impostors 0.3, 1.2 rejected -> FAR 0.
    # Test B, train A impostors (0.3, 1.2): FAR 0, .5, .5, 1, 1 -> t = 0.25.
    #   genuine 0.3, 0.9 rejected -> VAL 0; impostors 0.4, 1.7 rejected -> FAR 0.
    r = kfold_val(dist, same, nfolds=2, thresholds=grid, far_target=0.25)
    assert r["thresholds"] == pytest.approx([0.25, 0.25])
    assert r["val"].tolist() == [0.5, 0.0]
    assert r["far"].tolist() == [0.0, 0.0]
    # Rounding the threshold to the grid (0.5) would have accepted 0.1 and 0.3: VAL 0.5 in both folds.


def test_val_zero_threshold_when_target_unreachable():
    dist = [0.1, 3.0, 0.2, 3.5]  # impostors beyond the grid: training FAR is 0 everywhere
    same = [True, False, True, False]
    r = kfold_val(dist, same, nfolds=2, thresholds=np.array([0.0, 1.0, 2.0]), far_target=0.1)
    assert r["thresholds"].tolist() == [0.0, 0.0]
    assert r["val"].tolist() == [0.0, 0.0]


# ---------------------------------------------------------------- TAR@FAR on all pairs (rule: test_scoring.py)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_tar_at_far_thresholds_in_the_metric_s_own_units(metric):
    # e1 = (1, 0); e2 at angle a: cosine cos(a), squared distance 2 - 2 cos(a). 3 genuine, 10 impostor pairs.
    gen, imp = [10, 50, 70], [20, 40, 60, 80, 90, 100, 110, 120, 130, 140]
    ang = np.radians(gen + imp)
    e1 = np.tile([1.0, 0.0], (len(ang), 1))
    e2 = np.stack([np.cos(ang), np.sin(ang)], 1)
    same = np.arange(len(ang)) < 3
    m = verification_metrics(e1, e2, same, nfolds=2, metric=metric, tar_fars=(0.2, 0.05))
    # FAR 0.2: k = 2 impostors may pass -> the 3rd most similar impostor (60 degrees) is the threshold; genuine
    # pairs at 10 and 50 degrees pass, 70 does not; 2 of 10 impostors pass (20, 40).
    r = m["tar_at_far"]["2e-01"]
    assert r["tar"] == pytest.approx(2 / 3) and r["far"] == pytest.approx(0.2)
    want = 0.5 if metric == "cosine" else 1.0  # cos 60 = 0.5; 2 - 2 cos 60 = 1
    assert r["threshold"] == pytest.approx(want)
    # FAR 0.05 needs 20 impostor pairs: n/a, with the count
    assert m["tar_at_far"]["5e-02"] == {
        "tar": None,
        "far": None,
        "threshold": None,
        "reason": "n/a: needs at least 20 impostor pairs to be measured, only 10 given",
    }


def test_nan_embeddings_are_an_error():
    e = np.eye(4)
    bad = e.copy()
    bad[1, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        verification_metrics(e, bad, [True, False, True, False], nfolds=2)


# ---------------------------------------------------------------- whole protocol


def test_separable_embeddings_give_perfect_accuracy():
    rng = np.random.default_rng(0)
    n = 300
    basis = np.eye(2 * n)
    e1 = basis[:n]
    same = np.arange(n) % 3 == 0
    e2 = np.where(same[:, None], e1 * 2.0, basis[n:])  # genuine: same direction; impostor: orthogonal
    m = verification_metrics(e1 + 1e-9 * rng.random(e1.shape), e2, same)
    assert m["accuracy"] == 1.0 and m["accuracy_std"] == 0.0
    assert m["val"] == 1.0 and m["far"] == 0.0
    assert m["tar_at_far"]["1e-03"]["reason"].endswith(
        "needs at least 1000 impostor pairs to be measured, only 200 given"
    )
    assert verification_metrics(e1, e2, same, tar_fars=(0.01,))["tar_at_far"]["1e-02"]["tar"] == 1.0
    assert m["tpr"].shape == m["fpr"].shape == (400,)


def test_random_embeddings_give_chance_accuracy():
    rng = np.random.default_rng(1)
    n = 3000
    m = verification_metrics(rng.normal(size=(n, 64)), rng.normal(size=(n, 64)), rng.random(n) < 0.5)
    assert abs(m["accuracy"] - 0.5) < 0.05


def test_xnorm_only_with_norms():
    e = np.eye(4)[:2]
    same = [True, False]
    assert "xnorm" not in verification_metrics(e, e, same, nfolds=2)
    assert verification_metrics(e, e, same, nfolds=2, norms=np.array([1.0, 2.0, 6.0]))["xnorm"] == 3.0


def test_cosine_variant_matches_plain_reference():
    rng = np.random.default_rng(3)
    n = 50
    e1, e2 = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    same = rng.random(n) < 0.5
    grid = np.arange(-1, 1.0001, 0.1)
    sim = [float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(e1, e2)]
    m = verification_metrics(e1, e2, same, nfolds=5, metric="cosine", thresholds=grid)
    accs, thrs = [], []
    for test in ref_folds(n, 5):  # "same" iff sim > t; among equally good thresholds the highest
        train = [i for i in range(n) if i not in test]
        ok = lambda idx, t: sum(1 for i in idx if (sim[i] > t) == bool(same[i]))
        best = max(grid[::-1], key=lambda t: ok(train, t))  # max returns the first maximum, scanning downwards
        accs.append(ok(test, best) / len(test))
        thrs.append(best)
    assert m["fold_accuracy"] == pytest.approx(accs)
    assert m["fold_thresholds"] == pytest.approx(thrs)
    assert m["roc_thresholds"].tolist() == pytest.approx(sorted(grid))


def test_input_errors_name_the_problem():
    e = np.zeros((4, 3))
    with pytest.raises(DataError, match="3 issame labels for 4 pairs"):
        verification_metrics(e, e, [True] * 3)
    with pytest.raises(DataError, match="equal shape"):
        verification_metrics(e, np.zeros((4, 2)), [True] * 4)
    with pytest.raises(ConfigError, match="nfolds=10"):
        verification_metrics(e, e, [True, False, True, False])


def test_fast_on_a_full_size_set():
    rng = np.random.default_rng(0)
    n = 6000
    dist = rng.uniform(0, 4, n)
    same = rng.random(n) < 0.5
    start = time.perf_counter()
    kfold_accuracy(dist, same, 10, EUCLIDEAN_THRESHOLDS)
    kfold_val(dist, same, 10, EUCLIDEAN_VAL_THRESHOLDS)
    assert time.perf_counter() - start < 2.0
    assert math.isfinite(tar_at_far(-dist[same], -dist[~same], 1e-3)["tar"])


def test_public_entry_point_is_the_protocol():
    import facezoo.eval

    rng = np.random.default_rng(5)
    e1, e2 = rng.normal(size=(40, 8)), rng.normal(size=(40, 8))
    same = np.arange(40) % 2 == 0
    e2[same] = 3 * e1[same]  # same direction: distance 0 < the first threshold 0.01 in every fold
    r = facezoo.eval.verification_metrics(e1, e2, same)
    assert r["accuracy"] == 1.0 and r["accuracy_std"] == 0.0 and {"threshold", "val", "far"} <= set(r)
