"""Teacher embeddings of every training sample, computed once and reused by every epoch (distill.cache=true).

OUTPUT/teacher_cache/<key>.npy: (N, F, D_t) float16, F = 2 with data.flip (row 0 the image, row 1 its mirror),
else 1. key = sha256 of the teacher file's bytes, the data (path, its entries' sizes and mtimes, length, labels),
the preprocessing (teacher metadata, the loader's input size, flip) and the precision, so a change to any of them
computes a new cache (older caches in the folder are removed). Written atomically: each rank fills its share of a
temporary file, which then replaces the final name; a killed run leaves only a temporary the next run removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...augment.crop_eye import crop_eye
from ...data.loader import Collate, default_workers
from ...data.transforms import normalize


def file_digest(path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def data_fingerprint(spec: str, dataset) -> dict:
    """What identifies the training data without reading it: path entries' sizes and mtimes, length, labels."""
    entries = []
    if spec and Path(spec).exists():
        p = Path(spec).resolve()
        for q in [p, *sorted(p.iterdir())] if p.is_dir() else [p]:
            st = q.stat()
            entries.append([q.name, st.st_size, st.st_mtime_ns])
    labels = np.ascontiguousarray(np.asarray(getattr(dataset, "labels", []), dtype=np.int64))
    return {
        "spec": str(Path(spec).resolve()) if spec else type(dataset).__name__,
        "entries": entries,
        "length": len(dataset),
        "labels": hashlib.sha256(labels.tobytes()).hexdigest(),
    }


def teacher_input(images: torch.Tensor, meta, flip=None) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> the teacher's normalised input at its own size (bilinear when sizes differ; a crop_eye
    teacher's upper-face rows, as TrainContext.prepare cuts them)."""
    x = normalize(crop_eye(images) if meta.crop_eye else images, meta.mean, meta.std, meta.channel_order, flip=flip)
    size = meta.network_size
    return x if tuple(x.shape[-2:]) == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class _Indexed(torch.utils.data.Dataset):
    """`dataset` with each sample's index in place of its label (so a collate that drops corrupt samples keeps
    track of which rows it kept)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        sample = self.dataset[i]
        return None if sample is None else (sample[0], i)


class TeacherCache:
    """lookup(indices, flip) -> (b, D_t) float32 teacher embeddings on `device`."""

    def __init__(self, path: Path, device):
        self.path, self.device = path, device
        self.rows = np.load(path, mmap_mode="r")

    @classmethod
    def key(cls, ctx, teacher_path, teacher_meta, dataset) -> str:
        cfg = ctx.cfg
        parts = {
            "teacher": file_digest(teacher_path),
            "data": data_fingerprint(cfg.data.train if ctx.dataset is None else "", dataset),
            "meta": teacher_meta.to_dict(),
            "input": list(ctx.meta.input_size),
            "flip": cfg.data.flip,
            "precision": cfg.precision,
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]

    @classmethod
    def open_or_build(cls, ctx, teacher, teacher_meta, teacher_path, dataset) -> TeacherCache:
        """The cache for this run, computed first when absent (every rank takes part; progress on rank 0)."""
        folder = Path(ctx.cfg.output) / "teacher_cache"
        key = cls.key(ctx, teacher_path, teacher_meta, dataset)
        path = folder / f"{key}.npy"
        w = ctx.world
        if not path.exists():
            tmp = folder / f".{key}.npy.tmp"
            flips = 2 if ctx.cfg.data.flip else 1
            if w.is_main:
                folder.mkdir(parents=True, exist_ok=True)
                for old in folder.iterdir():  # stale temporaries and caches of other keys
                    with contextlib.suppress(OSError):
                        old.unlink()
                shape = (len(dataset), flips, teacher_meta.embedding_size)
                np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape).flush()
            _barrier(w)
            cls._fill(ctx, teacher, teacher_meta, dataset, tmp, flips)
            _barrier(w)
            if w.is_main:
                os.replace(tmp, path)
            _barrier(w)
        return cls(path, ctx.device)

    @staticmethod
    @torch.no_grad()
    def _fill(ctx, teacher, meta, dataset, tmp: Path, flips: int) -> None:
        from tqdm import tqdm

        w, b = ctx.world, max(ctx.micro_batch, 64)
        rows = np.load(tmp, mmap_mode="r+")
        chunks = [list(range(a, min(a + b, len(dataset)))) for a in range(0, len(dataset), b)][w.rank :: w.world_size]
        loader = torch.utils.data.DataLoader(
            _Indexed(dataset),
            batch_sampler=chunks,
            num_workers=default_workers(ctx.cfg.data.num_workers),
            collate_fn=Collate(ctx.meta.input_size),
        )
        quiet = not (w.is_main and sys.stderr.isatty())
        for batch in tqdm(loader, total=len(chunks), desc="teacher cache", unit="batch", disable=quiet):
            images, index = batch["images"].to(ctx.device), batch["labels"].numpy()
            if not len(index):
                continue
            for f in range(flips):
                mask = torch.full((len(index),), bool(f), device=ctx.device)
                with ctx.autocast():
                    emb = teacher(teacher_input(images, meta, flip=mask))
                rows[index, f] = emb.float().cpu().numpy().astype(np.float16)
        rows.flush()
        del rows

    def lookup(self, indices, flip: torch.Tensor | None) -> torch.Tensor:
        index = np.asarray(indices, dtype=np.int64)
        rows = torch.from_numpy(np.asarray(self.rows[index], dtype=np.float32)).to(self.device, non_blocking=True)
        if flip is None or rows.shape[1] == 1:
            return rows[:, 0]
        return torch.where(flip.view(-1, 1), rows[:, 1], rows[:, 0])


def _barrier(world) -> None:
    if world.distributed and torch.distributed.is_initialized():
        torch.distributed.barrier()
