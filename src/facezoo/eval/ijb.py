"""IJB-B / IJB-C template protocols from image features: 1:1 verification (TAR@FAR) and 1:N identification.

1:1 follows InsightFace's `recognition/arcface_torch/eval_ijbc.py`:
  image feature -> (flip sum) -> (L2-normalise unless use_norm) -> (x faceness score)
  template feature = L2-normalise( sum over media of mean over the media's images )
  score(t1, t2) = <f_t1, f_t2>;  ROC as sklearn `roc_curve` (drop_intermediate=True);
  TAR at each FAR = TPR of the ROC point whose FPR is nearest the target (ties: the later point, i.e. the
  higher threshold index after InsightFace's flip, which is the larger TPR at equal FPR).

Meta files (one record a line, space separated; see reference/protocols.md):
  <t>_face_tid_mid.txt        image_name template_id media_id
  <t>_template_pair_label.txt template_id_1 template_id_2 label(0/1)
  <t>_name_5pts_score.txt     image_name x1 y1 ... x5 y5 faceness_score
1:N (galleries, mixed probes) reuses the same template features: see ijb_1n.py. `load_ijb_meta` reads a
release once, `evaluate_ijb` runs 1:1 and/or 1:N for one model's embeddings.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, DataError
from .metrics import far_key, l2_normalize

IJB_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
IJB_TARGETS = ("IJBB", "IJBC")


# ------------------------------------------------------------------------------------------------ meta readers


class TemplateMedia(NamedTuple):
    names: list[str]
    templates: np.ndarray  # (N,) int64
    medias: np.ndarray  # (N,) int64


class TemplatePairs(NamedTuple):
    t1: np.ndarray  # (P,) int64
    t2: np.ndarray  # (P,) int64
    labels: np.ndarray  # (P,) int64, 1 = same subject


class Landmarks(NamedTuple):
    names: list[str]
    points: np.ndarray  # (N, 5, 2) float32, pixel (x, y) in the loose crop
    scores: np.ndarray  # (N,) float32 faceness score


def _read_lines(path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: IJB meta file not found; point root at the IJB folder that holds meta/")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e}); is this the right meta file?") from None


def _records(path, ncols: int, what: str):
    """(line number, fields) of each non-blank line; DataError naming file:line if a line has != ncols fields."""
    for lineno, line in enumerate(_read_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != ncols:
            raise DataError(
                f"{path}:{lineno}: expected {ncols} fields ({what}), got {len(fields)}: {line.strip()[:80]!r}"
            )
        yield lineno, fields


def _int(path, lineno: int, text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{path}:{lineno}: {what} must be an integer, got {text!r}; fix or remove the line") from None


def _float(path, lineno: int, text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{path}:{lineno}: {what} must be a number, got {text!r}; fix or remove the line") from None


def read_template_media(path) -> TemplateMedia:
    """`*_face_tid_mid.txt`: one `image_name template_id media_id` per line, in feature order."""
    names, tids, mids = [], [], []
    for lineno, (name, tid, mid) in _records(path, 3, "image_name template_id media_id"):
        names.append(name)
        tids.append(_int(path, lineno, tid, "template id"))
        mids.append(_int(path, lineno, mid, "media id"))
    return TemplateMedia(names, np.asarray(tids, np.int64), np.asarray(mids, np.int64))


def _read_pairs_slow(path) -> TemplatePairs:
    rows = []
    for lineno, (a, b, lab) in _records(path, 3, "template_id_1 template_id_2 label"):
        label = _int(path, lineno, lab, "label")
        if label not in (0, 1):
            raise DataError(f"{path}:{lineno}: label must be 0 or 1, got {label}; fix or remove the line")
        rows.append((_int(path, lineno, a, "template id 1"), _int(path, lineno, b, "template id 2"), label))
    arr = np.asarray(rows, np.int64).reshape(-1, 3)
    return TemplatePairs(arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy())


def read_template_pairs(path) -> TemplatePairs:
    """`*_template_pair_label.txt`: one `t1 t2 label` per line (IJB-C: 15.7M lines).

    Parsed by numpy's C reader; on any failure the file is re-read line by line to name the bad line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: IJB pair file not found; point root at the IJB folder that holds meta/")
    try:
        arr = np.loadtxt(path, dtype=np.int64, ndmin=2, comments=None)
        if arr.size and (arr.shape[1] != 3 or not np.isin(arr[:, 2], (0, 1)).all()):
            raise ValueError("bad columns or labels")
    except ValueError:
        return _read_pairs_slow(path)  # raises DataError at the first bad line
    arr = arr.reshape(-1, 3)
    return TemplatePairs(arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy())


