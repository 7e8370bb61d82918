"""dlib's shape predictor (Kazemi & Sullivan 2014, "One millisecond face alignment with an ensemble of regression
trees"): its file format and its evaluation in numpy, following dlib/image_processing/shape_predictor.h.

File: int version 1; initial_shape (matrix 2P x 1: x0, y0, x1, y1, ... in the box's unit square); forests (vector of
cascade levels, each a vector of trees: splits = vector of (idx1, idx2 unsigned, thresh float), leaf_values =
vector of 2P x 1 matrices, the tree complete with splits + 1 leaves); anchor_idx (per level, per feature pixel: the
initial-shape point it hangs from); deltas (per level, per feature pixel: its offset (x, y) from that point).

Evaluation of a box [left, right] x [top, bottom] (inclusive pixel indices, dlib's rectangle):
  shape = initial_shape; for each level:
    T = the least-squares similarity (rotation + scale) from initial_shape to shape, as float32 (2x2 part);
    feature pixel i = round(U(T delta_i + shape[anchor_i])) with U(u, v) = (left + u (right - left),
      top + v (bottom - top)) and round(x) = floor(x + 0.5); its value the grey level (R + G + B) // 3 (or the grey
      pixel), 0 outside the image;
    each tree: from node 0, go to 2n + 1 when value[idx1] - value[idx2] > thresh, else 2n + 2; add its leaf to shape
    (float32, tree by tree).
  landmarks = round(U(shape)) (dlib returns integer points); `subpixel=True` leaves U(shape) unrounded.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np

from ...errors import DataError
from .serialize import Reader


@dataclass
class ShapePredictor:
    """Arrays of one cascade, trees stacked per level: initial (P, 2) float32; per level l: idx1, idx2 (T, S)
    int64, thresh (T, S) float32, leaves (T, S + 1, P, 2) float32, anchor (F,) int64, deltas (F, 2) float32."""

    initial: np.ndarray
    idx1: list
    idx2: list
    thresh: list
    leaves: list
    anchor: list
    deltas: list

    @property
    def num_parts(self) -> int:
        return len(self.initial)

    # ------------------------------------------------------------------ storage (npz, no pickles)

    def to_arrays(self) -> dict:
        out = {"initial": self.initial}
        for i in range(len(self.leaves)):
            for name in ("idx1", "idx2", "thresh", "leaves", "anchor", "deltas"):
                out[f"{name}_{i}"] = getattr(self, name)[i]
        return out

    @classmethod
    def from_arrays(cls, arrays, where: str = "shape predictor") -> ShapePredictor:
        try:
            levels = sum(1 for k in arrays if k.startswith("leaves_"))
            parts = {n: [np.asarray(arrays[f"{n}_{i}"]) for i in range(levels)]
                     for n in ("idx1", "idx2", "thresh", "leaves", "anchor", "deltas")}  # fmt: skip
            sp = cls(np.asarray(arrays["initial"], np.float32), **parts)
        except KeyError as e:
            raise DataError(
                f"{where}: missing array {e}; convert it again (facezoo models fetch dlib --force)."
            ) from None
        sp.check(where)
        return sp

    def check(self, where: str) -> None:
        """Every index in range and every array the shape it must have (a corrupt file is a DataError)."""
        p = self.num_parts
        if self.initial.shape != (p, 2) or p < 1 or not len(self.leaves):
            raise DataError(f"{where}: initial shape {self.initial.shape}; convert it again.")
        for i in range(len(self.leaves)):
            f = len(self.anchor[i])
            t, s = self.idx1[i].shape
            ok = (
                self.idx2[i].shape == (t, s)
                and self.thresh[i].shape == (t, s)
                and self.leaves[i].shape == (t, s + 1, p, 2)
                and self.deltas[i].shape == (f, 2)
                and (s + 1) & s == 0
                and (f == 0 or (self.anchor[i].min() >= 0 and self.anchor[i].max() < p))
                and (s == 0 or min(self.idx1[i].min(), self.idx2[i].min()) >= 0)
                and (s == 0 or max(self.idx1[i].max(), self.idx2[i].max()) < f)
            )
            if not ok:
                raise DataError(f"{where}: cascade level {i} is inconsistent; convert it again.")

    # ------------------------------------------------------------------ evaluation

    def __call__(self, image: np.ndarray, rect, subpixel: bool = False) -> np.ndarray:
        """(P, 2) float landmarks (x, y pixel indices) for an uint8 (H, W, 3) RGB or (H, W) grey image and a dlib
        rectangle (left, top, right, bottom), inclusive integer pixels."""
        grey = grey_levels(image)
        left, top, right, bottom = (int(v) for v in rect)
        scale = np.array([right - left, bottom - top], np.float64)
        origin = np.array([left, top], np.float64)
        shape = self.initial.copy()
        for i in range(len(self.leaves)):
            tform = similarity_2x2(self.initial, shape).astype(np.float32)
            moved = (self.deltas[i] @ tform.T).astype(np.float32) + shape[self.anchor[i]]
            pix = np.floor(origin + moved.astype(np.float64) * scale + 0.5).astype(np.int64)
            h, w = grey.shape
            inside = (pix[:, 0] >= 0) & (pix[:, 0] < w) & (pix[:, 1] >= 0) & (pix[:, 1] < h)
            values = np.zeros(len(pix), np.float32)
            values[inside] = grey[pix[inside, 1], pix[inside, 0]]
            leaf = self._leaves(i, values)
            for t in range(len(leaf)):
                shape += self.leaves[i][t, leaf[t]]
        out = origin + shape.astype(np.float64) * scale
        return out if subpixel else np.floor(out + 0.5)

    def _leaves(self, level: int, values: np.ndarray) -> np.ndarray:
        """The leaf each tree of `level` ends in, all trees at once (they are complete binary trees)."""
        idx1, idx2, thresh = self.idx1[level], self.idx2[level], self.thresh[level]
        trees, splits = idx1.shape
        node = np.zeros(trees, np.int64)
        rows = np.arange(trees)
        while splits and node[0] < splits:
            go_left = values[idx1[rows, node]] - values[idx2[rows, node]] > thresh[rows, node]
            node = np.where(go_left, 2 * node + 1, 2 * node + 2)
        return node - splits


def grey_levels(image) -> np.ndarray:
    """dlib's intensity of an RGB pixel, (R + G + B) // 3 (integer), or the grey image itself; (H, W) int32."""
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise DataError(f"shape predictor: expected a uint8 (H, W, 3) RGB or (H, W) grey image, got {img.dtype} "
                        f"{img.shape}.")  # fmt: skip
    if img.ndim == 2:
        return img.astype(np.int32)
    return img.astype(np.int32).sum(axis=2) // 3


