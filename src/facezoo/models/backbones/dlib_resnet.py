"""dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1, Davis King 2017; CC0 weights).

Registered name: `dlib_resnet`. A ResNet-29-like stack on 150x150 RGB chips, 128-d descriptors compared by
Euclidean distance (same person when < 0.6): conv 7x7/2 (32) -> max pool 3x3/2 -> 3 residual blocks of 32 ->
down + 3 of 64 -> down + 2 of 128 -> down + 2 of 256 -> down 256 -> global mean -> fc 128 (no bias). Blocks are
conv3x3 -> affine -> relu -> conv3x3 -> affine (+ skip), relu; down-sampling blocks use a stride-2 first conv
(no padding) and a 2x2/2 average-pooled skip, added with dlib's zero padding (see models/dlib/torch_net.py).
Layer list: facezoo.models.dlib.net.resnet_layers(); `facezoo models fetch dlib` converts the weights.

pixel_mean / pixel_scale: x = (input - pixel_mean) / pixel_scale per RGB channel inside the backbone (default
0 and 1: the input is already normalised). The converted checkpoint sets dlib's (122.782, 117.001, 104.298) and
256 here, with ModelMeta mean 0 / std 1, because ModelMeta holds one mean for all channels.
"""

from __future__ import annotations

import torch
from torch import nn

from ..dlib.net import resnet_layers
from ..dlib.torch_net import DlibLayers
from . import BACKBONES, as_hw, check_input, check_positive

DLIB_MEAN_RGB = (122.782, 117.001, 104.298)
DLIB_SCALE = 256.0


@BACKBONES.register("dlib_resnet")
class DlibResNet(nn.Module):
    """(B, 3, H, W) RGB (pixels when pixel_mean/scale are dlib's) -> (B, embedding_size) raw descriptors."""

    def __init__(
        self,
        embedding_size: int = 128,
        input_size=150,
        pixel_mean=(0.0, 0.0, 0.0),
        pixel_scale: float = 1.0,
    ):
        super().__init__()
        check_positive(embedding_size=embedding_size)
        self.input_size = as_hw(input_size, minimum=32)
        self.embedding_size = embedding_size
        layers = resnet_layers()
        self.body = DlibLayers(layers[1:-1])
        self.fc = nn.Linear(self.body.out_channels, embedding_size, bias=False)
        mean = torch.tensor([float(v) for v in pixel_mean], dtype=torch.float32)
        if mean.shape != (3,) or not float(pixel_scale) > 0:
            from ...errors import ConfigError

            raise ConfigError(f"dlib_resnet: pixel_mean must be 3 numbers and pixel_scale > 0, got {pixel_mean!r}, "
                              f"{pixel_scale!r}")  # fmt: skip
        self.register_buffer("pixel_mean", mean.view(1, 3, 1, 1), persistent=False)
        self.pixel_scale = float(pixel_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "dlib_resnet")
        x = (x - self.pixel_mean) / self.pixel_scale
        return self.fc(self.body(x).flatten(1))
