"""Device-side preprocessing: uint8 NHWC batch -> normalised float NCHW (channels_last memory).

Batches travel to the device as uint8 (4x less traffic than float32); flip, channel order and normalisation
happen there. permute(0, 3, 1, 2) of a contiguous NHWC tensor is already channels_last NCHW.
"""

from __future__ import annotations

import torch


def normalize(
    images: torch.Tensor,
    mean: float | tuple = 127.5,
    std: float | tuple = 127.5,
    channel_order: str = "RGB",
    flip: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB -> (B, 3, H, W) float32, x = (pixel - mean) / std.

    flip: optional (B,) bool; True rows are mirrored horizontally. channel_order "BGR" reverses the channels.
    mean, std: a float, or 3 floats per channel in channel_order (the order after the reversal).
    """
    if images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected a (B, H, W, 3) uint8 batch, got shape {tuple(images.shape)}")
    x = images.permute(0, 3, 1, 2).float()
    if channel_order == "BGR":
        x = x.flip(1)
    if flip is not None:
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    if not isinstance(mean, (int, float)):
        mean = x.new_tensor(mean).view(1, 3, 1, 1)
    if not isinstance(std, (int, float)):
        std = x.new_tensor(std).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def random_flip_mask(batch: int, generator: torch.Generator, device) -> torch.Tensor:
    """(B,) bool, each True with p = 0.5, drawn from `generator` on the CPU (reproducible) then moved."""
    return (torch.rand(batch, generator=generator) < 0.5).to(device, non_blocking=True)
