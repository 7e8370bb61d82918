"""MTCNN (Zhang et al., 2016): a P-Net -> R-Net -> O-Net cascade giving face boxes, scores and 5 landmarks.

Weights: the P/R/O-Net state dicts shipped in the MIT-licensed facenet-pytorch wheel (converted from the authors'
Caffe models); `facezoo models fetch mtcnn` installs them. The cascade follows the original algorithm:
  1. P-Net, a fully convolutional 12x12 classifier, runs on an image pyramid with scales (12 / min_face) * factor^k
     while min(H, W) * scale >= 12. Each cell (stride 2) above thresholds[0] gives a 12/scale box; NMS 0.5 (IoU)
     per scale, then 0.7 over all scales; boxes shifted by the regression (times width x2 - x1), made square.
  2. R-Net scores 24x24 crops of those boxes; keep > thresholds[1]; NMS 0.7 (IoU); regression (times x2 - x1 + 1);
     square.
  3. O-Net scores 48x48 crops; keep > thresholds[2]; 5 landmarks decoded in the box; regression; NMS 0.7 with
     overlap = intersection / min(area).
Boxes are handled in the original's 1-based inclusive pixel convention (NMS areas with +1) and reported in 0-based
continuous coordinates (pixel i spans [i, i + 1)). Crops reaching outside the image are zero-padded (as in the
original), not clipped. Input is RGB, normalised as (x - 127.5) / 128.

Resampling (pyramid and crops) is torch `interpolate(mode="area")`, i.e. adaptive average pooling, which differs
from OpenCV's INTER_AREA/bilinear used by other ports, so scores and boxes differ slightly from theirs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError, ModelError
from .base import DETECTORS, Detections, Detector, check_image
from .nms import nms


def _caffe_flatten(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, W*H*C) in (W, H, C) order: the dense weights were converted from Caffe models trained
    on transposed images, so their input index is w * H * C + h * C + c."""
    return x.permute(0, 3, 2, 1).flatten(1)


