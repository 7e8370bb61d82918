"""IJB-B / IJB-C protocols from image features: template pooling, 1:1 verification (TAR@FAR) and 1:N mixed search.

1:1 follows InsightFace's `recognition/arcface_torch/eval_ijbc.py`:
  image feature -> (flip sum) -> (L2-normalise unless use_norm) -> (x faceness score)
  template feature = L2-normalise( sum over media of mean over the media's images )
  score(t1, t2) = <f_t1, f_t2>;  ROC as sklearn `roc_curve` (drop_intermediate=True);
  TAR at each FAR = TPR of the ROC point whose FPR is nearest the target (ties: the later point, i.e. the
  higher threshold index after InsightFace's flip, which is the larger TPR at equal FPR); a FAR below
  1/#impostors is n/a (facezoo.far).

1:N (IJB-B "1:N Mixed", IJB-C "Test 4"): the gallery and probe templates are templates of <t>_face_tid_mid.txt
(IJB-C: 3,531 gallery + 19,593 probe = the 23,124 1:1 templates), so their features are the same template
features. The two galleries hold disjoint subjects; every probe template is searched against each gallery in
turn, so a probe whose subject is in the other gallery is a non-mated search. Per gallery: CMC at ranks 1/5/10
over the mated searches and TPIR at FPIR 0.01/0.1 (`scoring.identification`); the table reports the mean over the
two galleries, as the IJB-B paper and VGGFace2 do, with each gallery's figures beside it. (InsightFace's
IJB_1N.py instead searches G1 + G2 together, where every probe is mated, and reads a "FAR" off all
probe-gallery impostor scores: not comparable to TPIR@FPIR.)

Release files: `ijb_meta`. `evaluate_ijb` runs 1:1 and/or 1:N for one model's embeddings.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError
from ..far import far_key
from ..progress import bar
from .ijb_meta import IJB1N, IJBMeta, check_embeddings, check_target, load_ijb_meta
from .scoring import check_finite_embeddings, cmc_curve, identification, l2_normalize, roc_summary

IJB_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
IJB_FPIRS = (0.01, 0.1)
IJB_RANKS = (1, 5, 10)


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
        check_finite_embeddings([emb_flip], "emb_flip (the mirrored images)")
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


def _group_sums(x: np.ndarray, starts: np.ndarray, rows: np.ndarray | None = None, chunk: int = 32768) -> np.ndarray:
    """(G, D) float64 sums of the rows x[rows[s_g : s_(g+1)]] of each of the G groups starting at `starts` (rows
    None: x's own order), each group summed row by row in that order: step j adds the j-th row of every group
    longer than j (vectorised, `chunk` groups at a time), so every sum is the plain sequential float64 sum.
    Pure numpy; as many steps as the largest group has rows."""
    n = x.shape[0] if rows is None else rows.shape[0]
    sizes = np.diff(np.append(starts, n))
    by_size = np.argsort(-sizes, kind="stable")
    longest_first = -sizes[by_size]  # ascending
    out = np.zeros((starts.shape[0], x.shape[1]), np.float64)
    for j in range(int(sizes.max()) if sizes.size else 0):
        live = by_size[: np.searchsorted(longest_first, -j, side="left")]  # groups with more than j rows
        for a in range(0, live.shape[0], chunk):
            g = live[a : a + chunk]
            idx = starts[g] + j
            out[g] += x[idx if rows is None else rows[idx]]
    return out


def template_features(
    img_feats: np.ndarray, templates: np.ndarray, medias: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Template features f_T = normalise( sum_{m in T} mean_{i in (T, m)} x_i ), with sklearn's normalize
    (an all-zero template stays zero); sums in float64, in image order within a media and media order within a
    template.

    Vectorised: one stable lexsort by (template, media) names the groups, then grouped sums over images (media
    means) and over media (template sums). img_feats (N, D), templates and medias (N,) ints. Returns (template
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
    counts = np.diff(np.append(starts, n))
    media_means = _group_sums(img_feats, starts, order) / counts[:, None]
    media_templates = t_sorted[starts]  # sorted
    tstarts = _group_starts(media_templates)
    template_sums = _group_sums(media_means, tstarts)
    return l2_normalize(template_sums), media_templates[tstarts]


# ---------------------------------------------------------------------------------------------- 1:1 scoring


def template_rows(template_ids: np.ndarray, ids: np.ndarray, which: str) -> np.ndarray:
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


def _scores_gram(feats, r1, r2, out, max_entries: int, pbar) -> None:
    """out = <feats[r1], feats[r2]> for pairs sorted by r1, through Gram slices F[U1 slice] F[U2]^T (BLAS)."""
    starts = _group_starts(r1)
    u1 = r1[starts]
    group = np.zeros(r1.shape[0], np.int64)
    group[starts[1:]] = 1
    group = np.cumsum(group, out=group)  # index into u1 of each pair
    present = np.zeros(feats.shape[0], bool)  # the sorted unique r2 and each pair's index into it, by a lookup
    present[r2] = True  # table over the rows (np.unique(r2, return_inverse=True) sorts all pairs instead)
    u2 = np.flatnonzero(present)
    column = np.empty(feats.shape[0], np.int64)
    column[u2] = np.arange(u2.shape[0])
    inv2 = column[r2]
    right = np.ascontiguousarray(feats[u2].T)
    step = max(1, max_entries // u2.shape[0])
    bounds = np.append(starts, r1.shape[0])
    for j in range(0, u1.shape[0], step):
        a, b = bounds[j], bounds[min(j + step, u1.shape[0])]
        gram = feats[u1[j : j + step]] @ right
        out[a:b] = gram[group[a:b] - j, inv2[a:b]]
        pbar.update(b - a)


def _scores_gather(feats, r1, r2, out, chunk: int, pbar) -> None:
    """out = <feats[r1], feats[r2]> row by row, gathering into reused buffers (no page faults per chunk)."""
    n = max(1, min(chunk, r1.shape[0]))
    buf1 = np.empty((n, feats.shape[1]), feats.dtype)
    buf2 = np.empty_like(buf1)
    for a in range(0, r1.shape[0], n):
        b = min(a + n, r1.shape[0])
        np.take(feats, r1[a:b], axis=0, out=buf1[: b - a])
        np.take(feats, r2[a:b], axis=0, out=buf2[: b - a])
        out[a:b] = np.einsum("ij,ij->i", buf1[: b - a], buf2[: b - a])
        pbar.update(b - a)


def verify_scores(
    template_feats: np.ndarray,
    template_ids: np.ndarray,
    pairs_t1: np.ndarray,
    pairs_t2: np.ndarray,
    block: int = 1 << 16,
    gram_ratio: int = 64,
    max_gram_entries: int = 1 << 24,
    progress: bool = False,
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
    r1, r2 = template_rows(template_ids, t1, "pairs_t1"), template_rows(template_ids, t2, "pairs_t2")
    order = None if np.all(r1[1:] >= r1[:-1]) else np.argsort(r1, kind="stable")
    if order is not None:
        r1, r2 = r1[order], r2[order]
    n_u1 = np.count_nonzero(r1[1:] != r1[:-1]) + 1
    n_u2 = np.count_nonzero(np.bincount(r2, minlength=feats.shape[0]))
    out = scores if order is None else np.empty_like(scores)
    with bar(r1.shape[0], "1:1 pair scores", "pair", progress) as pbar:
        if n_u1 * n_u2 <= gram_ratio * r1.shape[0]:
            _scores_gram(feats, r1, r2, out, max_gram_entries, pbar)
        else:
            _scores_gather(feats, r1, r2, out, block, pbar)
    if order is not None:
        scores[order] = out
    return scores


# --------------------------------------------------------------------------------------------- 1:N search


def evaluate_1n(
    template_feats: np.ndarray,
    template_ids: np.ndarray,
    sets: IJB1N,
    fpirs=IJB_FPIRS,
    ranks=IJB_RANKS,
    progress: bool = False,
) -> dict:
    """Search the probe templates against each gallery; template_feats (T, D) rows for the sorted template_ids.

    Returns {"galleries": {name: identification result + cmc_curve, num_gallery_templates,
    num_gallery_subjects}, "cmc", "tpir_at_fpir" (means over the galleries; n/a if a gallery's is), "cmc_curve"
    (mean), "num_probe_templates"}.
    """
    probe_rows = template_rows(template_ids, sets.probes.templates, sets.files["probe"].name)
    probe_feats = template_feats[probe_rows]
    per = {}
    for name, gallery in sets.galleries.items():
        rows = template_rows(template_ids, gallery.templates, sets.files[name].name)
        r = identification(
            template_feats[rows], gallery.subjects, probe_feats, sets.probes.subjects, ranks, fpirs, progress=progress
        )
        n_subjects = int(np.unique(gallery.subjects).size)
        r["cmc_curve"] = cmc_curve(r["ranks"], n_subjects)
        r["num_gallery_templates"] = int(gallery.templates.size)
        r["num_gallery_subjects"] = n_subjects
        per[name] = r
    results = list(per.values())
    cmc = {int(k): float(np.mean([r["cmc"][int(k)] for r in results])) for k in ranks}
    tpir = {}
    for fpir in fpirs:
        entries = [r["tpir_at_fpir"][far_key(fpir)] for r in results]
        na = next((e for e in entries if "reason" in e), None)  # a gallery with too few non-mated searches
        tpir[far_key(fpir)] = (
            {"tpir": None, "fpir": None, "reason": na["reason"]}
            if na is not None
            else {k: float(np.mean([e[k] for e in entries])) for k in ("tpir", "fpir")}
        )
    n = min(r["cmc_curve"].size for r in results)
    return {
        "galleries": per,
        "cmc": cmc,
        "tpir_at_fpir": tpir,
        "cmc_curve": np.mean([r["cmc_curve"][:n] for r in results], axis=0),
        "num_probe_templates": int(sets.probes.templates.size),
    }


# ------------------------------------------------------------------------------------------- both protocols


def evaluate_ijb(
    meta: IJBMeta,
    emb: np.ndarray,
    emb_flip: np.ndarray | None = None,
    use_flip: bool = True,
    use_norm: bool = True,
    use_detector_score: bool = True,
    fars=IJB_FARS,
    fpirs=IJB_FPIRS,
    ranks=IJB_RANKS,
    progress: bool = False,
    quality_weights: np.ndarray | None = None,
) -> dict:
    """IJB-B / IJB-C from image embeddings given in the meta files' image order: template features are pooled
    once and used by every protocol in `meta`.

    quality_weights: an option beside the protocol, (N,) weights >= 0 (facezoo.quality.scores.rank_weights) that
    multiply each image feature before the media / template pooling, as the detector score does; options then
    says "quality_weighted": True.

    Returns {"target", "options", "num_images", "num_templates", "1:1": (if read) `scoring.roc_summary`'s dict
    plus num_pairs, num_genuine, num_impostor and the pair scores, "1:N": (if read) `evaluate_1n`'s dict}.
    """
    prefix = meta.target.lower()
    emb = check_embeddings(emb, len(meta.media.names), meta.target)
    if use_detector_score and meta.scores is None:
        raise DataError(
            f"{meta.meta / f'{prefix}_name_5pts_score.txt'}: IJB meta file not found (it holds the faceness "
            "scores); copy it into meta/ or turn the detector score off"
        )
    feats = image_features(emb, emb_flip, meta.scores, use_flip, use_norm, use_detector_score)
    options = {"flip": use_flip, "norm": use_norm, "detector_score": use_detector_score}
    if quality_weights is not None:
        w = np.asarray(quality_weights, np.float64).reshape(-1)
        if w.shape[0] != feats.shape[0] or not (np.isfinite(w).all() and (w >= 0).all()):
            raise DataError(f"quality weights: need {feats.shape[0]} finite weights >= 0, got {w.shape[0]}")
        feats = feats * w[:, None].astype(feats.dtype)
        options["quality_weighted"] = True
    tfeats, tids = template_features(feats, meta.media.templates, meta.media.medias)
    out = {
        "target": meta.target,
        "options": options,
        "num_images": len(meta.media.names),
        "num_templates": int(tids.shape[0]),
    }
    if meta.pairs is not None:
        pairs = meta.pairs
        pair_scores = verify_scores(tfeats, tids, pairs.t1, pairs.t2, progress=progress)
        n_gen = int(np.count_nonzero(pairs.labels == 1))
        out["1:1"] = {
            **out,
            "num_pairs": int(pairs.labels.shape[0]),
            "num_genuine": n_gen,
            "num_impostor": int(pairs.labels.shape[0]) - n_gen,
            **roc_summary(pairs.labels, pair_scores, fars),
            "scores": pair_scores,
        }
    if meta.sets_1n is not None:
        out["1:N"] = evaluate_1n(tfeats, tids, meta.sets_1n, fpirs, ranks, progress=progress)
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
    <t>_name_5pts_score.txt; pools templates; scores all pairs; returns `scoring.roc_summary`'s dict plus target,
    options, num_images, num_templates, num_pairs, num_genuine, num_impostor and the pair scores.
    """
    target = check_target(target)
    n = np.shape(emb)[0] if np.ndim(emb) == 2 else -1
    meta = load_ijb_meta(root, target, ("1:1",), n_images=n)
    return evaluate_ijb(meta, emb, emb_flip, use_flip, use_norm, use_detector_score, fars)["1:1"]
