"""Annotated copies of images: each face's box, detection score and 5 landmarks, drawn with PIL ImageDraw."""

from __future__ import annotations

import numpy as np

# left eye, right eye, nose, left / right mouth corner
KPS_COLORS = ((255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 0, 255), (0, 255, 255))


def draw_faces(image, faces, color=(0, 255, 0), width: int | None = None, labels=None) -> np.ndarray:
    """A uint8 (H, W, 3) RGB copy of `image` with boxes, "score" (or labels[i]) text and 5 points per face.

    faces: Face objects (bbox, det_score, kps). width: line width in pixels (default ~ image size / 300, >= 1).
    """
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(img)
    w = width or max(1, round(max(img.size) / 300))
    for i, face in enumerate(faces):
        x1, y1, x2, y2 = (float(v) for v in face.bbox)
        draw.rectangle([x1, y1, x2, y2], outline=tuple(color), width=w)
        text = labels[i] if labels is not None else f"{float(face.det_score):.2f}"
        tx, ty = x1, max(0.0, y1 - 12)
        box = draw.textbbox((tx, ty), text)
        draw.rectangle(box, fill=tuple(color))
        draw.text((tx, ty), text, fill=(0, 0, 0))
        if face.kps is not None:
            r = w + 1
            for (px, py), c in zip(np.asarray(face.kps, float), KPS_COLORS):
                draw.ellipse([px - r, py - r, px + r, py + r], fill=c)
    return np.asarray(img)
