"""Near-duplicate removal within an identity: perceptual hash or embedding similarity (DEDUP registry).

pHash (Zauner 2010): grey crop, box-resized to 32x32, 2-D DCT-II; the 8x8 lowest frequencies are compared with
their median, one bit each -> a 64-bit hash; two crops are duplicates when their Hamming distance is <= the
threshold. Default 8 bits: after MTCNN alignment, copies of one photo re-encoded at JPEG quality 50, halved or
re-cropped measured 2-8 bits apart (landmark jitter moves the crop), distinct photos typically 20-30 (distinct
synthetic renders of one identity: median 24, 5th percentile 10). Embedding: duplicates when the cosine of
L2-normalised embeddings is >= the threshold (default 0.95).

Greedy keep: photos are visited best first (more pixels, then more bytes, i.e. less compressed, then input order),
each kept unless it duplicates one already kept, so the best copy of a repeated photo survives.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ...registry import Registry

DEDUP: Registry = Registry("dedup method")


@DEDUP.register("phash")
class PHashDedup:
    """Duplicates: perceptual hashes within `threshold` bits (Hamming distance)."""

    default_threshold = 8
    exact = True  # byte-identical files are duplicates too

    def signatures(self, crops: list[np.ndarray], embeddings) -> list:
        return [phash(c) for c in crops]

    def compare(self, a, b, threshold: float) -> tuple[bool, str]:
        d = hamming(a, b)
        return d <= threshold, f"Hamming {d} bits"


@DEDUP.register("embedding")
class EmbeddingDedup:
    """Duplicates: L2-normalised embeddings with cosine >= `threshold`."""

    default_threshold = 0.95
    exact = True

    def signatures(self, crops: list[np.ndarray], embeddings) -> list:
        return list(embeddings)

    def compare(self, a, b, threshold: float) -> tuple[bool, str]:
        c = float(np.dot(a, b))
        return c >= threshold, f"cosine {c:.3f}"


@DEDUP.register("none")
class NoDedup:
    """Keep every image, byte-identical copies included."""

    default_threshold = 0
    exact = False

    def signatures(self, crops: list[np.ndarray], embeddings) -> list:
        return [None] * len(crops)

    def compare(self, a, b, threshold: float) -> tuple[bool, str]:
        return False, ""


@lru_cache(maxsize=4)
def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II: C[k, i] = s_k cos(pi (2i + 1) k / 2n), s_0 = sqrt(1/n), s_k = sqrt(2/n)."""
    k, i = np.mgrid[0:n, 0:n]
    c = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    c[0] /= np.sqrt(2.0)
    return c


def phash(image: np.ndarray, hash_size: int = 8, highfreq: int = 4) -> int:
    """64-bit perceptual hash of a uint8 (H, W, 3) image (bit k = row-major low-frequency DCT coefficient > median)."""
    from PIL import Image

    n = hash_size * highfreq
    grey = Image.fromarray(np.ascontiguousarray(image)).convert("L").resize((n, n), Image.BOX)
    c = _dct_matrix(n)
    low = (c @ np.asarray(grey, dtype=np.float64) @ c.T)[:hash_size, :hash_size].ravel()
    bits = low > np.median(low)
    return int(sum(1 << k for k in np.flatnonzero(bits).tolist()))


def hamming(a: int, b: int) -> int:
    return bin(int(a) ^ int(b)).count("1")


def deduplicate(quality: list[tuple], signatures: list, method, threshold: float) -> dict[int, tuple[int, str]]:
    """{duplicate index: (index of the kept one it repeats, distance text)}; higher `quality` tuples are kept first."""
    order = sorted(range(len(quality)), key=lambda i: (tuple(-q for q in quality[i]), i))
    kept: list[int] = []
    dups: dict[int, tuple[int, str]] = {}
    for i in order:
        for k in kept:
            same, text = method.compare(signatures[i], signatures[k], threshold)
            if same:
                dups[i] = (k, text)
                break
        else:
            kept.append(i)
    return dups


def load_embedder(model):
    """A model file -> facezoo.load_model(path); an already loaded model is returned as it is."""
    if model is None or (not isinstance(model, (str, bytes)) and not hasattr(model, "__fspath__")):
        return model
    from ... import load_model

    return load_model(model)


def embed(model, crops, batch: int = 64) -> np.ndarray:
    """L2-normalised float32 (N, D) embeddings of uint8 (H, W, 3) crops (a list or an array), each resized to the
    model's input size.

    `model` is a torch module taking a uint8 (B, H, W, 3) tensor (facezoo's Embedder) or any callable taking the
    numpy batch (an SDK Recognizer); both give (B, D).
    """
    import torch

    from ..image import resize_image

    size = tuple(getattr(model, "input_size", None) or crops[0].shape[:2])
    out = []
    for start in range(0, len(crops), batch):
        chunk = np.stack([resize_image(c, size) for c in crops[start : start + batch]])
        if isinstance(model, torch.nn.Module):
            with torch.inference_mode():
                device = next(model.parameters(), torch.zeros(0)).device
                e = model(torch.from_numpy(chunk).to(device)).float().cpu().numpy()
        else:
            e = np.asarray(model(chunk), dtype=np.float32)
        out.append(e)
    e = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
    if not np.isfinite(e).all():
        from ...errors import ModelError

        raise ModelError("the model gave NaN or infinite embeddings; check the checkpoint.")
    return (e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)).astype(np.float32)
