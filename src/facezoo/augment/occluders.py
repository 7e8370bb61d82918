"""Occluders other than masks, drawn from the landmarks: glasses, sunglasses, headband, headscarf, a hand, random
erasing (OCCLUDERS, by name).

Each is a set of shapes in 112x112 ArcFace-template pixels (eyes at y 51.6, mouth at 92.3), mapped into the image by
the similarity that takes the template points onto the face's 5 points (geometry.umeyama), drawn with Pillow on a 2x
window and box-filtered to an RGBA layer (float32 (H, W, 4), [0, 1]). An occluder is
`fn(rng, M, shape, image) -> layer`: M the 2x3 template -> image similarity, image the uint8 photo (a hand takes its
skin colour from the face). Those in SHADED are composited with the face's shading (blend.py); a headscarf, which
covers the background too, sunglasses' lenses and erased blocks are not.
"""

from __future__ import annotations

import math

import numpy as np

from ..geometry import ARCFACE_TEMPLATE_112, umeyama
from ..registry import Registry
from .landmarks import FaceLandmarks

OCCLUDERS: Registry = Registry("occluder")
SHADED = frozenset({"glasses", "headband", "hand"})  # lit like the face; the others reach past it or are opaque
_T = np.asarray(ARCFACE_TEMPLATE_112, float)
_CX = float(_T[:, 0].mean())  # the face's vertical midline in the template


def template_to_image(landmarks: FaceLandmarks) -> np.ndarray:
    """The 2x3 similarity mapping 112-template pixels onto the face's 5 points (least squares)."""
    return umeyama(_T, landmarks.five)[:2]


def _superellipse(cx, cy, a, b, n=2.0, count=40) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, count, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    return np.stack([cx + a * np.sign(c) * np.abs(c) ** (2 / n), cy + b * np.sign(s) * np.abs(s) ** (2 / n)], 1)


