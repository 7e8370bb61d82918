"""A textured mesh placed in an image -> an RGBA layer: the step the 2-D and 3-D mask renderers share.

The mesh is rasterised (raster.py) on a 2x supersampled window around it, nearest surface first; pixels whose
visible surface is the mask take the texture at their interpolated (u, v), times a Lambert shade from the
interpolated normal, times the texture's alpha; the window is box-filtered back to 1x (premultiplied colour), so
edges are antialiased. Occluding surfaces (the face itself, for self-occlusion) take part in the z-test only.
"""

from __future__ import annotations

import numpy as np

from .raster import rasterize
from .textures import sample_texture

LIGHT = np.array([0.25, -0.35, 1.0]) / np.linalg.norm([0.25, -0.35, 1.0])  # from the upper left, toward the viewer
AMBIENT = 0.62
SUPERSAMPLE_MAX_PIXELS = 512 * 512  # windows larger than this are drawn at 1x: bounded memory on large photos


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals (V, 3): the area-weighted sum of the adjacent triangles' normals, oriented toward +z."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    n = np.cross(b - a, c - a)
    n *= np.where(n[:, 2:3] < 0, -1.0, 1.0)  # the grid's winding flips with its parametrisation: face +z
    out = np.zeros_like(verts)
    for k in range(3):
        np.add.at(out, faces[:, k], n)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _front_facing_in(xy: np.ndarray, faces: np.ndarray, box) -> np.ndarray:
    """The occluder triangles that can hide something: front-facing (positive area in y-down pixels, the winding
    of raster.grid_faces seen from the front; a back-facing part of a head is always behind its front) and
    overlapping the box (x0, y0, x1, y1)."""
    t = xy[faces]
    area = (t[:, 1, 0] - t[:, 0, 0]) * (t[:, 2, 1] - t[:, 0, 1]) - (t[:, 2, 0] - t[:, 0, 0]) * (t[:, 1, 1] - t[:, 0, 1])
    lo, hi = t.min(1), t.max(1)
    x0, y0, x1, y1 = box
    keep = (area > 0) & (hi[:, 0] >= x0 - 1) & (lo[:, 0] <= x1) & (hi[:, 1] >= y0 - 1) & (lo[:, 1] <= y1)
    return faces[keep]


def render_layer(
    shape: tuple[int, int],
    xy: np.ndarray,
    depth: np.ndarray,
    faces: np.ndarray,
    uv: np.ndarray,
    normals: np.ndarray,
    texture: np.ndarray,
    occluder: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    supersample: int = 2,
) -> np.ndarray:
    """float32 RGBA (H, W, 4) in [0, 1] of a mesh (xy (V, 2) pixels, depth (V,) larger = nearer, faces (F, 3),
    uv (V, 2), normals (V, 3) in view space) textured with `texture`; `occluder` = (xy, depth, faces) of surfaces
    that hide the mesh where they are nearer."""
    h, w = shape
    out = np.zeros((h, w, 4), np.float32)
    lo = np.floor(xy.min(0)).astype(int) - 1
    hi = np.ceil(xy.max(0)).astype(int) + 2
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], w), min(hi[1], h)
    if x1 <= x0 or y1 <= y0:
        return out
    k = int(supersample) if (x1 - x0) * (y1 - y0) <= SUPERSAMPLE_MAX_PIXELS else 1  # big faces alias little
    # supersampled pixel (i, j) centre sits at window pixel ((j + 0.5) / k - 0.5, (i + 0.5) / k - 0.5)
    to_sub = lambda p: (p - [x0, y0] + 0.5) * k - 0.5
    sub_hw = ((y1 - y0) * k, (x1 - x0) * k)
    all_xy, all_depth, all_faces = to_sub(xy), depth, faces
    if occluder is not None:
        oxy, odepth, ofaces = occluder
        ofaces = _front_facing_in(oxy, ofaces, (x0, y0, x1, y1))
        all_xy = np.concatenate([all_xy, to_sub(oxy)])
        all_depth = np.concatenate([depth, odepth])
        all_faces = np.concatenate([faces, ofaces + len(xy)])
    r = rasterize(all_xy, all_depth, all_faces, sub_hw)
    own = r.covered & (r.face < len(faces))
    if not own.any():
        return out
    r.face[~own] = -1
    attrs = r.interpolate(faces, np.concatenate([uv, normals], 1))
    m = own
    tex = sample_texture(texture, attrs[m, :2])
    n = attrs[m, 2:5]
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    shade = AMBIENT + (1 - AMBIENT) * np.clip(n @ LIGHT, 0, 1)
    sub = np.zeros(sub_hw + (4,), np.float64)
    alpha = tex[:, 3]
    sub[m, :3] = tex[:, :3] * shade[:, None] * alpha[:, None]  # premultiplied
    sub[m, 3] = alpha
    small = sub.reshape(y1 - y0, k, x1 - x0, k, 4).mean((1, 3))
    a = small[..., 3:4]
    small[..., :3] = np.where(a > 1e-6, small[..., :3] / np.maximum(a, 1e-6), 0)
    out[y0:y1, x0:x1] = small
    return out
