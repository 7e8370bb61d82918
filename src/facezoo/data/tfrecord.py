"""TFRecord shards + a TFace index, without TensorFlow.

Record framing (TFRecord): uint64 length, uint32 masked_crc(length bytes), payload, uint32 masked_crc(payload),
all little endian; masked_crc(x) = ((c >> 15) | (c << 17)) + 0xA282EAD8 (mod 2^32) with c = CRC32C(x) (Castagnoli
polynomial 0x1EDC6F41, reflected 0x82F63B78). Payload: a serialised tf.train.Example whose feature map holds one
bytes feature `image` (the encoded JPEG), as TFace's img2tfrecord writes it; labels live only in the index.

TFace layout, as facezoo writes it into a folder OUT:
  OUT/NAME/NAME-00000.tfrecord, NAME-00001.tfrecord, ...   shards (TFace resolves "{name}/{name}-{shard:05d}.tfrecord")
  OUT/NAME.txt                                           index, one record per line: NAME<TAB>shard<TAB>offset<TAB>label
  OUT/NAME.identities.txt                                label<TAB>identity name, for the labels of NAME.txt
so OUT is both TFace's data_root and index_root. Relabelling or filtering a set rewrites only the index (and the
names file that belongs to it); shards are never touched.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DataError
from ..io import atomic_write, staged_dir
from .base import EncodedImageDataset
from .tfexample import encode_example, image_of

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
HEADER_BYTES = 12  # length + its CRC
FOOTER_BYTES = 4  # payload CRC
MASK_DELTA = 0xA282EAD8
SHARD_SIZE = 500_000  # records per shard, TFace's img2tfrecord default
_OPEN_SHARDS = 64  # file handles kept open per process (least recently used closed first)


# ----------------------------------------------------------------------------------------------- CRC and framing


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`, hardware accelerated by the crc32c package."""
    from crc32c import crc32c as _crc32c

    return _crc32c(data)


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC: rotate CRC32C right by 15 bits and add 0xA282EAD8, mod 2^32."""
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + MASK_DELTA) & 0xFFFFFFFF


def frame(payload: bytes) -> bytes:
    """One TFRecord: length, masked CRC of the length bytes, payload, masked CRC of the payload."""
    length = _U64.pack(len(payload))
    return length + _U32.pack(masked_crc(length)) + payload + _U32.pack(masked_crc(payload))


def read_frame(f, offset: int, file_size: int, where: str) -> bytes:
    """The payload of the record at `offset` of an open shard, both CRCs checked.

    The length field is trusted only after its CRC matches and only if the record fits in the file, so a hostile
    length never becomes an allocation. `where` names the shard for the error messages.
    """
    if offset < 0 or offset + HEADER_BYTES > file_size:
        raise DataError(
            f"{where}: offset {offset}: no record header there (the shard has {file_size} bytes). "
            "The index does not match the shard: rebuild it or copy the shard again."
        )
    f.seek(offset)
    head = f.read(HEADER_BYTES)
    (length,) = _U64.unpack_from(head)
    (crc,) = _U32.unpack_from(head, 8)
    if crc != masked_crc(head[:8]):
        raise DataError(
            f"{where}: offset {offset}: length CRC mismatch (not a record start, or the shard is corrupt). "
            "Check that the index belongs to this shard, or copy the shard again."
        )
    end = offset + HEADER_BYTES + length + FOOTER_BYTES
    if end > file_size:
        raise DataError(
            f"{where}: offset {offset}: record of {length} bytes runs past the end of the shard ({file_size} "
            "bytes). The shard is truncated: copy it again."
        )
    body = f.read(length + FOOTER_BYTES)
    payload = body[:length]
    if _U32.unpack_from(body, length)[0] != masked_crc(payload):
        raise DataError(
            f"{where}: offset {offset}: payload CRC mismatch ({length} bytes). The shard is corrupt: copy it again."
        )
    return payload


def scan_offsets(path) -> list[int]:
    """Offsets of every record of a shard, walking the framing (CRCs of lengths checked, payloads skipped)."""
    path = Path(path)
    size = path.stat().st_size
    offsets, pos = [], 0
    with open(path, "rb") as f:
        while pos < size:
            if pos + HEADER_BYTES > size:
                raise DataError(f"{path}: offset {pos}: truncated record header at the end of the shard.")
            head = f.read(HEADER_BYTES)
            if _U32.unpack_from(head, 8)[0] != masked_crc(head[:8]):
                raise DataError(f"{path}: offset {pos}: length CRC mismatch. The shard is corrupt.")
            length = _U64.unpack_from(head)[0]
            if pos + HEADER_BYTES + length + FOOTER_BYTES > size:
                raise DataError(f"{path}: offset {pos}: record of {length} bytes runs past the end of the shard.")
            offsets.append(pos)
            pos += HEADER_BYTES + length + FOOTER_BYTES
            f.seek(pos)
    return offsets


# ----------------------------------------------------------------------------------------------------- the index


class IndexEntries(NamedTuple):
    """Parsed TFace index: shard files (in first-use order) and per record shard number, offset, label."""

    shards: list[tuple[str, int]]  # (tfrecord_name, shard_idx)
    shard: np.ndarray  # int32 position in `shards`
    offset: np.ndarray  # int64
    label: np.ndarray  # int64


def read_index(path) -> IndexEntries:
    """Parse `name<TAB>shard<TAB>offset<TAB>label` lines; a DataError names file:line for a bad one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot read the index: {e.strerror}. Check the path.") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text index (expected 'name<TAB>shard<TAB>offset<TAB>label' lines).") from None
    shards: dict[tuple[str, int], int] = {}
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) != 4 or not all(v.isdigit() for v in fields[1:]) or not fields[0]:
            raise DataError(
                f"{path}:{n}: expected 'tfrecord_name<TAB>shard_idx<TAB>offset<TAB>label' (non-negative integers), "
                f"got {line[:80]!r}. Fix the line or rebuild the index."
            )
        key = (fields[0], int(fields[1]))
        rows.append((shards.setdefault(key, len(shards)), int(fields[2]), int(fields[3])))
    table = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return IndexEntries(list(shards), table[:, 0].astype(np.int32), table[:, 1].copy(), table[:, 2].copy())


