"""The rasteriser: an identity under a nuisance drawn as polygons on a 2x canvas (Pillow), box-downsampled, then
passed through a camera model. The face is aligned like an ArcFace crop: a least-squares similarity maps the
(noisy) projected eye, nose-tip and mouth-corner points onto the 112x112 template scaled to the canvas, so
identity lives in the relative geometry, not in where the eyes are.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ...geometry import ARCFACE_TEMPLATE_112, umeyama
from ..image import encode_image
from .face import SKIN_DARK, SKIN_LIGHT, IdentityParams, Nuisance, rgb, sample_nuisance


def render_face(
    identity: IdentityParams, rng: np.random.Generator, image_size: int = 112, nuisance: float = 1.0
) -> np.ndarray:
    """Render one uint8 (S, S, 3) RGB aligned face of `identity`, nuisance drawn from `rng` (scaled by `nuisance`)."""
    return render(identity, sample_nuisance(rng, nuisance), image_size)


def render_jpeg(identity: IdentityParams, nz: Nuisance, image_size: int = 112) -> bytes:
    """`render` encoded as JPEG at the image's own quality (drawn in [75, 95])."""
    return encode_image(render(identity, nz, image_size), "jpeg", quality=nz.jpeg_quality)


# --------------------------------------------------------------------------------------------- geometry
# A shape is (kind, points (n, 2) face frame, mode, z, fill, width): mode 0 = silhouette (scaled like the head
# outline), 1 = on the head ellipsoid (+ z extra depth), 2 = explicit depth z.  kind: "poly" | "line".


def _shade(c, f: float, alpha: int | None = None) -> tuple:
    out = rgb(np.asarray(c, float) * f)
    return out if alpha is None else out + (int(alpha),)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 20) -> np.ndarray:
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def _outline(p: IdentityParams, t: np.ndarray, grow: float = 0.0) -> np.ndarray:
    """Head outline at angles t (y down: sin t > 0 is the lower face): an ellipse with a tapered jaw and temples."""
    s, c = np.sin(t), np.cos(t)
    low = np.clip(s, 0, None)
    width = (p.face_w + grow) * (1 - (1 - p.jaw) * low**p.chin_p) * (1 - p.temple * np.clip(-s, 0, None) ** 2)
    return np.stack([width * c, (p.face_h + grow) * s], 1)


class _Scene:
    """Collects face-frame shapes, projects them in one batch, then draws them in order."""

    def __init__(self):
        self.shapes: list = []

    def add(self, kind, pts, mode, fill, width=0, z=0.0):
        pts = np.asarray(pts, float)
        self.shapes.append(
            (kind, pts, np.full(len(pts), mode), np.broadcast_to(np.asarray(z, float), len(pts)), fill, width)
        )

    def project(self, p: IdentityParams, nz: Nuisance, px: float, landmarks: np.ndarray) -> list:
        """3-D rotate (orthographic), then align the noisy projected landmarks to the template (2x canvas units)."""
        pts = np.concatenate([s[1] for s in self.shapes] + [landmarks[:, :2]])
        mode = np.concatenate([s[2] for s in self.shapes] + [np.ones(5, int)])
        zx = np.concatenate([s[3] for s in self.shapes] + [landmarks[:, 2]])
        out = _rotate(p, nz, pts, mode, zx)
        lm = out[-5:] + np.asarray(nz.lm_noise)
        dst = np.asarray(ARCFACE_TEMPLATE_112) * px  # the 112x112 template scaled to the canvas
        fit = umeyama(lm, dst)
        m, t = fit[:2, :2], fit[:2, 2]
        centre = np.array([56.0, 56.0]) * px
        m = m * nz.scale
        t = (t - centre) * nz.scale + centre + np.asarray(nz.shift) * px
        out = out[:-5] @ m.T + t
        shapes, i = [], 0
        for kind, q, _, _, fill, width in self.shapes:
            shapes.append((kind, out[i : i + len(q)], fill, width))
            i += len(q)
        return shapes


