"""Verification .bin files: pickles built in the tests, including Python-2 and hostile ones."""

from __future__ import annotations

import io
import os
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from facezoo.data.verification_bin import load_bin_images, read_bin, unpack_bin, write_bin
from facezoo.errors import DataError

FAKE = [b"\xff\xd8\xff\xe0" + bytes([i, 200, 0x80 + i]) for i in range(4)]  # non-ASCII bytes, like real JPEGs


def py2_pickle(images: list[bytes], issame: list[bool]) -> bytes:
    """What Python 2's cPickle writes for (list of str, list of bool) with protocol 2, opcode by opcode."""
    out = b"\x80\x02]("  # PROTO 2, EMPTY_LIST, MARK
    for data in images:
        out += b"U" + bytes([len(data)]) + data  # SHORT_BINSTRING: a Python-2 str
    out += b"e]("  # APPENDS, EMPTY_LIST, MARK
    out += b"".join(b"\x88" if s else b"\x89" for s in issame)  # NEWTRUE / NEWFALSE
    return out + b"e\x86."  # APPENDS, TUPLE2, STOP


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_python2_pickle_needs_byte_preserving_decoding(tmp_path):
    blob = py2_pickle(FAKE, [True, False])
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(blob)  # the default ASCII decoding fails on such files
    path = tmp_path / "old.bin"
    path.write_bytes(blob)
    images, issame = read_bin(path)
    assert images == FAKE
    assert issame.dtype == bool and issame.tolist() == [True, False]


def test_python3_protocol2_pickle_uses_codecs_global(tmp_path):
    blob = pickle.dumps((FAKE, [False, True]), protocol=2)
    assert b"_codecs" in blob  # bytes under protocol 2 are rebuilt by _codecs.encode(text, 'latin1')
    path = tmp_path / "p2.bin"
    path.write_bytes(blob)
    images, issame = read_bin(path)
    assert images == FAKE and issame.tolist() == [False, True]


def test_numpy_issame_and_numpy_images(tmp_path):
    path = tmp_path / "np.bin"
    arrays = [np.frombuffer(b, dtype=np.uint8) for b in FAKE]
    path.write_bytes(pickle.dumps((arrays, np.array([True, False])), protocol=4))
    images, issame = read_bin(path)
    assert images == FAKE and issame.tolist() == [True, False]


class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_forbidden_global_is_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([_Hostile(marker), FAKE[0]], [True]), protocol=2))
    with pytest.raises(DataError, match=r"evil\.bin.*refused global '(posix|os)\.system'"):
        read_bin(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "blob, message",
    [
        (pickle.dumps({"a": 1}), "found dict"),
        (pickle.dumps((FAKE[:3], [True])), "3 images for 1 pairs"),
        (pickle.dumps(([1, 2], [True])), "image 0 is a int"),
        (b"garbage, not a pickle", "not a verification .bin"),
        (pickle.dumps((FAKE, [True, False]))[:-10], "not a verification .bin"),
    ],
    ids=["dict", "odd-count", "not-bytes", "garbage", "truncated"],
)
def test_wrong_content_names_file(tmp_path, blob, message):
    path = tmp_path / "wrong.bin"
    path.write_bytes(blob)
    with pytest.raises(DataError, match=rf"wrong\.bin.*{message}"):
        read_bin(path)


def test_write_read_round_trip_and_layout(tmp_path):
    path = tmp_path / "rt.bin"
    write_bin(path, FAKE, np.array([True, False]))
    raw = path.read_bytes()
    assert raw[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04")  # protocol 4 or lower
    obj = pickle.loads(raw)
    assert isinstance(obj, tuple) and obj == (FAKE, [True, False])
    assert type(obj[1][0]) is bool
    images, issame = read_bin(path)
    assert images == FAKE and issame.tolist() == [True, False]
    with pytest.raises(DataError, match="2 images per pair"):
        write_bin(tmp_path / "bad.bin", FAKE, [True])
    assert not (tmp_path / "bad.bin").exists()


def test_unpack_bin_names_and_pairs(tmp_path):
    rng = np.random.default_rng(1)
    images = [png(rng.integers(0, 256, (3, 3, 3), dtype=np.uint8)) for _ in range(10)] + [b"\xff\xd8\xffjpegish", b"??"]
    issame = [True, False, True, True, False, False]
    path = tmp_path / "six.bin"
    path.write_bytes(pickle.dumps((images, issame), protocol=2))
    out = tmp_path / "out"
    assert unpack_bin(path, out) == 12
    names = [f"{i:02d}.png" for i in range(10)] + ["10.jpg", "11.bin"]
    assert sorted(p.name for p in out.iterdir()) == sorted(names + ["pairs.txt"])
    for name, data in zip(names, images):
        assert (out / name).read_bytes() == data
    expected = "".join(f"{names[2 * i]} {names[2 * i + 1]} {int(s)}\n" for i, s in enumerate(issame))
    assert (out / "pairs.txt").read_text() == expected
    with pytest.raises(DataError, match="not an empty folder"):
        unpack_bin(path, out)


def test_load_bin_images_decodes_and_resizes(tmp_path):
    gradient = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    solid = np.full((4, 6, 3), (10, 120, 230), dtype=np.uint8)
    path = tmp_path / "imgs.bin"
    write_bin(path, [png(gradient), png(solid)], [False])
    images, issame = load_bin_images(path, image_size=(8, 8))
    assert images.shape == (2, 8, 8, 3) and images.dtype == np.uint8
    assert np.array_equal(images[0], gradient)  # already the right size: untouched
    assert (images[1] == np.array([10, 120, 230], dtype=np.uint8)).all()  # bilinear keeps a constant image
    assert issame.tolist() == [False]


def _alloc_pickles():
    """Tiny pickles whose loading would allocate gigabytes through an admitted constructor."""
    big = struct.pack("<i", 2**31 - 1)
    return {
        "bytes(n)": b"\x80\x02c__builtin__\nbytes\nJ" + big + b"\x85R.",
        "bytearray(n)": b"\x80\x02cbuiltins\nbytearray\nJ" + big + b"\x85R.",
        "ndarray shape": b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ"
        + big
        + b"\x85C\x01b\x87R.",
    }


@pytest.mark.parametrize("name", list(_alloc_pickles()))
def test_constructors_that_would_allocate_beyond_the_file_are_refused(tmp_path, name):
    import resource

    path = tmp_path / "hostile.bin"
    path.write_bytes(_alloc_pickles()[name])
    assert path.stat().st_size < 80
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match="not a verification .bin"):
        read_bin(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: nothing near 2 GiB


@pytest.mark.parametrize("issame", ["TFTF", [1, 2], [None, True], {"a": True}, 3])
def test_issame_must_be_booleans(tmp_path, issame):
    path = tmp_path / "bad.bin"
    path.write_bytes(pickle.dumps((FAKE, issame), protocol=4))
    with pytest.raises(DataError, match="issame holds"):
        read_bin(path)
