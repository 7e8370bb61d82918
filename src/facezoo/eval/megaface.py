"""MegaFace challenge 1 scoring from features: devkit feature files, the cleaned ("refined") noise dimension,
identification (CMC / rank-1 per distractor count) and verification (TAR at FAR = 1e-6).

Protocol (MegaFace devkit, as used by InsightFace / FaceX-Zoo): probes are FaceScrub images. For every ordered
pair (p, g) of distinct probe images of one identity, the gallery is {g} + the first n distractors; the rank of
g is 1 + #{distractors d : s(p, d) > s(p, g)} (ties go to g). CMC(r) = fraction of pairs with rank <= r.
Verification: genuine pairs are unordered probe-probe pairs of one identity, impostor pairs are all
probe x distractor pairs; TAR at FAR f uses the strict threshold t = (k+1)-th largest impostor score,
k = floor(f * n_impostors), by `facezoo.eval.scoring.tar_at_far` (n/a when f < 1/n_impostors).

Scores: `metric="cosine"` (default) is <p/|p|, d/|d|>; `metric="l2"` is -||p - d||^2 on the raw features, the
devkit's distance, which keeps the 100 put into the extra slot of noisy distractors at full strength.
Everything runs blockwise over the (ordered) distractors with torch on `device`: per probe only the top
max(ranks) distractor scores are kept (identification) and only the top k+1 impostor scores overall
(verification), so 1,000,000 distractors x 3,530 probes run in bounded memory. Prefix sizes
(`sizes=(10, 100, ..., 1_000_000)`) are evaluated in the same pass by snapshotting at each boundary.
`evaluate` runs both protocols in that one pass; `search="faiss"` swaps the blockwise torch scoring for exact
faiss flat-index search (CPU). MegaFace-mask: `gallery_feats` are the unmasked features put into the gallery as g
while the (masked) probe_feats are the queries. Lists, images and feature folders: `megaface_data`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..far import check_far, far_rank
from ..io import atomic_write
from ..progress import bar
from .scoring import check_finite_embeddings, tar_at_far

METRICS = ("cosine", "l2")
DEVKIT_SIZES = (10, 100, 1_000, 10_000, 100_000, 1_000_000)
NOISE_FILL = 100.0  # extra-slot value InsightFace's remove_noises gives MegaFace noise distractors
NOISE_JITTER = 1e-3  # uniform(-j, j) added to an identity centre for each FaceScrub noise image
_HEADER = struct.Struct("<4i")  # rows, cols, element size in bytes, OpenCV type
_CV_32F = 5
_BLOCK_BYTES = 256 * 2**20  # score-block budget when `block` is not given


# ----------------------------------------------------------------------------------------------------------
# devkit feature files
def read_feature(path) -> np.ndarray:
    """One devkit feature file -> float32 vector of rows * cols values.

    Layout (OpenCV Mat dump, little-endian): int32 rows, int32 cols, int32 element size (4), int32 type
    (5 = CV_32F), then rows * cols float32. InsightFace writes rows = dim, cols = 1.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read MegaFace feature file ({e.strerror}). Check the path.") from e
    if len(data) < _HEADER.size:
        raise DataError(f"{path}: {len(data)} bytes, shorter than the 16-byte feature header. Re-extract it.")
    rows, cols, elem, cvtype = _HEADER.unpack_from(data)
    if rows < 1 or cols < 1 or elem != 4 or cvtype != _CV_32F:
        raise DataError(
            f"{path}: header (rows={rows}, cols={cols}, elem_size={elem}, type={cvtype}) is not a float32 "
            f"devkit feature (expected rows, cols >= 1, elem_size=4, type={_CV_32F}). Re-extract it."
        )
    expected = _HEADER.size + 4 * rows * cols
    if len(data) != expected:
        raise DataError(
            f"{path}: {len(data)} bytes but the header (rows={rows}, cols={cols}) needs {expected}; the file is "
            "truncated or padded. Re-extract it."
        )
    return np.frombuffer(data, dtype="<f4", offset=_HEADER.size).astype(np.float32)


def write_feature(path, vec) -> None:
    """Write a 1-D vector as a devkit feature file (header rows=dim, 1, 4, 5; float32 values), atomically."""
    v = np.asarray(vec, dtype=np.float32)
    if v.ndim != 1 or v.size == 0:
        raise DataError(f"{path}: a MegaFace feature must be a non-empty 1-D vector, got shape {v.shape}.")
    with atomic_write(path) as f:
        f.write(_HEADER.pack(v.size, 1, 4, _CV_32F))
        f.write(v.astype("<f4").tobytes())


