"""Scoring that knows no data set: ROC, TAR at FAR, open-set 1:N search (CMC, TPIR at FPIR). Pure numpy.

Scores are similarities (higher = more alike). Every rate at a target FAR or FPIR follows `facezoo.far`: a target
below 1/n (n impostor pairs, or non-mated searches) is not measured and comes back as an n/a entry, its values
None and `reason` saying how many pairs it needs.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import DataError
from ..far import far_key, strict_threshold, unmeasurable
from ..progress import bar


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """x / ||x||_2 per row in float64 (zero rows stay zero), computed as sklearn.preprocessing.normalize does."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms == 0.0] = 1.0
    return x / norms[:, None]


def not_measured(reason: str, *keys: str) -> dict:
    """The n/a entry: each of `keys` None, plus the reason ("needs at least N impostor pairs ...")."""
    return dict.fromkeys(keys) | {"reason": f"n/a: {reason}"}


def check_finite_embeddings(views, what: str) -> None:
    """DataError when any image's embedding (in any of `views`: (N, D) arrays, e.g. the image and its flip) holds
    NaN or inf: a diverged model must fail, not score 50% accuracy or a made-up TAR."""
    n, bad, chunk = len(views[0]), 0, 65536  # rows per check: bounded memory for a million-row memmap
    for a in range(0, n, chunk):
        ok = np.ones(min(chunk, n - a), dtype=bool)
        for v in views:
            block = v[a : a + chunk]
            if hasattr(block, "isfinite"):  # a torch tensor (torch is not imported for plain arrays)
                ok &= block.isfinite().all(1).cpu().numpy()
            else:
                ok &= np.isfinite(np.asarray(block)).all(1)
        bad += int(np.count_nonzero(~ok))
    if bad:
        raise DataError(
            f"{what}: the model produced non-finite embeddings (NaN or inf) for {bad} of {n} images; "
            "nothing is scored. Check the model: a run that diverged (e.g. a too large optim.lr) saves NaN weights."
        )


def _finite(scores: np.ndarray, what: str) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not np.isfinite(s).all():
        raise DataError(f"{what} contain NaN or inf; check for all-zero or non-finite embeddings")
    return s


# ------------------------------------------------------------------------------------------------ TAR at FAR


def tar_at_far(genuine, impostor, far: float, n_impostors: int | None = None) -> dict:
    """TAR at a FAR target by the exact sorted-score rule ("same" iff score > t).

    t = the (k+1)-th largest of the n impostor scores, k = floor(far * n) (exact decimal arithmetic; -inf if
    k >= n): the strictest threshold accepting at most k impostors. impostor: all n impostor scores, or (with
    n_impostors = n) a subset holding the k+1 largest. Returns tar = #{genuine > t} / #genuine, the achieved
    far = #{impostor > t} / n (<= far; lower with ties) and the threshold t; NaN tar without genuine pairs; the
    n/a entry when far < 1/n.
    """
    gen = _finite(genuine, "genuine scores")
    imp = _finite(impostor, "impostor scores")
    n = imp.size if n_impostors is None else int(n_impostors)
    reason = unmeasurable(far, n)
    if reason is not None:
        return not_measured(reason, "tar", "far", "threshold")
    thr = strict_threshold(imp, far, n)
    return {
        "tar": float(np.mean(gen > thr)) if gen.size else math.nan,
        "far": float(np.count_nonzero(imp > thr) / n),
        "threshold": thr,
    }


# ------------------------------------------------------------------------------------------------------ ROC


