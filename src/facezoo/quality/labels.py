"""SDD-FIQA quality pseudo-labels (Ou et al., CVPR 2021) from a recognition model's features of a training set.

For image x of identity y with L2-normalised feature f_x:
  S^P(x)   = {<f_x, f_p>}: cosine similarities to k other images of y (all n_y - 1 of them, or k = max_positives
             drawn without replacement when the identity has more; the authors' code draws 24);
  S^N_j(x) = {<f_x, f_q>}: similarities to k images of other identities, drawn uniformly without replacement,
             j = 1..m (the authors' code: m = 12);
  Q(x)     = (1/m) sum_j W1(S^P(x), S^N_j(x)), W1 the 1-D Wasserstein distance of the two similarity samples
             (equal sizes: the mean absolute difference of the sorted samples; facezoo.quality.wasserstein).
A well-separated image (its identity's images alike, the others not) gets a large Q. W1 is unsigned, as in the
paper and the authors' code. An identity with one image has no S^P: its label is NaN (the regressor skips it);
k is also capped at the number of images of other identities.

Randomness comes from numpy's Generator seeded with (seed, identity label), so an identity's labels do not depend
on the chunking, the number of ranks or the order in which chunks are computed: an interrupted run resumed gives
the labels of an uninterrupted one, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..io import atomic_write
from .wasserstein import wasserstein_equal

FORMAT = 1
BLOCK_FLOATS = 1 << 24  # gathered feature values per block (64 MiB of float32)


def sdd_label(positive, negatives) -> float:
    """Q = (1/m) sum_j W1(positive, negatives[j]): positive (k,) similarities, negatives (m, k) (one set per row)."""
    pos = torch.as_tensor(np.asarray(positive, np.float64)).reshape(1, -1)
    neg = torch.as_tensor(np.asarray(negatives, np.float64))
    if neg.ndim != 2 or neg.shape[1] != pos.shape[1]:
        raise DataError(
            f"negatives must be (m, {pos.shape[1]}) sets of the positive set's size, got {tuple(neg.shape)}"
        )
    return float(wasserstein_equal(pos, neg).mean())


def draw_distinct(rng: np.random.Generator, population: int, shape: tuple[int, int]) -> np.ndarray:
    """(r, k) int64: each row k distinct values of range(population), uniformly. Rejection (redraw repeats) when k
    is small against the population, a random permutation's prefix otherwise."""
    r, k = shape
    if k > population:
        raise DataError(f"cannot draw {k} distinct values out of {population}")
    if r == 0 or k == 0:
        return np.zeros((r, k), np.int64)
    if 2 * k > population:
        return np.argsort(rng.random((r, population)), axis=1)[:, :k].astype(np.int64)
    x = rng.integers(0, population, (r, k))
    while True:
        order = np.argsort(x, axis=1, kind="stable")
        s = np.take_along_axis(x, order, 1)
        repeat_sorted = np.zeros_like(s, dtype=bool)
        repeat_sorted[:, 1:] = s[:, 1:] == s[:, :-1]
        if not repeat_sorted.any():
            return x
        repeat = np.zeros_like(repeat_sorted)
        np.put_along_axis(repeat, order, repeat_sorted, 1)
        x[repeat] = rng.integers(0, population, int(repeat.sum()))


class Identities:
    """The images of each identity: `order` (N,) sorts the images by label (stable); identity c holds positions
    starts[c] .. starts[c] + counts[c] of it; values[c] is its label."""

    def __init__(self, labels):
        labels = np.asarray(labels).reshape(-1)
        if labels.size == 0:
            raise DataError("the training set has no images")
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"identity labels must be integers, got {labels.dtype}")
        self.order = np.argsort(labels, kind="stable")
        self.values, self.counts = np.unique(labels, return_counts=True)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        self.n = labels.size

    def chunks(self, images: int) -> list[tuple[int, int]]:
        """Identity ranges [c0, c1) of about `images` images each (whole identities, at least one per chunk)."""
        out, c0, total = [], 0, 0
        for c, n in enumerate(self.counts.tolist()):
            if total and total + n > images:
                out.append((c0, c))
                c0, total = c, 0
            total += n
        out.append((c0, len(self.counts)))
        return out


