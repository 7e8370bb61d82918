"""RecordIO reader/writer/dataset against records built byte by byte in the tests."""

from __future__ import annotations

import io
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from facezoo.data.recordio import RecordDataset, RecordIOFile, RecordIOWriter, pack_record, unpack_record
from facezoo.errors import DataError

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)


def frame(cflag: int, data: bytes) -> bytes:
    """One record frame: magic, lrecord = cflag << 29 | length, data, zero padding to 4 bytes."""
    return struct.pack("<II", MAGIC, (cflag << 29) | len(data)) + data + b"\0" * (-len(data) % 4)


def header(flag: int, label: float, id_: int = 0, id2: int = 0) -> bytes:
    return struct.pack("<IfQQ", flag, label, id_, id2)


def scalar_payload(label: float, image: bytes) -> bytes:
    return header(0, label) + image


def vector_payload(labels, image: bytes = b"") -> bytes:
    return header(len(labels), 0.0) + struct.pack(f"<{len(labels)}f", *labels) + image


def png(color, size=(6, 5)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, tuple(color)).save(buf, format="PNG")
    return buf.getvalue()


def write_rec(folder, records, idx_order=None, idx=True):
    """records: list of (key, frames bytes); writes folder/train.rec and (optionally) train.idx by hand."""
    folder.mkdir(parents=True, exist_ok=True)
    blob, offsets = b"", {}
    for key, frames in records:
        offsets[key] = len(blob)
        blob += frames
    (folder / "train.rec").write_bytes(blob)
    if idx:
        keys = idx_order if idx_order is not None else [k for k, _ in records]
        (folder / "train.idx").write_text("".join(f"{k}\t{offsets[k]}\n" for k in keys))
    return folder


COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]


def insightface_folder(tmp_path, corrupt_key=None):
    """5 images (classes 0,0,1,1,1), identity records 6 and 7, header [6, 8]."""
    labels = [0, 0, 1, 1, 1]
    records = [(0, frame(0, vector_payload([6.0, 8.0])))]
    for k, (c, col) in enumerate(zip(labels, COLORS), start=1):
        image = b"not an image" if k == corrupt_key else png(col)
        records.append((k, frame(0, scalar_payload(c, image))))
    records.append((6, frame(0, vector_payload([1.0, 3.0]))))
    records.append((7, frame(0, vector_payload([3.0, 6.0]))))
    return write_rec(tmp_path / "ds", records)


def test_insightface_layout_labels_from_identity_records(tmp_path):
    folder = insightface_folder(tmp_path, corrupt_key=4)  # labels must not need the images
    (folder / "property").write_text("2,112,112\n")
    ds = RecordDataset(folder)
    assert len(ds) == 5
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [0, 0, 1, 1, 1]
    assert ds.num_classes == 2
    image, label = ds[2]
    assert image.dtype == np.uint8 and image.shape == (5, 6, 3) and label == 1
    assert (image == np.array(COLORS[2], dtype=np.uint8)).all()
    with pytest.raises(DataError, match=r"train\.rec: key 4"):
        ds[3]


def test_skip_corrupt_returns_none_with_warning(tmp_path):
    ds = RecordDataset(insightface_folder(tmp_path, corrupt_key=4), skip_corrupt=True)
    with pytest.warns(UserWarning, match=r"train\.rec: key 4"):
        assert ds[3] is None
    assert ds[4][1] == 1


def test_property_disagreeing_with_labels_is_an_error(tmp_path):
    folder = insightface_folder(tmp_path)
    (folder / "property").write_text("3,112,112\n")
    with pytest.raises(DataError, match=r"property: says 3 classes .* give 2"):
        RecordDataset(folder)


def test_no_header_layout_reads_labels_from_record_headers(tmp_path):
    records = [
        (0, frame(0, scalar_payload(2, png(COLORS[0])))),
        (1, frame(0, scalar_payload(0, b"corrupt bytes"))),  # label still readable from the header
        (2, frame(0, vector_payload([1.0, 5.0], png(COLORS[2])))),  # label vector: first value is the class
        (3, frame(0, scalar_payload(2, png(COLORS[3])))),
    ]
    folder = write_rec(tmp_path / "ds", records, idx_order=[3, 0, 1, 2])
    ds = RecordDataset(folder / "train.rec")
    assert [ds.sample_id(i) for i in range(len(ds))] == [3, 0, 1, 2]
    assert ds.labels.tolist() == [2, 2, 0, 1]
    assert ds.num_classes == 3
    image, label = ds[3]
    assert label == 1 and (image == np.array(COLORS[2], dtype=np.uint8)).all()


def test_unpack_record_scalar_and_vector():
    h, rest = unpack_record(header(0, 7.0, 11, 12) + b"IMG")
    assert (h.flag, h.label, h.id, h.id2, rest) == (0, 7.0, 11, 12, b"IMG")
    h, rest = unpack_record(vector_payload([3.0, 9.5], b"JPEG"))
    assert h.flag == 2 and h.label == (3.0, 9.5) and rest == b"JPEG"
    with pytest.raises(DataError, match="label values"):
        unpack_record(header(5, 0.0) + b"\0" * 8)


def test_pack_record_matches_struct_layout():
    assert pack_record(4, b"xy", id=1, id2=2) == header(0, 4.0, 1, 2) + b"xy"
    assert pack_record([1, 2.5], b"z") == vector_payload([1.0, 2.5], b"z")


