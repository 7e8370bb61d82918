"""InsightFace / MXNet RecordIO (`train.rec`, `train.idx`, `property`) without mxnet.

Record framing: uint32 magic 0xCED7230A, uint32 lrecord = cflag << 29 | length, payload, zero padding to 4 bytes.
A payload that contains the magic at a 4-byte-aligned position is split there by the writer into parts with
cflag 1 (first), 2 (middle), 3 (last); the reader joins the parts with the magic re-inserted between them.
Payload: header struct `<IfQQ` (flag, label, id, id2); when flag > 0, `flag` float32 labels follow; then the image.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Sequence
from numbers import Real
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DataError
from ..io import atomic_write
from .base import EncodedImageDataset

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
HEADER = struct.Struct("<IfQQ")
_FRAME = struct.Struct("<II")
_LEN_MASK = (1 << 29) - 1


class IRHeader(NamedTuple):
    """Record header: flag = number of label floats (0: scalar `label`), label, id, id2."""

    flag: int
    label: float | tuple[float, ...]
    id: int
    id2: int


def unpack_record(payload: bytes, where: str = "record") -> tuple[IRHeader, bytes]:
    """Split a payload into its IRHeader (label vector when flag > 0) and the remaining (image) bytes."""
    if len(payload) < HEADER.size:
        raise DataError(
            f"{where}: payload has {len(payload)} bytes, less than the 24-byte header. The file is corrupt."
        )
    flag, label, id_, id2 = HEADER.unpack_from(payload)
    start = HEADER.size
    if flag > 0:
        end = start + 4 * flag
        if len(payload) < end:
            raise DataError(
                f"{where}: header says {flag} label values but the payload has only {len(payload)} bytes. "
                "The file is corrupt."
            )
        label = tuple(float(v) for v in np.frombuffer(payload, "<f4", flag, start))
        start = end
    return IRHeader(flag, label, id_, id2), payload[start:]


def pack_record(label: float | Sequence[float], data: bytes, id: int = 0, id2: int = 0) -> bytes:
    """Payload for `label` (a number, or a sequence stored as a flag>0 label vector) followed by `data`."""
    if isinstance(label, (Real, np.number)):
        return HEADER.pack(0, float(label), id, id2) + bytes(data)
    values = np.asarray(label, dtype="<f4").ravel()
    return HEADER.pack(len(values), 0.0, id, id2) + values.tobytes() + bytes(data)


def label_of(header: IRHeader, where: str = "record") -> int:
    """Class id of an image record: the scalar label, or the first value of a label vector."""
    value = header.label[0] if header.flag > 0 else header.label
    if not (np.isfinite(value) and value >= 0 and float(value).is_integer()):
        raise DataError(f"{where}: label {value!r} is not a class id (a non-negative integer). The file is corrupt.")
    return int(value)


def _split(payload: bytes) -> list[bytes]:
    """Cut a payload at every 4-byte-aligned occurrence of the magic (the magic itself is dropped)."""
    words = np.frombuffer(payload, "<u4", len(payload) // 4)
    cuts = np.flatnonzero(words == MAGIC) * 4
    parts, start = [], 0
    for cut in cuts.tolist():
        parts.append(payload[start:cut])
        start = cut + 4
    parts.append(payload[start:])
    return parts


class RecordIOFile:
    """Random-access reader of a .rec file through its .idx (`key<TAB>offset` lines).

    Without an .idx the file is scanned once and record i (in file order) gets key i. The file handle is opened
    lazily and re-opened in a new process (DataLoader workers); pickling never carries an open handle.
    Not thread-safe: use one instance per thread.
    """

    def __init__(self, rec_path, idx_path=None):
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else self.rec_path.with_suffix(".idx")
        if not self.rec_path.is_file():
            raise DataError(f"{self.rec_path}: RecordIO file not found. Check the path.")
        self._fh = None
        self._pid = None
        if self.idx_path.is_file():
            keys, offsets = _parse_idx(self.idx_path)
        else:
            keys, offsets = self._scan()
        self.key_array = keys  # int64, in .idx order
        order = np.argsort(keys, kind="stable")
        self._sorted_keys = keys[order]
        self._sorted_offsets = offsets[order]
        dup = np.flatnonzero(np.diff(self._sorted_keys) == 0)
        if len(dup):
            raise DataError(f"{self.idx_path}: key {self._sorted_keys[dup[0]]} appears twice. Rebuild the index.")

    @property
    def keys(self) -> list[int]:
        """Record keys in .idx order (built on each access; use `key_array` for a numpy view)."""
        return self.key_array.tolist()

    def __len__(self) -> int:
        return len(self.key_array)

    def __contains__(self, key: int) -> bool:
        i = np.searchsorted(self._sorted_keys, key)
        return bool(i < len(self._sorted_keys) and self._sorted_keys[i] == key)

    def offset(self, key: int) -> int:
        i = int(np.searchsorted(self._sorted_keys, key))
        if i >= len(self._sorted_keys) or self._sorted_keys[i] != key:
            raise DataError(
                f"{self.rec_path}: key {key} is not in {self.idx_path}. Check the key or rebuild the index."
            )
        return int(self._sorted_offsets[i])

    def _file(self):
        if self._fh is None or self._pid != os.getpid():
            self._fh = open(self.rec_path, "rb")  # noqa: SIM115 (kept open across reads)
            self._pid = os.getpid()
        return self._fh

    def _part(self, f, key, pos: int, first: bool) -> tuple[int, int]:
        """Read one frame header at `pos`: (cflag, length), checking magic and continuation order."""
        head = f.read(_FRAME.size)
        if len(head) < _FRAME.size:
            raise DataError(
                f"{self.rec_path}: key {key}: truncated at offset {pos} (record header cut off). "
                "The file is incomplete: copy or download it again."
            )
        magic, lrec = _FRAME.unpack(head)
        if magic != MAGIC:
            raise DataError(
                f"{self.rec_path}: key {key}: bad magic 0x{magic:08X} at offset {pos} "
                f"(expected 0x{MAGIC:08X}). The file or its index {self.idx_path.name} is corrupt."
            )
        cflag = lrec >> 29
        if cflag > 3 or (first and cflag in (2, 3)) or (not first and cflag in (0, 1)):
            raise DataError(
                f"{self.rec_path}: key {key}: unexpected continuation flag {cflag} at offset {pos}. "
                f"The file or its index {self.idx_path.name} is corrupt."
            )
        return cflag, lrec & _LEN_MASK

    def read(self, key: int) -> bytes:
        """The payload of record `key`, split parts joined with the magic re-inserted."""
        pos = self.offset(key)
        f = self._file()
        f.seek(pos)
        parts = []
        while True:
            cflag, length = self._part(f, key, pos, first=not parts)
            data = f.read(length)
            if len(data) < length:
                raise DataError(
                    f"{self.rec_path}: key {key}: truncated at offset {pos} (record needs {length} bytes, "
                    f"{len(data)} left). The file is incomplete: copy or download it again."
                )
            parts.append(data)
            if cflag in (0, 3):
                return MAGIC_BYTES.join(parts)
            pad = -length % 4
            f.seek(pad, os.SEEK_CUR)
            pos += _FRAME.size + length + pad

    def read_header(self, key: int) -> IRHeader:
        """Only the IRHeader of record `key` (reads 24 bytes plus the label vector, not the image)."""
        pos = self.offset(key)
        f = self._file()
        f.seek(pos)
        cflag, length = self._part(f, key, pos, first=True)
        where = f"{self.rec_path}: key {key}"
        head = f.read(min(length, HEADER.size))
        if len(head) == HEADER.size and cflag == 0:
            flag = HEADER.unpack(head)[0]
            if flag == 0:
                return unpack_record(head, where)[0]
            if length >= HEADER.size + 4 * flag:
                return unpack_record(head + f.read(4 * flag), where)[0]
        return unpack_record(self.read(key), where)[0]  # split or short record: the general path reports errors

    def _scan(self) -> tuple[np.ndarray, np.ndarray]:
        """Offsets of every record start (cflag 0 or 1) by walking the file; keys are 0, 1, 2, ..."""
        offsets, pos, size = [], 0, self.rec_path.stat().st_size
        with open(self.rec_path, "rb") as f:
            while pos < size:
                start, first = pos, True
                while True:
                    f.seek(pos)
                    cflag, length = self._part(f, f"#{len(offsets)}", pos, first)
                    pos += _FRAME.size + length + (-length % 4)
                    if cflag in (0, 3):
                        break
                    first = False
                offsets.append(start)
            if pos > size + 3:
                raise DataError(
                    f"{self.rec_path}: last record runs past the end of the file (truncated). "
                    "Copy or download it again."
                )
        return np.arange(len(offsets), dtype=np.int64), np.asarray(offsets, dtype=np.int64)

    def close(self) -> None:
        if self._fh is not None and self._pid == os.getpid():
            self._fh.close()
        self._fh = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fh"] = None
        state["_pid"] = None
        return state


def _parse_idx(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(keys, offsets) int64 arrays from `key<TAB>offset` lines; DataError with file:line on a bad line."""
    text = path.read_text(encoding="ascii", errors="replace")
    try:
        table = np.array(text.split(), dtype=np.int64).reshape(-1, 2)
        ok = len(table) == text.count("\t") and (table >= 0).all()
    except ValueError:
        table, ok = None, False
    if not ok:  # slow path: find the offending line
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if fields and (len(fields) != 2 or not all(x.isdigit() for x in fields)):
                raise DataError(f"{path}:{n}: expected 'key<TAB>offset', got {line[:80]!r}. Rebuild the index.")
            if fields:
                rows.append([int(x) for x in fields])
        table = np.array(rows, dtype=np.int64).reshape(-1, 2)
    return table[:, 0].copy(), table[:, 1].copy()