def _rotate(p: IdentityParams, nz: Nuisance, pts, mode, zx) -> np.ndarray:
    """Orthographic projection of face-frame points after yaw, pitch, roll (mode as in _Scene)."""
    x, y = pts[:, 0], pts[:, 1]
    d = p.depth * p.face_w
    z_surf = d * np.sqrt(np.clip(1 - (x / p.face_w) ** 2 - (y / p.face_h) ** 2, 0, None)) + zx
    z = np.where(mode == 1, z_surf, np.where(mode == 2, zx, 0.0))
    cy, sy, cp, sp = math.cos(nz.yaw), math.sin(nz.yaw), math.cos(nz.pitch), math.sin(nz.pitch)
    x1, z1 = x * cy + z * sy, -x * sy + z * cy
    y1 = y * cp - z1 * sp
    sil = mode == 0  # the silhouette of a rotated ellipsoid is an ellipse with these half axes
    x1 = np.where(sil, x * math.sqrt(cy**2 + (d / p.face_w) ** 2 * sy**2), x1)
    y1 = np.where(sil, y * math.sqrt(cp**2 + (d / p.face_h) ** 2 * sp**2), y1)
    cr, sr = math.cos(nz.roll), math.sin(nz.roll)
    return np.stack([x1 * cr - y1 * sr, x1 * sr + y1 * cr], 1)


# --------------------------------------------------------------------------------------------- face parts


def _hair_back(sc: _Scene, p: IdentityParams):
    if p.hair_style == 2:  # long: a curtain behind the head down to the shoulders
        t = np.linspace(math.pi * 0.95, math.pi * 2.05, 18)
        top = _outline(p, t, grow=p.hair_vol + 2)
        low = p.face_h * 1.5
        pts = np.concatenate([top, [[p.face_w + p.hair_vol + 6, low], [-(p.face_w + p.hair_vol + 6), low]]])
        sc.add("poly", pts, 0, _shade(p.hair, 0.85))
    elif p.hair_style == 5:
        sc.add(
            "poly",
            _ellipse(0, -p.face_h * 0.35, p.face_w + 3 * p.hair_vol, p.face_h * 0.8 + p.hair_vol, 24),
            0,
            _shade(p.hair, 0.9),
        )


def _hair_front(sc: _Scene, p: IdentityParams):
    if p.hair_style == 0:
        return
    fw, fh = p.face_w, p.face_h
    grow = p.hair_vol * (0.4 if p.hair_style == 1 else 1.0)
    side_y = p.eye_y - (2.0 if p.hair_style != 1 else 6.0)  # where the side hair (sideburn) ends
    a0 = math.pi + math.asin(min(0.99, -side_y / fh))  # left-side angle of that height on the outline
    t = np.linspace(a0, 3 * math.pi - a0, 22)
    outer = _outline(p, t, grow=grow)
    outer[0, 1] = outer[-1, 1] = side_y
    xs = np.linspace(fw * 0.9, -fw * 0.9, 17)
    r = np.abs(xs) / fw
    line = -p.hairline * fh - p.recede * 0.22 * fh * r**2 + p.peak * 5 * np.exp(-((xs / 5) ** 2))
    if p.hair_style == 3:  # fringe: low, jagged
        line = np.minimum(p.eye_y - p.brow_gap - 3 + 2.0 * (np.arange(17) % 2), line + 0.35 * fh * (1 - r**2))
    elif p.hair_style == 4:  # side part: swept, higher on one side
        line = line + 6 * (1 - r) * (0.5 + 0.5 * np.tanh(3 * p.part * xs / fw))
    line = np.maximum(line, -fh * 0.98)
    ends = _outline(p, np.array([3 * math.pi - a0, a0]), grow=-1.5)
    ends[:, 1] = side_y
    inner = np.concatenate([ends[:1], np.stack([xs, line], 1), ends[1:]])
    sc.add("poly", np.concatenate([outer, inner]), 0, p.hair)
    sc.shapes[-1][2][len(outer) + 1 : -1] = 1  # the forehead hairline lies on the face surface


def _ears(sc: _Scene, p: IdentityParams):
    for s in (-1, 1):
        e = _ellipse(s * (p.face_w - 1), p.ear_y, p.ear_w, p.ear_h, 14)
        sc.add("poly", e, 2, _shade(p.skin, 0.93), z=-0.25 * p.depth * p.face_w)
        sc.add(
            "poly",
            _ellipse(s * (p.face_w - 0.5), p.ear_y, p.ear_w * 0.45, p.ear_h * 0.6, 10),
            2,
            _shade(p.skin, 0.78),
            z=-0.25 * p.depth * p.face_w,
        )