def split_payload() -> tuple[bytes, bytes]:
    """A payload with the magic at two 4-byte-aligned positions, and its hand-built cflag 1/2/3 frames."""
    first = header(0, 1.0) + b"abcd"  # 28 bytes: the magic that follows starts at an aligned offset
    payload = first + MAGIC_BYTES + b"efgh" + MAGIC_BYTES + b"ij"
    frames = frame(1, first) + frame(2, b"efgh") + frame(3, b"ij")
    return payload, frames


def test_reader_joins_split_record(tmp_path):
    payload, frames = split_payload()
    folder = write_rec(tmp_path / "ds", [(0, frame(0, header(0, 0.0) + b"x")), (1, frames), (2, frame(0, b"\1" * 24))])
    rec = RecordIOFile(folder / "train.rec")
    assert rec.read(1) == payload
    assert rec.read_header(1).label == 1.0
    assert rec.read(2) == b"\1" * 24
    assert rec.keys == [0, 1, 2]


def test_writer_bytes_equal_hand_built_layout(tmp_path):
    payload, frames = split_payload()
    with RecordIOWriter(tmp_path / "a.rec", tmp_path / "a.idx") as w:
        w.write(5, b"abc")
        w.write(9, payload)
    assert (tmp_path / "a.rec").read_bytes() == frame(0, b"abc") + frames
    assert (tmp_path / "a.idx").read_text() == f"5\t0\n9\t{len(frame(0, b'abc'))}\n"


def test_writer_round_trip_and_scan_without_idx(tmp_path):
    rng = np.random.default_rng(0)
    payloads = [b"", MAGIC_BYTES, b"x" + MAGIC_BYTES + b"yyy", MAGIC_BYTES * 3 + b"t", b"ab" + MAGIC_BYTES]
    payloads += [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (1, 7, 64, 1001)]
    with RecordIOWriter(tmp_path / "r.rec", tmp_path / "r.idx") as w:
        for k, p in enumerate(payloads):
            w.write(k, p)
    rec = RecordIOFile(tmp_path / "r.rec")
    assert [rec.read(k) for k in range(len(payloads))] == payloads
    os.unlink(tmp_path / "r.idx")
    scanned = RecordIOFile(tmp_path / "r.rec")
    assert scanned.keys == list(range(len(payloads)))
    assert [scanned.read(k) for k in scanned.keys] == payloads


def test_writer_discards_files_on_error(tmp_path):
    with pytest.raises(RuntimeError), RecordIOWriter(tmp_path / "t.rec", tmp_path / "t.idx") as w:
        w.write(0, b"data")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_wrong_magic_names_file_and_key(tmp_path):
    bad = struct.pack("<II", 0xDEADBEEF, 4) + b"abcd"
    folder = write_rec(tmp_path / "ds", [(0, frame(0, scalar_payload(0, b"a"))), (1, bad)])
    rec = RecordIOFile(folder / "train.rec")
    with pytest.raises(DataError, match=r"train\.rec: key 1: bad magic 0xDEADBEEF at offset 36"):
        rec.read(1)


def test_truncated_file_names_file_key_and_offset(tmp_path):
    folder = write_rec(tmp_path / "ds", [(0, frame(0, scalar_payload(0, b"abcdefgh"))), (1, frame(0, b"z" * 40))])
    data = (folder / "train.rec").read_bytes()
    (folder / "train.rec").write_bytes(data[:-20])
    rec = RecordIOFile(folder / "train.rec")
    assert rec.read(0) == scalar_payload(0, b"abcdefgh")
    with pytest.raises(DataError, match=r"train\.rec: key 1: truncated at offset 40"):
        rec.read(1)
    (folder / "train.rec").write_bytes(data[:44])  # record 1 header cut in half
    with pytest.raises(DataError, match=r"train\.rec: key 1: truncated at offset 40"):
        RecordIOFile(folder / "train.rec").read(1)


def test_bad_idx_line_names_file_and_line(tmp_path):
    folder = write_rec(tmp_path / "ds", [(0, frame(0, b"\0" * 24))])
    (folder / "train.idx").write_text("0\t0\n1 oops\n")
    with pytest.raises(DataError, match=r"train\.idx:2"):
        RecordIOFile(folder / "train.rec")


def test_pickled_reader_carries_no_handle(tmp_path):
    rec = RecordIOFile(insightface_folder(tmp_path) / "train.rec")
    rec.read(1)  # opens the handle
    clone = pickle.loads(pickle.dumps(rec))  # an open file object cannot be pickled
    assert clone.read(5) == rec.read(5)


def test_dataloader_workers_match_main_process(tmp_path):
    ds = RecordDataset(insightface_folder(tmp_path))
    ds[0]  # the parent holds an open handle before forking workers
    main = list(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=0))
    workers = list(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2))
    assert len(main) == len(workers) == 3
    for (xa, ya), (xb, yb) in zip(main, workers):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.cat([y for _, y in workers]).tolist() == [0, 0, 1, 1, 1]


def test_reader_reopens_in_forked_child(tmp_path):
    big = [bytes([k]) * 30000 for k in range(3)]  # larger than the read buffer, so seeks reach the fd
    folder = write_rec(tmp_path / "ds", [(k, frame(0, data)) for k, data in enumerate(big)])
    rec = RecordIOFile(folder / "train.rec")
    assert rec.read(0) == big[0]
    position = os.lseek(rec._fh.fileno(), 0, os.SEEK_CUR)
    pid = os.fork()
    if pid == 0:  # child: its reads must not move the parent's file offset (an inherited fd shares it)
        os._exit(0 if rec.read(2) == big[2] and rec.read(1) == big[1] else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.lseek(rec._fh.fileno(), 0, os.SEEK_CUR) == position
    assert rec.read(1) == big[1]
