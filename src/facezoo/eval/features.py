"""Feature extraction shared by every evaluation suite: batched, on the model's device, split over torchrun ranks,
cached on disk and resumable.

Cache layout (one entry per model and data set):

    <cache_dir>/<model fingerprint[:20]>/<sha256(key, flip, input size, n)[:20]>/
        manifest.json                         what the entry holds (key, n, flip, input size, model fingerprint)
        rows_<start>_<stop>.npy               float32 (views, stop - start, D), views = 2 with flip (e, e_flip)

Each finished chunk is written atomically (`facezoo.io.atomic_write`), so an interrupted run leaves only whole
chunks and a rerun computes just the missing ones. A chunk file that cannot be read or has the wrong shape is
recomputed. Files are named by row range, so a different `chunk` size simply recomputes.

Model fingerprint: sha256 over the class name, the `ModelMeta` preprocessing (when there is one), the input size
and every state-dict tensor's name, dtype, shape and bytes; for an `OnnxEmbedder` the file's bytes and its
preprocessing. It is memoised per model object and recomputed when any tensor changes in place (tensor version
counters), so a model being trained between evaluations never reuses stale features.

Under torchrun (WORLD_SIZE > 1) chunk i goes to rank i mod W; every rank writes its chunks into the shared cache,
then after a barrier every rank reads them all. The process group is initialised here (NCCL for CUDA devices,
gloo otherwise) only when none is.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..io import atomic_write
from ..progress import bar

FORMAT = 1
_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# ----------------------------------------------------------------------------------------------------------
# model fingerprint
def _state_versions(module: torch.nn.Module) -> tuple:
    return tuple(
        (k, t.data_ptr(), t._version)
        for k, t in module.state_dict(keep_vars=True).items()
        if isinstance(t, torch.Tensor)
    )


def model_fingerprint(embed) -> str:
    """sha256 hex digest identifying an embedder's weights and preprocessing (see the module doc).

    Objects may provide their own as a `fingerprint` attribute (str). Anything else without weights to hash is a
    ConfigError: its features cannot be cached safely.
    """
    own = getattr(embed, "fingerprint", None)
    if isinstance(own, str):
        return own
    if isinstance(embed, torch.nn.Module):
        versions = _state_versions(embed)
        memo = _FINGERPRINTS.get(embed)
        if memo is not None and memo[0] == versions:
            return memo[1]
        h = hashlib.sha256()
        h.update(f"{type(embed).__module__}.{type(embed).__qualname__}\0".encode())
        h.update(_preprocessing(embed).encode())
        for name, t in embed.state_dict().items():
            if not isinstance(t, torch.Tensor):
                continue
            t = t.detach().to("cpu").contiguous()
            h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
        digest = h.hexdigest()
        _FINGERPRINTS[embed] = (versions, digest)
        return digest
    raise ConfigError(
        f"cannot fingerprint the embedder {type(embed).__name__!r} for the feature cache (it is neither a torch "
        "module nor a facezoo.load_model embedder); give it a `fingerprint` string attribute or disable the cache "
        "(--no-cache)."
    )


def _preprocessing(embed) -> str:
    meta = getattr(embed, "meta", None)
    d = meta.to_dict() if hasattr(meta, "to_dict") else {}
    for k in ("mean", "std", "channel_order"):
        if hasattr(embed, k) and not callable(getattr(embed, k)):
            d[k] = getattr(embed, k)
    d["input_size"] = list(getattr(embed, "input_size", (112, 112)))
    return json.dumps(d, sort_keys=True, default=str)


def entry_dir(cache_dir, embed, key: str, n: int, flip: bool) -> Path:
    """The cache folder for (model, key, flip, input size, n)."""
    size = list(getattr(embed, "input_size", (112, 112)))
    spec = json.dumps({"key": key, "flip": bool(flip), "input_size": size, "n": int(n)}, sort_keys=True)
    return Path(cache_dir) / model_fingerprint(embed)[:20] / hashlib.sha256(spec.encode()).hexdigest()[:20]


# ----------------------------------------------------------------------------------------------------------
# embedding one chunk
def default_device(embed) -> torch.device:
    """The device of the embedder's first parameter, else CPU."""
    if isinstance(embed, torch.nn.Module):
        for p in embed.parameters():
            return p.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(embed):
    """Put an nn.Module in eval mode for the block and restore its training flag afterwards."""
    was_training = isinstance(embed, torch.nn.Module) and embed.training
    if was_training:
        embed.eval()
    try:
        yield
    finally:
        if was_training:
            embed.train()


