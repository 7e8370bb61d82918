"""dlib's CNN face detector (MMOD, King 2015 "Max-Margin Object Detection"; mmod_human_face_detector, CC0), on torch.

Weights: `facezoo models fetch dlib` converts mmod_human_face_detector.dat into models_dir()/dlib/dlib_mmod.pt.
Detection follows dlib (cnn_face_detection_model_v1, loss_mmod_::to_label, input_rgb_image_pyramid):
  1. upsample times: pyramid_up (the image resized to (2H + 1, 2W + 2), bilinear, see models/dlib/resample.py).
  2. One tiled image holds the pyramid: level 0 = (pixel - mean_c) / 256 (means R 122.782, G 117.001, B 104.298),
     each next level the previous resized by 5/6 (pyramid_down<6>, dlib's float bilinear), laid out with 10 px
     between levels and an 11 px border (models.dlib.resample.tiled_pyramid_rects); the network runs once on it.
  3. The network (3 stride-2 5x5 convs, 3 5x5 convs, one 9x9 conv to one channel) scores every output cell; a
     cell (c, r) with score > adjust_threshold (0) is an 80x80 window centred on the input point 8c + 14, 8r + 14
     (each conv maps p -> p * stride - padding + size // 2), mapped to the image through the pyramid level
     holding its centre (p -> p * 6/5 + 0.3 per level, coordinates rounded half away from zero).
  4. Greedy NMS by descending score: a box is dropped when it overlaps a kept one with
     intersection / bounding-box-of-both > 0.338 (the file's iou) or covers / is covered by more than 100%.
  5. Boxes mapped back through the upsampling (p / 2 - (1.25, 0.75) per level), rounded.
Boxes: dlib's inclusive integer rectangle [left, right] x [top, bottom] is reported as x1 = left, y1 = top,
x2 = right + 1, y2 = bottom + 1. Scores: sigmoid(confidence), so min_det_score 0.5 is dlib's threshold 0; the raw
confidence is logit(score). Landmarks: with landmarker="dlib_sp68" (default) the 68-point shape predictor runs in
each box and its 68 points give the 5 points (sdk.landmarks "68" layout); landmarker=None gives boxes only.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch

from ...errors import ConfigError, ModelError
from .base import DETECTORS, Detections, Detector, check_image

FILE = "dlib_mmod.pt"


def load_mmod(path):
    """(DlibLayers network in eval mode, options dict) from a converted dlib_mmod.pt."""
    from ...models.dlib.convert import MMOD_FORMAT
    from ...models.dlib.net import mmod_layers
    from ...models.dlib.torch_net import DlibLayers

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: dlib MMOD weights missing. Run `facezoo models fetch dlib`.")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("format") != MMOD_FORMAT:
            raise ValueError(f"format {blob.get('format')!r}")
        net = DlibLayers(mmod_layers()[1:])
        net.load_state_dict(blob["state"], strict=True)
    except Exception as e:
        raise ModelError(
            f"{path}: not a converted dlib MMOD file ({e}); run `facezoo models fetch dlib --force`."
        ) from None
    return net.eval(), dict(blob["options"])


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def box_overlaps(a: np.ndarray, b: np.ndarray, iou: float, covered: float) -> bool:
    """dlib's test_box_overlap on inclusive integer rectangles (l, t, r, b): inner / area(bounding box of both) >
    iou, or inner / area(a) or inner / area(b) > covered; no overlap is never a match."""
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if w <= 0 or h <= 0:
        return False
    inner = float(w * h)
    outer = (max(a[2], b[2]) - min(a[0], b[0]) + 1) * (max(a[3], b[3]) - min(a[1], b[1]) + 1)
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inner / outer > iou or inner / area_a > covered or inner / area_b > covered


@DETECTORS.register("dlib_mmod")
class DlibMMOD(Detector):
    """dlib's CNN face detector; see the module docstring.

    weights: a converted dlib_mmod.pt (default models_dir()/dlib/dlib_mmod.pt). upsample: times the image is
    doubled first (finds faces down to ~40 px per doubling; dlib's default in face_recognition is 1).
    adjust_threshold: dlib's score threshold (confidence units; 0 = dlib's). landmarker: "dlib_sp68", "dlib_sp5"
    (only gives eye corners and nose: no 5-point kps) or None. device: "cpu", "cuda", "auto" or a torch.device.
    """

    def __init__(self, weights=None, device="cpu", upsample: int = 0, adjust_threshold: float = 0.0,
                 landmarker: str | None = "dlib_sp68"):  # fmt: skip
        from ...device import resolve_device
        from ..landmarker import create_landmarker

        if not isinstance(upsample, int) or isinstance(upsample, bool) or not 0 <= upsample <= 4:
            raise ConfigError(f"dlib_mmod upsample {upsample!r}: give 0..4 (times the image is doubled)")
        if landmarker not in (None, "dlib_sp68"):
            raise ConfigError(f"dlib_mmod landmarker {landmarker!r}: 'dlib_sp68' (5 points for alignment) or None")
        if weights is None:
            from ...models.fetch import locate

            weights = locate("dlib") / FILE
        self.device = device if isinstance(device, torch.device) else resolve_device(str(device))
        self.net, self.options = load_mmod(weights)
        self.net.to(self.device)
        self.upsample, self.adjust_threshold = upsample, float(adjust_threshold)
        self.landmarker = create_landmarker(landmarker) if landmarker else None
        self._offset, self._stride = self._output_to_input()

    def _output_to_input(self) -> tuple[float, float]:
        """(offset, stride) with input point = stride * output point + offset, composed through the convs."""
        offset, stride = 0.0, 1.0
        for i, (kind, _) in reversed(list(enumerate(self.net.plan))):
            if kind == "con":
                conv = self.net.ops[str(i)]
                (s, _), (p, _), (k, _) = conv.stride, conv.padding, conv.kernel_size
                offset, stride = offset * s - p + k // 2, stride * s  # p_in = p_out * s - pad + k // 2
            elif kind not in ("affine", "relu"):
                raise ModelError(f"dlib_mmod: layer kind {kind} has no point mapping")
        return offset, stride

    def tiled_input(self, image: torch.Tensor):
        """(1, 3, NR, NC) tiled pyramid tensor and its level rectangles for one (3, H, W) float pixel image."""
        from ...models.dlib.resample import resize_bilinear, tiled_pyramid_rects

        opts = self.options
        h, w = image.shape[1:]
        rects, nr, nc = tiled_pyramid_rects(h, w, opts["pyramid_rate"], opts["padding"], opts["outer_padding"])
        data = image.new_zeros((3, nr, nc))
        mean = torch.tensor(opts["mean"], dtype=torch.float32, device=image.device).view(3, 1, 1)
        x0, y0, x1, y1 = rects[0]
        data[:, y0 : y1 + 1, x0 : x1 + 1] = (image - mean) / 256.0
        for (px0, py0, px1, py1), (x0, y0, x1, y1) in itertools.pairwise(rects):
            prev = data[:, py0 : py1 + 1, px0 : px1 + 1]
            data[:, y0 : y1 + 1, x0 : x1 + 1] = resize_bilinear(prev, y1 - y0 + 1, x1 - x0 + 1)
        return data[None], rects

    def detect(self, image, max_faces: int | None = None) -> Detections:
        if max_faces is not None and max_faces < 0:
            raise ConfigError(f"max_faces {max_faces}: give a count >= 0, or None for all faces")
        arr = check_image(image)
        rects, conf = self.detect_rects(arr)
        order = np.argsort(-conf, kind="stable")[:max_faces]
        rects, conf = rects[order], conf[order]
        boxes = np.concatenate([rects[:, :2], rects[:, 2:] + 1], 1).astype(np.float32).reshape(-1, 4)
        kps = None
        if self.landmarker is not None:
            from ..landmarks import to_five_points

            pts = [self.landmarker(arr, b) for b in boxes]
            kps = to_five_points(np.stack(pts)) if pts else np.zeros((0, 5, 2), np.float32)
        return Detections(boxes, sigmoid(conf).astype(np.float32), kps)

    @torch.inference_mode()
    def detect_rects(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """dlib's own output for a uint8 (H, W, 3) RGB image: inclusive integer rectangles (N, 4) int64 (left, top,
        right, bottom) and confidences (N,) float64, in dlib's order (descending confidence after NMS)."""
        from ...models.dlib.resample import lround, pyramid_up

        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1).float()
        for _ in range(self.upsample):
            x = pyramid_up(x)
        data, rects = self.tiled_input(x)
        if not rects:
            return np.zeros((0, 4), np.int64), np.zeros(0)
        scores = self.net(data)[0, 0].double().cpu().numpy()
        rows, cols = np.nonzero(scores > self.adjust_threshold)
        conf = scores[rows, cols]
        order = np.argsort(-conf, kind="stable")
        rows, cols, conf = rows[order], cols[order], conf[order]
        (win_w, win_h, _), *more = self.options["windows"]
        if more:
            raise ModelError("dlib_mmod: files with several detector windows are not supported")
        centre = np.stack([cols, rows], 1) * self._stride + self._offset  # input tensor points (x, y)
        half = np.array([(win_w - 1) / 2, (win_h - 1) / 2])
        boxes = self._to_image(np.concatenate([centre - half, centre + half], 1), rects)
        keep: list[int] = []
        for i in range(len(boxes)):
            if not any(box_overlaps(boxes[k], boxes[i], self.options["nms_iou"], self.options["nms_covered"])
                       for k in keep):  # fmt: skip
                keep.append(i)
        out = boxes[keep].astype(np.float64)
        for _ in range(self.upsample):
            out = out / 2 - np.array([1.25, 0.75, 1.25, 0.75])
        return lround(out).reshape(-1, 4), conf[keep]

    def _to_image(self, boxes: np.ndarray, rects) -> np.ndarray:
        """Tensor-space boxes (N, 4) l, t, r, b -> image rectangles: the level nearest the (rounded) centre, its
        origin removed, p * rate / (rate - 1) + 0.3 per level, rounded half away from zero."""
        from ...models.dlib.resample import lround

        if not len(boxes):
            return np.zeros((0, 4), np.int64)
        rate = self.options["pyramid_rate"]
        r = np.array(rects, np.float64)  # (L, 4)
        centre = np.floor((boxes[:, :2] + boxes[:, 2:]) / 2 + 0.5)  # dlib point(): floor(x + 0.5)
        nearest = np.clip(centre[:, None, :], r[None, :, :2], r[None, :, 2:])
        dist = np.sqrt(((nearest - centre[:, None, :]) ** 2).sum(-1))  # 0 inside a level
        level = np.argmin(dist, axis=1)  # first of equal distances, as dlib's nearest_rect
        out = boxes - np.tile(r[level, :2], 2)
        for lev in range(1, len(rects)):
            sel = level >= lev
            out[sel] = out[sel] * (rate / (rate - 1.0)) + 0.3
        return lround(out)
