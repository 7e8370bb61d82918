"""Writing synthetic sets: a training set (RecordIO) of identities x images, and two verification .bin files of
held-out identities (ordinary pairs, and hard frontal-vs-profile pairs with look-alike impostors).

Each image is a pure function of (seed, identity, index, size, kind), so output bytes do not depend on how many
processes render them.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np

from ...errors import ConfigError
from ...io import atomic_write
from ...progress import track
from ..pack import pack_encoded
from ..verification_bin import write_bin
from .face import (
    TAG_FRONTAL,
    TAG_HARD,
    TAG_IMAGE,
    TAG_PAIRS,
    IdentityParams,
    identity_rng,
    image_rng,
    sample_identity,
    sample_nuisance,
)
from .render import render, render_jpeg

GENERATOR_VERSION = 1


# --------------------------------------------------------------------------------------------- data set


@functools.lru_cache(maxsize=4096)
def _identity(seed: int, identity: int) -> IdentityParams:
    return sample_identity(identity_rng(seed, identity))


_MODES = {"normal": (TAG_IMAGE, "normal"), "frontal": (TAG_FRONTAL, "frontal"), "hard": (TAG_HARD, "hard")}


def _job(job: tuple) -> bytes:
    """(seed, identity, index, image_size, kind) -> JPEG bytes; a pure function of its argument."""
    seed, ident, index, size, kind = job
    tag, mode = _MODES[kind]
    rng = np.random.default_rng([seed, tag, ident, index])
    return render_jpeg(_identity(seed, ident), sample_nuisance(rng, 1.0, mode), size)


def _render_all(jobs: list, workers: int):
    """Yield _job results in job order, rendering in `workers` processes (1 = in this process)."""
    if workers <= 1 or len(jobs) < 2:
        yield from map(_job, jobs)
        return
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    chunk = max(1, min(256, len(jobs) // (workers * 8)))
    with ctx.Pool(workers) as pool:
        yield from pool.imap(_job, jobs, chunksize=chunk)


def _pairs(
    rng: np.random.Generator,
    first: int,
    n_ids: int,
    per_id: int,
    n_pairs: int,
    hard: bool,
    looks: np.ndarray | None = None,
):
    """n_pairs (key_a, key_b, issame), alternating same/different so every contiguous tenth is balanced.

    Hard sets pair a frontal image with a hard one, and (given `looks`, one row per identity) take each impostor
    as the most similar-looking of 4 random candidates, so skin and hair colour do not give the answer away.
    """
    kinds = ("frontal", "hard") if hard else ("normal", "normal")
    out, seen = [], set()
    for i in range(n_pairs):
        same = i % 2 == 0
        for _ in range(20):  # avoid repeating a pair when the pool allows
            a = int(rng.integers(n_ids))
            cand = (a + rng.integers(1, n_ids, 4 if hard and looks is not None else 1)) % n_ids
            if len(cand) > 1:
                cand = cand[np.argmin(((looks[cand] - looks[a]) ** 2).sum(1))]
            b = a if same else int(np.atleast_1d(cand)[0])
            ia, ib = (int(v) for v in rng.choice(per_id, 2, replace=hard or not same))
            key = (a, ia, b, ib)
            if key not in seen:
                break
        seen.add(key)
        out.append(((first + a, ia, kinds[0]), (first + b, ib, kinds[1]), same))
    return out


def _write_pairs(path: Path, pairs: list, seed: int, size: int, workers: int) -> None:
    keys = sorted({k for a, b, _ in pairs for k in (a, b)})
    jobs = [(seed, ident, idx, size, kind) for ident, idx, kind in keys]
    encoded = dict(zip(keys, track(_render_all(jobs, workers), len(jobs), f"synth {path.name}", "img")))
    images = [encoded[k] for a, b, _ in pairs for k in (a, b)]
    write_bin(path, images, [s for _, _, s in pairs])


def synthesize(
    out_dir,
    identities: int,
    images_per_identity: int,
    seed: int = 0,
    val_identities: int | None = None,
    image_size: int = 112,
    val_pairs: int = 3000,
    workers: int | None = None,
) -> dict:
    """Write a synthetic training set (RecordIO) and two verification sets of held-out identities.

    out_dir/train/: identities x images_per_identity images, labels 0..identities-1.
    out_dir/synth_ver.bin: pairs of held-out identities (indices identities.. identities+val_identities-1), half
    same, half different, val_pairs rounded down to a multiple of 20 and alternating so each tenth is balanced.
    out_dir/synth_hard.bin: as many pairs, each a near-frontal image against a 35-55 deg yaw one (occluded with
    probability 0.7), impostors chosen to look alike (skin, hair): the CFP-FP / CPLFW analogue.
    out_dir/synth.json: the parameters. Output bytes do not depend on `workers` (default os.cpu_count()).
    """
    val_identities = max(20, identities // 5) if val_identities is None else val_identities
    _check(
        identities=identities,
        images_per_identity=images_per_identity,
        val_identities=val_identities,
        image_size=image_size,
    )
    n_pairs = (int(val_pairs) // 20) * 20
    if val_pairs < 0 or 0 < val_pairs < 20:
        raise ConfigError(f"synthesize: val_pairs={val_pairs} must be 0 (no verification sets) or >= 20.")
    if n_pairs and val_identities < 2:
        raise ConfigError(f"synthesize: val_identities={val_identities} must be >= 2 to form different pairs.")
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    out, size, t0 = Path(out_dir), int(image_size), time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)

    jobs = [(seed, i, j, size, "normal") for i in range(identities) for j in range(images_per_identity)]
    labels = (job[1] for job in jobs)
    rendered = track(_render_all(jobs, workers), len(jobs), "synth train", "img")
    pack_encoded(zip(labels, rendered), out / "train", image_size=(size, size))
    t_train = time.perf_counter() - t0

    result = {
        "train": str(out / "train"),
        "identities": identities,
        "images_per_identity": images_per_identity,
        "train_images": len(jobs),
        "val_identities": val_identities,
        "val_pairs": n_pairs,
        "image_size": size,
        "seed": seed,
    }
    if n_pairs:
        per_val = max(images_per_identity, 2)
        looks = np.array([_looks(_identity(seed, identities + v)) for v in range(val_identities)])
        for name, hard, tag in (("synth_ver.bin", False, 0), ("synth_hard.bin", True, 1)):
            pairs = _pairs(
                np.random.default_rng([seed, TAG_PAIRS, tag]),
                identities,
                val_identities,
                per_val,
                n_pairs,
                hard,
                looks,
            )
            _write_pairs(out / name, pairs, seed, size, workers)
            result["hard" if hard else "ver"] = str(out / name)
    meta = {
        "generator": "facezoo.synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "identities": identities,
        "images_per_identity": images_per_identity,
        "val_identities": val_identities,
        "val_identity_range": [identities, identities + val_identities],
        "image_size": size,
        "val_pairs": n_pairs,
    }
    with atomic_write(out / "synth.json", "w") as f:
        json.dump(meta, f, indent=2)
    result.update(
        meta=str(out / "synth.json"), seconds=round(time.perf_counter() - t0, 3), train_seconds=round(t_train, 3)
    )
    return result


def _looks(p: IdentityParams) -> np.ndarray:
    """Coarse appearance (skin and hair colour, hair style) for choosing look-alike impostors."""
    return np.concatenate([np.asarray(p.skin, float), np.asarray(p.hair, float), [40.0 * p.hair_style]])


def _check(**counts: int) -> None:
    for key, value in counts.items():
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"synthesize: {key}={value!r} must be a positive integer.")


def contact_sheet(seed: int = 0, identities: int = 8, images: int = 8, image_size: int = 112) -> np.ndarray:
    """uint8 grid: one row per identity; column 0 the canonical (nuisance-free) view, then training images."""
    rows = []
    for i in range(identities):
        p = _identity(seed, i)
        tiles = [render(p, sample_nuisance(image_rng(seed, i, 0), 0.0), image_size)]
        tiles += [render(p, sample_nuisance(image_rng(seed, i, j)), image_size) for j in range(images - 1)]
        rows.append(np.concatenate(tiles, 1))
    return np.concatenate(rows, 0)
