"""Quality scores of whole evaluation sets, through the feature cache (facezoo.eval.features), so a rerun or a
second evaluation scores nothing again; and what evaluation does with them (template qualities, pooling weights).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .base import QualityMethod


class _AsEmbedder:
    """A quality method seen by extract_features as a 1-d embedder: (b, H, W, 3) uint8 -> (b, 1) qualities."""

    def __init__(self, method: QualityMethod):
        self.method = method
        self.fingerprint = method.fingerprint
        self.input_size = tuple(method.input_size)

    def __call__(self, images) -> np.ndarray:
        return self.method.score(images)[:, None]


def set_qualities(
    method: QualityMethod,
    key: str | None,
    n: int,
    load: Callable[[int, int], np.ndarray],
    *,
    cache_dir=None,
    batch_size: int = 256,
    progress: bool = False,
    desc: str | None = None,
    log=None,
) -> np.ndarray:
    """(n,) qualities of images load(a, b) (uint8 (b - a, H, W, 3) RGB crops), cached under `key` (naming the
    images and their preprocessing; None or cache_dir None: not cached). float32 precision when cached."""
    from ..eval.features import extract_features

    e, _ = extract_features(
        _AsEmbedder(method),
        f"quality:{key}",
        n,
        load,
        flip=False,
        batch_size=batch_size,
        cache_dir=cache_dir if key is not None else None,
        progress=progress,
        desc=desc,
        log=log,
    )
    return e[:, 0].astype(np.float64) if n else np.zeros(0)


def ijb_qualities(
    method: QualityMethod, root, target: str, *, cache_dir=None, batch_size: int = 256, progress: bool = False, log=None
) -> np.ndarray:
    """(N,) qualities of the IJB images (aligned with the release's 5 points at the method's input size), in the
    order of <target>_name_5pts_score.txt, through the feature cache."""
    from ..eval.ijb_images import embed_ijb_images

    e, _ = embed_ijb_images(
        _AsEmbedder(method), root, target, batch_size, cache_dir=cache_dir, progress=progress, log=log, flip=False
    )
    return e[:, 0]


def group_means(values: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean of values per group, sorted unique group ids)."""
    ids, inv = np.unique(np.asarray(groups).reshape(-1), return_inverse=True)
    sums = np.bincount(inv, weights=np.asarray(values, np.float64), minlength=ids.size)
    return sums / np.bincount(inv, minlength=ids.size), ids


def rank_weights(q: np.ndarray) -> np.ndarray:
    """Pooling weights from qualities: w_i = rank(q_i) / N in (0, 1] (ranks from 1, ties share their mean rank), so
    the worst image of the set weighs least and the weights do not depend on the method's scale."""
    q = np.asarray(q, np.float64).reshape(-1)
    order = np.argsort(q, kind="stable")
    ranks = np.empty(q.size)
    ranks[order] = np.arange(1, q.size + 1)
    uniq, inv = np.unique(q, return_inverse=True)
    if uniq.size < q.size:  # average the ranks within ties
        ranks = (np.bincount(inv, weights=ranks) / np.bincount(inv))[inv]
    return ranks / max(q.size, 1)
