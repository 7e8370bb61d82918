"""A vectorised triangle rasteriser with a z-buffer (numpy): the one drawing primitive of the 2-D and 3-D mask
renderers.

Pixel (x, y) is the centre of column x, row y, at integer coordinates (sdk/align.py's convention). A pixel belongs
to a triangle when its centre has barycentric weights w0, w1, w2 >= 0 (either winding). Where triangles overlap the
one nearest the camera wins: the largest depth (depth grows toward the viewer). Triangles are processed in chunks of
similar bounding-box size, so each chunk tests a dense (triangles x box pixels) grid without per-triangle loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CHUNK_PIXELS = 1 << 20  # candidate (triangle, pixel) tests per chunk: bounds the temporaries (~50 MB)


@dataclass
class Raster:
    """Per-pixel result of `rasterize` on an (H, W) grid.

    face: int (H, W) index of the visible triangle, -1 where none; bary: float (H, W, 3) its barycentric weights
    (0 where none); depth: float (H, W), -inf where none.
    """

    face: np.ndarray
    bary: np.ndarray
    depth: np.ndarray

    @property
    def covered(self) -> np.ndarray:
        return self.face >= 0

    def interpolate(self, faces: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Per-vertex values (V, K) interpolated at each covered pixel -> (H, W, K), 0 elsewhere."""
        h, w = self.face.shape
        out = np.zeros((h, w, values.shape[1]), dtype=np.float64)
        m = self.covered
        corners = values[faces[self.face[m]]]  # (n, 3, K)
        out[m] = np.einsum("nj,njk->nk", self.bary[m], corners)
        return out