def read_features(paths: Sequence) -> np.ndarray:
    """Devkit feature files -> (n, dim) float32, all of one dim (DataError naming the first odd file)."""
    feats = [read_feature(p) for p in paths]
    if not feats:
        return np.zeros((0, 0), dtype=np.float32)
    dim = feats[0].size
    for p, f in zip(paths, feats):
        if f.size != dim:
            raise DataError(f"{p}: {f.size}-d feature but {paths[0]} is {dim}-d. Use features from one model.")
    return np.stack(feats)


# ----------------------------------------------------------------------------------------------------------
# cleaned protocol
def add_noise_dimension(
    probe_feats,
    probe_ids,
    probe_is_noise,
    distractor_feats,
    distractor_is_noise,
    *,
    seed: int = 0,
    jitter: float = NOISE_JITTER,
) -> tuple[np.ndarray, np.ndarray]:
    """Append InsightFace's extra "noise" dimension (remove_noises.py) -> (probes, distractors), dim + 1.

    Clean images: [f, 0]. A FaceScrub noise image of identity i becomes (c_i + u) / ||c_i + u|| where
    c_i = sum of [f, 0] over the clean images of i (the direction of their mean) and u ~ U(-jitter, jitter) on
    the first dim entries (0 in the extra one). A MegaFace noise distractor becomes [f, 100], which pushes it
    out of every neighbourhood under the devkit's L2 distance.
    """
    probes = _as_matrix(probe_feats, "probe_feats")
    dist = _as_matrix(distractor_feats, "distractor_feats")
    ids = np.asarray(probe_ids)
    p_noise = np.asarray(probe_is_noise, dtype=bool)
    d_noise = np.asarray(distractor_is_noise, dtype=bool)
    _check_len(ids, probes, "probe_ids", "probe_feats")
    _check_len(p_noise, probes, "probe_is_noise", "probe_feats")
    _check_len(d_noise, dist, "distractor_is_noise", "distractor_feats")
    if dist.shape[0] and dist.shape[1] != probes.shape[1]:
        raise DataError(f"distractor_feats are {dist.shape[1]}-d but probe_feats are {probes.shape[1]}-d.")
    dim = probes.shape[1]
    out_p = np.zeros((probes.shape[0], dim + 1), dtype=np.float32)
    out_p[:, :dim] = probes
    rng = np.random.default_rng(seed)
    for i in np.where(p_noise)[0]:
        clean = (ids == ids[i]) & ~p_noise
        if not clean.any():
            raise DataError(
                f"probe {i} (identity {ids[i]!r}) is listed as noise but its identity has no clean image to "
                "take a centre from. Check the FaceScrub noise list against the probe list."
            )
        f = probes[clean].astype(np.float64).sum(0) + rng.uniform(-jitter, jitter, dim)
        out_p[i, :dim] = f / np.linalg.norm(f)
        out_p[i, dim] = 0.0
    out_d = np.zeros((dist.shape[0], dim + 1), dtype=np.float32)
    out_d[:, :dim] = dist
    out_d[d_noise, dim] = NOISE_FILL
    return out_p, out_d


# ----------------------------------------------------------------------------------------------------------
# identification and verification
def identification(
    probe_feats,
    probe_ids,
    distractor_feats,
    ranks: Sequence[int] = (1, 5, 10),
    *,
    sizes: Sequence[int] | None = None,
    metric: str = "cosine",
    device=None,
    block: int | None = None,
    search: str = "torch",
    gallery_feats=None,
) -> dict[int, dict[str, float]]:
    """MegaFace challenge 1 identification -> {n_distractors: {"rank1": .., "rank5": .., ..., "pairs": P}}.

    CMC(r) over all ordered genuine probe pairs (p, g), gallery {g} + the first n distractors (see module doc).
    `sizes` are prefix lengths of the ordered distractors (default: all of them); `block` is the number of
    distractors scored at once (default: a ~256 MiB score block). gallery_feats (MegaFace-mask): the features put
    into the gallery for g (unmasked), while probe_feats (masked) are the queries; default probe_feats.
    """
    return evaluate(
        probe_feats,
        probe_ids,
        distractor_feats,
        ranks=ranks,
        far=None,
        sizes=sizes,
        metric=metric,
        device=device,
        block=block,
        search=search,
        gallery_feats=gallery_feats,
    )["identification"]


