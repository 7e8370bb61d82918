"""FaceX-Zoo's upper-face mode (`crop_eye`): the network sees only the rows of the aligned crop above the nose.

FaceX-Zoo trains and tests masked-face models on image[:60, :] of the 112x112 ArcFace crop (eyes at row 51.6, the
nose tip at 71.7): the part a mask leaves visible. For an (H, W) crop the kept rows are round(60 H / 112). A model
trained so records `crop_eye` in its metadata (models/embedder.py ModelMeta), so evaluation feeds it full aligned
crops and the crop happens inside the model, as in training.
"""

from __future__ import annotations

import torch

ROWS_112 = 60  # rows kept of a 112-row crop (FaceX-Zoo)


def crop_eye_rows(height: int) -> int:
    """Rows kept of an aligned crop `height` rows tall."""
    return max(1, round(ROWS_112 * int(height) / 112))


def crop_eye_size(input_size) -> tuple[int, int]:
    """(rows kept, width): the network's input size for aligned crops of (H, W) = input_size."""
    h, w = int(input_size[0]), int(input_size[1])
    return crop_eye_rows(h), w


def crop_eye(images: torch.Tensor) -> torch.Tensor:
    """The upper face of aligned crops: (B, H, W, C) -> (B, crop_eye_rows(H), W, C) (a view)."""
    return images[:, : crop_eye_rows(images.shape[1])]