def _capsule(p0, p1, r, count=10) -> np.ndarray:
    """A stadium (finger) from p0 to p1 with radius r, as a polygon."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    ang = math.atan2(d[1], d[0])
    a1 = np.linspace(ang + math.pi / 2, ang - math.pi / 2, count)
    a0 = np.linspace(ang - math.pi / 2, ang - 3 * math.pi / 2, count)
    return np.concatenate(
        [p1 + r * np.stack([np.cos(a1), np.sin(a1)], 1), p0 + r * np.stack([np.cos(a0), np.sin(a0)], 1)]
    )


def draw_layer(shape, M: np.ndarray, items: list, k: int = 2) -> np.ndarray:
    """Composite shapes (template pixels) into an RGBA layer of the image: items are (points (n, 2), rgba (4,) in
    [0, 1], width) with width 0 for a filled polygon, > 0 for a polyline of that width (template pixels), or
    (points, rgba, 0, hole_points) for a polygon with a hole; later items go over earlier ones."""
    from PIL import Image, ImageDraw

    h, w = shape
    out = np.zeros((h, w, 4), np.float32)
    scale = math.sqrt(abs(np.linalg.det(M[:, :2])))
    mapped = [np.asarray(it[0], float) @ M[:, :2].T + M[:, 2] for it in items]
    allp = np.concatenate(mapped)
    x0, y0 = (np.floor(allp.min(0)) - 2).astype(int).clip(0)
    x1, y1 = np.minimum(np.ceil(allp.max(0)) + 3, [w, h]).astype(int)
    if x1 <= x0 or y1 <= y0:
        return out
    ww, hh = (x1 - x0) * k, (y1 - y0) * k
    win = np.zeros((hh, ww, 4), np.float64)
    for item, pts in zip(items, mapped):
        rgba, width = np.asarray(item[1], float), item[2]
        q = [tuple(v) for v in ((pts - [x0, y0] + 0.5) * k).tolist()]
        cover = Image.new("L", (ww, hh), 0)
        d = ImageDraw.Draw(cover)
        if width > 0:
            d.line(q, fill=255, width=max(1, round(width * scale * k)), joint="curve")
        else:
            d.polygon(q, fill=255)
            if len(item) > 3:
                hole = np.asarray(item[3], float) @ M[:, :2].T + M[:, 2]
                d.polygon([tuple(v) for v in ((hole - [x0, y0] + 0.5) * k).tolist()], fill=0)
        a = np.asarray(cover, np.float64)[..., None] / 255.0 * rgba[3]
        win[..., :3] = win[..., :3] * (1 - a) + rgba[:3] * a  # premultiplied "over"
        win[..., 3:] = win[..., 3:] * (1 - a) + a
    small = win.reshape(y1 - y0, k, x1 - x0, k, 4).mean((1, 3))
    al = small[..., 3:]
    small[..., :3] = np.where(al > 1e-6, small[..., :3] / np.maximum(al, 1e-6), 0)
    out[y0:y1, x0:x1] = small
    return out


def _frame_colour(rng) -> np.ndarray:
    choices = np.array([[0.05, 0.05, 0.06], [0.28, 0.17, 0.1], [0.75, 0.62, 0.35], [0.7, 0.7, 0.72]])
    c = choices[rng.integers(len(choices))] if rng.random() < 0.8 else rng.uniform(0, 1, 3)
    return np.clip(c + rng.normal(0, 0.03, 3), 0, 1)


def _glasses(rng, M, shape, sun: bool) -> np.ndarray:
    a, b = rng.uniform(9.0, 12.5), rng.uniform(6.0, 9.5)
    n = rng.uniform(2.0, 5.0)
    dy = rng.uniform(-0.5, 1.5)
    width = rng.uniform(0.8, 2.0)
    frame = np.r_[_frame_colour(rng), 1.0]
    if sun:
        lens = np.r_[np.clip(rng.uniform(0.02, 0.25) * rng.uniform(0.5, 1.5, 3), 0, 1), rng.uniform(0.85, 0.97)]
    else:
        lens = np.r_[rng.uniform(0.8, 1.0, 3), rng.uniform(0.04, 0.14)]
    items = []
    lenses = [_superellipse(x, y + dy, a, b, n) for x, y in _T[:2]]
    for poly in lenses:
        items.append((poly, lens, 0))
    for poly in lenses:
        items.append((np.concatenate([poly, poly[:1]]), frame, width))
    (lx, ly), (rx, ry) = _T[0], _T[1]
    bridge = np.array(
        [[lx + a * 0.95, ly + dy - b * 0.3], [_CX, ly + dy - b * 0.55], [rx - a * 0.95, ry + dy - b * 0.3]]
    )
    items.append((bridge, frame, width))
    for s, (x, y) in ((-1, _T[0]), (1, _T[1])):
        items.append((np.array([[x + s * a, y + dy - b * 0.4], [_CX + s * 52.0, y + dy - b * 0.2]]), frame, width))
    return draw_layer(shape, M, items)


@OCCLUDERS.register("glasses")
def glasses(rng, M, shape, image=None) -> np.ndarray:
    """Clear glasses: frames of random shape (ellipse to rounded rectangle) and colour, lightly tinted lenses."""
    return _glasses(rng, M, shape, sun=False)


@OCCLUDERS.register("sunglasses")
def sunglasses(rng, M, shape, image=None) -> np.ndarray:
    """Sunglasses: dark, nearly opaque lenses over the eyes."""
    return _glasses(rng, M, shape, sun=True)


@OCCLUDERS.register("headband")
def headband(rng, M, shape, image=None) -> np.ndarray:
    """A band across the forehead, above the brows, following the head's curve."""
    yc, t = rng.uniform(16.0, 30.0), rng.uniform(5.0, 11.0)
    xs = np.linspace(_CX - 54, _CX + 54, 25)
    yy = yc + 9.0 * ((xs - _CX) / 54) ** 2
    poly = np.concatenate([np.stack([xs, yy - t / 2], 1), np.stack([xs, yy + t / 2], 1)[::-1]])
    colour = np.r_[rng.uniform(0.05, 0.95, 3), 1.0]
    items = [(poly, colour, 0)]
    if rng.random() < 0.5:  # a stripe
        stripe = np.stack([xs, yy + rng.uniform(-0.2, 0.2) * t], 1)
        items.append((stripe, np.r_[rng.uniform(0, 1, 3), 1.0], t * 0.2))
    return draw_layer(shape, M, items)


@OCCLUDERS.register("headscarf")
def headscarf(rng, M, shape, image=None) -> np.ndarray:
    """A headscarf: everything but the face oval (forehead line to below the chin) is fabric."""
    top, half = rng.uniform(22.0, 34.0), rng.uniform(32.0, 38.0)
    bottom = rng.uniform(116.0, 126.0)
    cy, hb = (top + bottom) / 2, (bottom - top) / 2
    opening = _superellipse(_CX, cy, half, hb, rng.uniform(2.0, 2.6), 48)
    outer = np.array([[-80, -80], [192, -80], [192, 192], [-80, 192]], float)
    colour = _frame_colour(rng) if rng.random() < 0.3 else rng.uniform(0.05, 0.95, 3)
    items = [(outer, np.r_[colour, 1.0], 0, opening)]
    for _ in range(int(rng.integers(2, 5))):  # folds: darker curved strokes around the face
        r = rng.uniform(1.08, 1.35)
        ang = np.linspace(rng.uniform(0.6, 1.2) * math.pi, rng.uniform(1.8, 2.4) * math.pi, 16)
        fold = np.stack([_CX + half * r * np.cos(ang), cy + hb * r * np.sin(ang)], 1)
        items.append((fold, np.r_[colour * 0.75, 0.6], rng.uniform(1.0, 2.5)))
    return draw_layer(shape, M, items)


