"""Drop identities that are people of a test set (train/test overlap), by embedding similarity.

For identity c with L2-normalised embeddings e_ci, its centre is m_c = normalise(mean_i e_ci). With the test
images' normalised embeddings t_j (every image of every given verification .bin), c overlaps when
max_j cos(m_c, t_j) >= threshold. The centre, not single photos, decides, so one mislabelled photo does not drop a
whole identity. The threshold is the model's: a same-person cosine (facezoo calibrate gives thresholds by FAR);
0.5 is a typical value for ArcFace-trained models.
"""

from __future__ import annotations

import numpy as np

from ..image import decode_image
from ..verification_bin import read_bin
from .dedup import embed


def test_embeddings(paths, model, batch: int = 256) -> tuple[np.ndarray, list[str]]:
    """(M, D) normalised embeddings of every image of the .bin files, and 'file#index' names for each."""
    chunks, names = [], []
    for path in paths:
        images, _ = read_bin(path)
        for start in range(0, len(images), batch):
            stop = min(start + batch, len(images))
            chunks.append(embed(model, [decode_image(images[i], f"{path}: image {i}") for i in range(start, stop)]))
        names.extend(f"{path}#{i}" for i in range(len(images)))
    return (np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)), names


def centre(embeddings: np.ndarray) -> np.ndarray:
    m = embeddings.mean(0)
    return m / max(float(np.linalg.norm(m)), 1e-12)


def overlaps(centres: np.ndarray, test: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(overlap mask (K,), best cosine (K,), index of the best test image (K,)) for centres (K, D) vs test (M, D)."""
    if len(test) == 0 or len(centres) == 0:
        k = len(centres)
        return np.zeros(k, bool), np.full(k, -1.0), np.zeros(k, np.int64)
    best = np.full(len(centres), -np.inf)
    arg = np.zeros(len(centres), np.int64)
    for start in range(0, len(test), 4096):  # bounded memory: K x 4096 similarities at a time
        sims = centres @ test[start : start + 4096].T
        j = sims.argmax(1)
        s = sims[np.arange(len(centres)), j]
        better = s > best
        best[better], arg[better] = s[better], j[better] + start
    return best >= threshold, best, arg