class RecordIOWriter:
    """Write records and their .idx; both files appear under their names only when `close()` succeeds.

    As a context manager an exception discards both temporary files.
    """

    def __init__(self, rec_path, idx_path):
        self.rec_path, self.idx_path = Path(rec_path), Path(idx_path)
        self._stack = contextlib.ExitStack()
        self._rec = self._stack.enter_context(atomic_write(self.rec_path, "wb"))
        self._idx = self._stack.enter_context(atomic_write(self.idx_path, "w"))
        self._pos = 0
        self._keys: set[int] = set()

    def write(self, key: int, payload: bytes) -> None:
        """Append `payload` under `key`, split at aligned magics (cflag 1/2/3), each frame padded to 4 bytes."""
        key = int(key)
        if key in self._keys:
            raise DataError(f"{self.rec_path}: key {key} written twice. Keys must be unique.")
        self._keys.add(key)
        self._idx.write(f"{key}\t{self._pos}\n")
        parts = _split(payload)
        last = len(parts) - 1
        for i, part in enumerate(parts):
            cflag = 0 if last == 0 else 1 if i == 0 else 3 if i == last else 2
            if len(part) > _LEN_MASK:
                raise DataError(f"{self.rec_path}: key {key}: a record part of {len(part)} bytes exceeds 2^29 - 1.")
            pad = -len(part) % 4
            self._rec.write(_FRAME.pack(MAGIC, cflag << 29 | len(part)) + part + b"\0" * pad)
            self._pos += _FRAME.size + len(part) + pad

    def close(self) -> None:
        """Flush, fsync and rename both files into place."""
        self._stack.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stack.__exit__(exc_type, exc, tb)


