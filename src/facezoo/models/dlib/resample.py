"""dlib's image resampling, reproduced to its float rounding (dlib/image_transforms/interpolation.h, image_pyramid.h):

resize_image (bilinear): output pixel (r, c) samples the input at (c * sx, r * sy), sx = (W_in - 1) / max(W_out - 1, 1)
  (same for y): left = floor(x), frac = x - left, weights (1 - fy)(1 - fx), (1 - fy) fx, fy (1 - fx), fy fx. dlib
  computes columns four at a time in float32 (x accumulated in float32 lanes, weights as float32 products, the
  sum ((tl + tr) + bl) + br; uint8 outputs truncated) until a block would read past the last column, and the
  remaining columns one by one in double (rows always in double); `_column_table` reproduces exactly that split.
pyramid_up (pyramid_down<2>): the image resized to (2H + 1, 2W + 2) (dlib's rect_up of the image rectangle);
  image coordinates map back by p / 2 - (1.25, 0.75) per level.
pyramid_down<2>: 5x5 binomial filter [1 4 6 4 1]^2 / 256 (integer, truncated), output pixel (r, c) from the input
  window with top-left (2r, 2c), size ((H - 3) // 2, (W - 3) // 2).
tiled pyramid (dnn input_rgb_image_pyramid): see tiled_pyramid_rects.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def lround(x):
    """C's lround: halves away from zero (dlib's drectangle -> rectangle)."""
    x = np.asarray(x, np.float64)
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def _row_table(n_in: int, n_out: int):
    """(top, bottom, frac) per output row: y accumulated in double from -scale, as dlib's loop does."""
    scale = (n_in - 1) / max(n_out - 1, 1)
    y = np.cumsum(np.concatenate([[-scale], np.full(n_out, scale)]))[1:]
    top = np.floor(y).astype(np.int64)
    return top, np.minimum(top + 1, n_in - 1), y - top


def _column_table(n_in: int, n_out: int, double_tail_frac: bool):
    """(left, right, frac, simd) per output column, following dlib's 4-lane float32 loop and its double tail.
    frac is float32 in the lanes; in the tail float32 (grey path) or double (RGB path, double_tail_frac)."""
    scale = (n_in - 1) / max(n_out - 1, 1)
    x0 = -4 * scale
    lanes = np.array([x0 + i * scale for i in range(4)], np.float64).astype(np.float32)
    step = np.float32(4 * scale)
    left = np.zeros(n_out, np.int64)
    right = np.zeros(n_out, np.int64)
    frac = np.zeros(n_out, np.float64)
    simd = np.zeros(n_out, bool)
    c = 0
    while True:
        lanes = (lanes + step).astype(np.float32)
        lo = lanes.astype(np.int64)  # truncation (_mm_cvttps_epi32); lanes are >= 0 here
        if lo[3] + 1 >= n_in:
            break
        take = min(4, n_out - c)
        if take <= 0:  # dlib writes all four lanes; only the first n_out columns exist in its buffer
            break
        sl = slice(c, c + take)
        left[sl], right[sl] = lo[:take], lo[:take] + 1
        frac[sl] = (lanes - lo.astype(np.float32)).astype(np.float32)[:take]
        simd[sl] = True
        c += 4
        if c >= n_out:
            break
    x = -scale + c * scale
    for j in range(c, n_out):
        x += scale
        lo = math.floor(x)
        left[j], right[j] = lo, min(lo + 1, n_in - 1)
        frac[j] = (x - lo) if double_tail_frac else float(np.float32(x - lo))
    return left, right, frac, simd


