"""The one quality interface: `method.score(images)` -> (N,) float64, higher = better.

images: uint8 aligned face crops (N, H, W, 3) RGB (one (H, W, 3) crop is a batch of one), numpy or torch. Crops of
another size are resized (bilinear) to the method's `input_size` first, as the embedders resize. A score that is
not finite is a ModelError (a broken model never hands back a number that looks like a quality).

A method subclasses QualityMethod, implements `_score(batch)` (uint8 (b, H, W, 3) at input_size -> (b,)) and
`_content()` (what its numbers depend on, for the score cache), and registers itself in quality/methods.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..errors import ConfigError, ModelError


def as_crops(images, where: str = "quality") -> np.ndarray:
    """uint8 (N, H, W, 3) numpy from a numpy/torch batch or one crop; ModelError naming the shape otherwise."""
    x = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ModelError(f"{where}: expects uint8 (N, H, W, 3) RGB face crops, got {x.dtype} {tuple(x.shape)}.")
    return x


class QualityMethod:
    """Base of the registered quality methods (see the module doc). Attributes: name, input_size (H, W),
    batch_size (crops per `_score` call), fingerprint (sha256 hex of the method and what its numbers depend on)."""

    name = "quality"
    input_size: tuple[int, int] = (112, 112)
    batch_size: int = 64

    def _score(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _content(self) -> str:
        """Everything the scores depend on beyond the class (parameters, weights digest)."""
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        text = f"{type(self).__module__}.{type(self).__qualname__}\0{self._content()}\0{list(self.input_size)}"
        return hashlib.sha256(text.encode()).hexdigest()

    def describe(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    def score(self, images) -> np.ndarray:
        """(N,) float64 qualities of uint8 (N, H, W, 3) RGB aligned crops, higher = better."""
        from ..data.image import resize_image

        x = as_crops(images, self.name)
        if tuple(x.shape[1:3]) != tuple(self.input_size):
            x = np.stack([resize_image(np.ascontiguousarray(im), self.input_size) for im in x]) if len(x) else x
        if len(x) == 0:
            return np.zeros(0, np.float64)
        out = []
        for s in range(0, len(x), self.batch_size):
            batch = np.ascontiguousarray(x[s : s + self.batch_size])
            q = np.asarray(self._score(batch), np.float64).reshape(-1)
            if q.shape != (len(batch),):
                raise ModelError(f"{self.name}: returned {q.shape[0]} scores for {len(batch)} crops.")
            out.append(q)
        q = np.concatenate(out)
        if not np.isfinite(q).all():
            bad = int(np.flatnonzero(~np.isfinite(q))[0])
            raise ModelError(
                f"{self.describe()}: the quality of crop {bad} is {q[bad]} (not finite); the model's weights are "
                "broken or the crop is not an image it can score."
            )
        return q

    def score_faces(self, crops, embedder=None, embeddings=None) -> np.ndarray:
        """Qualities of crops whose `embeddings` by `embedder` are known (the SDK); by default just score(crops).
        A method computed from the embedding itself (magface_norm of the same model) reuses them."""
        return self.score(crops)


def check_batch_size(batch_size) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}.")
    return batch_size


def training_config(model) -> dict | None:
    """The resolved training config a facezoo .pt carries (read memory-mapped, without its weights), or None for
    anything else (ONNX files, model names, embedders, unreadable files: the loader reports those)."""
    from pathlib import Path

    import torch

    if not isinstance(model, (str, Path)) or Path(model).suffix.lower() not in (".pt", ".pth"):
        return None
    try:
        ckpt = torch.load(Path(model), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # load_model names the problem when it opens the file
        return None
    config = ckpt.get("config") if isinstance(ckpt, dict) else None
    return config if isinstance(config, dict) else None