def read_landmarks(path) -> Landmarks:
    """`*_name_5pts_score.txt`: `image_name x1 y1 ... x5 y5 faceness_score` per line, in feature order."""
    names, pts, scores = [], [], []
    for lineno, fields in _records(path, 12, "image_name, 10 landmark coordinates, faceness score"):
        names.append(fields[0])
        pts.append([_float(path, lineno, v, f"landmark coordinate {i + 1}") for i, v in enumerate(fields[1:11])])
        scores.append(_float(path, lineno, fields[11], "faceness score"))
    return Landmarks(names, np.asarray(pts, np.float32).reshape(-1, 5, 2), np.asarray(scores, np.float32))


# ------------------------------------------------------------------------------------------- template features


def image_features(
    emb: np.ndarray,
    emb_flip: np.ndarray | None = None,
    scores: np.ndarray | None = None,
    use_flip: bool = True,
    use_norm: bool = True,
    use_detector_score: bool = True,
) -> np.ndarray:
    """Per-image features fed to template pooling, as InsightFace's IJB options define them, in this order:

    use_flip: f = emb + emb_flip (else f = emb). use_norm (InsightFace use_norm_score): keep the raw norm of f,
    so a low-quality face with a small norm weighs less in its template; use_norm=False replaces f by
    f / ||f||_2 (zero rows stay zero). use_detector_score: f *= the image's faceness (detector) score.
    emb, emb_flip: (N, D); scores: (N,). Returns (N, D) in emb's float dtype (float32 stays float32, as there).
    """
    emb = np.asarray(emb)
    if emb.ndim != 2:
        raise DataError(f"image embeddings must be an (N, D) array, got shape {emb.shape}")
    feats = emb.astype(np.result_type(emb.dtype, np.float32))
    if use_flip:
        if emb_flip is None:
            raise ConfigError("use_flip=True needs emb_flip (embeddings of the mirrored images); or set use_flip=False")
        if np.shape(emb_flip) != emb.shape:
            raise DataError(f"emb_flip shape {np.shape(emb_flip)} differs from emb shape {emb.shape}")
        feats += np.asarray(emb_flip, dtype=feats.dtype)
    if not use_norm:
        norms = np.sqrt(np.einsum("ij,ij->i", feats, feats))
        norms[norms == 0] = 1
        feats /= norms[:, None]
    if use_detector_score:
        if scores is None:
            raise ConfigError("use_detector_score=True needs the faceness scores; or set use_detector_score=False")
        scores = np.asarray(scores, dtype=feats.dtype).reshape(-1)
        if scores.shape[0] != feats.shape[0]:
            raise DataError(f"{scores.shape[0]} faceness scores for {feats.shape[0]} image features")
        feats *= scores[:, None]
    return feats


def _group_starts(*keys: np.ndarray) -> np.ndarray:
    """Indices where any of the (sorted) key arrays changes value, starting with 0."""
    change = np.zeros(keys[0].shape[0], dtype=bool)
    change[0] = True
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(change)


def _group_sums(x: np.ndarray, group: np.ndarray, n_groups: int, chunk: int = 32768) -> np.ndarray:
    """(n_groups, D) float64 sums of the rows of x (N, D) by group id (N,), via torch's index_add_ on chunks
    converted to float64 (numpy's add.at / reduceat along rows are several times slower)."""
    import torch

    out = torch.zeros((n_groups, x.shape[1]), dtype=torch.float64)
    index = torch.from_numpy(np.ascontiguousarray(group, dtype=np.int64))
    for a in range(0, x.shape[0], chunk):
        rows = torch.from_numpy(np.ascontiguousarray(x[a : a + chunk]))
        out.index_add_(0, index[a : a + chunk], rows.to(torch.float64))
    return out.numpy()


