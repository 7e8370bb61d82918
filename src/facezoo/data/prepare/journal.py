"""The per-identity journal that makes `data prepare` resumable.

The work folder (default: OUT_DIR's sibling `<OUT_DIR name>.prepare-work`) holds one zip per finished identity,
ids/<sha256(name)[:24]>.zip, written atomically (temporary file, fsync, rename), with
  meta.json        identity name, fingerprint of its photo list, the image-settings key, one record per photo
                   (path, status, detail, detection, crop file)
  NNNNNN.jpg       the aligned crops of the kept photos
  embeddings.npy   their L2-normalised embeddings (only when a model is given)
An identity whose zip exists with the same fingerprint and key is not redone; anything else (missing, corrupt, a
changed folder, other settings) is prepared again. Interrupted writes leave only `.*.tmp` files, removed on start.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from ...io import atomic_write

VERSION = 1
META = "meta.json"
EMBEDDINGS = "embeddings.npy"


def work_dir_for(out_dir: Path, work_dir=None) -> Path:
    out_dir = Path(out_dir)
    return Path(work_dir) if work_dir is not None else out_dir.parent / f"{out_dir.name}.prepare-work"


def journal_path(work: Path, identity: str) -> Path:
    return work / "ids" / f"{hashlib.sha256(identity.encode()).hexdigest()[:24]}.zip"


def clean_partial(work: Path) -> None:
    """Remove temporary files that an interrupted run left in the journal folder."""
    for tmp in (work / "ids").glob(".*.tmp") if (work / "ids").is_dir() else ():
        with contextlib.suppress(OSError):
            tmp.unlink()


def crop_name(i: int) -> str:
    return f"{i:06d}.jpg"


def write_journal(path: Path, meta: dict, crops: list[bytes], embeddings: np.ndarray | None) -> None:
    """One identity's results as a zip (stored, not compressed: JPEGs do not shrink), atomically."""
    with atomic_write(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        z.writestr(META, json.dumps({"version": VERSION, **meta}))
        for i, data in enumerate(crops):
            z.writestr(crop_name(i), data)
        if embeddings is not None:
            buf = io.BytesIO()
            np.save(buf, np.asarray(embeddings, dtype=np.float32), allow_pickle=False)
            z.writestr(EMBEDDINGS, buf.getvalue())


def read_meta(path: Path) -> dict | None:
    """The journal's meta.json, or None when the file is missing or unreadable (then the identity is redone)."""
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read(META))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return meta if meta.get("version") == VERSION else None


def is_done(path: Path, fingerprint: str, key: str) -> bool:
    meta = read_meta(path)
    return meta is not None and meta.get("fingerprint") == fingerprint and meta.get("key") == key


def read_embeddings(path: Path) -> np.ndarray | None:
    with zipfile.ZipFile(path) as z:
        if EMBEDDINGS not in z.namelist():
            return None
        return np.load(io.BytesIO(z.read(EMBEDDINGS)), allow_pickle=False)


class CropReader:
    """load((journal, crop name)) -> JPEG bytes, keeping the last journal open (items come grouped by identity)."""

    def __init__(self):
        self._path: Path | None = None
        self._zip: zipfile.ZipFile | None = None

    def __call__(self, item: tuple[Path, str]) -> bytes:
        path, name = item
        if path != self._path:
            self.close()
            self._zip, self._path = zipfile.ZipFile(path), path
        return self._zip.read(name)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        self._zip, self._path = None, None
