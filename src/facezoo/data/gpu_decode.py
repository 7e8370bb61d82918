"""Decode a batch of encoded images on the GPU (nvJPEG through torchvision), resize there, uint8 NHWC out.

The optional fast path of data.decode=gpu: DataLoader workers only read bytes (EncodedImageDataset.decode =
False, loader.EncodedCollate); this decoder turns {"encoded": list[bytes], "labels", ...} into the batch the
CPU path's Collate gives, {"images": uint8 (B, H, W, 3), "labels", ...}, but on the device.

- JPEGs (magic FF D8 FF) go to `decode_fn` in one call: torchvision.io.decode_jpeg(list, mode=RGB,
  device="cuda") decodes the whole list with nvJPEG (hardware engine on A100/H100 for baseline JPEGs).
  torchvision makes the *current* stream wait on its decode stream, so calling this under
  torch.cuda.stream(side) (DevicePrefetcher) orders the decode before anything queued after it on `side`.
- Other formats (PNG in image folders) and JPEGs nvJPEG rejects (CMYK, arithmetic coding) are decoded on the
  CPU with facezoo.data.image.decode_image (Pillow) and copied to the device.
- Images not already `size` are resized on the device: torch interpolate, bilinear, antialias=True,
  align_corners=False, rounded to uint8. Pillow's BILINEAR (the CPU path) uses the same triangle filter widened
  by the scale factor when shrinking, but in fixed-point arithmetic: results differ by at most 1 grey level
  (measured on CPU torch against Pillow 2026-11-23). nvJPEG's IDCT and chroma upsampling also differ from
  libjpeg-turbo's by a few levels, so GPU-decoded pixels are close to, not equal to, the CPU path's.

Reasoned, not run (no GPU where this was written): the CUDA behaviour of torchvision's decoder above, and that
a failed batched decode leaves the CUDA context usable (nvJPEG reports a status; torchvision raises RuntimeError).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .image import decode_image

JPEG_MAGIC = b"\xff\xd8\xff"
NEEDS = "data.decode=gpu needs torchvision with CUDA; install torchvision matching your torch, or use data.decode=cpu"

#: list of 1-D uint8 CPU tensors (encoded JPEGs) -> list of uint8 (3, H, W) tensors on the device.
DecodeFn = Callable[[list], list]


def is_jpeg(data: bytes) -> bool:
    return data[:3] == JPEG_MAGIC


def pillow_decode(datas: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """A CPU DecodeFn with decode_jpeg's contract (Pillow): the tests' and benchmarks' stand-in for nvJPEG."""
    return [torch.from_numpy(decode_image(d.numpy().tobytes())).permute(2, 0, 1) for d in datas]


def torchvision_decode_fn(device) -> DecodeFn:
    """torchvision.io.decode_jpeg(list, mode=RGB, device=device), checked on a tiny JPEG; ConfigError if unusable."""
    device = torch.device(device)
    if device.type != "cuda":
        raise ConfigError(f"{NEEDS} (the training device is {device}, not a CUDA GPU).")
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except Exception as e:  # missing, or built for another torch (import then fails with RuntimeError/OSError)
        raise ConfigError(f"{NEEDS} (importing torchvision failed: {type(e).__name__}: {e}).") from None
    if not torch.cuda.is_available():
        raise ConfigError(f"{NEEDS} (torch.cuda.is_available() is False).")

    def decode(datas: list) -> list:
        return decode_jpeg(datas, mode=ImageReadMode.RGB, device=device)

    from .image import encode_image

    probe = torch.frombuffer(bytearray(encode_image(np.zeros((8, 8, 3), np.uint8))), dtype=torch.uint8)
    try:
        decode([probe])
    except Exception as e:  # e.g. a CPU-only torchvision: "not compiled with nvJPEG support"
        raise ConfigError(f"{NEEDS} (a test decode on {device} failed: {e}).") from None
    return decode