def _group_ids(starts: np.ndarray, n: int) -> np.ndarray:
    """Group index of each of n sorted items, given where each group starts."""
    ids = np.zeros(n, np.int64)
    ids[starts[1:]] = 1
    return np.cumsum(ids, out=ids)


def template_features(
    img_feats: np.ndarray, templates: np.ndarray, medias: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Template features f_T = normalise( sum_{m in T} mean_{i in (T, m)} x_i ), with sklearn's normalize
    (an all-zero template stays zero); sums in float64.

    Vectorised: one lexsort by (template, media) names the groups, then grouped sums over images (media means)
    and over media (template sums). img_feats (N, D), templates and medias (N,) ints. Returns (template
    features (T, D) float64, sorted unique template ids (T,)).
    """
    img_feats = np.asarray(img_feats)
    templates, medias = np.asarray(templates).reshape(-1), np.asarray(medias).reshape(-1)
    if img_feats.ndim != 2 or not img_feats.shape[0] == templates.shape[0] == medias.shape[0]:
        raise DataError(
            f"{img_feats.shape[0] if img_feats.ndim else 0} image features, {templates.shape[0]} template ids and "
            f"{medias.shape[0]} media ids: each image needs exactly one of each (features in meta-file order)"
        )
    if templates.shape[0] == 0:
        raise DataError("no images: the template/media list is empty")
    n = templates.shape[0]
    order = np.lexsort((medias, templates))
    t_sorted = templates[order]
    starts = _group_starts(t_sorted, medias[order])
    media_of_image = np.empty(n, np.int64)
    media_of_image[order] = _group_ids(starts, n)
    counts = np.diff(np.append(starts, n))
    media_means = _group_sums(img_feats, media_of_image, starts.shape[0]) / counts[:, None]
    media_templates = t_sorted[starts]  # sorted
    tstarts = _group_starts(media_templates)
    template_sums = _group_sums(media_means, _group_ids(tstarts, starts.shape[0]), tstarts.shape[0])
    return l2_normalize(template_sums), media_templates[tstarts]


# ---------------------------------------------------------------------------------------------- 1:1 scoring


def _rows(template_ids: np.ndarray, ids: np.ndarray, which: str) -> np.ndarray:
    """Row of each id in the sorted unique template_ids (a lookup table for small non-negative ids, else a
    binary search); DataError for an id without features."""
    ids = np.asarray(ids, dtype=np.int64)
    lo, hi = int(template_ids[0]), int(template_ids[-1])
    if lo >= 0 and hi <= 8 * template_ids.shape[0] + (1 << 20):
        table = np.full(hi + 2, -1, np.int64)
        table[template_ids] = np.arange(template_ids.shape[0])
        pos = table[np.clip(ids, -1, hi + 1)]  # out-of-range ids land on -1 entries (index -1 is hi + 1)
        bad = pos < 0
    else:
        pos = np.minimum(np.searchsorted(template_ids, ids), template_ids.shape[0] - 1)
        bad = template_ids[pos] != ids
    if bad.any():
        missing = np.unique(ids[bad])
        raise DataError(
            f"{missing.size} template id(s) in {which} have no images in the template/media list, e.g. "
            f"{missing[:5].tolist()}; use the pair file and face_tid_mid file of the same benchmark"
        )
    return pos


def _scores_gram(feats, r1, r2, out, max_entries: int) -> None:
    """out = <feats[r1], feats[r2]> for pairs sorted by r1, through Gram slices F[U1 slice] F[U2]^T (BLAS)."""
    starts = _group_starts(r1)
    u1 = r1[starts]
    group = np.zeros(r1.shape[0], np.int64)
    group[starts[1:]] = 1
    group = np.cumsum(group, out=group)  # index into u1 of each pair
    u2, inv2 = np.unique(r2, return_inverse=True)
    right = np.ascontiguousarray(feats[u2].T)
    step = max(1, max_entries // u2.shape[0])
    bounds = np.append(starts, r1.shape[0])
    for j in range(0, u1.shape[0], step):
        a, b = bounds[j], bounds[min(j + step, u1.shape[0])]
        gram = feats[u1[j : j + step]] @ right
        out[a:b] = gram[group[a:b] - j, inv2[a:b]]


def _scores_gather(feats, r1, r2, out, chunk: int) -> None:
    """out = <feats[r1], feats[r2]> row by row, gathering into reused buffers (no page faults per chunk)."""
    n = max(1, min(chunk, r1.shape[0]))
    buf1 = np.empty((n, feats.shape[1]), feats.dtype)
    buf2 = np.empty_like(buf1)
    for a in range(0, r1.shape[0], n):
        b = min(a + n, r1.shape[0])
        np.take(feats, r1[a:b], axis=0, out=buf1[: b - a])
        np.take(feats, r2[a:b], axis=0, out=buf2[: b - a])
        out[a:b] = np.einsum("ij,ij->i", buf1[: b - a], buf2[: b - a])


def verify_scores(
    template_feats: np.ndarray,
    template_ids: np.ndarray,
    pairs_t1: np.ndarray,
    pairs_t2: np.ndarray,
    block: int = 1 << 16,
    gram_ratio: int = 64,
    max_gram_entries: int = 1 << 24,
) -> np.ndarray:
    """score_k = <f[t1_k], f[t2_k]> for each template pair, computed in the features' float dtype.

    IJB pair lists reuse few templates (IJB-C: 15.7M pairs over 23k templates), so when the distinct templates
    satisfy |U1| |U2| <= gram_ratio * pairs the scores are read from Gram slices F[U1 slice] F[U2]^T (BLAS, at
    most max_gram_entries each; pairs sorted by t1); otherwise rows are gathered `block` pairs at a time and
    dotted. template_ids: sorted unique ids, one per row of template_feats (as `template_features` returns).
    """
    feats = np.ascontiguousarray(template_feats)
    if not np.issubdtype(feats.dtype, np.floating):
        feats = feats.astype(np.float64)
    template_ids = np.asarray(template_ids).reshape(-1)
    if feats.ndim != 2 or feats.shape[0] != template_ids.shape[0] or feats.shape[0] == 0:
        raise DataError(f"template features {feats.shape} need one row per template id ({template_ids.shape[0]})")
    if not np.all(template_ids[1:] > template_ids[:-1]):
        raise DataError("template_ids must be sorted and unique, as template_features returns them")
    t1, t2 = np.asarray(pairs_t1).reshape(-1), np.asarray(pairs_t2).reshape(-1)
    if t1.shape != t2.shape:
        raise DataError(f"{t1.shape[0]} first templates but {t2.shape[0]} second templates in the pair list")
    if block < 1 or max_gram_entries < 1:
        raise ConfigError(f"block={block} and max_gram_entries={max_gram_entries} must be >= 1")
    scores = np.empty(t1.shape[0], dtype=feats.dtype)
    if t1.size == 0:
        return scores
    r1, r2 = _rows(template_ids, t1, "pairs_t1"), _rows(template_ids, t2, "pairs_t2")
    order = None if np.all(r1[1:] >= r1[:-1]) else np.argsort(r1, kind="stable")
    if order is not None:
        r1, r2 = r1[order], r2[order]
    n_u1 = np.count_nonzero(r1[1:] != r1[:-1]) + 1
    n_u2 = np.count_nonzero(np.bincount(r2, minlength=feats.shape[0]))
    out = scores if order is None else np.empty_like(scores)
    if n_u1 * n_u2 <= gram_ratio * r1.shape[0]:
        _scores_gram(feats, r1, r2, out, max_gram_entries)
    else:
        _scores_gather(feats, r1, r2, out, block)
    if order is not None:
        scores[order] = out
    return scores


# ------------------------------------------------------------------------------------------------ ROC, TAR@FAR


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
    if not np.isfinite(s).all():
        raise DataError("scores contain NaN or inf; check for all-zero or non-finite features")
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


def tar_at_far(labels: np.ndarray, scores: np.ndarray, fars=IJB_FARS, drop_intermediate: bool = True) -> dict:
    """TAR at each FAR as InsightFace's IJB table: on the ROC, the point with FPR nearest the target,
    argmin |fpr - far| taken over the flipped curve (first minimum there = the last one in ROC order).

    Returns {"tar_at_far": {far_key: {"tar", "far" (the chosen point's FPR), "threshold"}}, "fpr", "tpr",
    "thresholds", "auc" (trapezoid area under the ROC)}.
    """
    fpr, tpr, thr = roc_curve(labels, scores, drop_intermediate)
    out = {}
    last = fpr.shape[0] - 1
    for far in fars:
        i = last - int(np.argmin(np.abs(fpr[::-1] - far)))
        out[far_key(far)] = {"tar": float(tpr[i]), "far": float(fpr[i]), "threshold": float(thr[i])}
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    return {"tar_at_far": out, "fpr": fpr, "tpr": tpr, "thresholds": thr, "auc": auc}


# --------------------------------------------------------------------------------------------- 1:N identification


def _identity_scores(probe_block, gallery, order, starts) -> np.ndarray:
    """(B, I) best score of each probe against each gallery identity (max over that identity's entries)."""
    sims = probe_block @ gallery.T
    if starts is None:
        return sims
    return np.maximum.reduceat(sims[:, order], starts, axis=1)


def identification(
    gallery_feats: np.ndarray,
    gallery_ids: np.ndarray,
    probe_feats: np.ndarray,
    probe_ids: np.ndarray,
    ranks=(1, 5, 10),
    fpirs=(0.01, 0.1),
    block: int = 4096,
) -> dict:
    """Open-set 1:N search of probe templates against a gallery (cosine scores, features L2-normalised here).

    A gallery identity's score is the max over its entries. Mated probes (identity in the gallery): rank =
    1 + #{other identities scoring strictly higher than the true one} (ties resolved in the probe's favour);
    CMC(r) = fraction of mated probes with rank <= r. Non-mated probes give max scores m_1 >= ... >= m_n; for a
    target FPIR, k = floor(fpir * n) and the threshold t = m_{k+1} (-inf if k >= n): a score is accepted
    iff it is > t, so the achieved FPIR = #{m > t} / n <= fpir. TPIR = fraction of mated probes with rank 1 and
    true-identity score > t. NaN where a set is empty.

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
        starts = _group_starts(inv[order])
    else:  # one entry per identity (IJB galleries): put the rows in uid order, the order `col` indexes
        gallery = gallery[np.argsort(inv)]
    col = np.minimum(np.searchsorted(uid, probe_ids), uid.shape[0] - 1)
    mated = uid[col] == probe_ids
    rank = np.zeros(probes.shape[0], np.int64)
    true_score = np.full(probes.shape[0], -np.inf)
    max_score = np.empty(probes.shape[0])
    for a in range(0, probes.shape[0], block):
        s = _identity_scores(probes[a : a + block], gallery, order, starts)
        rows = np.arange(s.shape[0])
        true = s[rows, col[a : a + block]]
        max_score[a : a + block] = s.max(axis=1)
        m = mated[a : a + block]
        true_score[a : a + block][m] = true[m]
        rank[a : a + block][m] = 1 + np.count_nonzero(s[m] > true[m][:, None], axis=1)
    mated_rank, mated_true = rank[mated], true_score[mated]
    nonmated_max = np.sort(max_score[~mated])[::-1]
    cmc = {int(r): float(np.mean(mated_rank <= r)) if mated_rank.size else math.nan for r in ranks}
    tpir = {}
    for fpir in fpirs:
        n = nonmated_max.shape[0]
        if n == 0 or mated_rank.size == 0:
            tpir[far_key(fpir)] = {"tpir": math.nan, "fpir": math.nan, "threshold": math.nan}
            continue
        k = math.floor(Fraction(repr(float(fpir))) * n)
        t = float(nonmated_max[k]) if k < n else -math.inf
        tpir[far_key(fpir)] = {
            "tpir": float(np.mean((mated_rank == 1) & (mated_true > t))),
            "fpir": float(np.count_nonzero(nonmated_max > t) / n),
            "threshold": t,
        }
    return {
        "cmc": cmc,
        "tpir_at_fpir": tpir,
        "num_mated": int(mated_rank.size),
        "num_nonmated": int(nonmated_max.size),
        "ranks": mated_rank,
    }


# ------------------------------------------------------------------------------------------- from the meta files

PROTOCOLS = ("1:1", "1:N")


class IJBMeta(NamedTuple):
    """Everything an IJB evaluation reads from the release, read once and reused for every model."""

    target: str  # "IJBB" or "IJBC"
    meta: Path  # the meta/ folder
    media: TemplateMedia  # image -> template, media (feature order)
    scores: np.ndarray | None  # (N,) faceness scores, None if <t>_name_5pts_score.txt is absent
    pairs: TemplatePairs | None  # 1:1 pairs, None if 1:1 is not evaluated
    sets_1n: object | None  # ijb_1n.IJB1N, None if 1:N is not evaluated


def meta_dir(root, target: str) -> Path:
    """The meta/ folder of an IJB release: <root>/meta or <root>/<target>/meta."""
    root = Path(root)
    for cand in (root / "meta", root / target / "meta"):
        if cand.is_dir():
            return cand
    raise DataError(f"no meta/ folder under {root} or {root / target}; point root at the {target} release folder")


def _target(target: str) -> str:
    t = target.upper().replace("-", "")
    if t not in IJB_TARGETS:
        raise ConfigError(f"unknown IJB target {target!r}; choose one of {', '.join(IJB_TARGETS)}")
    return t


def resolve_protocols(root, target: str, protocols=None) -> tuple[str, ...]:
    """The protocols to run: the ones asked for ("1:1", "1:N", "all"), or with None / "all" each one whose
    files exist (DataError naming the pair file if none do)."""
    from .ijb_1n import has_ijb_1n

    target = _target(target)
    if isinstance(protocols, str):
        protocols = (protocols,)
    asked = [p.upper() for p in (protocols or ("all",))]
    bad = [p for p in asked if p not in (*PROTOCOLS, "ALL")]
    if bad:
        raise ConfigError(f"unknown IJB protocol {bad[0]!r}; choose 1:1, 1:N or all")
    if "ALL" not in asked:
        return tuple(p for p in PROTOCOLS if p in asked)
    meta = meta_dir(root, target)
    pair_file = meta / f"{target.lower()}_template_pair_label.txt"
    found = tuple(p for p, ok in zip(PROTOCOLS, (pair_file.is_file(), has_ijb_1n(root, target))) if ok)
    if not found:
        raise DataError(
            f"{pair_file}: IJB pair file not found, and no 1:N files ({target.lower()}_1N_*.csv) either; point root "
            f"at the {target} release folder"
        )
    return found


def _check_embeddings(emb, n: int, prefix: str) -> np.ndarray:
    emb = np.asarray(emb)
    if emb.ndim != 2 or emb.shape[0] != n:
        raise DataError(
            f"{np.shape(emb)} embeddings for {n} images in {prefix}_face_tid_mid.txt; embed every image of "
            f"{prefix}_name_5pts_score.txt in file order"
        )
    return emb


def load_ijb_meta(root, target: str, protocols=None, n_images: int | None = None) -> IJBMeta:
    """Read the meta files of the protocols to run (see `resolve_protocols`): <t>_face_tid_mid.txt,
    <t>_name_5pts_score.txt (faceness scores; its image order is checked), <t>_template_pair_label.txt (1:1),
    the 1:N CSVs (1:N). n_images, if given, is checked against the image list before anything else is read."""
    target = _target(target)
    protocols = resolve_protocols(root, target, protocols)
    meta = meta_dir(root, target)
    prefix = target.lower()
    media = read_template_media(meta / f"{prefix}_face_tid_mid.txt")
    if n_images is not None and n_images != len(media.names):
        _check_embeddings(np.empty((n_images, 0)), len(media.names), prefix)
    scores = None
    lm_path = meta / f"{prefix}_name_5pts_score.txt"
    if lm_path.is_file():
        lm = read_landmarks(lm_path)
        if lm.names != media.names:
            pairs_ = zip(lm.names, media.names)
            bad = next((i for i, (a, b) in enumerate(pairs_) if a != b), min(len(lm.names), len(media.names)))
            raise DataError(
                f"{lm_path}:{bad + 1}: image order differs from {prefix}_face_tid_mid.txt (line {bad + 1}); "
                f"the two meta files must list the same images in the same order"
            )
        scores = lm.scores
    pairs = read_template_pairs(meta / f"{prefix}_template_pair_label.txt") if "1:1" in protocols else None
    sets_1n = None
    if "1:N" in protocols:
        from .ijb_1n import read_ijb_1n

        sets_1n = read_ijb_1n(root, target)
    return IJBMeta(target, meta, media, scores, pairs, sets_1n)


def evaluate_ijb(
    meta: IJBMeta,
    emb: np.ndarray,
    emb_flip: np.ndarray | None = None,
    use_flip: bool = True,
    use_norm: bool = True,
    use_detector_score: bool = True,
    fars=IJB_FARS,
    fpirs=(0.01, 0.1),
    ranks=(1, 5, 10),
) -> dict:
    """IJB-B / IJB-C from image embeddings given in the meta files' image order: template features are pooled
    once and used by every protocol in `meta`.

    Returns {"target", "options", "num_images", "num_templates", "1:1": (if read) `tar_at_far`'s dict plus
    num_pairs, num_genuine, num_impostor and the pair scores, "1:N": (if read) `ijb_1n.evaluate_1n`'s dict}.
    """
    prefix = meta.target.lower()
    emb = _check_embeddings(emb, len(meta.media.names), prefix)
    if use_detector_score and meta.scores is None:
        raise DataError(
            f"{meta.meta / f'{prefix}_name_5pts_score.txt'}: IJB meta file not found (it holds the faceness "
            "scores); copy it into meta/ or turn the detector score off"
        )
    feats = image_features(emb, emb_flip, meta.scores, use_flip, use_norm, use_detector_score)
    tfeats, tids = template_features(feats, meta.media.templates, meta.media.medias)
    out = {
        "target": meta.target,
        "options": {"flip": use_flip, "norm": use_norm, "detector_score": use_detector_score},
        "num_images": len(meta.media.names),
        "num_templates": int(tids.shape[0]),
    }
    if meta.pairs is not None:
        pairs = meta.pairs
        pair_scores = verify_scores(tfeats, tids, pairs.t1, pairs.t2)
        n_gen = int(np.count_nonzero(pairs.labels == 1))
        out["1:1"] = {
            **out,
            "num_pairs": int(pairs.labels.shape[0]),
            "num_genuine": n_gen,
            "num_impostor": int(pairs.labels.shape[0]) - n_gen,
            **tar_at_far(pairs.labels, pair_scores, fars),
            "scores": pair_scores,
        }
    if meta.sets_1n is not None:
        from .ijb_1n import evaluate_1n

        out["1:N"] = evaluate_1n(tfeats, tids, meta.sets_1n, fpirs, ranks)
    return out


def evaluate_ijb_features(
    root,
    target: str,
    emb: np.ndarray,
    emb_flip: np.ndarray | None = None,
    use_flip: bool = True,
    use_norm: bool = True,
    use_detector_score: bool = True,
    fars=IJB_FARS,
) -> dict:
    """IJB-B / IJB-C 1:1 from image embeddings given in the meta files' image order.

    Reads <t>_face_tid_mid.txt, <t>_template_pair_label.txt and (for faceness scores and an image-order check)
    <t>_name_5pts_score.txt; pools templates; scores all pairs; returns `tar_at_far`'s dict plus target,
    options, num_images, num_templates, num_pairs, num_genuine, num_impostor and the pair scores.
    """
    target = _target(target)
    n = np.shape(emb)[0] if np.ndim(emb) == 2 else -1
    meta = load_ijb_meta(root, target, ("1:1",), n_images=n)
    return evaluate_ijb(meta, emb, emb_flip, use_flip, use_norm, use_detector_score, fars)["1:1"]