def _locate(root_or_rec) -> tuple[Path, Path, Path]:
    """(rec, idx, property) paths for a folder holding train.rec or for a .rec file."""
    p = Path(root_or_rec)
    if p.is_dir():
        rec = p / "train.rec"
        if not rec.is_file():
            raise DataError(
                f"{p}: no train.rec in this folder. Point at a folder with train.rec/train.idx or a .rec file."
            )
    elif p.is_file():
        rec = p
    else:
        raise DataError(f"{p}: not found. Check the path.")
    return rec, rec.with_suffix(".idx"), rec.parent / "property"


def read_property(path: Path) -> tuple[int, int, int] | None:
    """(num_classes, height, width) from a `property` file, or None when absent."""
    if not path.is_file():
        return None
    first = path.read_text().strip().splitlines()[:1]
    try:
        values = tuple(int(v) for v in first[0].split(","))
        return values[0], values[1], values[2]
    except (IndexError, ValueError):
        raise DataError(
            f"{path}: expected 'num_classes,height,width', got {first[0][:80] if first else ''!r}. "
            "Fix or delete the file."
        ) from None


class RecordDataset(EncodedImageDataset):
    """Face training set in RecordIO: `(uint8 HxWx3 RGB image, int label)` per sample.

    InsightFace layout (record 0 flag > 0, labels [a, b]): images are keys 1..a-1, identity records a..b-1
    give [first, end) image-key ranges and label = identity index (no image is read to know labels).
    Otherwise every key is an image and its label comes from its header (24 bytes read per record).
    """

    def __init__(self, root_or_rec, skip_corrupt: bool = False):
        rec_path, idx_path, prop_path = _locate(root_or_rec)
        self.rec = RecordIOFile(rec_path, idx_path)
        self.skip_corrupt = skip_corrupt
        if len(self.rec) == 0:
            raise DataError(f"{rec_path}: no records. Pack a dataset into it first (facezoo data pack).")
        head = self.rec.read_header(0) if 0 in self.rec else None
        if head is not None and head.flag > 0:
            self.keys, self.labels = self._insightface_labels(head)
        else:
            self.keys = self.rec.key_array.copy()
            self.labels = np.fromiter(
                (label_of(self.rec.read_header(k), self._where(k)) for k in self.keys.tolist()),
                dtype=np.int64,
                count=len(self.keys),
            )
        self.num_classes = int(self.labels.max()) + 1 if len(self.labels) else 0
        prop = read_property(prop_path)
        self.image_size = prop[1:] if prop else None
        if prop is not None and prop[0] != self.num_classes:
            raise DataError(
                f"{prop_path}: says {prop[0]} classes but the labels in {rec_path} give {self.num_classes} "
                f"(max label + 1). Fix the first number in {prop_path} or delete that file."
            )

    def _where(self, key: int) -> str:
        return f"{self.rec.rec_path}: key {key}"

    def _insightface_labels(self, head: IRHeader) -> tuple[np.ndarray, np.ndarray]:
        if len(head.label) < 2:
            raise DataError(f"{self._where(0)}: header record has {len(head.label)} label value(s), expected [a, b].")
        a, b = int(head.label[0]), int(head.label[1])
        if not 1 <= a <= b:
            raise DataError(f"{self._where(0)}: header range [{a}, {b}] is invalid (need 1 <= a <= b).")
        keys = np.arange(1, a, dtype=np.int64)
        labels = np.full(len(keys), -1, dtype=np.int64)
        for k in range(a, b):
            r = self.rec.read_header(k).label
            if not isinstance(r, tuple) or len(r) < 2 or not 1 <= int(r[0]) <= int(r[1]) <= a:
                raise DataError(f"{self._where(k)}: identity record range {r!r} is not inside image keys [1, {a}).")
            labels[int(r[0]) - 1 : int(r[1]) - 1] = k - a
        missing = keys[~np.isin(keys, self.rec.key_array)]
        if len(missing):
            raise DataError(
                f"{self.rec.idx_path}: header says images are keys 1..{a - 1} but {len(missing)} are "
                f"missing (first: {missing[0]}). Rebuild the index or repack the dataset."
            )
        for i in np.flatnonzero(labels < 0).tolist():  # images no identity record covers: read their own header
            labels[i] = label_of(self.rec.read_header(int(keys[i])), self._where(int(keys[i])))
        return keys, labels

    def __len__(self) -> int:
        return len(self.keys)

    def sample_id(self, i: int) -> int:
        """The record key of sample i."""
        return int(self.keys[i])

    def read_encoded(self, i: int) -> bytes:
        """The stored (encoded) image bytes of sample i."""
        key = int(self.keys[i])
        return unpack_record(self.rec.read(key), self._where(key))[1]

    def where(self, i: int) -> str:
        return self._where(int(self.keys[i]))