def embed_chunk(embed, images, batch_size: int = 256, device=None, flip: bool = True, pbar=None) -> np.ndarray:
    """float32 (views, N, D) raw embeddings: views = [e] or, with flip, [e, e(flip_W(x))].

    images: uint8 (N, H, W, 3) RGB; batches travel to the device as uint8. The embedder may return a torch tensor
    or a numpy array (OnnxEmbedder). pbar: a progress bar advanced by each batch's image count.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise DataError(f"images must be uint8 (N, H, W, 3) RGB, got {images.dtype} {images.shape}")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}: must be at least 1")
    device = torch.device(device) if device is not None else default_device(embed)
    outs: list[list[torch.Tensor]] = [[] for _ in range(2 if flip else 1)]
    with eval_mode(embed), torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device, non_blocking=True)
            outs[0].append(torch.as_tensor(embed(x)).float())
            if flip:
                outs[1].append(torch.as_tensor(embed(torch.flip(x, dims=[2]))).float())
            if pbar is not None:
                pbar.update(x.shape[0])
    if len(images) == 0:
        return np.zeros((len(outs), 0, 0), dtype=np.float32)
    return np.stack([torch.cat(o).cpu().numpy() for o in outs]).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------------------
# cached, resumable, distributed extraction
def _chunk_path(folder: Path, a: int, b: int) -> Path:
    return folder / f"rows_{a:010d}_{b:010d}.npy"


def _read_chunk(path: Path, views: int, rows: int, dim: int | None, log) -> np.ndarray | None:
    """The chunk array if the file holds a float32 (views, rows, D) array, else None (logged when it exists)."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:
        if log is not None:
            log(f"{path}: unreadable cached chunk ({type(e).__name__}: {str(e)[:100]}); recomputing it")
        return None
    ok = arr.dtype == np.float32 and arr.ndim == 3 and arr.shape[:2] == (views, rows)
    if ok and dim is not None:
        ok = arr.shape[2] == dim
    if not ok:
        if log is not None:
            log(f"{path}: cached chunk is {arr.dtype} {arr.shape}, expected float32 ({views}, {rows}, D); recomputing")
        return None
    return arr


def _write_chunk(path: Path, arr: np.ndarray) -> None:
    with atomic_write(path) as f:
        np.save(f, arr, allow_pickle=False)


def _write_manifest(folder: Path, embed, key: str, n: int, flip: bool, chunk: int) -> None:
    path = folder / "manifest.json"
    if path.is_file():
        return
    info = {
        "format": FORMAT,
        "key": key,
        "n": int(n),
        "flip": bool(flip),
        "chunk": int(chunk),
        "input_size": list(getattr(embed, "input_size", (112, 112))),
        "model": model_fingerprint(embed),
        "model_class": type(embed).__name__,
    }
    with atomic_write(path, "w") as f:
        json.dump(info, f, indent=1)


def _world():
    from ..train.distributed import world_from_env

    return world_from_env()


def _ensure_group(world, device) -> None:
    import datetime

    import torch.distributed as dist

    if world.world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(hours=4))


