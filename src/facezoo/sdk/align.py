"""5-point face alignment: a least-squares similarity transform (Umeyama) onto the ArcFace template, then a
bilinear warp with a constant border, in numpy (one image) or torch (a batch, on any device). No OpenCV needed.

Coordinate convention (the one cv2.warpAffine uses): pixel (x, y) is the centre of column x, row y, at integer
coordinates; x grows to the right, y down. A matrix M (2x3 or 3x3) maps source coordinates to output coordinates,
[x', y'] = M @ [x, y, 1]; each output pixel is sampled at M^-1 applied to its own integer coordinates.
Sizes are (H, W), as everywhere in facezoo (an int means a square).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from ..geometry import Size, arcface_template, as_points, size_hw, umeyama

__all__ = [
    "align_face",
    "align_faces",
    "arcface_template",
    "estimate_norm",
    "umeyama",
    "warp_affine",
    "warp_affine_torch",
]

_hw = size_hw  # the name sdk/pipeline.py imports; it can import geometry.size_hw directly once that file is free


def _affine3(M, name: str = "M") -> np.ndarray:
    """Return a 2x3 or 3x3 affine matrix as an invertible 3x3 float64 array."""
    m = np.asarray(M, dtype=np.float64)
    if m.shape not in ((2, 3), (3, 3)) or not np.isfinite(m).all():
        raise DataError(f"{name} must be a finite 2x3 or 3x3 affine matrix (source -> output), got shape {m.shape}.")
    out = np.eye(3)
    out[:2] = m[:2]
    if abs(np.linalg.det(out[:2, :2])) < 1e-12:
        raise DataError(f"{name} is singular (its 2x2 part has determinant 0): it cannot map an image.")
    return out


def _image(image) -> np.ndarray:
    """Check an uint8 (H, W) or (H, W, C) image."""
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or img.shape[0] < 1 or img.shape[1] < 1:
        raise DataError(f"image must be a uint8 array of shape (H, W, 3) (or (H, W)), got {img.dtype} {img.shape}.")
    return img


def warp_affine(image, M, output_size: Size, border_value: float = 0) -> np.ndarray:
    """Warp an uint8 (H, W[, C]) image by M (source -> output), bilinear, constant border; returns uint8 (h, w[, C]).

    out(x', y') = sum of the 4 neighbours of (x, y) = M^-1 (x', y') with weights (1-fx)(1-fy), fx(1-fy), (1-fx)fy,
    fx fy; neighbours outside the image take border_value. Matches cv2.warpAffine(INTER_LINEAR, BORDER_CONSTANT)
    up to cv2's 1/32-pixel fixed-point coordinates (within 1 grey level on smooth images).
    """
    img = _image(image)
    h, w = size_hw(output_size)
    inv = np.linalg.inv(_affine3(M))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    hin, win = img.shape[:2]
    sx = np.clip(inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2], -2.0, win + 1.0)
    sy = np.clip(inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2], -2.0, hin + 1.0)
    x0, y0 = np.floor(sx), np.floor(sy)
    fx, fy = sx - x0, sy - y0
    x0, y0 = x0.astype(np.intp), y0.astype(np.intp)
    pad = [(1, 1), (1, 1)] + [(0, 0)] * (img.ndim - 2)
    padded = np.pad(img.astype(np.float64), pad, mode="constant", constant_values=float(border_value))
    # In padded coordinates pixel x sits at x + 1; clipping to the pad ring makes every outside tap a border tap.
    xa, xb = np.clip(x0 + 1, 0, win + 1), np.clip(x0 + 2, 0, win + 1)
    ya, yb = np.clip(y0 + 1, 0, hin + 1), np.clip(y0 + 2, 0, hin + 1)
    if img.ndim == 3:
        fx, fy = fx[..., None], fy[..., None]
    top = padded[ya, xa] * (1 - fx) + padded[ya, xb] * fx
    bottom = padded[yb, xa] * (1 - fx) + padded[yb, xb] * fx
    out = top * (1 - fy) + bottom * fy
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def warp_affine_torch(
    images: torch.Tensor, M: torch.Tensor, output_size: Size, border_value: float = 0.0
) -> torch.Tensor:
    """Batched bilinear warp: float (B, C, H, W) images, M (B, 2, 3) or (B, 3, 3) source -> output; (B, C, h, w).

    Same convention as warp_affine: grid_sample with align_corners=True puts normalised -1 and +1 on the centres of
    pixels 0 and W-1, so x_norm = 2x / (W - 1) - 1 addresses pixel x at its integer coordinate. Zero padding plus a
    warped coverage mask gives the constant border value. Runs on the images' device, no host sync.
    """
    if images.ndim != 4 or not images.is_floating_point():
        shape = tuple(images.shape)
        raise DataError(f"images must be a float tensor of shape (B, C, H, W), got {images.dtype} {shape}.")
    b, _, hin, win = images.shape
    if M.ndim != 3 or M.shape[0] != b or tuple(M.shape[1:]) not in ((2, 3), (3, 3)):
        raise DataError(f"M must have shape ({b}, 2, 3) (one source -> output affine per image), got {tuple(M.shape)}.")
    h, w = size_hw(output_size)
    m = M[:, :2].to(device=images.device, dtype=torch.float64)
    a_inv = torch.linalg.inv(m[:, :, :2])  # (B, 2, 2)
    ys, xs = torch.meshgrid(
        torch.arange(h, device=images.device, dtype=torch.float64),
        torch.arange(w, device=images.device, dtype=torch.float64),
        indexing="ij",
    )
    out_xy = torch.stack([xs, ys], -1).reshape(1, h * w, 2) - m[:, None, :, 2]
    src = out_xy @ a_inv.transpose(1, 2)  # (B, h*w, 2) source x, y
    norm = torch.tensor([2.0 / max(win - 1, 1), 2.0 / max(hin - 1, 1)], device=images.device, dtype=torch.float64)
    grid = (src * norm - 1.0).reshape(b, h, w, 2).to(images.dtype)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    if border_value != 0:
        ones = torch.ones_like(images[:, :1])
        cover = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        out = out + border_value * (1.0 - cover)
    return out


def estimate_norm(landmarks, output_size: Size = (112, 112)) -> np.ndarray:
    """The 2x3 source -> crop matrix mapping 5 landmarks (x, y) onto arcface_template(output_size), least squares."""
    lmk = as_points(landmarks, "landmarks", 5)
    return umeyama(lmk, arcface_template(output_size))[:2]


def align_face(image, landmarks, output_size: Size = (112, 112)) -> tuple[np.ndarray, np.ndarray]:
    """Align one face: (crop uint8 (h, w, C), M 2x3 source -> crop) from 5 landmarks (5, 2) in pixel (x, y)."""
    M = estimate_norm(landmarks, output_size)
    return warp_affine(image, M, output_size, border_value=0), M


def align_faces(images, landmarks, output_size: Size = (112, 112)) -> tuple[np.ndarray, np.ndarray]:
    """Align N faces: images a list or (N, H, W, C) array, landmarks (N, 5, 2); crops (N, h, w, C), M (N, 2, 3).

    The same image may appear several times (several faces in one photo). For a batch already on a GPU, use
    estimate_norm per face and warp_affine_torch.
    """
    lmks = np.asarray(landmarks, dtype=np.float64)
    if lmks.ndim != 3 or lmks.shape[1:] != (5, 2):
        raise DataError(f"landmarks must have shape (N, 5, 2) (5 x, y points per face), got {lmks.shape}.")
    if len(images) != len(lmks):
        raise DataError(f"got {len(images)} images but {len(lmks)} landmark sets; pass one (5, 2) set per image.")
    pairs = [align_face(img, lmk, output_size) for img, lmk in zip(images, lmks)]
    h, w = size_hw(output_size)
    if not pairs:
        return np.zeros((0, h, w, 3), np.uint8), np.zeros((0, 2, 3))
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def dlib_chip_padding(template, output_size: Size) -> float | None:
    """The padding p when `template` is facezoo's 5 points in a dlib chip of output_size (square) with padding p
    (sdk.dlib_chip: size * (p + f) / (1 + 2p) for each mean-face coordinate f), else None."""
    from ..models.dlib.mean_face import FACEZOO_FIVE, facezoo_template

    h, w = size_hw(output_size)
    t = np.asarray(template, np.float64) if template is not None else None
    if t is None or t.shape != (5, 2) or h != w or not np.isfinite(t).all():
        return None
    f, x = FACEZOO_FIVE[0, 0], t[0, 0]  # the image-left eye: far from the centre, so p is well determined
    p = (w * f - x) / (2 * x - w)
    if not 0 <= p <= 10 or not np.allclose(t, facezoo_template(w, p), atol=1e-6):
        return None
    return float(p)


def align_for_model(image, landmarks, output_size: Size = (112, 112), template=None) -> tuple[np.ndarray, np.ndarray]:
    """Align one face as a model's metadata (ModelMeta.template at its input size) asks: a dlib face chip (dlib's
    similarity fit, rotated rectangle and pyramid-then-bilinear extraction, sdk.dlib_chip) when the template is
    facezoo's 5 points in a dlib chip, else align_face (ArcFace template at output_size, as before).
    Returns (crop uint8 (h, w, C), M 2x3 source -> crop)."""
    padding = dlib_chip_padding(template, output_size)
    if padding is None:
        return align_face(image, landmarks, output_size)
    from .dlib_chip import extract_chip, face_chip_details

    size = size_hw(output_size)[0]
    details = face_chip_details(("facezoo", as_points(landmarks, "landmarks", 5)), size, padding)
    c, s = np.cos(details["angle"]), np.sin(details["angle"])
    left, top, right, _ = details["rect"]
    scale = (right - left) / max(size - 1, 1)  # image pixels per chip pixel (corner pixel to corner pixel)
    centre = np.array([(left + right) / 2, (top + details["rect"][3]) / 2])
    a = scale * np.array([[c, -s], [s, c]])  # chip -> image
    t = centre - a @ np.array([(size - 1) / 2, (size - 1) / 2])
    inv = np.linalg.inv(a)
    return extract_chip(_image(image), details), np.concatenate([inv, (-inv @ t)[:, None]], 1)
