"""dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1, Davis King 2017; CC0 weights).

Registered name: `dlib_resnet`. A ResNet-29-like stack on 150x150 RGB chips, 128-d descriptors compared by
Euclidean distance (same person when < 0.6): conv 7x7/2 (32) -> max pool 3x3/2 -> 3 residual blocks of 32 ->
down + 3 of 64 -> down + 2 of 128 -> down + 2 of 256 -> down 256 -> global mean -> fc 128 (no bias). Blocks are
conv3x3 -> affine -> relu -> conv3x3 -> affine (+ skip), relu; down-sampling blocks use a stride-2 first conv
(no padding) and a 2x2/2 average-pooled skip, added with dlib's zero padding (see models/dlib/torch_net.py).
Layer list: facezoo.models.dlib.net.resnet_layers(); `facezoo models fetch dlib` converts the weights.

Input normalisation is dlib's, (pixel - mean_c) / 256 with RGB means (122.782, 117.001, 104.298): the converted
checkpoint's ModelMeta holds it (per-channel mean, std 256), like any other model's preprocessing. dropout (default
0, dlib has none) acts before the fc layer.
"""

from __future__ import annotations

import torch
from torch import nn

from ..dlib.net import resnet_layers
from ..dlib.torch_net import DlibLayers
from . import BACKBONES, as_hw, check_dropout, check_input, check_positive

DLIB_MEAN_RGB = (122.782, 117.001, 104.298)
DLIB_SCALE = 256.0


_INFO = {
    "reference": "dlib_face_recognition_resnet_model_v1 (Davis King, 2017; CC0 via face-recognition-models)",
    "test_kwargs": {"input_size": 112},  # the unpadded stride-2 convs need >= 3 px at the last one
}


@BACKBONES.register("dlib_resnet", info=_INFO)
class DlibResNet(nn.Module):
    """(B, 3, H, W) normalised RGB -> (B, embedding_size) raw descriptors."""

    def __init__(self, embedding_size: int = 128, input_size=150, dropout: float = 0.0):
        super().__init__()
        check_positive(embedding_size=embedding_size)
        self.input_size = as_hw(input_size, minimum=32)
        self.embedding_size = embedding_size
        layers = resnet_layers()
        self.body = DlibLayers(layers[1:-1])
        self.fc = nn.Linear(self.body.out_channels, embedding_size, bias=False)
        self.dropout = nn.Dropout(check_dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "dlib_resnet")
        return self.fc(self.dropout(self.body(x).flatten(1)))