def resize_to(images: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """uint8 (3, h_i, w_i) tensors on one device -> uint8 (B, H, W, 3), resized where (h_i, w_i) != size.

    Images of one shape are resized together: x = interpolate(float, bilinear, antialias), round, clamp 0..255.
    """
    h, w = size
    if not images:
        return torch.zeros((0, h, w, 3), dtype=torch.uint8)
    device = images[0].device
    out = torch.empty((len(images), h, w, 3), dtype=torch.uint8, device=device)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(tuple(img.shape[1:]), []).append(i)
    for shape, idx in groups.items():
        x = torch.stack([images[i] for i in idx])  # (n, 3, hi, wi)
        if shape != (h, w):
            x = torch.nn.functional.interpolate(
                x.float(), size=(h, w), mode="bilinear", antialias=True, align_corners=False
            )
            x = x.round_().clamp_(0, 255).to(torch.uint8)
        out[torch.tensor(idx, device=device)] = x.permute(0, 2, 3, 1)
    return out


class GpuJpegDecoder:
    """{"encoded": list[bytes], "labels": (B,) int64, "skipped": int, ...} -> {"images": uint8 (B', H, W, 3) on
    `device`, "labels": (B',) on `device`, "skipped": int, ...}; other keys pass through.

    size: (H, W) of the model input. decode_fn: DecodeFn for JPEGs; None = torchvision on `device`, which must
    be CUDA (ConfigError otherwise). skip_corrupt: drop undecodable samples (counted in "skipped", B' < B)
    instead of raising DataError.
    """

    def __init__(self, size, device, decode_fn: DecodeFn | None = None, skip_corrupt: bool = False):
        self.size = (int(size[0]), int(size[1]))
        self.device = torch.device(device)
        self.decode_fn = decode_fn if decode_fn is not None else torchvision_decode_fn(self.device)
        self.skip_corrupt = skip_corrupt

    def _cpu(self, data: bytes, i: int) -> torch.Tensor:
        where = f"sample {i} of an encoded batch (use data.decode=cpu to see its file and record)"
        img = torch.from_numpy(decode_image(data, where=where)).permute(2, 0, 1)
        return img.to(self.device, non_blocking=True)

    def _decode_jpegs(self, datas: list[bytes], positions: list[int]) -> list[torch.Tensor | None]:
        """One batched decode_fn call; if it fails, one call per image, then Pillow for those still failing."""
        tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
        try:
            return list(self.decode_fn(tensors))
        except Exception:  # one bad stream fails the whole batch (decode_jpeg returns no partial results)
            pass
        out: list[torch.Tensor | None] = []
        for data, t, i in zip(datas, tensors, positions):
            try:
                out.append(self.decode_fn([t])[0])
            except Exception:
                out.append(self._or_skip(data, i))
        return out

    def _or_skip(self, data: bytes, i: int) -> torch.Tensor | None:
        """CPU decode of sample i; None (with a warning) for a corrupt one when skip_corrupt is set."""
        try:
            return self._cpu(data, i)
        except DataError as e:
            if not self.skip_corrupt:
                raise
            warnings.warn(f"skipping corrupt sample: {e}", stacklevel=3)
            return None

    def __call__(self, batch: dict) -> dict:
        encoded = batch["encoded"]
        images: list[torch.Tensor | None] = [None] * len(encoded)
        jpegs = [i for i, d in enumerate(encoded) if is_jpeg(d)]
        if jpegs:
            for i, img in zip(jpegs, self._decode_jpegs([encoded[i] for i in jpegs], jpegs)):
                images[i] = img
        jpeg_set = set(jpegs)
        for i, data in enumerate(encoded):
            if i not in jpeg_set:
                images[i] = self._or_skip(data, i)
        keep = [i for i, img in enumerate(images) if img is not None]
        labels = torch.as_tensor(batch["labels"])
        if len(keep) < len(encoded):
            labels = labels[torch.tensor(keep, dtype=torch.long)]
        out = {k: v for k, v in batch.items() if k != "encoded"}
        out["images"] = resize_to([images[i].to(self.device) for i in keep], self.size).to(self.device)
        out["labels"] = labels.to(self.device, non_blocking=True)
        out["skipped"] = int(batch.get("skipped", 0)) + len(encoded) - len(keep)
        return out