def verification(
    probe_feats,
    probe_ids,
    distractor_feats,
    far: float = 1e-6,
    *,
    sizes: Sequence[int] | None = None,
    metric: str = "cosine",
    device=None,
    block: int | None = None,
    search: str = "torch",
    gallery_feats=None,
) -> dict[int, dict[str, float]]:
    """TAR at FAR -> {n_distractors: {"tar", "far", "threshold", "genuine", "impostors"}}.

    Genuine: unordered probe pairs of one identity (with gallery_feats: ordered pairs (masked p, unmasked g),
    p != g). Impostors: all probe x distractor pairs (first n).
    k = floor(far * n_impostors); t = (k+1)-th largest impostor score (-inf if k >= n_impostors); accept iff
    s > t. Only the running top k+1 impostor scores are kept. "far" is the achieved FAR (<= far, lower on ties).
    """
    return evaluate(
        probe_feats,
        probe_ids,
        distractor_feats,
        ranks=None,
        far=far,
        sizes=sizes,
        metric=metric,
        device=device,
        block=block,
        search=search,
        gallery_feats=gallery_feats,
    )["verification"]


SEARCHES = ("torch", "faiss")


def evaluate(
    probe_feats,
    probe_ids,
    distractor_feats,
    *,
    ranks: Sequence[int] | None = (1, 5, 10),
    far: float | None = 1e-6,
    sizes: Sequence[int] | None = None,
    metric: str = "cosine",
    device=None,
    block: int | None = None,
    search: str = "torch",
    gallery_feats=None,
    progress: bool = False,
) -> dict[str, dict[int, dict[str, float]]]:
    """Identification (ranks) and verification (far) in one pass over the distractors ->
    {"identification": {size: ...}, "verification": {size: ...}} (a part is left out when its argument is None).
    progress: a bar over the distractors scored (stderr, when it is a terminal).

    search="torch": blockwise exact scores on `device`, keeping the top max(ranks) per probe and the top k+1
    overall. search="faiss": exact search with a faiss IndexFlatIP (cosine) / IndexFlatL2 (l2, score = -d^2)
    grown to each size in turn; per probe the top max(max(ranks), k+1) scores, whose union holds the global
    top k+1.
    """
    if search not in SEARCHES:
        raise ConfigError(f"search={search!r}: choose one of {SEARCHES}.")
    if far is not None:
        far = check_far(far)
    rs = _check_ranks(ranks) if ranks is not None else []
    dev, probes, dist, sizes, codes = _setup(probe_feats, probe_ids, distractor_feats, metric, device, sizes)
    gallery = probes
    if gallery_feats is not None:
        g = _as_matrix(gallery_feats, "gallery_feats")
        if g.shape != tuple(probes.shape):
            raise DataError(
                f"gallery_feats has shape {g.shape} but probe_feats has {tuple(probes.shape)}; give one "
                "unmasked feature per probe image."
            )
        gallery = _prepare(torch.as_tensor(g, dtype=torch.float32).to(dev), metric)
    masked = gallery_feats is not None
    id_pairs = ver_pairs = None
    if rs:
        id_pairs = [t.to(dev) for t in _genuine_pairs(codes, ordered=True)]
        if id_pairs[0].numel() == 0:
            raise DataError("no identity has two probe images, so there is no (probe, gallery) pair to rank.")
    if far is not None:
        ver_pairs = [t.to(dev) for t in _genuine_pairs(codes, ordered=masked)]
        if ver_pairs[0].numel() == 0:
            raise DataError("no identity has two probe images, so there is no genuine pair to verify.")
    n_probes = probes.shape[0]
    keep = far_rank(far, n_probes * sizes[-1]) + 1 if far is not None else 0
    top_r = rs[-1] if rs else 0
    out: dict[str, dict] = {}
    if rs:
        out["identification"] = {}
        genuine_id = _score_pairs(probes, gallery, *id_pairs, metric)
    if far is not None:
        out["verification"] = {}
        genuine_ver = _score_pairs(probes, gallery, *ver_pairs, metric)
    tops = _faiss_tops if search == "faiss" else _torch_tops
    with bar(sizes[-1], f"MegaFace {search} search", "distractor", progress) as pbar:
        for b, per_probe, overall in tops(probes, dist, sizes, metric, block, dev, top_r, keep, pbar):
            if rs:
                pi = id_pairs[0]
                above = (per_probe[pi] > genuine_id[:, None]).sum(1)  # distractors beating g, capped at top_r
                counts = torch.stack([(above < r).sum() for r in rs]).cpu().tolist()
                n = float(pi.numel())
                out["identification"][b] = {f"rank{r}": c / n for r, c in zip(rs, counts)} | {"pairs": int(n)}
            if far is not None:
                out["verification"][b] = _tar(genuine_ver, overall, far, n_probes * b)
    return out


