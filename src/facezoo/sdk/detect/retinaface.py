"""RetinaFace-style detectors (Deng et al., CVPR 2020) exported to ONNX the way biubug6/Pytorch_Retinaface does
(mobilenet0.25 / resnet50), run through onnxruntime.

Graph layout:
  input  float32 (B, 3, H, W), BGR, x = pixel - (104, 117, 123); H, W fixed in the graph or dynamic.
  three outputs, told apart by their last dim (any order; the reference export gives loc, conf, landms):
    loc (B, N, 4) box offsets, conf (B, N, 2) background/face (softmax probabilities in the reference
    'test'-phase export; logits are detected and softmaxed), landms (B, N, 10) point offsets;
    (B * N, k) is accepted too.
Priors (PriorBox): for each step s_k with sizes min_sizes[k], over a ceil(H / s) x ceil(W / s) grid, rows outer,
columns inner, sizes innermost: centre ((j + 0.5) s, (i + 0.5) s), size (m, m), in input pixels.
Decoding with variances (v0, v1) = (0.1, 0.2):
  centre = c + loc[:2] * v0 * m,  (w, h) = m * exp(loc[2:] * v1),  box = centre -/+ (w, h) / 2
  point_i = c + landms[2i:2i+2] * v0 * m
then scores (conf[:, 1]) >= score_threshold, NMS, and the letterbox undone (see onnx_common.letterbox).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import ConfigError, ModelError
from .base import DETECTORS, Detections
from .onnx_common import (
    OnnxDetector,
    describe_outputs,
    finish,
    resolve_input_size,
    to_blob,
)

ROLES = {4: "loc", 2: "conf", 10: "landms"}


def priors(height: int, width: int, min_sizes: Sequence[Sequence[float]], steps: Sequence[int]) -> np.ndarray:
    """(N, 4) float32 priors cx, cy, w, h in input pixels, in PriorBox order (levels, rows, columns, sizes)."""
    out = []
    for sizes, step in zip(min_sizes, steps):
        fh, fw = -(-height // step), -(-width // step)
        ys, xs = np.mgrid[:fh, :fw]
        centres = (np.stack([xs, ys], -1).reshape(-1, 1, 2) + 0.5) * step
        centres = np.broadcast_to(centres, (fh * fw, len(sizes), 2))
        wh = np.broadcast_to(np.asarray(sizes, np.float64)[None, :, None], (fh * fw, len(sizes), 2))
        out.append(np.concatenate([centres, wh], -1).reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@DETECTORS.register("retinaface")
class RetinaFace(OnnxDetector):
    """A RetinaFace ONNX graph: uint8 RGB images in, Detections (boxes, scores, 5 points) out.

    model: path (or serialised bytes). input_size: (H, W) or int, only for graphs with a dynamic input size
    (default 640x640); images are letterboxed into it. min_sizes, steps, variances: the prior configuration
    (Pytorch_Retinaface's cfg_mnet / cfg_re50 defaults). mean, std, channel_order: input normalisation
    x = (pixel - mean) / std in that channel order. conf_softmax: True if conf holds logits, False if it holds
    probabilities, None to tell from the values (rows of non-negative numbers summing to 1 are probabilities).
    """

    def __init__(
        self,
        model,
        input_size=None,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        providers=None,
        min_sizes: Sequence[Sequence[float]] = ((16, 32), (64, 128), (256, 512)),
        steps: Sequence[int] = (8, 16, 32),
        variances: Sequence[float] = (0.1, 0.2),
        mean=(104.0, 117.0, 123.0),
        std=1.0,
        channel_order: str = "BGR",
        conf_softmax: bool | None = None,
    ):
        if len(min_sizes) != len(steps) or not all(
            isinstance(m, Sequence) and not isinstance(m, str) and len(m) for m in min_sizes
        ):
            raise ConfigError(f"min_sizes {min_sizes!r} needs one non-empty list of sizes per step {steps!r}.")
        if channel_order not in ("RGB", "BGR"):
            raise ConfigError(f"channel_order '{channel_order}' must be 'RGB' or 'BGR'.")
        if len(variances) != 2:
            raise ConfigError(f"variances must be two numbers (centre, size), got {variances!r}; default (0.1, 0.2).")
        self._open(model, providers, score_threshold, nms_threshold)
        outputs = self.session.get_outputs()
        lasts = [o.shape[-1] if o.shape else None for o in outputs]
        static = [d for d in lasts if isinstance(d, int)]
        if len(outputs) != 3 or len(set(static)) != len(static) or not set(static) <= set(ROLES):
            raise ModelError(
                f"{self.where}: outputs {describe_outputs(self.session)}; a RetinaFace graph has three: loc (B, N, 4), "
                "conf (B, N, 2) and landms (B, N, 10). Is it another detector (try 'scrfd')?"
            )
        self.input_size = resolve_input_size(self.spec, input_size, self.where)
        self.variances = tuple(float(v) for v in variances)
        self.mean, self.std, self.bgr = mean, std, channel_order == "BGR"
        self.conf_softmax = conf_softmax
        self.priors = priors(*self.input_size, min_sizes, steps)

    def _blob(self, canvases) -> np.ndarray:
        return to_blob(canvases, self.mean, self.std, bgr=self.bgr)

    def _roles(self, outs) -> dict[str, np.ndarray]:
        """{loc, conf, landms} by last dim, each (N, k) with N the number of priors; ModelError otherwise."""
        found = {ROLES.get(o.shape[-1]): o for o in outs if o.ndim == 2}
        n = len(self.priors)
        if set(found) != set(ROLES.values()) or any(o.shape[0] != n for o in found.values()):
            shapes = [tuple(o.shape) for o in outs]
            raise ModelError(
                f"{self.where}: per-image outputs have shapes {shapes}; expected (N, 4), (N, 2), (N, 10) with N = "
                f"{n} priors for input {self.input_size[0]}x{self.input_size[1]} (check min_sizes and steps)."
            )
        return found

    def _scores(self, conf: np.ndarray) -> np.ndarray:
        probs = self.conf_softmax is False or (
            self.conf_softmax is None and conf.min() >= 0 and np.allclose(conf.sum(1), 1.0, atol=1e-3)
        )
        return (conf if probs else _softmax(conf.astype(np.float64)))[:, 1]

    def _decode(self, outs, scale, max_faces) -> Detections:
        r = self._roles(outs)
        scores = self._scores(r["conf"])
        keep = scores >= self.score_threshold
        p, loc, lm = self.priors[keep], r["loc"][keep].astype(np.float32), r["landms"][keep].astype(np.float32)
        v0, v1 = self.variances
        centre = p[:, :2] + loc[:, :2] * v0 * p[:, 2:]
        half = p[:, 2:] * np.exp(loc[:, 2:] * v1) / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        kps = p[:, None, :2] + lm.reshape(-1, 5, 2) * v0 * p[:, None, 2:]
        return finish(boxes, scores[keep], kps, scale, self.score_threshold, self.nms_threshold, max_faces)