def rasterize(xy: np.ndarray, depth: np.ndarray, faces: np.ndarray, shape: tuple[int, int]) -> Raster:
    """Rasterise triangles `faces` (F, 3) over vertices xy (V, 2) pixels with per-vertex depth (V,) on an (H, W) grid.

    Depth is interpolated linearly in screen space (exact for the orthographic / weak-perspective views used here).
    """
    h, w = int(shape[0]), int(shape[1])
    xy = np.asarray(xy, dtype=np.float64)
    depth = np.asarray(depth, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    best_face = np.full(h * w, -1, dtype=np.int64)
    best = Raster(best_face.reshape(h, w), np.zeros((h, w, 3)), np.full((h, w), -np.inf))
    if len(faces) == 0 or h == 0 or w == 0:
        return best
    tri = xy[faces]  # (F, 3, 2)
    area = (tri[:, 1, 0] - tri[:, 0, 0]) * (tri[:, 2, 1] - tri[:, 0, 1]) - (tri[:, 2, 0] - tri[:, 0, 0]) * (
        tri[:, 1, 1] - tri[:, 0, 1]
    )
    x0 = np.maximum(np.ceil(tri[..., 0].min(1)), 0)
    x1 = np.minimum(np.floor(tri[..., 0].max(1)), w - 1)
    y0 = np.maximum(np.ceil(tri[..., 1].min(1)), 0)
    y1 = np.minimum(np.floor(tri[..., 1].max(1)), h - 1)
    keep = np.flatnonzero((np.abs(area) > 1e-12) & (x1 >= x0) & (y1 >= y0) & np.isfinite(area))
    if len(keep) == 0:
        return best
    bw, bh = (x1 - x0 + 1)[keep].astype(np.int64), (y1 - y0 + 1)[keep].astype(np.int64)
    order = keep[np.argsort(bw * bh, kind="stable")]
    pix_all, dep_all, face_all, bary_all = [], [], [], []
    start = 0
    while start < len(order):
        # grow the chunk while (count x largest box) stays within the budget; boxes grow along `order`
        size = max(1, int((x1 - x0 + 1)[order[start]] * (y1 - y0 + 1)[order[start]]))
        stop = start + 1
        step = max(1, _CHUNK_PIXELS // size)
        while stop < len(order):
            cand = min(len(order), stop + step)
            box = int(((x1 - x0 + 1)[order[cand - 1]]) * ((y1 - y0 + 1)[order[cand - 1]]))
            if (cand - start) * box > _CHUNK_PIXELS:
                break
            stop = cand
        idx = order[start:stop]
        start = stop
        found = _chunk(tri[idx], area[idx], depth[faces[idx]], x0[idx], y0[idx], x1[idx], y1[idx])
        if found is None:
            continue
        f_local, px, py, bary, dep = found
        pix_all.append(py * w + px)
        dep_all.append(dep)
        face_all.append(idx[f_local])
        bary_all.append(bary)
    if not pix_all:
        return best
    pix = np.concatenate(pix_all)
    dep = np.concatenate(dep_all)
    fac = np.concatenate(face_all)
    bar = np.concatenate(bary_all)
    # nearest per pixel: sort by pixel, then depth descending; the first of each pixel run wins
    o = np.lexsort((-dep, pix))
    pix, dep, fac, bar = pix[o], dep[o], fac[o], bar[o]
    first = np.ones(len(pix), dtype=bool)
    first[1:] = pix[1:] != pix[:-1]
    pix, dep, fac, bar = pix[first], dep[first], fac[first], bar[first]
    best_face[pix] = fac
    best.bary.reshape(-1, 3)[pix] = bar
    best.depth.reshape(-1)[pix] = dep
    return best


def _chunk(tri, area, tdep, x0, y0, x1, y1):
    """Pixels inside each triangle of one chunk: (local face, x, y, barycentric (n, 3), depth (n,)) or None."""
    bw = int((x1 - x0).max()) + 1
    bh = int((y1 - y0).max()) + 1
    # relative to each box's corner, in float32 (pixel offsets are small), to halve the temporaries
    gx = np.arange(bw, dtype=np.float32)[None, None, :]  # (1, 1, bw)
    gy = np.arange(bh, dtype=np.float32)[None, :, None]  # (1, bh, 1)
    rel = (tri - np.stack([x0, y0], 1)[:, None, :]).astype(np.float32)
    ax, ay = rel[:, 0, 0, None, None], rel[:, 0, 1, None, None]
    bx, by = rel[:, 1, 0, None, None], rel[:, 1, 1, None, None]
    cx, cy = rel[:, 2, 0, None, None], rel[:, 2, 1, None, None]
    inv = (1.0 / area[:, None, None]).astype(np.float32)
    w0 = ((bx - gx) * (cy - gy) - (cx - gx) * (by - gy)) * inv  # weight of vertex a
    w1 = ((cx - gx) * (ay - gy) - (ax - gx) * (cy - gy)) * inv
    w2 = 1.0 - w0 - w1
    eps = -1e-6
    inside = (
        (w0 >= eps) & (w1 >= eps) & (w2 >= eps) & (gx <= (x1 - x0)[:, None, None]) & (gy <= (y1 - y0)[:, None, None])
    )
    f, r, c = np.nonzero(inside)
    if len(f) == 0:
        return None
    px = (x0[f] + c).astype(np.int64)
    py = (y0[f] + r).astype(np.int64)
    # the inside test ran in float32; the weights of the pixels found are recomputed in float64
    t = tri[f]
    b0 = ((t[:, 1, 0] - px) * (t[:, 2, 1] - py) - (t[:, 2, 0] - px) * (t[:, 1, 1] - py)) / area[f]
    b1 = ((t[:, 2, 0] - px) * (t[:, 0, 1] - py) - (t[:, 0, 0] - px) * (t[:, 2, 1] - py)) / area[f]
    bary = np.stack([b0, b1, 1.0 - b0 - b1], 1).clip(0.0, 1.0)
    dep = (bary * tdep[f]).sum(1)
    return f, px, py, bary, dep


def grid_faces(rows: int, cols: int) -> np.ndarray:
    """Triangles (2 (rows-1)(cols-1), 3) of a row-major (rows, cols) vertex grid, two per quad."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    a = (r * cols + c).reshape(-1)
    b, d, e = a + 1, a + cols, a + cols + 1
    return np.concatenate([np.stack([a, b, e], 1), np.stack([a, e, d], 1)]).astype(np.int64)