def _torch_tops(probes, dist, sizes, metric, block, dev, top_r, keep, pbar):
    """Yield (size, per-probe top top_r scores (P, <=top_r), overall top keep scores) at each size boundary."""
    per_probe = torch.full((probes.shape[0], top_r), -math.inf, device=dev)
    overall = torch.empty(0, device=dev)
    for a, b, scores in _score_blocks(probes, dist, sizes, metric, block, dev):
        pbar.update(b - a)
        # the overall top `keep` lies within the per-row top `keep`: one row-wise top-k serves both parts, and
        # avoids a slow top-k over the flattened block
        k_row = min(max(top_r, keep), scores.shape[1])
        row = (
            torch.topk(scores, k_row, dim=1, sorted=True).values
            if k_row < scores.shape[1]
            else torch.sort(scores, dim=1, descending=True).values
        )
        if top_r:
            cand = torch.cat([per_probe, row[:, :top_r]], dim=1)
            per_probe = torch.topk(cand, min(top_r, cand.shape[1]), dim=1, sorted=False).values
        if keep:
            flat = torch.cat([overall, row[:, :keep].reshape(-1)])
            overall = torch.topk(flat, min(keep, flat.numel()), sorted=False).values
        if b in sizes:
            yield b, per_probe, overall


def _faiss_tops(probes, dist, sizes, metric, block, dev, top_r, keep, pbar):
    """As _torch_tops, with exact faiss search (CPU) over the first `size` distractors for each size."""
    try:
        import faiss
    except ImportError:
        raise ConfigError(
            "--search faiss (search='faiss') needs the faiss package: pip install faiss-cpu (or --search torch)."
        ) from None
    q = np.ascontiguousarray(probes.detach().cpu().numpy(), dtype=np.float32)
    index = faiss.IndexFlatIP(q.shape[1]) if metric == "cosine" else faiss.IndexFlatL2(q.shape[1])
    step = int(block) if block else 1 << 16
    added = 0
    for s in sizes:
        for a in range(added, s, step):
            b = min(a + step, s)
            chunk = dist[a:b]
            chunk = (
                chunk.detach().cpu()
                if isinstance(chunk, torch.Tensor)
                else torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))
            )
            index.add(np.ascontiguousarray(_prepare(chunk.float(), metric).numpy(), dtype=np.float32))
            pbar.update(b - a)
        added = s
        k = min(max(top_r, keep), s)
        d, _ = index.search(q, k)
        scores = torch.from_numpy(d if metric == "cosine" else -d).to(dev)
        per_probe = scores[:, : min(top_r, k)]
        overall = torch.topk(scores.reshape(-1), min(keep, scores.numel()), sorted=False).values if keep else None
        yield s, per_probe, overall


def _tar(genuine: torch.Tensor, top: torch.Tensor, far: float, n_imp: int) -> dict:
    """`scoring.tar_at_far` from the genuine scores and the top impostor scores of n_imp, plus the counts."""
    r = tar_at_far(genuine.double().cpu().numpy(), top.double().cpu().numpy(), far, n_imp)
    return r | {"genuine": int(genuine.numel()), "impostors": int(n_imp)}


# ----------------------------------------------------------------------------------------------------------
# shared helpers
def _as_matrix(x, name: str) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim != 2:
        raise DataError(f"{name}: expected a (n, dim) feature matrix, got shape {a.shape}.")
    check_finite_embeddings([a], name)
    return a


def _check_len(a: np.ndarray, feats: np.ndarray, name: str, feats_name: str) -> None:
    if a.shape != (feats.shape[0],):
        raise DataError(f"{name} has shape {a.shape} but {feats_name} has {feats.shape[0]} rows; give one per row.")


def _check_ranks(ranks: Sequence[int]) -> list[int]:
    rs = sorted({int(r) for r in ranks} | {1})
    if rs[0] < 1:
        raise ConfigError(f"ranks={list(ranks)}: ranks start at 1 (rank 1 = nearest), e.g. (1, 5, 10).")
    return rs


