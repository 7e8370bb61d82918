"""1:1 verification metrics on pair sets: k-fold accuracy, VAL@FAR, ROC and TAR@FAR (pure numpy).

The default reproduces InsightFace's `verification.py` (the protocol behind published LFW / CFP-FP / AgeDB-30
numbers) to the last bit: rows L2-normalised, squared Euclidean distance d in [0, 4], "same" iff d < t (strict),
thresholds `np.arange(0, 4, 0.01)`, contiguous folds as sklearn's unshuffled KFold, the first (lowest) best
training threshold, accuracy (TP + TN) / n on the held-out fold, population std over folds.

Everything is counted with sorting + `searchsorted` (count of d < t), so 6,000 pairs x 4,000 thresholds take
milliseconds; only the folds are looped over.

`metric="cosine"` is the cosine-threshold variant (FaceX-Zoo style scoring): s = cos(e1, e2), "same" iff s > t,
thresholds over [-1, 1]. Internally it runs the same machinery on d = -s with thresholds -t, so among equally
good thresholds the strictest (highest cosine) wins, as the lowest distance wins in the default.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..errors import ConfigError, DataError
from ..far import far_key
from .scoring import l2_normalize, tar_at_far

METRICS = ("euclidean", "cosine")
EUCLIDEAN_THRESHOLDS = np.arange(0, 4, 0.01)  # InsightFace calculate_roc grid, 400 values
EUCLIDEAN_VAL_THRESHOLDS = np.arange(0, 4, 0.001)  # InsightFace calculate_val grid, 4,000 values
COSINE_THRESHOLDS = np.arange(-200, 201) / 200  # -1, -0.995, ..., 1 (each the double nearest the decimal)
COSINE_VAL_THRESHOLDS = np.arange(-1000, 1001) / 1000  # step 0.001
VAL_FAR = 1e-3
TAR_FARS = (1e-3, 1e-4)


def kfold_splits(n: int, nfolds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs of sklearn's KFold(nfolds, shuffle=False): contiguous test folds, the first
    n % nfolds folds one larger. nfolds == 1 means train = test = all pairs (InsightFace's LFold)."""
    idx = np.arange(n)
    if nfolds == 1:
        return [(idx, idx)]
    sizes = np.full(nfolds, n // nfolds)
    sizes[: n % nfolds] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [(np.r_[idx[:a], idx[b:]], idx[a:b]) for a, b in itertools.pairwise(bounds)]


def _count_below(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each threshold t, the number of values v with v < t (strict)."""
    return np.searchsorted(np.sort(values), thresholds, side="left")


def _fold_counts(dist, same, splits, thresholds):
    """Accepted genuine / impostor counts (F, T) and totals (F,) on each fold's train and test sets."""
    out = {k: [] for k in ("ga_tr", "ia_tr", "ng_tr", "ni_tr", "ga_te", "ia_te", "ng_te", "ni_te")}
    for train, test in splits:
        for part, sel in (("tr", train), ("te", test)):
            d, s = dist[sel], same[sel]
            out[f"ga_{part}"].append(_count_below(d[s], thresholds))
            out[f"ia_{part}"].append(_count_below(d[~s], thresholds))
            out[f"ng_{part}"].append(int(s.sum()))
            out[f"ni_{part}"].append(int((~s).sum()))
    return {k: np.asarray(v) for k, v in out.items()}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den == 0 (InsightFace's convention for TPR and FPR)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.broadcast_to(np.asarray(den, dtype=np.float64), num.shape)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def slinear_interp(x: np.ndarray, y: np.ndarray, v: float) -> float:
    """y(v) as scipy<1.11 `interp1d(x, y, kind='slinear')(v)` computes it, repeated x values included.

    That is an order-1 B-spline on knots [x0, x0..x_{m-1}, x_{m-1}] (x stably sorted): take the last
    segment j <= m-2 with x_j <= v, and return y_j (x_{j+1} - v) w + y_{j+1} (v - x_j) w, w = 1 / (x_{j+1} - x_j).
    A zero-width segment (only reachable at v >= max x with the maximum repeated) evaluates to 0, as de Boor's
    recursion does there. Outside [x0, x_{m-1}] the end segment is extrapolated (scipy would raise instead).
    """
    order = np.argsort(x, kind="mergesort")
    x, y = np.asarray(x, dtype=np.float64)[order], np.asarray(y, dtype=np.float64)[order]
    if x.size < 2:
        raise ConfigError(f"VAL interpolation needs at least 2 thresholds, got {x.size}")
    j = int(np.clip(np.searchsorted(x, v, side="right") - 1, 0, x.size - 2))
    xa, xb = x[j], x[j + 1]
    if xa == xb:
        return 0.0
    w = 1.0 / (xb - xa)
    return float(y[j] * (w * (xb - v)) + y[j + 1] * (w * (v - xa)))


def kfold_accuracy(dist: np.ndarray, same: np.ndarray, nfolds: int = 10, thresholds=EUCLIDEAN_THRESHOLDS) -> dict:
    """InsightFace calculate_roc on distances ("same" iff dist < t, thresholds ascending).

    Per fold: the best training threshold (first argmax of TP + TN), its accuracy (TP + TN) / n on the test
    fold; and TPR / FPR of every threshold on the test fold (0 where a class is empty), averaged over folds.
    Returns fold_accuracy (F,), fold_thresholds (F,), tpr (T,), fpr (T,).
    """
    dist, same, thresholds = np.asarray(dist, float), np.asarray(same, bool), np.asarray(thresholds, float)
    splits = kfold_splits(len(dist), nfolds)
    c = _fold_counts(dist, same, splits, thresholds)
    correct_tr = c["ga_tr"] + (c["ni_tr"][:, None] - c["ia_tr"])
    best = np.argmax(correct_tr, axis=1)  # first maximum = lowest threshold on ties
    rows = np.arange(len(splits))
    correct_te = c["ga_te"][rows, best] + c["ni_te"] - c["ia_te"][rows, best]
    n_te = c["ng_te"] + c["ni_te"]
    return {
        "fold_accuracy": correct_te / n_te,
        "fold_thresholds": thresholds[best],
        "tpr": _ratio(c["ga_te"], c["ng_te"][:, None]).mean(axis=0),
        "fpr": _ratio(c["ia_te"], c["ni_te"][:, None]).mean(axis=0),
    }


def kfold_val(
    dist: np.ndarray, same: np.ndarray, nfolds: int = 10, thresholds=EUCLIDEAN_VAL_THRESHOLDS, far_target=VAL_FAR
) -> dict:
    """InsightFace calculate_val on distances ("same" iff dist < t, thresholds ascending).

    Per fold: the threshold where the training FAR equals far_target, by `slinear_interp` of threshold over
    training FAR (0 if the maximum training FAR is below the target); then VAL = accepted genuine / genuine and
    FAR = accepted impostors / impostors on the test fold (0 for an empty class). Returns val, far, thresholds (F,).
    """
    dist, same, thresholds = np.asarray(dist, float), np.asarray(same, bool), np.asarray(thresholds, float)
    splits = kfold_splits(len(dist), nfolds)
    c = _fold_counts(dist, same, splits, thresholds)
    far_train = _ratio(c["ia_tr"], c["ni_tr"][:, None])
    vals, fars, thrs = [], [], []
    for f, (_, test) in enumerate(splits):
        thr = slinear_interp(far_train[f], thresholds, far_target) if far_train[f].max() >= far_target else 0.0
        accepted = dist[test] < thr
        s = same[test]
        vals.append(_ratio(np.sum(accepted & s), s.sum()))
        fars.append(_ratio(np.sum(accepted & ~s), (~s).sum()))
        thrs.append(thr)
    return {"val": np.asarray(vals, float), "far": np.asarray(fars, float), "thresholds": np.asarray(thrs)}


def pair_scores(embeddings1: np.ndarray, embeddings2: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """Euclidean: ||e1/|e1| - e2/|e2| ||^2 in [0, 4] (InsightFace's arithmetic). Cosine: <e1/|e1|, e2/|e2|>."""
    e1, e2 = l2_normalize(embeddings1), l2_normalize(embeddings2)
    if metric == "euclidean":
        return np.sum(np.square(np.subtract(e1, e2)), 1)
    if metric == "cosine":
        return np.sum(e1 * e2, 1)
    raise ConfigError(f"unknown verification metric {metric!r}; choose one of {', '.join(METRICS)}")


def _check_inputs(embeddings1, embeddings2, issame, nfolds: int) -> int:
    e1, e2 = np.shape(embeddings1), np.shape(embeddings2)
    if len(e1) != 2 or e1 != e2:
        raise DataError(f"pair embeddings must be two (N, D) arrays of equal shape, got {e1} and {e2}")
    if len(issame) != e1[0]:
        raise DataError(f"{len(issame)} issame labels for {e1[0]} pairs; each pair needs exactly one label")
    if not 1 <= nfolds <= e1[0]:
        raise ConfigError(f"nfolds={nfolds} must be between 1 and the number of pairs ({e1[0]})")
    return e1[0]


def verification_metrics(
    embeddings1: np.ndarray,
    embeddings2: np.ndarray,
    issame,
    nfolds: int = 10,
    metric: str = "euclidean",
    norms: np.ndarray | None = None,
    thresholds: np.ndarray | None = None,
    val_thresholds: np.ndarray | None = None,
    val_far: float = VAL_FAR,
    tar_fars: tuple[float, ...] = TAR_FARS,
) -> dict:
    """InsightFace 1:1 verification (default) or its cosine variant on N pairs.

    embeddings1, embeddings2: (N, D) final per-image embeddings of each pair's sides (flip-summed, not yet
    normalised); issame: (N,) bools. norms: optional raw embedding norms; their mean is returned as xnorm.
    thresholds / val_thresholds override the protocol grids (distance for euclidean, cosine for cosine).

    Returns accuracy (mean over folds, fraction), accuracy_std (population std), threshold (mean chosen),
    fold_accuracy, fold_thresholds, val / val_std / far (VAL@FAR=val_far as InsightFace), tpr / fpr (test-fold
    ROC averaged over folds, one value per threshold in roc_thresholds), tar_at_far {far_key: {tar, far,
    threshold}} on all pairs (scoring.tar_at_far: n/a below 1/#impostors), metric, and xnorm if norms were given.
    """
    _check_inputs(embeddings1, embeddings2, issame, nfolds)
    same = np.asarray(issame, dtype=bool)
    scores = pair_scores(embeddings1, embeddings2, metric)
    if not np.isfinite(scores).all():
        raise DataError("pair embeddings contain NaN or inf values; check the model's output")
    if metric == "euclidean":
        roc_t = EUCLIDEAN_THRESHOLDS if thresholds is None else np.asarray(thresholds, float)
        val_t = EUCLIDEAN_VAL_THRESHOLDS if val_thresholds is None else np.asarray(val_thresholds, float)
        dist, sign = scores, 1.0
    else:  # s > t  <=>  -s < -t: reuse the distance machinery on ascending -t
        roc_t = COSINE_THRESHOLDS if thresholds is None else np.asarray(thresholds, float)
        val_t = COSINE_VAL_THRESHOLDS if val_thresholds is None else np.asarray(val_thresholds, float)
        roc_t, val_t = np.sort(roc_t), np.sort(val_t)
        dist, sign = -scores, -1.0
    internal_roc = roc_t if sign > 0 else -roc_t[::-1]
    internal_val = val_t if sign > 0 else -val_t[::-1]
    acc = kfold_accuracy(dist, same, nfolds, internal_roc)
    val = kfold_val(dist, same, nfolds, internal_val, val_far)
    tpr, fpr = (acc["tpr"], acc["fpr"]) if sign > 0 else (acc["tpr"][::-1], acc["fpr"][::-1])
    tars = {}
    sims = -dist  # higher = more alike, the direction tar_at_far takes
    for f in tar_fars:
        r = tar_at_far(sims[same], sims[~same], f)
        if "reason" not in r:
            r["threshold"] = -sign * r["threshold"]  # back to a distance (euclidean) or a cosine
        tars[far_key(f)] = r
    out = {
        "metric": metric,
        "accuracy": float(np.mean(acc["fold_accuracy"])),
        "accuracy_std": float(np.std(acc["fold_accuracy"])),
        "threshold": float(np.mean(sign * acc["fold_thresholds"])),
        "fold_accuracy": acc["fold_accuracy"].tolist(),
        "fold_thresholds": (sign * acc["fold_thresholds"]).tolist(),
        "val": float(np.mean(val["val"])),
        "val_std": float(np.std(val["val"])),
        "far": float(np.mean(val["far"])),
        "val_far_target": float(val_far),
        "tpr": np.ascontiguousarray(tpr),
        "fpr": np.ascontiguousarray(fpr),
        "roc_thresholds": np.asarray(roc_t, dtype=np.float64),
        "tar_at_far": tars,
    }
    if norms is not None:
        out["xnorm"] = float(np.mean(norms))
    return out
