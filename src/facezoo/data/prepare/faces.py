"""One photo -> one aligned face, or the reason there is none: decode, detect, choose the face, align.

Choice (CHOOSERS): among detections scoring >= min_score, "largest" takes the largest box area, "center" the box
whose centre is nearest the image centre. Then the photo is rejected as
  ambiguous       when another face's area >= ambiguity x the chosen face's area (whose face is it?),
  face_too_small  when the chosen box's shorter side < min_face pixels,
  no_face         when no detection reaches min_score.
Alignment: the least-squares similarity (Umeyama) from the 5 landmarks onto the template, then a bilinear warp of
the full-resolution photo (sdk.align).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError, DataError
from ...registry import Registry
from ...sdk.align import umeyama, warp_affine
from ..image import decode_image, resize_image

CHOOSERS: Registry = Registry("face choice")


@CHOOSERS.register("largest")
def largest(boxes: np.ndarray, image_hw: tuple[int, int]) -> int:
    """Index of the box (N, 4) x1, y1, x2, y2 with the largest area."""
    return int(np.argmax(_areas(boxes)))


@CHOOSERS.register("center")
def center(boxes: np.ndarray, image_hw: tuple[int, int]) -> int:
    """Index of the box whose centre is nearest the image centre (ties: the larger box)."""
    h, w = image_hw
    centres = (boxes[:, :2] + boxes[:, 2:4]) / 2.0
    dist = np.hypot(centres[:, 0] - w / 2.0, centres[:, 1] - h / 2.0)
    return int(np.lexsort((-_areas(boxes), dist))[0])


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


@dataclass
class Outcome:
    """What became of one photo: status "kept" with a crop and its detection, or a rejection reason + detail."""

    status: str
    detail: str = ""
    crop: np.ndarray | None = None  # uint8 (H, W, 3)
    box: list | None = None  # x1, y1, x2, y2 in the photo's pixels
    score: float | None = None
    kps: list | None = None  # 5 x [x, y]
    faces: int = 0  # detections >= min_score
    pixels: int = 0  # H x W of the decoded photo


def detect(detector, image: np.ndarray, max_side: int):
    """Detections in the photo's own pixel coordinates, run on a copy downscaled to `max_side` when larger."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = image if scale == 1.0 else resize_image(image, (max(1, round(h * scale)), max(1, round(w * scale))))
    dets = detector.detect(small)
    if dets.kps is None:
        raise ConfigError(
            f"detector {type(detector).__name__} gives no 5-point landmarks, which alignment needs; "
            "use one that does (mtcnn, scrfd, retinaface)."
        )
    if scale != 1.0:
        sy, sx = small.shape[0] / h, small.shape[1] / w
        dets.boxes = dets.boxes / np.array([sx, sy, sx, sy], np.float32)
        dets.kps = dets.kps / np.array([sx, sy], np.float32)
    return dets


def choose(dets, image_hw, opts) -> tuple[int | None, str, str, int]:
    """(index or None, status, detail, faces considered) for the detections of one photo under `opts`."""
    keep = np.flatnonzero(dets.scores >= opts.min_score)
    if len(keep) == 0:
        best = f"; best score {float(dets.scores.max()):.3f}" if len(dets) else ""
        return None, "no_face", f"no detection with score >= {opts.min_score:g}{best}", 0
    boxes = dets.boxes[keep].astype(np.float64)
    i = CHOOSERS.get(opts.choose)(boxes, image_hw)
    areas = _areas(boxes)
    others = np.delete(areas, i)
    if len(others) and areas[i] > 0 and others.max() >= opts.ambiguity * areas[i]:
        ratio = others.max() / areas[i]
        return (
            None,
            "ambiguous",
            f"{len(keep)} faces; another face's area is {ratio:.2f} x the chosen one's (>= --ambiguity "
            f"{opts.ambiguity:g})",
            len(keep),
        )
    side = float(min(boxes[i, 2] - boxes[i, 0], boxes[i, 3] - boxes[i, 1]))
    if side < opts.min_face:
        return None, "face_too_small", f"face {side:.0f} px < --min-face {opts.min_face:g}", len(keep)
    return int(keep[i]), "kept", "", len(keep)


def align(image: np.ndarray, kps: np.ndarray, template: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The (H, W, 3) crop whose landmarks land on `template`: similarity fit of kps (5, 2) -> template."""
    m = umeyama(kps, template)[:2]
    return warp_affine(image, m, size)


def process_photo(data: bytes, where: str, detector, opts, template: np.ndarray) -> Outcome:
    """Decode (EXIF orientation applied), detect, choose and align one photo's bytes."""
    try:
        image = decode_image(data, where)
    except DataError as e:
        return Outcome("decode_failed", str(e).split(": ", 1)[-1].split(". Re-encode")[0])
    dets = detect(detector, image, opts.detect_max_side)
    i, status, detail, faces = choose(dets, image.shape[:2], opts)
    if i is None:
        return Outcome(status, detail, faces=faces, pixels=image.shape[0] * image.shape[1])
    kps = dets.kps[i].astype(np.float64)
    return Outcome(
        "kept",
        crop=align(image, kps, template, opts.image_size),
        box=[round(float(v), 2) for v in dets.boxes[i]],
        score=round(float(dets.scores[i]), 4),
        kps=np.round(kps, 2).tolist(),
        faces=faces,
        pixels=image.shape[0] * image.shape[1],
    )