def _setup(probe_feats, probe_ids, distractor_feats, metric, device, sizes):
    """Device, prepared probes on it, the distractors (host), checked prefix sizes and identity codes."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    probes, ids, dist = _inputs(probe_feats, probe_ids, distractor_feats, metric, dev)
    sizes = _check_sizes(sizes, dist.shape[0])
    return dev, probes, dist, sizes, ids


def _check_sizes(sizes: Sequence[int] | None, n: int) -> list[int]:
    if n == 0:
        raise DataError("distractor_feats is empty; MegaFace needs at least one distractor.")
    out = sorted({int(s) for s in sizes}) if sizes is not None else [n]
    if not out or out[0] < 1 or out[-1] > n:
        raise ConfigError(
            f"sizes={list(sizes or [])}: each distractor count must be within [1, {n}] (the distractors given); "
            f"e.g. sizes={[s for s in DEVKIT_SIZES if s <= n]}."
        )
    return out


def _inputs(probe_feats, probe_ids, distractor_feats, metric: str, dev: torch.device):
    """Probes as a prepared tensor on dev, identity codes (tensor), distractors as a (host) matrix."""
    if metric not in METRICS:
        raise ConfigError(f"metric={metric!r}: choose one of {METRICS}.")
    probes = _as_matrix(probe_feats, "probe_feats")
    dist = distractor_feats if isinstance(distractor_feats, torch.Tensor) else np.asarray(distractor_feats)
    if dist.ndim != 2:
        raise DataError(f"distractor_feats: expected a (n, dim) feature matrix, got shape {tuple(dist.shape)}.")
    if dist.shape[1] != probes.shape[1]:
        raise DataError(f"distractor_feats are {dist.shape[1]}-d but probe_feats are {probes.shape[1]}-d.")
    check_finite_embeddings([dist], "distractor_feats")
    ids = np.asarray(probe_ids)
    _check_len(ids, probes, "probe_ids", "probe_feats")
    codes = torch.from_numpy(np.unique(ids, return_inverse=True)[1].reshape(-1).astype(np.int64))
    return (
        _prepare(torch.as_tensor(probes, dtype=torch.float32).to(dev), metric),
        codes,
        dist,
    )


def _prepare(x: torch.Tensor, metric: str) -> torch.Tensor:
    """Rows L2-normalised for cosine (zero rows stay zero); raw for l2."""
    if metric == "cosine":
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return x


def _scores(p: torch.Tensor, d: torch.Tensor, metric: str) -> torch.Tensor:
    """(P, B) similarity: cosine p.d, or -||p - d||^2 = 2 p.d - |p|^2 - |d|^2."""
    s = p @ d.T
    if metric == "l2":
        s = 2 * s - (p * p).sum(1, keepdim=True) - (d * d).sum(1)[None, :]
    return s


def _score_pairs(x: torch.Tensor, y: torch.Tensor, i: torch.Tensor, j: torch.Tensor, metric: str) -> torch.Tensor:
    """Scores of the row pairs (x[i], y[j]) with the same arithmetic as `_scores`."""
    out = torch.empty(i.numel(), device=x.device)
    step = 1 << 16
    for a in range(0, i.numel(), step):
        u, v = x[i[a : a + step]], y[j[a : a + step]]
        s = (u * v).sum(1)
        if metric == "l2":
            s = 2 * s - (u * u).sum(1) - (v * v).sum(1)
        out[a : a + step] = s
    return out


def _genuine_pairs(codes: torch.Tensor, ordered: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Index pairs (i, j), i != j, of one identity: all ordered pairs, or i < j."""
    order = torch.argsort(codes, stable=True)
    counts = torch.bincount(codes).tolist()
    firsts, seconds, start = [], [], 0
    for c in counts:
        members = order[start : start + c]
        start += c
        if c < 2:
            continue
        a, b = torch.meshgrid(members, members, indexing="ij")
        keep = a != b if ordered else a < b
        firsts.append(a[keep])
        seconds.append(b[keep])
    if not firsts:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return torch.cat(firsts), torch.cat(seconds)


def _blocks(sizes: list[int], block: int) -> Iterator[tuple[int, int]]:
    """[a, b) distractor ranges of at most `block` rows that also end at every size boundary."""
    a = 0
    for s in sizes:
        while a < s:
            b = min(a + block, s)
            yield a, b
            a = b


def _score_blocks(probes: torch.Tensor, dist, sizes: list[int], metric: str, block: int | None, dev):
    """Yield (a, b, scores (P, b - a)) over the first max(sizes) distractors, in order."""
    if block is None:
        block = max(1, _BLOCK_BYTES // (4 * max(1, probes.shape[0])))
    if block < 1:
        raise ConfigError(f"block={block}: the number of distractors scored at once must be >= 1.")
    for a, b in _blocks(sizes, int(block)):
        chunk = dist[a:b]
        if not isinstance(chunk, torch.Tensor):
            chunk = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))
        chunk = _prepare(chunk.to(dev, dtype=torch.float32, non_blocking=True), metric)
        yield a, b, _scores(probes, chunk, metric)
