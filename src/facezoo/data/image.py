"""Encoded image bytes <-> uint8 HWC RGB arrays (Pillow; no torchvision)."""

from __future__ import annotations

import io
import os
import re

import numpy as np

from ..errors import DataError

_MAGIC = (
    (b"\xff\xd8\xff", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"BM", "bmp"),
    (b"GIF8", "gif"),
    (b"RIFF", "webp"),
)


def image_ext(data: bytes) -> str:
    """File extension for encoded image bytes, from their magic number ('bin' when unknown)."""
    for magic, ext in _MAGIC:
        if data[: len(magic)] == magic:
            return ext
    return "bin"


# The formats facezoo decodes anywhere user files are read (Pillow plugin names); no other plugin ever runs (an EPS
# would start Ghostscript). Listed in the README's "Guarantees".
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
# Pixel budget (width x height) for one decoded image, checked from the header before any pixel is decoded: far
# above any face photo or training crop (8000 x 6000 is 48M), far below what fills memory (a 105 KB PNG can claim
# 6000 x 6000 = 36M, 20000 x 20000 = 400M pixels x 3 bytes). FACEZOO_MAX_PIXELS overrides it; the server sets its own.
MAX_PIXELS = 50_000_000


class ImageTooLarge(DataError):
    """An image whose header claims more pixels than the budget (refused before decoding)."""


def max_pixels() -> int:
    """The pixel budget: $FACEZOO_MAX_PIXELS when set to a positive integer, else MAX_PIXELS."""
    value = os.environ.get("FACEZOO_MAX_PIXELS", "")
    return int(value) if value.isdigit() and int(value) > 0 else MAX_PIXELS


def decode_image(data: bytes, where: str = "image", budget: int | None = None) -> np.ndarray:
    """Decode JPEG/PNG/BMP/GIF/WebP/TIFF bytes to a uint8 (H, W, 3) RGB array as the image is meant to be seen.

    The EXIF orientation tag (1-8) is applied, so a phone photo stored sideways comes out upright. 16-bit and
    32-bit integer samples (PNG/TIFF grey `I;16`, `I`) are scaled to 8 bits as round(v / 257), i.e. 65535 -> 255,
    where Pillow's own conversion would clip everything above 255 to white. Alpha is dropped. A DataError names
    `where` when the bytes are not a decodable image of an accepted format, or when the header claims more than
    `budget` pixels (default max_pixels()): refused before any pixel is decoded, so no small hostile file costs
    time or memory.
    """
    from PIL import Image, UnidentifiedImageError

    budget = budget or max_pixels()
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as im:
            return from_pil(im, where, budget)
    except Image.DecompressionBombError as e:  # Pillow's own header check fired first (over 2 x its limit)
        count = re.search(r"\((\d+) pixels\)", str(e))
        claimed = f"{int(count.group(1)):,}" if count else "too many"
        raise ImageTooLarge(
            f"{where}: image of {claimed} pixels exceeds the budget of "
            f"{budget:,} pixels; downscale it (or raise FACEZOO_MAX_PIXELS if such images are intended)."
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        reason = re.sub(r" <_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(e))
        raise DataError(
            f"{where}: cannot decode image ({len(data)} bytes): {reason}. "
            "Re-encode or remove it (training can skip corrupt samples with data.skip_corrupt=true)."
        ) from None


def from_pil(im, where: str = "image", budget: int | None = None) -> np.ndarray:
    """uint8 (H, W, 3) RGB of a PIL image, by decode_image's rules: a format outside FORMATS refused, the pixel
    budget checked from the size before any pixel is decoded, EXIF orientation applied, 16-bit samples scaled."""
    budget = budget or max_pixels()
    if im.format is not None and im.format not in FORMATS:
        raise DataError(
            f"{where}: {im.format} images are not accepted (accepted: {', '.join(FORMATS)}); convert it to PNG or JPEG."
        )
    w, h = im.size
    if w * h > budget:
        raise ImageTooLarge(
            f"{where}: image of {w} x {h} = {w * h:,} pixels exceeds the budget of {budget:,} pixels; "
            "downscale it (or raise FACEZOO_MAX_PIXELS if such images are intended)."
        )
    im.load()
    return _to_rgb(_upright(im))


def _upright(im):
    """The image with its EXIF orientation applied; unchanged when the tag is absent or the EXIF unreadable."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # malformed EXIF: the pixels are still good, only the orientation is unknown
        return im


def _to_rgb(im) -> np.ndarray:
    """uint8 (H, W, 3) RGB from any Pillow mode; integer modes wider than 8 bits are scaled by 255 / 65535."""
    if im.mode.startswith("I"):  # I;16, I;16B, I;16L, I;16N (16-bit) and I (32-bit, holding 16-bit PNG data)
        grey = np.asarray(im, dtype=np.float64)
        grey = np.clip(np.rint(grey / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.array(im.convert("RGB"))  # a writable copy


def encode_image(array: np.ndarray, fmt: str = "jpeg", quality: int = 95) -> bytes:
    """Encode a uint8 (H, W, 3) RGB array as JPEG (default) or PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    kw = {"quality": quality} if fmt.lower() in ("jpeg", "jpg") else {}
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(
        buf, format=fmt.upper().replace("JPG", "JPEG"), **kw
    )
    return buf.getvalue()


def read_image_file(path) -> np.ndarray:
    """Read and decode an image file; DataError naming the path if missing or corrupt."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read image: {e.strerror}. Check the path.") from None
    return decode_image(data, where=str(path))


def resize_image(array: np.ndarray, size) -> np.ndarray:
    """Bilinear resize of a uint8 (H, W, 3) array to size (H, W); returned unchanged when already that size."""
    from PIL import Image

    h, w = size
    if array.shape[:2] == (h, w):
        return array
    return np.asarray(Image.fromarray(array).resize((w, h), Image.BILINEAR))