def resize_bilinear(src: torch.Tensor, out_h: int, out_w: int, uint8: bool = False) -> torch.Tensor:
    """dlib's resize_image (bilinear) of (C, H, W) planes -> (C, out_h, out_w), on src's device.

    uint8=False: float planes (dlib's grey float path, the DNN pyramid). uint8=True: pixel values 0..255 held in a
    float tensor, results truncated to integers (dlib's RGB path, pyramid_up)."""
    _, h, w = src.shape
    if out_h == 0 or out_w == 0 or h == 0 or w == 0:
        return src.new_zeros((src.shape[0], out_h, out_w))
    top, bottom, fy = _row_table(h, out_h)
    left, right, fx, simd = _column_table(w, out_w, double_tail_frac=uint8)
    dev = src.device
    rows_t, rows_b = torch.as_tensor(top, device=dev), torch.as_tensor(bottom, device=dev)
    cols_l, cols_r = torch.as_tensor(left, device=dev), torch.as_tensor(right, device=dev)
    s = src.float()
    tl, tr = s[:, rows_t][:, :, cols_l], s[:, rows_t][:, :, cols_r]
    bl, br = s[:, rows_b][:, :, cols_l], s[:, rows_b][:, :, cols_r]
    # float32 lanes: weights as float32 products, summed left to right
    fy32, fx32 = torch.as_tensor(fy.astype(np.float32), device=dev), torch.as_tensor(fx.astype(np.float32), device=dev)
    ify, ifx = torch.as_tensor((1 - fy).astype(np.float32), device=dev), 1 - fx32
    lanes = (ify[:, None] * ifx) * tl + (ify[:, None] * fx32) * tr
    lanes = lanes + (fy32[:, None] * ifx) * bl
    lanes = lanes + (fy32[:, None] * fx32) * br
    # double tail: (1 - fy) * ((1 - fx) tl + fx tr) + fy * ((1 - fx) bl + fx br)
    fxt = torch.as_tensor(fx, device=dev, dtype=torch.float64 if uint8 else torch.float32)
    fyd = torch.as_tensor(fy, device=dev, dtype=torch.float64)
    inner_t = (1 - fxt) * tl.to(fxt.dtype) + fxt * tr.to(fxt.dtype)
    inner_b = (1 - fxt) * bl.to(fxt.dtype) + fxt * br.to(fxt.dtype)
    tail = (1 - fyd)[:, None] * inner_t.double() + fyd[:, None] * inner_b.double()
    mask = torch.as_tensor(simd, device=dev)
    if uint8:
        return torch.where(mask, lanes.double().trunc(), tail.trunc()).clamp(0, 255).float()
    return torch.where(mask, lanes, tail.float())


def pyramid_up_size(h: int, w: int) -> tuple[int, int]:
    """Output (H, W) of dlib's pyramid_up(img, pyramid_down<2>): bottom + 1, right + 1 of the up-mapped rect."""
    return int(lround((h - 1 + 0.75) * 2)) + 1, int(lround((w - 1 + 1.25) * 2)) + 1


def pyramid_up(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) float pixel planes (0..255 integers) -> (3, 2H + 1, 2W + 2), dlib's pyramid_up of an RGB image."""
    oh, ow = pyramid_up_size(*image.shape[1:])
    return resize_bilinear(image, oh, ow, uint8=True)


def pyramid_down2(image: np.ndarray) -> np.ndarray:
    """dlib's pyramid_down<2> of a uint8 (H, W[, C]) image: 5x5 binomial, integer /256 truncated."""
    img = image.astype(np.int64)
    h, w = img.shape[:2]
    if h <= 8 or w <= 8:
        return np.zeros((0, 0) + img.shape[2:], np.uint8)
    oh, ow = (h - 3) // 2, (w - 3) // 2
    k = (1, 4, 6, 4, 1)
    rows = sum(k[i] * img[:, i : i + 2 * ow : 2] for i in range(5))  # (h, ow[, C])
    out = sum(k[i] * rows[i : i + 2 * oh : 2] for i in range(5))
    return (out // 256).astype(np.uint8)


def tiled_pyramid_rects(nr: int, nc: int, rate: int, padding: int, outer_padding: int):
    """dlib's compute_tiled_image_pyramid_details for pyramid_down<rate>: the levels' rectangles (left, top, right,
    bottom, inclusive) inside one tiled image, and its (rows, cols).

    Level sizes: floor(s * (rate - 1) / rate) per side while >= 5 rows. Levels go down a first column (top-left
    at (outer, outer), each `padding` below the previous) until the next one fits beside the first level and the
    column is at least half the total height; the rest go up a second column from the bottom right, stopping at
    one that would overlap the first level."""
    if nr * nc == 0:
        return [], 0, 0
    sizes = [(nr, nc)]
    r = (rate - 1) / rate
    while True:
        nr, nc = math.floor(r * nr), math.floor(r * nc)
        if nr * nc == 0 or nr < 5:
            break
        sizes.append((nr, nc))
    total = sum(h + padding for h, _ in sizes) - 2 * padding
    height, prev_w = 0, 0
    for h, w in sizes:
        if w <= sizes[0][1] - prev_w - padding and (height - sizes[0][0]) * 2 >= total - sizes[0][0]:
            break
        height += h + padding
        prev_w = w
    height -= padding
    width = sizes[0][1]
    rects, y, i = [], outer_padding, 0
    while y < height + outer_padding and i < len(sizes):
        h, w = sizes[i]
        rects.append((outer_padding, y, outer_padding + w - 1, y + h - 1))
        y += h + padding
        i += 1
    y -= padding
    first = rects[0]
    while i < len(sizes):
        h, w = sizes[i]
        x1, y1 = outer_padding + width - 1, y - 1
        rect = (x1 - (w - 1), y1 - (h - 1), x1, y1)
        overlap = not (rect[2] < first[0] or rect[0] > first[2] or rect[3] < first[1] or rect[1] > first[3])
        if overlap:
            break
        rects.append(rect)
        y -= h + padding
        i += 1
    return rects, height + 2 * outer_padding, width + 2 * outer_padding