class PNet(nn.Module):
    """Proposal net: (N, 3, H, W) normalised -> face probability (N, H', W'), box regression (N, 4, H', W'),
    H' = ceil((H - 2) / 2) - 4 (one cell per 12x12 window, stride 2)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_1(x).softmax(1)[:, 1], self.conv4_2(x)


class RNet(nn.Module):
    """Refine net: (N, 3, 24, 24) -> face probability (N,), box regression (N, 4)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu4(self.dense4(_caffe_flatten(self.prelu3(self.conv3(x)))))
        return self.dense5_1(x).softmax(1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """Output net: (N, 3, 48, 48) -> face probability (N,), box regression (N, 4), landmarks (N, 10) as
    5 x then 5 y, each relative to the crop (0..1)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu5(self.dense5(_caffe_flatten(self.prelu4(self.conv4(x)))))
        return self.dense6_1(x).softmax(1)[:, 1], self.dense6_2(x), self.dense6_3(x)


def _load(module: nn.Module, path: Path) -> nn.Module:
    if not path.is_file():
        raise ModelError(
            f"{path}: MTCNN weights missing. Run `facezoo models fetch mtcnn`, "
            "or give a folder holding pnet.pt, rnet.pt and onet.pt: --detector mtcnn:DIR (MTCNN(weights_dir=DIR))."
        )
    try:
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    except Exception as e:  # unpickling or key/shape mismatch
        raise ModelError(
            f"{path}: not a usable MTCNN state dict ({e}); run `facezoo models fetch mtcnn --force`."
        ) from None
    return module.eval()


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """P-Net scales: s_k = (12 / min_face_size) * factor^k while min(height, width) * s_k >= 12."""
    scales, scale = [], 12.0 / min_face_size
    while min(height, width) * scale >= 12:
        scales.append(scale)
        scale *= factor
    return scales


def square(boxes: np.ndarray) -> np.ndarray:
    """Boxes (N, 4+) made square about their centre with side max(x2 - x1, y2 - y1); extra columns kept."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + (w - side) / 2
    out[:, 1] = boxes[:, 1] + (h - side) / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def regress(boxes: np.ndarray, reg: np.ndarray, plus_one: bool) -> np.ndarray:
    """x1 += r0 * w, y1 += r1 * h, x2 += r2 * w, y2 += r3 * h with w = x2 - x1 (+ 1 in stages 2 and 3)."""
    e = 1.0 if plus_one else 0.0
    wh = np.stack([boxes[:, 2] - boxes[:, 0] + e, boxes[:, 3] - boxes[:, 1] + e], 1)
    out = boxes.copy()
    out[:, :4] = boxes[:, :4] + reg * np.concatenate([wh, wh], 1)
    return out


def _trunc(boxes: np.ndarray) -> np.ndarray:
    """Coordinates truncated towards zero (integer pixel boxes for cropping), score column kept."""
    out = boxes.copy()
    out[:, :4] = np.trunc(out[:, :4])
    return out


def _nms_per_image(
    boxes: np.ndarray, scores: np.ndarray, image_idx: np.ndarray, threshold: float, mode: str = "union"
) -> np.ndarray:
    """Indices kept by NMS run separately within each image."""
    keep = [
        np.flatnonzero(image_idx == i)[
            nms(boxes[image_idx == i], scores[image_idx == i], threshold, mode, plus_one=True)
        ]
        for i in np.unique(image_idx)
    ]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


@DETECTORS.register("mtcnn")
class MTCNN(Detector):
    """MTCNN face detector: uint8 RGB (H, W, 3) -> boxes, O-Net scores, 5 landmarks (left eye, right eye, nose,
    left mouth corner, right mouth corner, "left" meaning image left), best first.

    weights_dir: folder with pnet.pt, rnet.pt, onet.pt (default: models_dir()/mtcnn, see `facezoo models fetch`).
    min_face_size: smallest face side searched, pixels. thresholds: score cut-offs of P-, R- and O-Net.
    factor: pyramid scale step. device: "cpu", "cuda", "auto" or a torch.device.
    """

    def __init__(
        self,
        weights_dir=None,
        device="cpu",
        min_face_size: float = 20,
        thresholds=(0.6, 0.7, 0.7),
        factor: float = 0.709,
    ):
        from ...device import resolve_device
        from ...models.fetch import locate

        thresholds = tuple(float(t) for t in thresholds)
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ConfigError(f"mtcnn thresholds {thresholds}: give three probabilities (P-, R-, O-Net) in [0, 1]")
        if not 0.0 < factor < 1.0:
            raise ConfigError(f"mtcnn factor {factor}: the pyramid step must be in (0, 1), e.g. 0.709")
        if not min_face_size > 0:
            raise ConfigError(f"mtcnn min_face_size {min_face_size}: must be a positive number of pixels, e.g. 20")
        folder = Path(weights_dir) if weights_dir is not None else locate("mtcnn")
        self.device = device if isinstance(device, torch.device) else resolve_device(str(device))
        self.pnet = _load(PNet(), folder / "pnet.pt").to(self.device)
        self.rnet = _load(RNet(), folder / "rnet.pt").to(self.device)
        self.onet = _load(ONet(), folder / "onet.pt").to(self.device)
        self.min_face_size, self.thresholds, self.factor = float(min_face_size), thresholds, float(factor)

    def detect(self, image, max_faces: int | None = None) -> Detections:
        return self.detect_batch([image], max_faces)[0]

    @torch.inference_mode()
    def detect_batch(self, images, max_faces: int | None = None) -> list[Detections]:
        """Detections for each image; P-Net runs the pyramid once per group of images that share a size."""
        if max_faces is not None and max_faces < 0:
            raise ConfigError(f"max_faces {max_faces}: give a count >= 0, or None for all faces")
        arrays = [check_image(im, f"image {i}") for i, im in enumerate(images)]
        tensors = [torch.from_numpy(np.array(a)).to(self.device).permute(2, 0, 1).float() for a in arrays]
        boxes, idx = self._stage1(tensors)
        boxes, idx = self._refine(tensors, boxes, idx)
        boxes, kps, idx = self._output(tensors, boxes, idx)
        out = []
        for i in range(len(arrays)):
            sel = np.flatnonzero(idx == i)
            sel = sel[np.argsort(-boxes[sel, 4], kind="stable")][:max_faces]
            b = boxes[sel]
            # 1-based inclusive [x1..x2] -> 0-based continuous [x1 - 1, x2).
            out.append(
                Detections(
                    np.stack([b[:, 0] - 1, b[:, 1] - 1, b[:, 2], b[:, 3]], 1).astype(np.float32),
                    b[:, 4].astype(np.float32),
                    kps[sel].astype(np.float32),
                )
            )
        return out

    def _stage1(self, tensors):
        """P-Net proposals: boxes (N, 5) x1, y1, x2, y2, score (1-based, integer-truncated, square), image index."""
        groups: dict[tuple, list[int]] = {}
        for i, t in enumerate(tensors):
            groups.setdefault(tuple(t.shape[1:]), []).append(i)
        all_boxes, all_idx = [np.zeros((0, 9))], [np.zeros(0, np.int64)]
        for (h, w), members in groups.items():
            batch = torch.stack([tensors[i] for i in members])
            for scale in pyramid_scales(h, w, self.min_face_size, self.factor):
                size = (math.ceil(h * scale), math.ceil(w * scale))
                prob, reg = self.pnet((F.interpolate(batch, size=size, mode="area") - 127.5) / 128.0)
                hit = (prob >= self.thresholds[0]).nonzero()  # (K, 3): image-in-group, row, column
                if not len(hit):
                    continue
                b, r, c = hit.T
                cells = torch.stack([c, r], 1).double()
                found = (
                    torch.cat(
                        [
                            torch.floor((2 * cells + 1) / scale),
                            torch.floor((2 * cells + 12) / scale),
                            prob[b, r, c, None].double(),
                            reg[b, :, r, c].double(),
                        ],
                        1,
                    )
                    .cpu()
                    .numpy()
                )
                img = np.asarray(members)[b.cpu().numpy()]
                keep = _nms_per_image(found[:, :4], found[:, 4], img, 0.5)
                all_boxes.append(found[keep])
                all_idx.append(img[keep])
        boxes, idx = np.concatenate(all_boxes), np.concatenate(all_idx)
        keep = _nms_per_image(boxes[:, :4], boxes[:, 4], idx, 0.7)
        boxes, idx = boxes[keep], idx[keep]
        return _trunc(square(regress(boxes[:, :5], boxes[:, 5:9], plus_one=False))), idx

    def _crops(self, tensors, boxes, idx, size: int) -> torch.Tensor:
        """(N, 3, size, size) normalised crops of 1-based inclusive integer boxes, zero outside the image."""
        out = []
        for (x1, y1, x2, y2), i in zip(boxes[:, :4].astype(np.int64), idx):
            t = tensors[i]
            h, w = t.shape[1:]
            x0, y0 = x1 - 1, y1 - 1  # 0-based first pixel; the crop is [x0, x2) x [y0, y2)
            patch = t[:, max(y0, 0) : min(y2, h), max(x0, 0) : min(x2, w)]
            pad = (max(-x0, 0), max(x2 - w, 0), max(-y0, 0), max(y2 - h, 0))
            if any(pad):
                patch = F.pad(patch, pad)
            out.append(F.interpolate(patch[None], size=(size, size), mode="area"))
        return (torch.cat(out) - 127.5) / 128.0

    def _valid(self, tensors, boxes, idx):
        """Drop boxes with no pixel inside their image (they would give empty crops)."""
        sizes = np.array([tuple(tensors[i].shape[1:]) for i in idx]).reshape(-1, 2)
        ok = (
            (boxes[:, 2] > boxes[:, 0])
            & (boxes[:, 3] > boxes[:, 1])
            & (boxes[:, 2] >= 1)
            & (boxes[:, 3] >= 1)
            & (boxes[:, 0] <= sizes[:, 1])
            & (boxes[:, 1] <= sizes[:, 0])
        )
        return boxes[ok], idx[ok]

    def _refine(self, tensors, boxes, idx):
        """R-Net: keep > thresholds[1], NMS 0.7, regression, square, truncate."""
        boxes, idx = self._valid(tensors, boxes, idx)
        if not len(boxes):
            return boxes, idx
        prob, reg = self.rnet(self._crops(tensors, boxes, idx, 24))
        prob, reg = prob.double().cpu().numpy(), reg.double().cpu().numpy()
        ok = prob > self.thresholds[1]
        boxes = np.concatenate([boxes[ok, :4], prob[ok, None]], 1)
        idx, reg = idx[ok], reg[ok]
        keep = _nms_per_image(boxes[:, :4], boxes[:, 4], idx, 0.7)
        return _trunc(square(regress(boxes[keep], reg[keep], plus_one=True))), idx[keep]

    def _output(self, tensors, boxes, idx):
        """O-Net: keep > thresholds[2], landmarks, regression, NMS 0.7 over min area. Boxes (N, 5), kps (N, 5, 2)."""
        boxes, idx = self._valid(tensors, boxes, idx)
        if not len(boxes):
            return np.zeros((0, 5)), np.zeros((0, 5, 2)), idx
        prob, reg, pts = (o.double().cpu().numpy() for o in self.onet(self._crops(tensors, boxes, idx, 48)))
        ok = prob > self.thresholds[2]
        boxes = np.concatenate([boxes[ok, :4], prob[ok, None]], 1)
        idx, reg, pts = idx[ok], reg[ok], pts[ok]
        # Landmark = the box's left/top edge (x1 - 1 in 0-based coordinates) + relative position * side.
        side = boxes[:, 2:4] - boxes[:, 0:2] + 1
        kps = np.stack(
            [boxes[:, 0:1] - 1 + pts[:, :5] * side[:, 0:1], boxes[:, 1:2] - 1 + pts[:, 5:] * side[:, 1:2]], 2
        )
        boxes = regress(boxes, reg, plus_one=True)
        keep = _nms_per_image(boxes[:, :4], boxes[:, 4], idx, 0.7, mode="min")
        return boxes[keep], kps[keep], idx[keep]