def roc_curve(labels: np.ndarray, scores: np.ndarray, drop_intermediate: bool = True):
    """sklearn.metrics.roc_curve (pos_label=1, no weights) in numpy: (fpr, tpr, thresholds), thresholds falling.

    One point per distinct score s (descending): tps/fps = positives/negatives with score >= s; with
    drop_intermediate, points where both tps and fps have zero second difference (collinear, inside a straight
    segment) are dropped, the ends kept; then (0, 0) is prepended with threshold +inf (sklearn >= 1.3).
    """
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise DataError(f"{y.shape[0]} labels for {s.shape[0]} scores")
    s = _finite(s, "scores")
    y = y == 1
    n_pos = int(np.count_nonzero(y))
    if n_pos == 0 or n_pos == y.size:
        raise DataError(f"ROC needs both genuine (1) and impostor (0) pairs; got {n_pos} of {y.size} genuine")
    order = np.argsort(s)[::-1]  # order within tied scores does not matter: cumsums are read at tie ends
    s, y = s[order], y[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y, dtype=np.int64)[ends]
    fps = ends + 1 - tps
    thresholds = s[ends]
    if drop_intermediate and tps.size > 2:
        keep = np.r_[True, (np.diff(fps, 2) != 0) | (np.diff(tps, 2) != 0), True]
        tps, fps, thresholds = tps[keep], fps[keep], thresholds[keep]
    tps, fps = np.r_[0, tps], np.r_[0, fps]
    thresholds = np.r_[np.inf, thresholds]
    return fps / fps[-1], tps / tps[-1], thresholds


def nearest_point(fpr: np.ndarray, far: float) -> int:
    """Index of the ROC point whose FPR is nearest far, as InsightFace's IJB table picks it: argmin |fpr - far|
    over the flipped curve, so among equally near points the last one in ROC order (the larger TPR)."""
    last = len(fpr) - 1
    return last - int(np.argmin(np.abs(np.asarray(fpr)[::-1] - far)))


def roc_summary(labels: np.ndarray, scores: np.ndarray, fars, drop_intermediate: bool = True) -> dict:
    """The ROC with TAR at each FAR read off it at the nearest point (`nearest_point`, InsightFace's IJB rule).

    Returns {"tar_at_far": {far_key: {"tar", "far" (the chosen point's FPR), "threshold"} or n/a when far is below
    1/#impostors}, "fpr", "tpr", "thresholds", "auc" (trapezoid area under the ROC)}.
    """
    fpr, tpr, thr = roc_curve(labels, scores, drop_intermediate)
    n_imp = int(np.count_nonzero(np.asarray(labels).reshape(-1) != 1))
    out = {}
    for far in fars:
        reason = unmeasurable(far, n_imp)
        if reason is not None:
            out[far_key(far)] = not_measured(reason, "tar", "far", "threshold")
            continue
        i = nearest_point(fpr, far)
        out[far_key(far)] = {"tar": float(tpr[i]), "far": float(fpr[i]), "threshold": float(thr[i])}
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    return {"tar_at_far": out, "fpr": fpr, "tpr": tpr, "thresholds": thr, "auc": auc}


# --------------------------------------------------------------------------------------- open-set 1:N search


def cmc_curve(ranks: np.ndarray, max_rank: int) -> np.ndarray:
    """(max_rank,) identification rate at ranks 1..max_rank: CMC(r) = #{rank <= r} / #mated searches."""
    ranks = np.asarray(ranks, np.int64)
    if ranks.size == 0:
        return np.full(max_rank, math.nan)
    counts = np.bincount(np.minimum(ranks, max_rank + 1), minlength=max_rank + 2)[1 : max_rank + 1]
    return np.cumsum(counts) / ranks.size


def _identity_scores(probe_block, gallery, order, starts) -> np.ndarray:
    """(B, I) best score of each probe against each gallery identity (max over that identity's entries)."""
    sims = probe_block @ gallery.T
    if starts is None:
        return sims
    return np.maximum.reduceat(sims[:, order], starts, axis=1)


def tpir_at_fpir(mated_rank, mated_true, nonmated_max, fpir: float) -> dict:
    """TPIR at an FPIR target: t = the (k+1)-th largest non-mated max score, k = floor(fpir * n) (accept iff > t);
    TPIR = fraction of mated searches at rank 1 with true score > t, FPIR = #{non-mated max > t} / n. The n/a
    entry when fpir < 1/n; NaN without mated searches."""
    n = int(np.size(nonmated_max))
    reason = unmeasurable(fpir, n, "non-mated searches")
    if reason is not None:
        return not_measured(reason, "tpir", "fpir", "threshold")
    t = strict_threshold(nonmated_max, fpir)
    mated_rank, mated_true = np.asarray(mated_rank), np.asarray(mated_true)
    return {
        "tpir": float(np.mean((mated_rank == 1) & (mated_true > t))) if mated_rank.size else math.nan,
        "fpir": float(np.count_nonzero(np.asarray(nonmated_max) > t) / n),
        "threshold": t,
    }