def _neck(sc: _Scene, p: IdentityParams, nz: Nuisance):
    fw, fh = p.face_w, p.face_h
    sc.add(
        "poly",
        [
            [-fw * 2.6, fh * 3],
            [-fw * 2.3, fh * 1.55],
            [-fw * 0.6, fh * 1.2],
            [fw * 0.6, fh * 1.2],
            [fw * 2.3, fh * 1.55],
            [fw * 2.6, fh * 3],
        ],
        0,
        rgb(nz.clothes),
    )
    sc.add(
        "poly",
        [[-fw * 0.5, fh * 0.5], [fw * 0.5, fh * 0.5], [fw * 0.55, fh * 1.35], [-fw * 0.55, fh * 1.35]],
        0,
        _shade(p.skin, 0.8),
    )


def _eye(sc: _Scene, p: IdentityParams, nz: Nuisance, s: int, px_w: float):
    """Almond eye; u points outward from the nose so left/right eyes mirror. Iris clipped to the lids."""
    ew, up, lo = p.eye_w, p.eye_h * nz.eye_open, p.eye_h * p.eye_low * min(1.0, nz.eye_open + 0.3)
    cx, cy = s * p.eye_dx, p.eye_y

    def place(u, v):
        return np.stack([cx + s * u, cy + v - p.eye_tilt * u], 1)

    u = np.linspace(-ew, ew, 13)
    f = 1 - (u / ew) ** 2
    almond = np.concatenate([place(u, -up * f), place(u[::-1], lo * f[::-1])])
    sc.add("poly", almond, 1, (238, 236, 230), z=-2.0)
    for r, col in ((p.iris_r, p.iris), (p.iris_r * 0.42, (15, 10, 10))):
        c = _ellipse(s * nz.gaze[0], nz.gaze[1], r, r, 16)  # (u, v): gaze moves both irises the same image way
        cu = np.clip(c[:, 0], -ew, ew)
        ff = 1 - (cu / ew) ** 2
        cv = np.clip(c[:, 1], -up * ff, lo * ff)
        sc.add("poly", place(cu, cv), 1, col, z=-1.5)
    sc.add("line", place(u, -up * f), 1, (35, 25, 22), width=px_w * 1.1, z=-1.5)
    sc.add("line", place(u[3:], lo * f[3:] + 0.3), 1, _shade(p.skin, 0.72), width=px_w * 0.6, z=-1.5)


def _brow(sc: _Scene, p: IdentityParams, nz: Nuisance, s: int):
    n = 11
    u = np.linspace(-0.45, 0.55, n) * p.brow_len
    v = -p.brow_arch * (1 - (2 * (u - 0.1 * p.brow_len) / p.brow_len) ** 2) - p.brow_angle * u
    th = p.brow_thick * np.linspace(1.0, 0.45, n)
    cx, cy = s * (p.eye_dx + p.brow_dx), p.eye_y - p.brow_gap - nz.brow_raise
    top = np.stack([cx + s * u, cy + v - th / 2], 1)
    bot = np.stack([cx + s * u, cy + v + th / 2], 1)[::-1]
    sc.add("poly", np.concatenate([top, bot]), 1, _shade(p.hair, 0.8) if sum(p.hair) < 500 else _shade(p.hair, 0.6))


def _nose(sc: _Scene, p: IdentityParams, nz: Nuisance, px_w: float):
    tip = p.eye_y + p.nose_len
    nw, pr = p.nose_w, p.nose_proj
    ys = np.linspace(p.eye_y + 3, tip - 1, 6)
    zb = pr * np.linspace(0.1, 0.9, 6)
    side = -1.0 if math.cos(nz.light_angle) > 0 else 1.0  # shadowed flank faces away from the light
    flank = np.concatenate([np.stack([side * np.linspace(1.5, nw * 0.8, 6), ys], 1), [[0.0, tip + 1]]])
    sc.add(
        "poly",
        np.concatenate([[[0.0, p.eye_y + 3]], flank]),
        1,
        _shade(p.skin, 0.8, 60 + 60 * nz.light),
        z=np.concatenate([[0.0], zb, [pr * 0.6]]),
    )
    wings = np.array([[-nw, tip - 1], [-nw * 0.6, tip + 2], [nw * 0.6, tip + 2], [nw, tip - 1], [0.0, tip - 3]])
    sc.add("line", wings, 1, _shade(p.skin, 0.7), width=px_w * 0.7, z=pr * np.array([0.3, 0.5, 0.5, 0.3, 0.9]))
    for s in (-1, 1):
        sc.add(
            "poly",
            _ellipse(s * nw * 0.45, tip + 1.2, p.nostril, p.nostril * 0.6, 10),
            1,
            _shade(p.skin, 0.4),
            z=pr * 0.45,
        )


