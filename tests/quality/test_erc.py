"""The error-versus-reject curve on a hand-built pair set, its area, and its n/a cases."""

import numpy as np
import pytest

from facezoo.errors import ConfigError, DataError
from facezoo.quality.erc import erc, pair_quality, reject_grid
from facezoo.quality.scores import group_means, rank_weights

#            score  genuine quality
PAIRS = [
    (0.90, True, 0.90),
    (0.20, True, 0.10),  # a false non-match of low quality
    (0.30, True, 0.20),  # another
    (0.80, True, 0.80),
    (0.70, True, 0.60),
    (0.45, True, 0.70),
    (0.50, False, 0.50),
    (0.40, False, 0.30),
    (0.10, False, 0.40),
    (0.35, False, 0.95),
]
S, SAME, Q = (np.array(c) for c in zip(*PAIRS))


def test_erc_by_hand():
    # impostors 0.5, 0.4, 0.35, 0.1: FMR 0.25 -> k = 1, t = the 2nd largest = 0.4, match iff s > 0.4
    # genuine 0.9 0.2 0.3 0.8 0.7 0.45: misses 0.2, 0.3 -> FNMR(0) = 2/6
    # by quality: pair 1 (0.1), pair 2 (0.2), pair 7 (0.3), pair 8 (0.4), pair 6 (0.5), ...
    # r = 0.1 rejects pair 1: 1 miss of 5 genuine; r >= 0.2 rejects both misses: 0 of 4
    r = erc(S, SAME, Q, fmr=0.25, rejects=[0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert r["threshold"] == 0.4 and r["achieved_fmr"] == 0.25
    np.testing.assert_allclose(r["fnmr"], [2 / 6, 1 / 5, 0, 0, 0, 0])
    assert r["kept_genuine"] == [6, 5, 4, 4, 4, 4]
    # kept impostors: r = 0.3 drops pair 7 (0.4, not a match), r = 0.5 drops pairs 7, 8, 6: only 0.35 is left
    np.testing.assert_allclose(r["kept_fmr"], [1 / 4, 1 / 4, 1 / 4, 1 / 3, 1 / 2, 0])
    # trapezoid: 0.1 (1/3 + 1/5) / 2 + 0.1 (1/5 + 0) / 2
    assert r["auc"] == pytest.approx(0.1 * (1 / 3 + 1 / 5) / 2 + 0.1 * 0.2 / 2, abs=1e-15)
    assert r["range"] == [0.0, 0.5] and r["num_genuine"] == 6 and r["num_impostor"] == 4


def test_threshold_is_fixed_before_rejection_and_random_quality_does_not_help():
    # a quality that rejects the top impostor first: the threshold stays where all pairs put it
    q = Q.copy()
    q[6] = -1.0
    r = erc(S, SAME, q, fmr=0.25, rejects=[0, 0.1])
    assert r["threshold"] == 0.4 and r["kept_fmr"][1] == 0.0
    rng = np.random.default_rng(0)
    n = 20000
    same = rng.random(n) < 0.5
    s = np.where(same, rng.normal(0.6, 0.2, n), rng.normal(0.0, 0.2, n))
    flat = erc(s, same, rng.random(n), fmr=1e-3, rejects=reject_grid(0.5, 0.1))
    assert np.ptp(flat["fnmr"]) < 0.02  # quality unrelated to the scores: FNMR stays (noise only)
    good = erc(s, same, np.where(same, s, 1.0), fmr=1e-3, rejects=reject_grid(0.5, 0.1))
    assert np.all(np.diff(good["fnmr"]) <= 0) and good["fnmr"][-1] == 0 and good["auc"] < flat["auc"]


def test_ties_stable_and_nan_when_no_genuine_is_left():
    # equal qualities: the earlier pair is rejected first
    r = erc([0.9, 0.1, 0.8, 0.0], [True, True, False, False], [0.5, 0.5, 0.5, 0.5], fmr=0.5, rejects=[0, 0.25])
    assert r["threshold"] == 0.0 and r["fnmr"] == pytest.approx([0.0, 0.0])
    r = erc([0.9, 0.1, 0.8, 0.0], [True, True, False, False], [0.1, 0.2, 0.5, 0.6], fmr=0.5, rejects=[0, 0.25, 0.5])
    assert r["fnmr"][:2] == [0.0, 0.0] and np.isnan(r["fnmr"][2]) and r["auc"] is None


def test_na_and_errors():
    r = erc(S, SAME, Q, fmr=1e-2)
    assert r["reason"] == "n/a: needs at least 100 impostor pairs to be measured, only 4 given"
    assert "fnmr" not in r
    with pytest.raises(DataError, match="finite"):
        erc(S, SAME, np.where(Q > 0.5, np.nan, Q), fmr=0.25)
    with pytest.raises(DataError, match="one of each"):
        erc(S, SAME[:3], Q, fmr=0.25)
    with pytest.raises(ConfigError, match="start at 0"):
        erc(S, SAME, Q, fmr=0.25, rejects=[0.1, 0.2])
    with pytest.raises(ConfigError):
        reject_grid(0.5, 0.0)
    np.testing.assert_allclose(reject_grid(0.3, 0.1), [0, 0.1, 0.2, 0.3])
    assert len(reject_grid(0.5, 0.01)) == 51


def test_pair_template_quality_and_rank_weights():
    q = np.array([0.3, 0.9, 0.5, 0.1])
    np.testing.assert_array_equal(pair_quality(q, np.array([0, 2]), np.array([1, 3])), [0.3, 0.1])
    means, ids = group_means(q, np.array([7, 2, 7, 2]))
    assert ids.tolist() == [2, 7] and means.tolist() == pytest.approx([0.5, 0.4])
    # ranks 1..N over N, ties share their mean rank: 0.1 -> 1, 0.3 & 0.3 -> 2.5, 0.9 -> 4
    np.testing.assert_allclose(rank_weights([0.3, 0.9, 0.3, 0.1]), [2.5 / 4, 1.0, 2.5 / 4, 0.25])
