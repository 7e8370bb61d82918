"""A backbone plus the preprocessing it was trained with: uint8 images in, raw embeddings out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..data.transforms import normalize
from ..geometry import ARCFACE_TEMPLATE_112  # the one template; importable from here too


@dataclass
class ModelMeta:
    """Everything needed to use a backbone's weights; stored in every checkpoint and export."""

    backbone: str
    backbone_kwargs: dict = field(default_factory=dict)
    embedding_size: int = 512
    input_size: tuple[int, int] = (112, 112)  # (H, W)
    channel_order: str = "RGB"
    mean: float = 127.5
    std: float = 127.5
    template: list = field(default_factory=lambda: [list(p) for p in ARCFACE_TEMPLATE_112])
    # Cosine-similarity thresholds by false accept rate, {far_key(far): threshold}, from impostor pairs of a
    # calibration set (facezoo calibrate); empty until calibrated. Used by the SDK's verify(far=...).
    thresholds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelMeta:
        d = dict(d)
        d["input_size"] = tuple(d["input_size"])
        return cls(**d)

    @classmethod
    def from_config(cls, model_cfg) -> ModelMeta:
        s = model_cfg.input_size
        return cls(
            backbone=model_cfg.backbone,
            backbone_kwargs=dict(model_cfg.kwargs),
            embedding_size=model_cfg.embedding_size,
            input_size=(s, s),
            channel_order=model_cfg.channel_order,
            mean=model_cfg.mean,
            std=model_cfg.std,
        )

    def build_backbone(self) -> nn.Module:
        from .. import create_backbone

        return create_backbone(
            self.backbone, embedding_size=self.embedding_size, input_size=self.input_size, **self.backbone_kwargs
        )


class Embedder(nn.Module):
    """forward(uint8 (B, H, W, 3) RGB at meta.input_size) -> (B, D) float embeddings, not normalised."""

    def __init__(self, backbone: nn.Module, meta: ModelMeta):
        super().__init__()
        self.backbone = backbone
        self.meta = meta

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.meta.input_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m = self.meta
        x = normalize(images, m.mean, m.std, m.channel_order)
        return self.backbone(x).float()