def identity_labels(feats: torch.Tensor, ids: Identities, c: int, m: int, max_positives: int | None, seed: int):
    """(n_c,) float64 labels of identity c's images (in `ids.order` order); feats (N, D) L2-normalised, any device."""
    n, start = int(ids.counts[c]), int(ids.starts[c])
    if n < 2:
        return np.full(n, np.nan)
    others = ids.n - n
    k = min(n - 1, others) if max_positives is None else min(n - 1, max_positives, others)
    if k < 1:
        return np.full(n, np.nan)
    rng = np.random.default_rng([int(seed), int(ids.values[c])])
    if k == n - 1:
        local = np.broadcast_to(np.arange(n - 1), (n, n - 1)).copy()
    else:
        local = draw_distinct(rng, n - 1, (n, k))
    local += local >= np.arange(n)[:, None]  # skip the image itself
    members = ids.order[start : start + n]
    pos = members[local]
    r = draw_distinct(rng, others, (n * m, k)).reshape(n, m, k)
    neg = ids.order[r + n * (r >= start)]  # positions outside [start, start + n), uniformly
    out = np.empty(n)
    dev = feats.device
    step = max(1, BLOCK_FLOATS // max(1, (m + 1) * k * feats.shape[1]))
    for a in range(0, n, step):
        b = min(n, a + step)
        f = feats[torch.as_tensor(members[a:b], device=dev)]
        sp = torch.einsum("bd,bkd->bk", f, feats[torch.as_tensor(pos[a:b], device=dev)])
        sn = torch.einsum("bd,bmkd->bmk", f, feats[torch.as_tensor(neg[a:b], device=dev)])
        out[a:b] = wasserstein_equal(sp.unsqueeze(1), sn).mean(dim=1).double().cpu().numpy()
    return out


def _chunk_file(folder: Path, c0: int, c1: int) -> Path:
    return folder / f"labels_{c0:09d}_{c1:09d}.npy"


def _read_chunk(path: Path, size: int) -> np.ndarray | None:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return arr if arr.dtype == np.float64 and arr.shape == (size,) else None


def chunk_folder(work: Path, spec: dict) -> Path:
    """The folder of the chunk files for one set of parameters (`spec`: everything the labels depend on)."""
    text = json.dumps({"format": FORMAT, **spec}, sort_keys=True, default=str)
    return Path(work) / hashlib.sha256(text.encode()).hexdigest()[:16]


def labels_from_features(
    feats,
    labels,
    *,
    m: int = 12,
    max_positives: int | None = 24,
    seed: int = 0,
    device="cpu",
    folder=None,
    chunk_images: int = 65536,
    progress: bool = False,
    log=None,
) -> np.ndarray:
    """(N,) float64 pseudo-labels (module doc) of images with features feats (N, D) and identity labels (N,).

    folder: where finished chunks (whole identities, about chunk_images images each) are written atomically and
    found again on a rerun (resume); None keeps everything in memory. Under torchrun (an initialised process
    group) chunk i is computed by rank i mod W and every rank reads all of them after a barrier.
    """
    from ..progress import bar
    from ..train.distributed import world_from_env

    if not isinstance(m, int) or m < 1:
        raise ConfigError(f"m={m!r}: the number of negative sets must be a positive int (the authors use 12)")
    if max_positives is not None and (not isinstance(max_positives, int) or max_positives < 1):
        raise ConfigError(f"max_positives={max_positives!r}: a positive int, or None for every other image")
    if chunk_images < 1:
        raise ConfigError(f"chunk_images={chunk_images!r} must be >= 1")
    feats = np.asarray(feats)
    ids = Identities(labels)
    if feats.ndim != 2 or feats.shape[0] != ids.n:
        raise DataError(f"{feats.shape[0] if feats.ndim else 0} feature rows for {ids.n} labels: one row per image")
    if not np.isfinite(feats).all():
        raise DataError("the features hold NaN or inf: the recognition model is broken for these images")
    x = torch.as_tensor(feats, dtype=torch.float32)
    x = torch.nn.functional.normalize(x, dim=1).to(device)
    world = world_from_env()
    distributed = world.world_size > 1 and torch.distributed.is_initialized()
    if distributed and folder is None:
        raise ConfigError("torchrun ranks share the label chunks through a folder: give folder= (a shared path)")
    chunks = ids.chunks(chunk_images)
    out = np.full(ids.n, np.nan)
    if folder is not None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
    mine = [i for i in range(len(chunks)) if not distributed or i % world.world_size == world.rank]
    pending = []
    for i in mine:
        c0, c1 = chunks[i]
        a, b = int(ids.starts[c0]), int(ids.starts[c1 - 1] + ids.counts[c1 - 1])
        got = _read_chunk(_chunk_file(folder, c0, c1), b - a) if folder is not None else None
        if got is None:
            pending.append(i)
        else:
            out[ids.order[a:b]] = got
    if log is not None and folder is not None and len(pending) < len(mine):
        log(f"quality labels: {len(mine) - len(pending)} of {len(mine)} chunks found in {folder}")
    total = sum(int(ids.counts[chunks[i][0] : chunks[i][1]].sum()) for i in pending)
    with bar(total, "quality labels", "img", progress) as pbar:
        for i in pending:
            c0, c1 = chunks[i]
            vals = []
            for c in range(c0, c1):
                vals.append(identity_labels(x, ids, c, m, max_positives, seed))
                pbar.update(int(ids.counts[c]))
            vals = np.concatenate(vals)
            a = int(ids.starts[c0])
            out[ids.order[a : a + vals.size]] = vals
            if folder is not None:
                with atomic_write(_chunk_file(folder, c0, c1)) as f:
                    np.save(f, vals, allow_pickle=False)
    if distributed:
        torch.distributed.barrier()
        for i, (c0, c1) in enumerate(chunks):
            if i in mine:
                continue
            a, b = int(ids.starts[c0]), int(ids.starts[c1 - 1] + ids.counts[c1 - 1])
            path = _chunk_file(folder, c0, c1)
            got = _read_chunk(path, b - a)
            if got is None:
                raise DataError(
                    f"{path}: missing or damaged after every rank finished; is {folder} on a file system all ranks "
                    "share? Rerun to recompute it."
                )
            out[ids.order[a:b]] = got
    return out


# ------------------------------------------------------------------------------------------ a training set


def _dataset_key(path: Path, n: int) -> str:
    """Names the training set for the feature cache: its main file's path, size and mtime, and the image count."""
    from ..eval.features import file_key

    main = path / "train.rec" if (path / "train.rec").is_file() else path
    return f"quality-labels:{file_key(main)}:{n}"


def make_labels(
    data,
    model,
    out,
    *,
    m: int = 12,
    max_positives: int | None = 24,
    seed: int = 0,
    flip: bool = True,
    batch_size: int = 256,
    device="auto",
    cache_dir=None,
    chunk_images: int = 65536,
    keep_work: bool = False,
    progress: bool = True,
    log=None,
) -> np.ndarray | None:
    """SDD-FIQA pseudo-labels of training set `data` (RecordIO folder, image folder, list file) by recognition model
    `model` (anything facezoo.load_model takes), written to `out` (.npy, float64 (N,) in the dataset's order, NaN
    for identities with one image) and `out`.json (what made them). Returns the labels (None on ranks > 0).

    Resumable: features go through the feature cache (cache_dir, default `out`.parts/features) and label chunks
    into `out`.parts/ as they finish; a rerun reuses both, and the folder is removed after `out` is written unless
    keep_work. flip: features e(x) + e(flip(x)), as facezoo's evaluation embeds. Under torchrun every rank embeds and
    labels its share; `out`.parts must be on a file system all ranks share.
    """
    import shutil

    from .. import __version__
    from ..data.datasets import open_dataset
    from ..data.image import resize_image
    from ..device import resolve_device
    from ..eval.features import extract_features
    from ..models.loader import load_model
    from ..train.distributed import world_from_env

    data, out = Path(data), Path(out)
    if out.suffix != ".npy":
        raise ConfigError(f"--out {out}: the labels are a .npy file; name it e.g. labels.npy")
    dataset = open_dataset(data)
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise DataError(f"{data}: this dataset has no identity labels to compare images within and across")
    labels = np.asarray(labels)
    world = world_from_env()
    dev = resolve_device(str(device), world.local_rank if world.world_size > 1 else None)
    embedder = load_model(model, str(dev))
    size = tuple(embedder.input_size)
    work = Path(f"{out}.parts")
    cache = Path(cache_dir) if cache_dir is not None else work / "features"

    def load(a: int, b: int) -> np.ndarray:
        return np.stack([resize_image(dataset[i][0], size) for i in range(a, b)])

    e, e_flip = extract_features(
        embedder,
        f"{_dataset_key(data, len(dataset))}:{size[0]}x{size[1]}",
        len(dataset),
        load,
        flip=flip,
        batch_size=batch_size,
        cache_dir=cache,
        log=log,
        progress=progress,
        desc=f"{data.name} images",
    )
    feats = e + e_flip if flip else e
    spec = {
        "data": str(data.resolve()),
        "images": len(dataset),
        "labels_sha256": hashlib.sha256(np.ascontiguousarray(labels, np.int64).tobytes()).hexdigest(),
        "model": embedder.fingerprint,
        "flip": bool(flip),
        "m": m,
        "max_positives": max_positives,
        "seed": seed,
        "chunk_images": chunk_images,
    }
    q = labels_from_features(
        feats,
        labels,
        m=m,
        max_positives=max_positives,
        seed=seed,
        device=dev if dev.type == "cuda" else "cpu",
        folder=chunk_folder(work, spec),
        chunk_images=chunk_images,
        progress=progress,
        log=log,
    )
    if not world.is_main:
        return None
    with atomic_write(out) as f:
        np.save(f, q, allow_pickle=False)
    info = {**spec, "model_name": embedder.name, "model_key": embedder.key, "facezoo": __version__}
    info["labelled"] = int(np.isfinite(q).sum())
    with atomic_write(Path(f"{out}.json"), "w") as f:
        json.dump(info, f, indent=1)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    if log is not None:
        log(f"wrote {out}: {info['labelled']:,} of {q.size:,} images labelled (identities with one image: NaN)")
    return q
