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
    With `decode = False` (set on the instance; data.decode=gpu) it returns (encoded bytes, int label) instead:
    workers only read, the batch is decoded later (gpu_decode.GpuJpegDecoder); None then marks an unreadable
    record (a truncated file), and undecodable bytes are found by the decoder.
    """

    labels: np.ndarray
    num_classes: int
    skip_corrupt: bool = False
    decode: bool = True

    def read_encoded(self, i: int) -> bytes:
        raise NotImplementedError

    def where(self, i: int) -> str:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        try:
            data = self.read_encoded(i)
            sample = decode_image(data, where=self.where(i)) if self.decode else data
        except DataError as e:
            if not self.skip_corrupt:
                raise
            warnings.warn(f"skipping corrupt sample: {e}", stacklevel=2)
            return None
        return sample, int(self.labels[i])