def similarity_2x2(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x2 part c R of the least-squares similarity dst ~ c R src + t (geometry.umeyama, float64). One point
    or coinciding points: the identity, as dlib does."""
    from ...geometry import umeyama

    if len(src) < 2:
        return np.eye(2)
    try:
        return umeyama(src, dst)[:2, :2]
    except DataError:  # src points coincide
        return np.eye(2)


def read_shape_predictor(data: bytes, where: str) -> ShapePredictor:
    """Parse a dlib shape_predictor .dat file; DataError naming `where` and the byte offset when it is not one.
    The structure is walked in Python; the float values (thresholds, leaves) are decoded together at the end."""
    r = Reader(data, where)
    r.version(1)
    initial = r.matrix().reshape(-1, 2)
    parts = initial.shape[0]
    thresh_at, leaf_at = array("q"), array("q")
    levels = []  # per level: (idx1, idx2) (T, S) int64
    for _ in range(r.count(2)):
        trees = r.count(2)
        split_idx, depth = [], None
        for _ in range(trees):
            splits = r.count(6)
            for _ in range(splits):
                split_idx.append((r.uint(), r.uint()))
                r.defer_reals(1, thresh_at)
            if r.count(4) != splits + 1 or splits & (splits + 1):
                raise r.error(f"a tree of {splits} splits without {splits + 1} leaves, or not complete")
            depth = splits if depth is None else depth
            if splits != depth:
                raise r.error("trees of different depths in one cascade level")
            for _ in range(splits + 1):
                if (abs(r.integer()), abs(r.integer())) != (2 * parts, 1):
                    raise r.error(f"a leaf that is not a {2 * parts}x1 matrix")
                r.defer_reals(2 * parts, leaf_at)
        idx = np.array(split_idx, np.int64).reshape(trees, depth or 0, 2)
        levels.append((idx[..., 0], idx[..., 1], depth or 0))
    thresholds, leaf_values = r.decode_reals(thresh_at).astype(np.float32), r.decode_reals(leaf_at).astype(np.float32)
    idx1, idx2, thresh, leaves = [], [], [], []
    t_off = l_off = 0
    for i1, i2, n in levels:
        t = len(i1)
        idx1.append(i1), idx2.append(i2)
        thresh.append(thresholds[t_off : t_off + t * n].reshape(t, n))
        leaves.append(leaf_values[l_off : l_off + t * (n + 1) * 2 * parts].reshape(t, n + 1, parts, 2))
        t_off, l_off = t_off + t * n, l_off + t * (n + 1) * 2 * parts
    anchor = [np.array(r.vector(r.uint), np.int64) for _ in range(r.count(1))]
    deltas = []
    for _ in range(r.count(1)):
        count = r.count(4)
        deltas.append(r.reals(2 * count).astype(np.float32).reshape(count, 2))
    r.at_end()
    if not (len(anchor) == len(deltas) == len(leaves)):
        raise r.error(f"{len(leaves)} cascade levels but {len(anchor)} anchor and {len(deltas)} delta lists")
    sp = ShapePredictor(initial.astype(np.float32), idx1, idx2, thresh, leaves, anchor, deltas)
    sp.check(where)
    return sp
