"""Enrolment from images: a folder of people (root/<identity>/<image>) embedded batch by batch into a Gallery."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import ConfigError, DataError, FacezooError
from .vectors import as_matrix

if TYPE_CHECKING:
    from .store import Gallery

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif")


@dataclass
class EnrollResult:
    """What enroll_folder did: identities and images enrolled, and (path, message) for each image that failed."""

    identities: int = 0
    images: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


def _images(folder: Path, extensions: Iterable[str]) -> list[Path]:
    exts = {e.lower() for e in extensions}
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts
    )


def _embed_batch(
    embed_fn, paths: list[Path], errors: list[tuple[str, str]], min_quality: float | None = None
) -> tuple[list[Path], np.ndarray | None]:
    """embed_fn on a batch; if it raises a FacezooError/OSError, retry image by image to isolate the bad ones.

    Rows that are NaN/inf (embed_fn's way to say "no face") are reported as errors; with min_quality, embed_fn
    returns (embeddings, qualities) and rows of lower quality are reported too. Returns the good paths and rows.
    """
    try:
        out = embed_fn([str(p) for p in paths])
        quality = None
        if isinstance(out, tuple):
            out, quality = out
        emb = as_matrix(out, "embed_fn output")
    except (FacezooError, OSError) as e:
        if len(paths) == 1:
            errors.append((str(paths[0]), str(e)))
            return [], None
        good, rows = [], []
        for p in paths:
            g, r = _embed_batch(embed_fn, [p], errors, min_quality)
            good += g
            if r is not None:
                rows.append(r)
        return good, (np.concatenate(rows) if rows else None)
    if emb.shape[0] != len(paths):
        raise ConfigError(
            f"embed_fn returned {emb.shape[0]} embeddings for {len(paths)} images; it must return one per image."
        )
    ok = np.isfinite(emb).all(axis=1) & (np.abs(emb).sum(axis=1) > 0)
    for p in np.asarray(paths, dtype=object)[~ok]:
        errors.append((str(p), "no embedding (embed_fn returned NaN or zeros: no face found?)"))
    if min_quality is not None:
        if quality is None or np.shape(quality) != (len(paths),):
            raise ConfigError("min_quality needs embed_fn to return (embeddings, one quality per image).")
        quality = np.asarray(quality, np.float64)
        low = ok & ~(quality >= min_quality)
        for p, q in zip(np.asarray(paths, dtype=object)[low], quality[low]):
            errors.append((str(p), f"face quality {q:.4g} below min_quality {min_quality:g}; not enrolled"))
        ok &= ~low
    return [p for p, g in zip(paths, ok) if g], emb[ok]


def enroll_folder(
    gallery: Gallery,
    root,
    embed_fn: Callable[[list[str]], np.ndarray],
    batch_size: int = 32,
    replace: bool = False,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
    min_quality: float | None = None,
) -> EnrollResult:
    """Enroll root/<identity>/<image> files: embed_fn maps a list of image paths to (N, D) embeddings (with
    min_quality: to (embeddings, (N,) face qualities); images below min_quality are refused, listed in errors).

    Each identity is added in one transaction (replace=True swaps out its previous entries). Images that fail
    (embed_fn raises a FacezooError/OSError, or returns a NaN/zero row) are collected in the result's errors,
    not raised; an identity with no usable image is skipped with an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder. Pass a folder with one sub-folder of images per person.")
    result = EnrollResult()
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root}: no sub-folders. Put each person's images in root/<name>/.")
    for folder in folders:
        paths = _images(folder, extensions)
        good: list[Path] = []
        rows: list[np.ndarray] = []
        for start in range(0, len(paths), batch_size):
            g, r = _embed_batch(embed_fn, paths[start : start + batch_size], result.errors, min_quality)
            good += g
            if r is not None and len(r):
                rows.append(r)
        if not good:
            result.errors.append((str(folder), "no usable image; identity not enrolled"))
            continue
        result.images += gallery.add(
            folder.name,
            np.concatenate(rows),
            sources=[str(p) for p in good],
            replace=replace,
        )
        result.identities += 1
    return result
