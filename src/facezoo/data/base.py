"""The interface every training dataset shares: encoded bytes per sample, decoded on demand, corrupt ones skipped."""

from __future__ import annotations

import warnings

import numpy as np
from torch.utils.data import Dataset

from ..errors import DataError
from .image import decode_image


class EncodedImageDataset(Dataset):
    """Subclasses set `labels` (np.int64, one per sample), `num_classes`, `skip_corrupt` and implement
    `read_encoded(i) -> bytes` and `where(i) -> str` (file and record, for error messages).

    __getitem__(i) -> (uint8 (H, W, 3) RGB, int label), or None for a corrupt sample when skip_corrupt is set.
    """

    labels: np.ndarray
    num_classes: int
    skip_corrupt: bool = False

    def read_encoded(self, i: int) -> bytes:
        raise NotImplementedError

    def where(self, i: int) -> str:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        try:
            image = decode_image(self.read_encoded(i), where=self.where(i))
        except DataError as e:
            if not self.skip_corrupt:
                raise
            warnings.warn(f"skipping corrupt sample: {e}", stacklevel=2)
            return None
        return image, int(self.labels[i])