def write_index(path, entries: IndexEntries) -> None:
    """Write an index atomically (the old one stays intact if this fails)."""
    with atomic_write(path, "w") as f:
        for s, off, label in zip(entries.shard.tolist(), entries.offset.tolist(), entries.label.tolist()):
            name, idx = entries.shards[s]
            f.write(f"{name}\t{idx}\t{off}\t{label}\n")


def names_path(index) -> Path:
    """The identity names file belonging to an index: I.txt -> I.identities.txt."""
    return Path(index).with_suffix(".identities.txt")


def read_names(path, num_classes: int) -> list[str] | None:
    """Names of labels 0..num_classes-1 from `label<TAB>name` lines; None when absent or incomplete."""
    path = Path(path)
    if not path.is_file():
        return None
    names: dict[int, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        label, _, name = line.partition("\t")
        if label.isdigit() and name:
            names[int(label)] = name
    return [names[c] for c in range(num_classes)] if set(names) >= set(range(num_classes)) else None


def write_names(path, names: Sequence[str]) -> None:
    """`label<TAB>name` lines for labels 0..len(names)-1, atomically."""
    with atomic_write(path, "w") as f:
        f.write("".join(f"{c}\t{name}\n" for c, name in enumerate(names)))


def shard_path(root: Path, name: str, idx: int) -> Path:
    """TFace's shard file for (name, shard_idx) under a data root."""
    return Path(root) / name / f"{name}-{idx:05d}.tfrecord"


def find_index(folder: Path) -> list[Path]:
    """Index files NAME.txt in `folder` that have a shard folder NAME/ holding NAME-*.tfrecord beside them."""
    return sorted(
        p for p in folder.glob("*.txt") if (folder / p.stem).is_dir() and any((folder / p.stem).glob("*.tfrecord"))
    )


def looks_like_index(path: Path) -> bool:
    """A file whose first non-empty line is `name<TAB>int<TAB>int<TAB>int`."""
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(4096)
    for raw in head.split(b"\n"):
        if raw.strip():
            fields = raw.rstrip(b"\r").split(b"\t")
            return len(fields) == 4 and all(v.isdigit() for v in fields[1:])
    return False


def resolve_index(path) -> Path:
    """The index file for a path that is an index or a folder holding exactly one."""
    p = Path(path)
    if p.is_file():
        return p
    found = find_index(p) if p.is_dir() else []
    if len(found) != 1:
        what = ", ".join(f.name for f in found) if found else "none"
        raise DataError(
            f"{p}: expected one TFace index NAME.txt beside a NAME/ folder of .tfrecord shards, found {what}. "
            "Point at the index file itself."
        )
    return found[0]


# --------------------------------------------------------------------------------------------------- the dataset


class TFRecordDataset(EncodedImageDataset):
    """TFace TFRecord set: `(uint8 HxWx3 RGB image, int label)` per index line, CRCs checked on every read.

    path: the index file, or a folder holding one (NAME.txt beside NAME/). root: TFace's data_root, the folder
    holding the NAME/ shard folders (default: the index's folder). File handles open lazily, per process.
    """

    def __init__(self, path, root=None, skip_corrupt: bool = False):
        self.index_path = resolve_index(path)
        self.root = Path(root) if root is not None else self.index_path.parent
        self.skip_corrupt = skip_corrupt
        entries = read_index(self.index_path)
        if len(entries.label) == 0:
            raise DataError(
                f"{self.index_path}: no records. Pack a dataset first (facezoo data pack --format tfrecord)."
            )
        self.shard_files = [shard_path(self.root, name, idx) for name, idx in entries.shards]
        sizes = []
        for (name, idx), file in zip(entries.shards, self.shard_files):
            if not file.is_file():
                raise DataError(
                    f"{self.index_path}: shard {idx} of '{name}' should be {file} but it is not there. "
                    "Copy the shards beside the index (NAME/NAME-00000.tfrecord) or fix the index."
                )
            sizes.append(file.stat().st_size)
        self.shard_sizes = np.asarray(sizes, dtype=np.int64)
        self.shard_ids, self.offsets, self.labels = entries.shard, entries.offset, entries.label
        bad = np.flatnonzero(self.offsets + HEADER_BYTES + FOOTER_BYTES > self.shard_sizes[self.shard_ids])
        if len(bad):
            i = int(bad[0])
            raise DataError(
                f"{self.index_path}: record {i + 1} points at offset {self.offsets[i]} of "
                f"{self.shard_files[self.shard_ids[i]]}, past its end ({self.shard_sizes[self.shard_ids[i]]} bytes). "
                "The index does not match the shards: rebuild it."
            )
        self.num_classes = int(self.labels.max()) + 1
        self.classes = read_names(names_path(self.index_path), self.num_classes)  # label -> name, or None
        self._handles: OrderedDict[int, object] = OrderedDict()
        self._pid = None

    def _file(self, shard: int):
        if self._pid != os.getpid():
            self._handles, self._pid = OrderedDict(), os.getpid()
        f = self._handles.get(shard)
        if f is None:
            f = self._handles[shard] = open(self.shard_files[shard], "rb")  # noqa: SIM115 (kept open)
            if len(self._handles) > _OPEN_SHARDS:
                self._handles.popitem(last=False)[1].close()
        self._handles.move_to_end(shard)
        return f

    def __len__(self) -> int:
        return len(self.labels)

    def sample_id(self, i: int) -> int:
        """The record's position in the index (0-based line among records)."""
        return int(i)

    def where(self, i: int) -> str:
        return f"{self.shard_files[self.shard_ids[i]]}: offset {int(self.offsets[i])}"

    def read_payload(self, i: int) -> bytes:
        """The serialised tf.train.Example of sample i, both CRCs checked."""
        s = int(self.shard_ids[i])
        return read_frame(self._file(s), int(self.offsets[i]), int(self.shard_sizes[s]), str(self.shard_files[s]))

    def read_encoded(self, i: int) -> bytes:
        """The stored (encoded) image bytes of sample i."""
        return image_of(self.read_payload(i), self.where(i))

    def close(self) -> None:
        if self._pid == os.getpid():
            for f in self._handles.values():
                f.close()
        self._handles = OrderedDict()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handles"], state["_pid"] = OrderedDict(), None
        return state


# ---------------------------------------------------------------------------------------------------- the writer


def default_name(out_dir) -> str:
    """TFace picks its TFRecord reader when the set's name contains 'TFR': TFR-<folder name> unless it does."""
    name = Path(out_dir).resolve().name
    return name if "TFR" in name else f"TFR-{name}"


class ShardWriter:
    """Append records to NAME-%05d.tfrecord shards of `shard_size` records under folder/NAME, noting index rows."""

    def __init__(self, folder: Path, name: str, shard_size: int = SHARD_SIZE):
        if not isinstance(shard_size, int) or shard_size < 1:
            raise DataError(f"shard size must be a positive number of records, got {shard_size!r}.")
        if not name or any(c in name for c in "\t\n/\\"):
            raise DataError(f"TFRecord set name {name!r} must be non-empty without tabs, newlines or slashes.")
        self.folder, self.name, self.shard_size = Path(folder), name, shard_size
        (self.folder / name).mkdir(parents=True, exist_ok=True)
        self.rows: list[tuple[int, int, int]] = []  # (shard, offset, label)
        self._f = None
        self._shard, self._offset = -1, 0

    def write(self, image: bytes, label: int) -> None:
        """Append one record whose Example holds `image` under the `image` key."""
        if len(self.rows) % self.shard_size == 0:
            self._next_shard()
        data = frame(encode_example({"image": image}))
        self._f.write(data)
        self.rows.append((self._shard, self._offset, int(label)))
        self._offset += len(data)

    def _next_shard(self) -> None:
        self._close_shard()
        self._shard, self._offset = self._shard + 1, 0
        self._f = open(shard_path(self.folder, self.name, self._shard), "wb")  # noqa: SIM115 (closed by close())

    def _close_shard(self) -> None:
        if self._f is not None:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            self._f = None

    def close(self) -> Path:
        """Close the last shard and write the index NAME.txt; returns its path."""
        self._close_shard()
        index = self.folder / f"{self.name}.txt"
        rows = np.asarray(self.rows, dtype=np.int64).reshape(-1, 3)
        write_index(index, IndexEntries([(self.name, i) for i in range(self.shards)], rows[:, 0], *rows[:, 1:].T))
        return index

    @property
    def shards(self) -> int:
        """Shard files started so far."""
        return self._shard + 1


@contextlib.contextmanager
def tfrecord_writer(out_dir, name: str | None = None, shard_size: int = SHARD_SIZE):
    """Yield a ShardWriter into a staged folder that becomes `out_dir` (new or empty) only if the block succeeds."""
    name = name or default_name(out_dir)
    with staged_dir(out_dir) as tmp:
        writer = ShardWriter(tmp, name, shard_size)
        try:
            yield writer
        finally:
            writer._close_shard()
        writer.close()


# ------------------------------------------------------------------------------------------- relabel and filter


def _int_lines(path: Path, fields: int) -> list[list[int]]:
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        text = line.split("#", 1)[0].split()
        if not text:
            continue
        if len(text) != fields or not all(v.isdigit() for v in text):
            want = "'old_label new_label'" if fields == 2 else "one label"
            raise DataError(f"{path}:{n}: expected {want} (non-negative integers) per line, got {line[:80]!r}.")
        rows.append([int(v) for v in text])
    return rows


def relabel(index, out=None, *, mapping=None, keep=None) -> dict:
    """Rewrite only a TFace index: `mapping` {old: new} (records of unmapped labels dropped) or `keep` (labels to
    keep, renumbered 0..K-1 in ascending order). Files: `mapping` lines 'old new', `keep` lines 'label'.

    Writes `out` (default: the index itself) atomically, and its names file when the source has one (a new label
    merging several old ones is named 'a|b'); shards are never touched.
    """
    if (mapping is None) == (keep is None):
        raise DataError("relabel needs exactly one of --map (old new lines) or --keep (label lines).")
    index = resolve_index(index)
    if isinstance(mapping, (str, Path)):
        table = dict(_int_lines(Path(mapping), 2))
    elif mapping is not None:
        table = {int(k): int(v) for k, v in dict(mapping).items()}
    else:
        kept = sorted({row[0] for row in _int_lines(Path(keep), 1)} if isinstance(keep, (str, Path)) else set(keep))
        table = {old: new for new, old in enumerate(kept)}
    entries = read_index(index)
    olds = np.fromiter(table, dtype=np.int64, count=len(table))
    news = np.fromiter(table.values(), dtype=np.int64, count=len(table))
    order = np.argsort(olds)
    olds, news = olds[order], news[order]
    pos = np.clip(np.searchsorted(olds, entries.label), 0, max(len(olds) - 1, 0))
    hit = (olds[pos] == entries.label) if len(olds) else np.zeros(len(entries.label), bool)
    if not hit.any():
        raise DataError(f"{index}: no record's label is in the map / keep list; nothing would remain.")
    result = IndexEntries(entries.shards, entries.shard[hit], entries.offset[hit], news[pos[hit]])
    target = Path(out) if out is not None else index
    old_names = read_names(names_path(index), int(entries.label.max()) + 1)
    write_index(target, result)
    if old_names is not None:
        merged: dict[int, list[str]] = {}
        for old, new in sorted(table.items()):
            if old < len(old_names):
                merged.setdefault(new, []).append(old_names[old])
        write_names(
            names_path(target), ["|".join(merged.get(c, [])) or f"unnamed_{c}" for c in range(result.label.max() + 1)]
        )
    return {
        "index": str(target),
        "records": int(hit.sum()),
        "dropped": int((~hit).sum()),
        "identities": int(result.label.max()) + 1,
    }
