"""One identity, start to finish, in whichever process runs it: its photos -> crops, duplicates removed, journal.

Each process builds its detector (and recognition model, when one is given) once, on first use.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..image import encode_image
from .dedup import DEDUP, deduplicate, embed, load_embedder
from .faces import process_photo
from .journal import crop_name, write_journal
from .options import PrepareOptions
from .sources import Identity, shown_path

_CONTEXT: dict = {}
_WORKER_OPTS: PrepareOptions | None = None  # set in pool processes by init_worker


def context(opts: PrepareOptions) -> dict:
    """This process's detector, model, template and dedup method for `opts` (built once per process)."""
    key = id(opts)
    if _CONTEXT.get("key") != key:
        from ...sdk.pipeline import build_detector

        _CONTEXT.clear()
        _CONTEXT.update(
            key=key,
            detector=build_detector(opts.detector, opts.device),
            model=load_embedder(opts.model),
            template=opts.template_points(),
            dedup=DEDUP.create(opts.dedup),
        )
    return _CONTEXT


def init_worker(opts: PrepareOptions) -> None:
    """Pool initializer: one torch thread per process (the processes are the parallelism), then the context."""
    import torch

    torch.set_num_threads(1)
    global _WORKER_OPTS
    _WORKER_OPTS = opts
    context(opts)


def run_in_worker(task: tuple[Identity, Path, Path, str]) -> dict:
    return prepare_identity(*task, _WORKER_OPTS)


def prepare_identity(identity: Identity, raw_root: Path, journal: Path, key: str, opts: PrepareOptions) -> dict:
    """Process every photo of `identity`, write its journal, return the journal's meta (records per photo)."""
    ctx = context(opts)
    method = ctx["dedup"]
    records: list[dict] = []
    crops: list[np.ndarray] = []
    crop_records: list[int] = []  # record index of each crop
    quality: list[tuple[int, int]] = []  # (photo pixels, file bytes): which copy of a duplicate to keep
    first_by_digest: dict[str, str] = {}
    for path in identity.files:
        shown = shown_path(path, raw_root)
        try:
            data = path.read_bytes()
        except OSError as e:
            records.append({"path": shown, "status": "unreadable", "detail": e.strerror or str(e)})
            continue
        if method.exact:
            digest = hashlib.sha256(data).hexdigest()
            if digest in first_by_digest:
                records.append(
                    {"path": shown, "status": "duplicate", "detail": f"same bytes as {first_by_digest[digest]}"}
                )
                continue
            first_by_digest[digest] = shown
        out = process_photo(data, str(path), ctx["detector"], opts, ctx["template"])
        record = {"path": shown, "status": out.status, "detail": out.detail, "faces": out.faces}
        if out.status == "kept":
            record.update(box=out.box, score=out.score, kps=out.kps)
            crop_records.append(len(records))
            crops.append(out.crop)
            quality.append((out.pixels, len(data)))
        records.append(record)

    embeddings = embed(ctx["model"], crops) if ctx["model"] is not None and crops else None
    dups = deduplicate(quality, method.signatures(crops, embeddings), method, opts.dedup_threshold)
    encoded, kept_rows = [], []
    for j, crop in enumerate(crops):
        record = records[crop_records[j]]
        if j in dups:
            twin, how = dups[j]
            record.update(status="duplicate", detail=f"near-duplicate of {records[crop_records[twin]]['path']} ({how})")
            continue
        record["crop"] = crop_name(len(encoded))
        encoded.append(encode_image(crop, "jpeg", opts.quality))
        kept_rows.append(j)
    kept_embeddings = embeddings[kept_rows] if embeddings is not None else None
    meta = {"identity": identity.name, "fingerprint": identity.fingerprint(), "key": key, "records": records}
    write_journal(journal, meta, encoded, kept_embeddings)
    return meta
