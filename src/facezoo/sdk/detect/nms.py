"""Greedy non-maximum suppression in numpy (no torchvision)."""

from __future__ import annotations

import numpy as np


def box_iou(box: np.ndarray, boxes: np.ndarray, plus_one: bool = False) -> np.ndarray:
    """IoU of one box (4,) with boxes (N, 4), x1, y1, x2, y2. plus_one: pixel-inclusive areas (w = x2 - x1 + 1),
    as MTCNN's original NMS computes them."""
    e = 1.0 if plus_one else 0.0
    w = np.maximum(0.0, np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]) + e)
    h = np.maximum(0.0, np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]) + e)
    inter = w * h
    area = (box[2] - box[0] + e) * (box[3] - box[1] + e)
    areas = (boxes[:, 2] - boxes[:, 0] + e) * (boxes[:, 3] - boxes[:, 1] + e)
    return inter / np.maximum(area + areas - inter, 1e-12)


def nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, mode: str = "union", plus_one: bool = False
) -> np.ndarray:
    """Indices kept, by descending score: a box is dropped when its overlap with a kept box exceeds
    iou_threshold. mode "union": IoU; "min": intersection / min(area) (MTCNN's O-Net stage)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    e = 1.0 if plus_one else 0.0
    areas = (boxes[:, 2] - boxes[:, 0] + e) * (boxes[:, 3] - boxes[:, 1] + e)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        if mode == "union":
            overlap = box_iou(boxes[i], boxes[rest], plus_one)
        elif mode == "min":
            w = np.maximum(0.0, np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]) + e)
            h = np.maximum(0.0, np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]) + e)
            overlap = w * h / np.maximum(np.minimum(areas[i], areas[rest]), 1e-12)
        else:
            raise ValueError(f"nms mode '{mode}' must be 'union' or 'min'")
        order = rest[overlap <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)
