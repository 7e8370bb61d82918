"""SCRFD face detector (Guo et al., "Sample and Computation Redistribution for Efficient Face Detection", ICLR 2022)
run from insightface's ONNX files (det_10g.onnx, det_500m.onnx, scrfd_*_kps.onnx) through onnxruntime.

Graph layout (insightface's scrfd2onnx export):
  input  float32 (B, 3, H, W) RGB, x = (pixel - 127.5) / 128; H, W fixed in the graph or dynamic.
  outputs, in this order: the scores of every level, then the box distances of every level, then (models with
    keypoints) the keypoint offsets of every level; levels are strides 8, 16, 32 (6 or 9 outputs) or
    8, 16, 32, 64, 128 (10 or 15 outputs). Each is (N, k) for one image - a batch of B is then (B * N, k) - or
    (B, N, k), with k = 1, 4, 10 and N = fh * fw * A, fh = H // s, fw = W // s, A anchors per location
    (2 in insightface's models, 1 in some others: inferred from N).
Decoding at anchor centre (cx, cy) = (col * s, row * s), per anchor:
  box = (cx - d0 * s, cy - d1 * s, cx + d2 * s, cy + d3 * s)     (distance2bbox, distances in stride units)
  kp_i = (cx + o_2i * s, cy + o_2i+1 * s), i = 0..4              (left eye, right eye, nose, mouth corners)
then scores >= score_threshold (0.5), NMS at IoU 0.4, and the letterbox undone (see onnx_common.letterbox).
"""

from __future__ import annotations

import numpy as np

from ...errors import ModelError
from .base import DETECTORS, Detections
from .onnx_common import (
    OnnxDetector,
    anchor_centres,
    describe_outputs,
    finish,
    resolve_input_size,
    to_blob,
)

# number of outputs -> (number of pyramid levels, has keypoints)
LAYOUTS = {6: (3, False), 9: (3, True), 10: (5, False), 15: (5, True)}
KINDS = (("scores", 1), ("boxes", 4), ("keypoints", 10))


@DETECTORS.register("scrfd")
class SCRFD(OnnxDetector):
    """SCRFD from an ONNX file: uint8 RGB images in, Detections (boxes, scores, 5 points) out.

    model: path (or serialised bytes) of the ONNX graph. input_size: (H, W) or int, only for graphs whose input
    size is dynamic (default 640x640; both sides multiples of the largest stride); images are letterboxed into
    it (scaled to fit, padded right/bottom). score_threshold, nms_threshold: 0.5 and 0.4 as in insightface.
    providers: onnxruntime execution providers (default: all available). mean, std: input normalisation.
    """

    def __init__(
        self,
        model,
        input_size=None,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        providers=None,
        mean: float = 127.5,
        std: float = 128.0,
    ):
        self._open(model, providers, score_threshold, nms_threshold)
        outputs = self.session.get_outputs()
        if len(outputs) not in LAYOUTS:
            raise ModelError(
                f"{self.where}: {len(outputs)} outputs ({describe_outputs(self.session)}); an SCRFD graph has 6 or 9 "
                "(strides 8/16/32: scores, boxes[, keypoints]) or 10 or 15 (strides 8..128). Is it another detector "
                "(try 'retinaface')?"
            )
        levels, self.with_kps = LAYOUTS[len(outputs)]
        self.strides = tuple(8 * 2**i for i in range(levels))
        for j, out in enumerate(outputs):
            kind, k = KINDS[j // levels]
            last = out.shape[-1] if out.shape else None
            if isinstance(last, int) and last != k:
                raise ModelError(
                    f"{self.where}: output {j} '{out.name}' has shape {list(out.shape)}, but SCRFD's output {j} holds "
                    f"{kind} (last dim {k}); expected all scores, then all boxes, then all keypoints. Found: "
                    f"{describe_outputs(self.session)}."
                )
        self.input_size = resolve_input_size(self.spec, input_size, self.where, multiple=self.strides[-1])
        self.mean, self.std = mean, std
        self._centres: dict[tuple[int, int], np.ndarray] = {}

    def _blob(self, canvases) -> np.ndarray:
        return to_blob(canvases, self.mean, self.std)

    def _level(self, outs, i: int, stride: int):
        """(centres (N, 2), scores (N,), distances (N, 4), keypoint offsets (N, 10) or None) of level i."""
        levels = len(self.strides)
        h, w = self.input_size
        cells = (h // stride) * (w // stride)
        arrays = [outs[i], outs[levels + i]] + ([outs[2 * levels + i]] if self.with_kps else [])
        n = arrays[0].shape[0]
        for a, (_kind, k) in zip(arrays, KINDS):
            if a.ndim != 2 or a.shape != (n, k) or n == 0 or n % cells:
                shapes = [tuple(x.shape) for x in arrays]
                raise ModelError(
                    f"{self.where}: stride-{stride} outputs have per-image shapes {shapes}; expected (N, 1), (N, 4)"
                    f"{', (N, 10)' if self.with_kps else ''} with N = A * {cells} (a {h // stride}x{w // stride} grid "
                    f"at input {h}x{w}, A anchors per location)."
                )
        key = (stride, n // cells)
        if key not in self._centres:
            self._centres[key] = anchor_centres(h // stride, w // stride, stride, n // cells)
        return self._centres[key], arrays[0][:, 0], arrays[1], arrays[2] if self.with_kps else None

    def _decode(self, outs, scale, max_faces) -> Detections:
        boxes, scores, kps = [], [], []
        for i, stride in enumerate(self.strides):
            centres, score, dist, offsets = self._level(outs, i, stride)
            keep = score >= self.score_threshold
            c, d = centres[keep], dist[keep].astype(np.float32) * stride
            boxes.append(np.concatenate([c - d[:, :2], c + d[:, 2:]], axis=1))
            scores.append(score[keep])
            if offsets is not None:
                kps.append(c[:, None, :] + offsets[keep].astype(np.float32).reshape(-1, 5, 2) * stride)
        return finish(
            np.concatenate(boxes),
            np.concatenate(scores),
            np.concatenate(kps) if self.with_kps else None,
            scale,
            self.score_threshold,
            self.nms_threshold,
            max_faces,
        )
