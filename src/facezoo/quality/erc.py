"""Error-versus-reject characteristic (ERC): how the false non-match rate falls as the lowest-quality comparisons
are rejected, the way face image quality papers report a quality measure.

Given P pairs with similarity scores s (higher = more alike), same/different labels and per-pair quality
q_pair = min(q_a, q_b) (a comparison is as good as its worse image):
  1. the threshold t is fixed ONCE, on all impostor pairs before any rejection, at the target FMR by facezoo.far's
     rule (t = the (k+1)-th largest impostor score, k = floor(FMR * n_impostor), "match" iff s > t); an FMR below
     1 / n_impostor is not measured (n/a with the reason);
  2. for each rejection rate r, the floor(r * P) pairs of lowest q_pair are rejected (ties in q_pair: the earlier
     pair first, a stable sort), and
     FNMR(r) = #{kept genuine pairs with s <= t} / #{kept genuine pairs}   (NaN when no genuine pair is kept);
  3. the area under the curve is the trapezoid integral of FNMR(r) over the rejection grid (r from 0 to r_max,
     FNMR as a fraction); a quality measure that rejects the pairs recognition gets wrong has a small area.
The FMR of the kept impostors is reported beside (the threshold stays fixed, so it drifts).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError, DataError
from ..far import check_far, far_rank, strict_threshold, unmeasurable


def reject_grid(r_max: float = 0.5, step: float = 0.01) -> np.ndarray:
    """Rejection rates 0, step, 2 step, ..., r_max (r_max included when a multiple of step)."""
    if not 0 < step <= r_max < 1:
        raise ConfigError(f"rejection grid: need 0 < step ({step}) <= r_max ({r_max}) < 1, e.g. step 0.01, max 0.5")
    n = math.floor(r_max / step + 1e-9)
    return np.round(np.arange(n + 1) * step, 12)


def pair_quality(q: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """min(q[first], q[second]) per pair."""
    return np.minimum(np.asarray(q, np.float64)[first], np.asarray(q, np.float64)[second])


def erc(scores, issame, quality, fmr: float = 1e-3, rejects=None) -> dict:
    """The ERC of pairs (module doc). scores, issame, quality: (P,) similarity, bool, pair quality.

    Returns {"fmr" (target), "threshold", "achieved_fmr" (on all impostors), "rejects", "fnmr" (list, NaN where no
    genuine pair is kept), "kept_fmr", "kept_genuine", "auc", "range" ([0, r_max]), "num_genuine",
    "num_impostor"}, or {"fmr", "reason"} when the FMR cannot be measured on these impostors.
    """
    s = np.asarray(scores, np.float64).reshape(-1)
    same = np.asarray(issame, bool).reshape(-1)
    q = np.asarray(quality, np.float64).reshape(-1)
    if not s.shape == same.shape == q.shape:
        raise DataError(f"{s.size} scores, {same.size} labels and {q.size} qualities: one of each per pair")
    if not np.isfinite(s).all() or not np.isfinite(q).all():
        raise DataError("scores and qualities must be finite (NaN or inf found)")
    fmr = check_far(fmr, "fmr")
    rejects = reject_grid() if rejects is None else np.asarray(rejects, np.float64).reshape(-1)
    if rejects.size == 0 or rejects[0] != 0 or np.any(np.diff(rejects) <= 0) or rejects[-1] >= 1:
        raise ConfigError("rejection rates must start at 0, increase, and stay below 1")
    n_imp, n_gen = int(np.count_nonzero(~same)), int(np.count_nonzero(same))
    base = {"fmr": fmr, "num_genuine": n_gen, "num_impostor": n_imp, "range": [0.0, float(rejects[-1])]}
    reason = unmeasurable(fmr, n_imp)
    if reason is not None:
        return {**base, "reason": f"n/a: {reason}"}
    if n_gen == 0:
        return {**base, "reason": "n/a: no genuine pairs"}
    t = strict_threshold(s[~same], fmr)
    order = np.argsort(q, kind="stable")
    gen, miss, imp_hit = same[order], same[order] & (s[order] <= t), ~same[order] & (s[order] > t)
    # kept = order[j:]: counts from the end (suffix sums), index j = the number rejected
    suffix = lambda v: np.concatenate([np.cumsum(v[::-1])[::-1], [0]])
    g, e, fa, im = suffix(gen), suffix(miss), suffix(imp_hit), suffix(~gen)
    j = np.array([far_rank(float(r), s.size) for r in rejects])
    with np.errstate(invalid="ignore", divide="ignore"):
        fnmr = np.where(g[j] > 0, e[j] / np.maximum(g[j], 1), np.nan)
        kept_fmr = np.where(im[j] > 0, fa[j] / np.maximum(im[j], 1), np.nan)
    auc = float(np.trapezoid(fnmr, rejects)) if np.isfinite(fnmr).all() and rejects.size > 1 else None
    return {
        **base,
        "threshold": t,
        "achieved_fmr": float(np.count_nonzero(s[~same] > t) / n_imp),
        "rejects": rejects.tolist(),
        "fnmr": fnmr.tolist(),
        "kept_fmr": kept_fmr.tolist(),
        "kept_genuine": g[j].astype(int).tolist(),
        "auc": auc,
    }
