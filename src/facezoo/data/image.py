"""Encoded image bytes <-> uint8 HWC RGB arrays (Pillow; no torchvision)."""

from __future__ import annotations

import io

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


def decode_image(data: bytes, where: str = "image") -> np.ndarray:
    """Decode JPEG/PNG/... bytes to a uint8 (H, W, 3) RGB array; DataError naming `where` if corrupt."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return np.array(im.convert("RGB"))  # a writable copy
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(
            f"{where}: cannot decode image ({len(data)} bytes): {e}. "
            "Re-encode or remove it (training can skip corrupt samples with data.skip_corrupt=true)."
        ) from None


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