def _mouth_geom(p: IdentityParams, nz: Nuisance):
    my = p.eye_y + p.nose_len + p.mouth_gap
    mw = p.mouth_w + 1.5 * nz.smile
    return my, mw


def _mouth(sc: _Scene, p: IdentityParams, nz: Nuisance, px_w: float):
    my, mw = _mouth_geom(p, nz)
    x = np.linspace(-mw, mw, 15)
    f = 1 - (x / mw) ** 2
    mid = my - 2.5 * nz.smile * (1 - f)
    gap = 6.0 * nz.mouth_open * f
    bow = p.lip_bow * (np.exp(-(((x - 2.5) / 2.0) ** 2)) + np.exp(-(((x + 2.5) / 2.0) ** 2)))
    upper = mid - np.sqrt(f) * p.lip_up - bow
    lower = mid + gap + np.sqrt(f) * p.lip_low * (1 + 0.3 * nz.smile)
    sc.add("poly", np.concatenate([np.stack([x, upper], 1), np.stack([x, lower], 1)[::-1]]), 1, p.lip)
    if nz.mouth_open > 0.05:
        sc.add("poly", np.concatenate([np.stack([x, mid], 1), np.stack([x, mid + gap], 1)[::-1]]), 1, (70, 25, 28))
        teeth = np.stack([x[2:-2] * 0.8, mid[2:-2] + 0.4 * gap[2:-2]], 1)[::-1]
        sc.add("poly", np.concatenate([np.stack([x[2:-2] * 0.8, mid[2:-2]], 1), teeth]), 1, (232, 226, 214))
    else:
        sc.add("line", np.stack([x, mid], 1), 1, _shade(p.lip, 0.55), width=px_w * 0.8)


def _beard(sc: _Scene, p: IdentityParams, nz: Nuisance):
    if p.beard == 0:
        return
    my, mw = _mouth_geom(p, nz)
    col = _shade(p.hair, 0.9, 255 * p.beard_alpha * (0.35 if p.beard == 1 else 1.0))
    nose_y = p.eye_y + p.nose_len + 2
    if p.beard in (1, 4):  # jaw-line beard with moustache
        t = np.linspace(math.atan2(p.ear_y / p.face_h, 1.0), math.pi - math.atan2(p.ear_y / p.face_h, 1.0), 20)
        outer = _outline(p, t)
        inner = [[-p.face_w * 0.75, my - 6], [-mw - 2, nose_y], [mw + 2, nose_y], [p.face_w * 0.75, my - 6]]
        sc.add("poly", np.concatenate([outer, inner]), 0, col)
        sc.shapes[-1][2][len(outer) :] = 1
    if p.beard == 2:
        sc.add(
            "poly",
            [
                [-mw - 1, my + 1],
                [-mw * 0.6, nose_y],
                [mw * 0.6, nose_y],
                [mw + 1, my + 1],
                [mw * 0.5, my - 2],
                [-mw * 0.5, my - 2],
            ],
            1,
            col,
        )
    if p.beard == 3:
        chin = p.face_h * (1 - 0.02)
        sc.add("poly", [[-mw * 0.7, my + 3], [mw * 0.7, my + 3], [mw * 0.5, chin], [-mw * 0.5, chin]], 1, col)


def _marks(sc: _Scene, p: IdentityParams, px_w: float):
    fw = p.face_w
    for s in (-1, 1):
        sc.add(
            "poly",
            _ellipse(s * fw * 0.55, p.eye_y + p.nose_len, fw * 0.22, fw * 0.15, 12),
            1,
            (200, 60, 60, int(90 * p.blush)),
        )
        sc.add(
            "poly",
            _ellipse(s * fw * 0.7, p.eye_y + p.nose_len + 6, fw * 0.12, fw * 0.3, 12),
            1,
            (0, 0, 0, int(90 * p.cheek)),
        )
    for i in range(p.wrinkles):
        y = p.eye_y - p.brow_gap - 6 - 3.5 * i
        xs = np.linspace(-fw * 0.35, fw * 0.35, 9)
        sc.add(
            "line",
            np.stack([xs, y - 1.5 * (1 - (xs / fw / 0.35) ** 2)], 1),
            1,
            _shade(p.skin, 0.75, 120),
            width=px_w * 0.5,
        )
    for x, y, r in p.moles:
        sc.add("poly", _ellipse(x, y, r, r, 8), 1, (70, 45, 35))