def identification(
    gallery_feats: np.ndarray,
    gallery_ids: np.ndarray,
    probe_feats: np.ndarray,
    probe_ids: np.ndarray,
    ranks=(1, 5, 10),
    fpirs=(0.01, 0.1),
    block: int = 4096,
    progress: bool = False,
) -> dict:
    """Open-set 1:N search of probes against a gallery (cosine scores, features L2-normalised here).

    A gallery identity's score is the max over its entries. Mated probes (identity in the gallery): rank =
    1 + #{other identities scoring strictly higher than the true one} (ties resolved in the probe's favour);
    CMC(r) = fraction of mated probes with rank <= r. Non-mated probes give max scores; `tpir_at_fpir` per
    target. NaN where a set is empty.

    Returns {"cmc": {rank: value}, "tpir_at_fpir": {far_key(fpir): {"tpir", "fpir", "threshold"}},
    "num_mated", "num_nonmated", "ranks" (per mated probe, in probe order)}.
    """
    gallery = l2_normalize(gallery_feats)
    probes = l2_normalize(probe_feats)
    gallery_ids, probe_ids = np.asarray(gallery_ids).reshape(-1), np.asarray(probe_ids).reshape(-1)
    if gallery.shape[0] != gallery_ids.shape[0] or probes.shape[0] != probe_ids.shape[0]:
        raise DataError(
            f"{gallery.shape[0]} gallery features for {gallery_ids.shape[0]} ids and {probes.shape[0]} probe "
            f"features for {probe_ids.shape[0]} ids: each feature row needs exactly one identity"
        )
    if gallery.shape[1] != probes.shape[1] or gallery.shape[0] == 0:
        raise DataError(f"gallery {gallery.shape} and probes {probes.shape} need the same, non-empty dimension")
    uid, inv = np.unique(gallery_ids, return_inverse=True)
    order = starts = None
    if uid.shape[0] < gallery_ids.shape[0]:
        order = np.argsort(inv, kind="stable")
        starts = np.flatnonzero(np.diff(inv[order], prepend=-1))  # first column of each identity
    else:  # one entry per identity (IJB galleries): put the rows in uid order, the order `col` indexes
        gallery = gallery[np.argsort(inv)]
    col = np.minimum(np.searchsorted(uid, probe_ids), uid.shape[0] - 1)
    mated = uid[col] == probe_ids
    rank = np.zeros(probes.shape[0], np.int64)
    true_score = np.full(probes.shape[0], -np.inf)
    max_score = np.empty(probes.shape[0])
    with bar(probes.shape[0], "1:N search", "probe", progress) as pbar:
        for a in range(0, probes.shape[0], block):
            s = _identity_scores(probes[a : a + block], gallery, order, starts)
            rows = np.arange(s.shape[0])
            true = s[rows, col[a : a + block]]
            max_score[a : a + block] = s.max(axis=1)
            m = mated[a : a + block]
            true_score[a : a + block][m] = true[m]
            rank[a : a + block][m] = 1 + np.count_nonzero(s[m] > true[m][:, None], axis=1)
            pbar.update(s.shape[0])
    mated_rank, mated_true = rank[mated], true_score[mated]
    nonmated_max = max_score[~mated]
    cmc = {int(r): float(np.mean(mated_rank <= r)) if mated_rank.size else math.nan for r in ranks}
    tpir = {far_key(f): tpir_at_fpir(mated_rank, mated_true, nonmated_max, f) for f in fpirs}
    return {
        "cmc": cmc,
        "tpir_at_fpir": tpir,
        "num_mated": int(mated_rank.size),
        "num_nonmated": int(nonmated_max.size),
        "ranks": mated_rank,
    }