def _skin(image, M, rng) -> np.ndarray:
    """The face's skin colour: the median of a patch on each cheek (template points mapped into the image); without
    an image, a tone drawn between light and dark skin."""
    light, dark = np.array([0.93, 0.79, 0.69]), np.array([0.34, 0.22, 0.16])
    if image is None:
        return light + rng.uniform(0, 1) * (dark - light)
    h, w = image.shape[:2]
    pts = np.array([[40.0, 72.0], [72.0, 72.0]]) @ M[:, :2].T + M[:, 2]
    r = max(1, int(0.06 * math.sqrt(abs(np.linalg.det(M[:, :2]))) * 112))
    patches = []
    for x, y in pts.round().astype(int):
        patch = image[max(0, y - r) : min(h, y + r + 1), max(0, x - r) : min(w, x + r + 1)].reshape(-1, 3)
        if len(patch):
            patches.append(patch)
    if not patches:
        return light + rng.uniform(0, 1) * (dark - light)
    return np.median(np.concatenate(patches), 0) / 255.0


@OCCLUDERS.register("hand")
def hand(rng, M, shape, image=None) -> np.ndarray:
    """A hand over part of the face (the mouth, a cheek or an eye), fingers pointing inward from outside it, in the
    face's own skin colour (or, sometimes, a glove)."""
    skin = _skin(image, M, rng) if rng.random() < 0.85 else rng.uniform(0.05, 0.9, 3)
    target = np.array([[_CX, 92.0], [38.0, 78.0], [74.0, 78.0], [_CX, 70.0], [44.0, 55.0], [68.0, 55.0]])
    cx, cy = target[rng.integers(len(target))] + rng.normal(0, 4, 2)
    ang = rng.uniform(0, 2 * math.pi)  # the direction the fingers point (toward the target), hand comes from -dir
    d = np.array([math.cos(ang), math.sin(ang)])
    nrm = np.array([-d[1], d[0]])
    size = rng.uniform(0.85, 1.2)
    palm_w, palm_l, fl = 26.0 * size, 30.0 * size, 26.0 * size
    wrist = np.array([cx, cy]) - d * (palm_l + fl * 0.6)
    palm = np.array(
        [wrist - nrm * palm_w * 0.42 - d * 30, wrist + nrm * palm_w * 0.42 - d * 30, wrist + nrm * palm_w * 0.5,
         wrist + nrm * palm_w * 0.5 + d * palm_l, wrist - nrm * palm_w * 0.5 + d * palm_l, wrist - nrm * palm_w * 0.5]
    )  # fmt: skip
    col = np.r_[np.clip(skin, 0, 1), 1.0]
    items = [(palm, col, 0)]
    base = wrist + d * palm_l
    spread = rng.uniform(-0.12, 0.12)
    for j, length in enumerate((0.85, 1.0, 0.95, 0.75)):
        off = (j - 1.5) / 1.5 * palm_w * 0.38
        tip_dir = d * math.cos(spread * (j - 1.5)) + nrm * math.sin(spread * (j - 1.5))
        p0 = base + nrm * off - d * 3
        items.append((_capsule(p0, p0 + tip_dir * fl * length, palm_w * 0.12), col, 0))
    side = 1 if rng.random() < 0.5 else -1
    t0 = wrist + nrm * side * palm_w * 0.45 + d * palm_l * 0.3
    items.append((_capsule(t0, t0 + (nrm * side * 0.7 + d * 0.7) * fl * 0.7, palm_w * 0.13), col, 0))
    shadow = np.r_[np.clip(skin * 0.7, 0, 1), 0.5]
    for j in range(3):  # the gaps between the fingers
        off = (j - 1.0) / 1.5 * palm_w * 0.38
        items.append((np.array([base + nrm * off, base + nrm * off + d * fl * 0.5]), shadow, 0.6))
    return draw_layer(shape, M, items)


@OCCLUDERS.register("erase")
def erase(rng, M, shape, image=None) -> np.ndarray:
    """Random erasing (Zhong et al., AAAI 2020) on the face: a rectangle of 2-25% of the face box, aspect ratio
    0.3-3.3, filled with noise or one colour."""
    area = rng.uniform(0.02, 0.25) * 96.0 * 96.0
    ratio = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
    rw, rh = min(96.0, math.sqrt(area * ratio)), min(96.0, math.sqrt(area / ratio))
    cx, cy = rng.uniform(8 + rw / 2, 104 - rw / 2), rng.uniform(16 + rh / 2, 112 - rh / 2)
    rect = np.array([[cx - rw / 2, cy - rh / 2], [cx + rw / 2, cy - rh / 2], [cx + rw / 2, cy + rh / 2],
                     [cx - rw / 2, cy + rh / 2]])  # fmt: skip
    layer = draw_layer(shape, M, [(rect, np.r_[rng.uniform(0, 1, 3), 1.0], 0)])
    if rng.random() < 0.5:
        m = layer[..., 3] > 0
        layer[m, :3] = rng.uniform(0, 1, (int(m.sum()), 3))
    return layer