def _side_shadow(sc: _Scene, p: IdentityParams, nz: Nuisance):
    """Darken the half of the face turned from the light: split along the (yaw-following) midline, soft edge."""
    side = -1.0 if math.cos(nz.light_angle) > 0 else 1.0
    ys = np.linspace(p.face_h, -p.face_h, 9)
    t = np.linspace(-math.pi / 2, math.pi / 2, 16) + (math.pi if side < 0 else 0.0)
    alpha = 55 * nz.light * abs(math.cos(nz.light_angle))
    for off in (0.0, 0.3):  # two overlapping layers: a soft step instead of a hard edge
        half = _outline(p, t)
        mid = np.stack([np.full(9, side * off * p.face_w), ys if side > 0 else ys[::-1]], 1)
        sc.add("poly", np.concatenate([half, mid]), 0, (0, 0, 0, int(alpha)))
        sc.shapes[-1][2][len(half) :] = 1


def _occluder(sc: _Scene, p: IdentityParams, nz: Nuisance, rng: np.random.Generator, px_w: float):
    kind = nz.occlusion
    if kind in ("glasses", "sunglasses"):
        col = rgb(rng.uniform(0, 120, 3)) if kind == "glasses" else (20, 20, 20)
        rx, ry = p.eye_w + rng.uniform(2.5, 5), p.eye_h + rng.uniform(2.5, 5)
        for s in (-1, 1):
            lens = _ellipse(s * p.eye_dx, p.eye_y + 0.5, rx, ry, 20)
            if kind == "sunglasses":
                sc.add("poly", lens, 1, (12, 12, 18, int(rng.uniform(200, 250))), z=2.0)
            sc.add("line", np.concatenate([lens, lens[:1]]), 1, col, width=px_w * rng.uniform(0.8, 1.8), z=2.0)
        sc.add("line", [[-p.eye_dx + rx, p.eye_y], [p.eye_dx - rx, p.eye_y]], 1, col, width=px_w, z=3.0)
    elif kind == "mask":
        fw, top = p.face_w, p.eye_y + p.nose_len * rng.uniform(0.35, 0.6)
        t = np.linspace(0.05, math.pi - 0.05, 16)
        pts = np.concatenate(
            [[[-fw * 0.97, top + 4], [0.0, top - 1.0], [fw * 0.97, top + 4]], _outline(p, t, grow=1.0)]
        )
        sc.add(
            "poly",
            pts,
            1,
            rgb(rng.choice([[150, 190, 215], [235, 235, 235], [40, 40, 45]]) + rng.normal(0, 10, 3)),
            z=2.0,
        )


# --------------------------------------------------------------------------------------------- render


def render(p: IdentityParams, nz: Nuisance, image_size: int = 112) -> np.ndarray:
    """Deterministic rendering of identity `p` under nuisance `nz` -> uint8 (S, S, 3) RGB."""
    size = int(image_size)
    canvas = 2 * size
    px = canvas / 112.0  # canvas pixels per template pixel
    rng = np.random.default_rng(nz.seed)
    im = Image.new("RGB", (canvas, canvas), rgb(nz.background))
    draw = ImageDraw.Draw(im, "RGBA")
    _clutter(draw, rng, nz.clutter, canvas)

    sc = _Scene()
    _neck(sc, p, nz)
    _hair_back(sc, p)
    _ears(sc, p)
    sc.add("poly", _outline(p, np.linspace(0, 2 * math.pi, 48, endpoint=False)), 0, p.skin)
    _marks(sc, p, px)
    if nz.light > 0:
        _side_shadow(sc, p, nz)
    _beard(sc, p, nz)
    for s in (-1, 1):
        _eye(sc, p, nz, s, px)
        _brow(sc, p, nz, s)
    _nose(sc, p, nz, px)
    _mouth(sc, p, nz, px)
    _hair_front(sc, p)
    _occluder(sc, p, nz, rng, px)

    my, mw = _mouth_geom(p, nz)
    corner_y = my - 2.5 * nz.smile
    landmarks = np.array(
        [
            [-p.eye_dx, p.eye_y, -2.0],
            [p.eye_dx, p.eye_y, -2.0],
            [0.0, p.eye_y + p.nose_len, p.nose_proj],
            [-mw, corner_y, 0.0],
            [mw, corner_y, 0.0],
        ]
    )
    shapes = sc.project(p, nz, px, landmarks)
    for kind, pts, fill, width in shapes:
        xy = [tuple(q) for q in pts.tolist()]
        if kind == "poly":
            draw.polygon(xy, fill=fill)
        else:
            draw.line(xy, fill=fill, width=max(1, round(width)), joint="curve")
    if nz.occlusion == "hand":
        _hand(draw, rng, canvas)
    return _finish(im.reduce(2), nz, rng, size)


