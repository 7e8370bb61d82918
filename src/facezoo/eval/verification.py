"""Embed a verification pair set (.bin or arrays) with any embedder and score it with `verification_metrics`.

Pairs are consecutive images: (images[0], images[1]), (images[2], images[3]), ... as in InsightFace's .bin files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..progress import bar
from .features import embed_chunk, extract_features, file_key
from .metrics import TAR_FARS, verification_metrics
from .scoring import check_finite_embeddings

Embed = Callable[[torch.Tensor], torch.Tensor]


def embed_views(
    embed: Embed, images: np.ndarray, batch_size: int = 256, device=None, flip: bool = True
) -> list[np.ndarray]:
    """Raw embeddings of each view: [e] or, with flip, [e, e_flip] (horizontal flip, along W); float64 (N, D).

    images: uint8 (N, H, W, 3) RGB. Batches travel to the device as uint8 and the outputs come back in one copy.
    """
    return [v.astype(np.float64) for v in embed_chunk(embed, images, batch_size, device, flip)]


def _cached_views(embed, images: np.ndarray, key: str | None, batch_size, device, flip, cache_dir, progress, desc):
    """embed_views, through the feature cache (facezoo.eval.features) when cache_dir and key are given; with a
    progress bar either way."""
    if cache_dir is None or key is None:
        with bar(len(images), f"embedding {desc or 'pairs'}", "img", progress) as pbar:
            return [v.astype(np.float64) for v in embed_chunk(embed, images, batch_size, device, flip, pbar)]
    e, e_flip = extract_features(
        embed,
        key,
        len(images),
        lambda a, b: images[a:b],
        flip=flip,
        batch_size=batch_size,
        device=device,
        cache_dir=cache_dir,
        progress=progress,
        desc=desc,
    )
    return [v.astype(np.float64) for v in ((e, e_flip) if flip else (e,))]


def embed_images(
    embed: Embed, images_uint8: np.ndarray, batch_size: int = 256, device=None, flip: bool = True
) -> np.ndarray:
    """Per-image embeddings (N, D) float64: e(x) + e(flip_W(x)) with flip, else e(x); not normalised."""
    views = embed_views(embed, images_uint8, batch_size, device, flip)
    return views[0] + views[1] if flip else views[0]


def evaluate_pairs(
    embed: Embed,
    images: np.ndarray,
    issame,
    batch_size: int = 256,
    device=None,
    nfolds: int = 10,
    metric: str = "euclidean",
    flip: bool = True,
    cache_dir=None,
    cache_key: str | None = None,
    tar_fars=TAR_FARS,
    progress: bool = False,
    desc: str | None = None,
) -> dict:
    """verification_metrics of pairs (images[2i], images[2i+1]) plus xnorm and pairs.

    xnorm is InsightFace's: the mean L2 norm of every raw per-view embedding (each image and each flip).
    With cache_dir and cache_key (naming the images and their preprocessing) embeddings go through the cache.
    progress: a bar over the images embedded (stderr, when it is a terminal), titled desc.
    """
    issame = np.asarray(issame, dtype=bool)
    what = desc or "the pair set"
    if len(images) != 2 * len(issame):
        raise DataError(f"{len(images)} images for {len(issame)} pairs; a pair set needs exactly 2 images per pair")
    if len(images) == 0:
        raise DataError("the pair set is empty; a verification set needs at least one pair")
    if issame.all() or not issame.any():
        kind = "genuine (same person)" if issame.all() else "impostor (different people)"
        raise DataError(
            f"{what}: all {len(issame)} pairs are {kind}; verification accuracy needs both genuine and impostor "
            "pairs. Check the set's issame labels (a one-kind set can still calibrate thresholds: facezoo calibrate)."
        )
    views = _cached_views(embed, images, cache_key, batch_size, device, flip, cache_dir, progress, desc)
    check_finite_embeddings(views, what)
    emb = views[0] + views[1] if flip else views[0]
    norms = np.concatenate([np.linalg.norm(v, axis=1) for v in views])
    result = verification_metrics(
        emb[0::2], emb[1::2], issame, nfolds=nfolds, metric=metric, norms=norms, tar_fars=tuple(tar_fars)
    )
    result["pairs"] = len(issame)
    return result


def evaluate_bin(
    embed: Embed,
    bin_path,
    input_size: tuple[int, int] = (112, 112),
    batch_size: int = 256,
    device=None,
    nfolds: int = 10,
    metric: str = "euclidean",
    images=None,
) -> dict:
    """Evaluate an InsightFace .bin pair set; adds name (the file stem) to evaluate_pairs' result.

    images: an already loaded (images, issame) for this file and input size, to share one load between models.
    """
    if images is None:
        from ..data.verification_bin import load_bin_images

        images = load_bin_images(bin_path, image_size=tuple(input_size))
    imgs, issame = images
    result = evaluate_pairs(embed, imgs, issame, batch_size=batch_size, device=device, nfolds=nfolds, metric=metric)
    result["name"] = Path(bin_path).stem
    return result


def evaluate_sets(
    models: dict[str, Embed],
    sets: dict[str, Callable[[tuple[int, int]], tuple[np.ndarray, np.ndarray]]],
    batch_size: int = 256,
    device=None,
    nfolds: int = 10,
    metric: str = "euclidean",
    log: Callable[[str], None] | None = None,
    cache_dir=None,
    tar_fars=TAR_FARS,
    progress: bool = False,
    decoded: dict | None = None,
) -> dict[str, dict[str, dict]]:
    """{model: {set name: result}}; `sets` maps a name to load(image_size) -> (uint8 images, issame).

    Each set is loaded once per distinct model input size (a model's `input_size`, (112, 112) if it has none)
    and kept in `decoded` ({(set name, size): (images, issame)}; pass one dict to several calls to share the
    loads, e.g. one call per checkpoint). With cache_dir, sets whose load has a `cache_key` attribute (see `keyed`)
    are embedded through the feature cache (key + input size), so a rerun with the same model and files embeds
    nothing.
    """
    decoded = {} if decoded is None else decoded
    results: dict[str, dict[str, dict]] = {name: {} for name in models}
    for name, m in models.items():
        size = tuple(getattr(m, "input_size", (112, 112)))
        for set_name, load in sets.items():
            if (set_name, size) not in decoded:
                decoded[(set_name, size)] = load(size)
            images, issame = decoded[(set_name, size)]
            key = getattr(load, "cache_key", None)
            r = evaluate_pairs(
                m,
                images,
                issame,
                batch_size=batch_size,
                device=device,
                nfolds=nfolds,
                metric=metric,
                cache_dir=cache_dir,
                cache_key=None if key is None else f"{key}:{size[0]}x{size[1]}",
                tar_fars=tar_fars,
                progress=progress,
                desc=f"{name} {set_name}",
            )
            r["name"] = set_name
            results[name][set_name] = r
            if log is not None:
                log(
                    f"[{name}] {set_name}: accuracy {100 * r['accuracy']:.2f} +- {100 * r['accuracy_std']:.2f}"
                    f"  VAL@FAR={r['val_far_target']:g} {100 * r['val']:.2f}  XNorm {r['xnorm']:.3f}"
                )
    return results


def bin_sets(bin_paths) -> dict[str, Callable]:
    """{file stem: load(image_size)} for InsightFace .bin files, the `sets` evaluate_sets takes."""
    from ..data.verification_bin import load_bin_images

    return {
        Path(p).stem: keyed(lambda size, p=p: load_bin_images(p, image_size=size), f"bin:{_file_key(p)}")
        for p in bin_paths
    }


def keyed(load: Callable, key: str) -> Callable:
    """Attach a feature-cache key (naming the set's files) to a set loader for evaluate_sets."""
    load.cache_key = key
    return load


def _file_key(path) -> str | None:
    try:
        return file_key(path)
    except OSError:
        return str(path)  # load_bin_images reports the missing file


def evaluate_bins(models: dict[str, Embed], bin_paths, *args, **kwargs) -> dict[str, dict[str, dict]]:
    """evaluate_sets over InsightFace .bin files, each named by its file stem."""
    return evaluate_sets(models, bin_sets(bin_paths), *args, **kwargs)