def extract_features(
    embed,
    key: str,
    n: int,
    load: Callable[[int, int], np.ndarray],
    *,
    flip: bool = True,
    batch_size: int = 256,
    device=None,
    cache_dir=None,
    chunk: int = 4096,
    combine: bool = False,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
    desc: str | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Embed n images -> (e, e_flip) float32 (n, D) each (e_flip None without flip).

    load(start, stop): uint8 (stop - start, H, W, 3) RGB model-ready images (aligned / resized by the caller).
    key: names the data set and its preprocessing, e.g. "ijbc-loose_crop-aligned112" or a file path + mtime.
    cache_dir: folder of the feature cache (None: no cache; required, and defaulted to facezoo.paths.features_dir(),
    under torchrun). combine=True returns (e + e_flip, None) without holding both views (large galleries).
    The next chunk is loaded on a worker thread while the current one is embedded. progress: a bar (stderr, when
    it is a terminal) counting this rank's images, titled desc (default: the key).
    """
    if n < 0:
        raise ConfigError(f"n={n}: the number of images cannot be negative")
    if chunk < 1:
        raise ConfigError(f"chunk={chunk}: must be at least 1")
    world = _world()
    if world.world_size > 1 and cache_dir is None:
        from ..paths import features_dir

        cache_dir = features_dir()
        if log is not None:
            log(f"torchrun with {world.world_size} ranks: sharing features through the cache in {cache_dir}")
    views = 2 if flip else 1
    ranges = [(a, min(a + chunk, n)) for a in range(0, n, chunk)]
    folder = entry_dir(cache_dir, embed, key, n, flip) if cache_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        if world.rank == 0:
            _write_manifest(folder, embed, key, n, flip, chunk)
    acc = _Accumulator(n, views, combine)
    acc.start = {i: a for i, (a, _) in enumerate(ranges)}
    keep = acc.put

    mine = [i for i in range(len(ranges)) if i % world.world_size == world.rank]
    todo = []
    for i in mine:
        arr = (
            _read_chunk(_chunk_path(folder, *ranges[i]), views, ranges[i][1] - ranges[i][0], acc.dim, log)
            if folder is not None
            else None
        )
        if arr is None:
            todo.append(i)
        else:
            keep(i, arr)
    if folder is not None and log is not None and len(todo) < len(mine):
        log(f"{key}: {len(mine) - len(todo)} of {len(mine)} chunks found in {folder}")
    total = sum(ranges[i][1] - ranges[i][0] for i in todo)
    with (
        concurrent.futures.ThreadPoolExecutor(1) as pool,
        bar(total, f"embedding {desc or key[:40]}", "img", progress) as pbar,
    ):
        fut = pool.submit(load, *ranges[todo[0]]) if todo else None
        for j, i in enumerate(todo):
            a, b = ranges[i]
            images = fut.result()
            fut = pool.submit(load, *ranges[todo[j + 1]]) if j + 1 < len(todo) else None
            if len(images) != b - a:
                raise DataError(f"{key}: load({a}, {b}) returned {len(images)} images, expected {b - a}")
            arr = embed_chunk(embed, images, batch_size, device, flip, pbar)
            if folder is not None:
                _write_chunk(_chunk_path(folder, a, b), arr)
            keep(i, arr)
            if log is not None:
                log(f"{key}: embedded {b:,}/{n:,} images")
    if world.world_size > 1:
        import torch.distributed as dist

        _ensure_group(world, device if device is not None else default_device(embed))
        dist.barrier()
        for i in range(len(ranges)):
            if i in acc.done:
                continue
            path = _chunk_path(folder, *ranges[i])
            arr = _read_chunk(path, views, ranges[i][1] - ranges[i][0], acc.dim, log)
            if arr is None:
                raise DataError(
                    f"{path}: missing or damaged after every rank finished; is {cache_dir} shared by all "
                    "ranks (one file system)? Rerun to recompute it."
                )
            keep(i, arr)
    return acc.result()


class _Accumulator:
    """Copies each chunk into the (n, D) outputs as it arrives, so at most one chunk is held twice."""

    def __init__(self, n: int, views: int, combine: bool):
        self.n, self.views, self.combine = n, views, combine and views == 2
        self.dim: int | None = None
        self.outs: list[np.ndarray] = []
        self.done: set[int] = set()
        self.start: dict[int, int] = {}

    def put(self, i: int, arr: np.ndarray) -> None:
        if self.dim is None:
            self.dim = arr.shape[2]
            k = 1 if self.combine else self.views
            self.outs = [np.empty((self.n, self.dim), dtype=np.float32) for _ in range(k)]
        a = self.start[i]
        b = a + arr.shape[1]
        if self.combine:
            np.add(arr[0], arr[1], out=self.outs[0][a:b])
        else:
            for v in range(self.views):
                self.outs[v][a:b] = arr[v]
        self.done.add(i)

    def result(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self.dim is None:
            return np.zeros((self.n, 0), np.float32), (
                None if self.combine or self.views == 1 else np.zeros((self.n, 0), np.float32)
            )
        return self.outs[0], (self.outs[1] if len(self.outs) == 2 else None)


def file_key(path, *extra) -> str:
    """A cache key for a data file: its absolute path, size and modification time, plus `extra` parts."""
    p = Path(path)
    st = p.stat()
    return ":".join([str(p.resolve()), str(st.st_size), str(st.st_mtime_ns), *map(str, extra)])