def _clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, n: int, canvas: int):
    for _ in range(n):
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * canvas
        w, h = rng.uniform(0.1, 0.6, 2) * canvas
        col = rgb(rng.uniform(0, 255, 3))
        shape = rng.integers(3)
        box = [x0, y0, x0 + w, y0 + h]
        if shape == 0:
            draw.rectangle(box, fill=col)
        elif shape == 1:
            draw.ellipse(box, fill=col)
        else:
            draw.line([(x0, y0), (x0 + w, y0 + h)], fill=col, width=int(rng.integers(2, 12)))


def _hand(draw: ImageDraw.ImageDraw, rng: np.random.Generator, canvas: int):
    """A hand or object entering from an image edge, covering 15-35% of the face area."""
    skin = SKIN_LIGHT + rng.uniform(0, 1) * (SKIN_DARK - SKIN_LIGHT)
    col = rgb(skin if rng.random() < 0.6 else rng.uniform(0, 255, 3))
    side = int(rng.integers(4))
    depth, span, pos = rng.uniform(0.25, 0.45) * canvas, rng.uniform(0.35, 0.7) * canvas, rng.uniform(0.1, 0.9) * canvas
    a, b = pos - span / 2, pos + span / 2
    box = {
        0: [-canvas, a, depth, b],
        1: [canvas - depth, a, 2 * canvas, b],
        2: [a, canvas - depth, b, 2 * canvas],
        3: [a, -canvas, b, depth],
    }[side]
    draw.rounded_rectangle(box, radius=int(0.1 * canvas), fill=col)


@functools.lru_cache(maxsize=8)
def _gradient_axes(size: int) -> tuple[np.ndarray, np.ndarray]:
    g = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    return g[None, :, None], g[:, None, None]


def _finish(im: Image.Image, nz: Nuisance, rng: np.random.Generator, size: int) -> np.ndarray:
    """Camera: blur / low resolution, then light gradient, brightness, contrast, colour cast, noise, greyscale."""
    if nz.lowres < 0.99:
        small = max(8, round(size * nz.lowres))
        im = im.resize((small, small), Image.BILINEAR).resize((size, size), Image.BILINEAR)
    if nz.blur > 0.05:
        im = im.filter(ImageFilter.GaussianBlur(nz.blur))
    if nz.light == 0 and nz.brightness == 1 and nz.contrast == 1 and nz.noise == 0 and nz.gains == (1.0,) * 3:
        return np.asarray(im)
    a = np.asarray(im, dtype=np.float32)
    gx, gy = _gradient_axes(size)
    light = 1 + nz.light * 0.5 * (math.cos(nz.light_angle) * gx + math.sin(nz.light_angle) * gy)
    a = a * (light * (nz.brightness * np.asarray(nz.gains, np.float32)))
    m = a.mean()
    a = (a - m) * nz.contrast + m
    if nz.noise > 0:
        a += rng.standard_normal((size, size, 1), dtype=np.float32) * nz.noise
        a += rng.standard_normal((size, size, 3), dtype=np.float32) * (0.4 * nz.noise)
    if nz.gray:
        a = np.repeat(a @ np.array([0.299, 0.587, 0.114], np.float32), 3).reshape(size, size, 3)
    return np.clip(a + 0.5, 0, 255).astype(np.uint8)
