"""Compositing an RGBA layer (a mask or an occluder) onto faces with shading matched to the face, in torch (one
code path for the CPU tool and the on-device augmentation).

The face's illumination is read from its low-pass luma L = G_sigma * Y (sigma ~ a tenth of the face): under the
layer the colour becomes c_layer * (L / L_ref)^0.8 * (L_ref / 150)^0.25, where L_ref is the alpha-weighted mean of L
under the layer. The first factor carries the light gradient across the face (a side in shadow stays in shadow);
the second, mild, carries the overall exposure (a white mask in a dim photo is not paper-white). Both are clamped
(L / L_ref to [0.45, 1.6], L_ref / 150 to [0.4, 1.1]).
out = x (1 - a) + c a.
"""

from __future__ import annotations

import numpy as np
import torch

from .filters import gaussian_blur, luma

SKIN_LUMA = 150.0  # luma of a well-exposed face, the reference of the exposure factor


def composite(x: torch.Tensor, layer: torch.Tensor, sigma: torch.Tensor | float, match: bool = True) -> torch.Tensor:
    """float (B, 3, H, W) 0-255 images with float RGBA layers (B, 4, H, W) in [0, 1] composited on top; sigma (B,)
    or a float: the shading blur in pixels. Returns float (B, 3, H, W) 0-255."""
    b = x.shape[0]
    rgb, a = layer[:, :3] * 255.0, layer[:, 3:4].clamp(0, 1)
    if match:
        s = sigma if torch.is_tensor(sigma) else torch.full((b,), float(sigma), device=x.device)
        low = gaussian_blur(luma(x), s.to(x.device), max_sigma=float(s.max()) if not torch.is_tensor(sigma) else None)
        ref = (low * a).sum((2, 3), keepdim=True) / a.sum((2, 3), keepdim=True).clamp_min(1e-6)
        rel = (low / ref.clamp_min(1.0)).clamp(0.45, 1.6) ** 0.8
        exposure = (ref / SKIN_LUMA).clamp(0.4, 1.1) ** 0.25
        rgb = rgb * rel * exposure
    return x * (1 - a) + rgb.clamp(0, 255) * a


def composite_image(image: np.ndarray, layer: np.ndarray, sigma: float, match: bool = True) -> np.ndarray:
    """uint8 (H, W, 3) image with a float32 RGBA (H, W, 4) layer composited on top -> uint8 (H, W, 3)."""
    x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None]
    lay = torch.from_numpy(np.ascontiguousarray(layer, dtype=np.float32)).permute(2, 0, 1)[None]
    out = composite(x, lay, float(sigma), match)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
