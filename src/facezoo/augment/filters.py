"""Batched image filters in torch (any device), per-sample parameters, no host sync: Gaussian blur, luma.

Images are float (B, C, H, W); per-sample parameters are (B,) tensors on the same device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


def luma(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) Y' = 0.299 R + 0.587 G + 0.114 B of RGB (B, 3, H, W)."""
    w = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, max_sigma: float | None = None) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with per-sample sigma (B,) pixels (0 = unchanged), reflect padding.

    Each axis is a sum of 2r + 1 shifted copies weighted per sample, g(k) = exp(-k^2 / 2 sigma^2) normalised, with
    r = ceil(3 max_sigma) (max_sigma defaults to a fixed 3.0, so no value is read back from the device): plain
    elementwise work whose shape never depends on the batch, unlike a grouped convolution of B*C groups.
    """
    b, _, h, w = x.shape
    r = max(1, math.ceil(3.0 * (3.0 if max_sigma is None else max_sigma)))
    r = min(r, h - 1, w - 1)
    if r < 1:
        return x
    k = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(device=x.device, dtype=x.dtype).clamp_min(1e-3).view(b, 1)
    g = torch.exp(-(k.view(1, -1) ** 2) / (2 * s**2))
    g = torch.where(sigma.to(x.device).view(b, 1) > 1e-3, g, (k.view(1, -1) == 0).to(x.dtype))  # sigma 0: identity
    g = g / g.sum(1, keepdim=True)  # (B, 2r + 1)
    p = F.pad(x, (r, r, 0, 0), mode="reflect")
    y = sum(g[:, j].view(b, 1, 1, 1) * p[..., j : j + w] for j in range(2 * r + 1))
    p = F.pad(y, (0, 0, r, r), mode="reflect")
    return sum(g[:, j].view(b, 1, 1, 1) * p[:, :, j : j + h] for j in range(2 * r + 1))
