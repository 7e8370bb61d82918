"""decode_image: EXIF orientation applied, 16-bit samples scaled (PNG files built by hand from the PNG spec)."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from facezoo.data.image import decode_image
from facezoo.errors import DataError


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png16(samples: np.ndarray) -> bytes:
    """A 16-bit PNG (colour type 0 grey for (H, W), 2 RGB for (H, W, 3)), filter 0 on every row, big-endian."""
    h, w = samples.shape[:2]
    colour = 0 if samples.ndim == 2 else 2
    rows = samples.astype(">u2").reshape(h, -1)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def test_16bit_grey_png_is_scaled_not_clipped():
    v = np.array([[0, 257, 32896], [65535, 1000, 128]], dtype=np.uint16)
    out = decode_image(png16(v))
    expect = np.rint(v / 257.0).astype(np.uint8)  # 0, 1, 128 / 255, 4, 0
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    assert (out == expect[..., None]).all()


def test_16bit_rgb_png_keeps_the_high_byte():
    rng = np.random.default_rng(0)
    v = rng.integers(0, 65536, (4, 5, 3), dtype=np.uint16)
    out = decode_image(png16(v)).astype(int)
    assert np.abs(out - v / 257.0).max() <= 1.0  # 8-bit value within one level of v * 255 / 65535


# EXIF orientation o: how the stored pixels must be turned to be seen upright (TIFF 6.0 / EXIF 2.3 tag 0x0112).
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored horizontally
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1],  # mirrored vertically
    5: lambda a: a.transpose(1, 0, 2),  # transposed (mirror about the main diagonal)
    6: lambda a: np.rot90(a, -1),  # stored rotated 90 CCW: turn 90 CW
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # transverse (mirror about the anti-diagonal)
    8: lambda a: np.rot90(a, 1),  # stored rotated 90 CW: turn 90 CCW
}


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_exif_orientation_is_applied(orientation):
    rng = np.random.default_rng(orientation)
    stored = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)  # 3 rows, 5 columns: every turn is visible
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, "PNG", exif=exif)  # lossless, so pixels compare exactly
    out = decode_image(buf.getvalue())
    assert (out == UPRIGHT[orientation](stored)).all()


def test_transverse_is_the_anti_diagonal_mirror():
    a = np.arange(6).reshape(2, 3, 1)
    # Orientation 7: mirror about the anti-diagonal, out[i, j] = a[W-1-j, H-1-i] for an (H, W) stored image.
    h, w = a.shape[:2]
    expect = np.array([[a[h - 1 - j, w - 1 - i] for j in range(h)] for i in range(w)])
    assert (UPRIGHT[7](a) == expect).all()


def test_bad_bytes_name_the_source():
    with pytest.raises(DataError, match="photo.jpg: cannot decode"):
        decode_image(b"\xff\xd8\xff not really a jpeg", where="photo.jpg")
