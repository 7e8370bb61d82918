"""Vision Transformers for faces as InsightFace's arcface_torch builds them: `vit_t vit_s vit_b vit_l vit_h`.

Reference: Dosovitskiy et al., "An Image is Worth 16x16 Words" (ICLR 2021); the face variant follows
arcface_torch (deepinsight/insightface, recognition/arcface_torch/backbones/vit.py and get_model):
patch 9 on 112x112 (a 12x12 grid of 144 tokens; the last 4 pixel rows/columns are not seen), learned positional
embedding, no class token, pre-norm blocks (LayerNorm, 8 heads, no qkv bias, MLP ratio 4 with ReLU6), a final
LayerNorm, and a feature head over all tokens: flatten (144 * D) -> Linear (no bias) -> BN1d -> Linear (no bias)
-> BN1d (eps 2e-5). In training a random `mask_ratio` of the tokens is dropped before the blocks and replaced by
a learned mask token after the final norm (arcface_torch's token masking).

| name  | D    | depth | drop path | mask | params (512-d) | GFLOPs at 112x112 (GMACs: arcface_torch README) |
| vit_t | 256  | 12    | 0.1       | 0.1  | 19.14M         | 3.01 (1.5)                                      |
| vit_s | 512  | 12    | 0.1       | 0.1  | 76.02M         | 11.49 (5.7)                                     |
| vit_b | 512  | 24    | 0.1       | 0.1  | 113.83M        | 22.87 (11.4)                                    |
| vit_l | 768  | 24    | 0.05      | 0.05 | 255.68M        | 50.68 (25.3)                                    |
| vit_h | 1024 | 48    | 0.1       | 0.0  | 756.39M        | 178.4 (-)                                       |
arcface_torch publishes no parameter counts for its ViTs; ours are counted from the layout above, which is
arcface_torch's parameter for parameter (names and shapes), so its released state dicts load with strict=True.
vit_l is its "vit_l_dp005_mask_005" (the only ViT-L it defines); vit_b/l/h use activation checkpointing in
training as arcface_torch does (`checkpointing`). Its WebFace42M recipes use drop_path_rate 0.05 and
mask_ratio 0 for ViT-T/S ("vit_t_dp005_mask0"): pass them as kwargs (configs/webface_vit_t_cosface.yaml does).

`dropout` is arcface_torch's drop_rate: after the positional embedding, in each MLP and attention projection.

Small sizes for tests: embed_dim, depth, num_heads, patch_size and input_size are all keywords.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ...errors import ConfigError
from . import BACKBONES, as_hw, check_dropout, check_input, check_positive


class DropPath(nn.Module):
    """Stochastic depth: in training, x * Bernoulli(1 - p) per sample / (1 - p); the identity in eval."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device, dtype=x.dtype).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def init_transformer_weights(module: nn.Module) -> None:
    """Linear weights truncated N(0, 0.02) on [-2, 2] with zero bias; LayerNorm scale 1, shift 0 (ViT / Swin)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def drop_path_rates(total: float, n: int) -> list[float]:
    """The stochastic-depth rule: rates rising linearly from 0 to `total` over the n blocks."""
    return [total * i / (n - 1) if n > 1 else 0.0 for i in range(n)]


class Mlp(nn.Module):
    """fc1 (D -> hidden) -> act -> dropout -> fc2 (hidden -> D) -> dropout."""

    def __init__(self, dim: int, hidden: int, act: type[nn.Module] = nn.ReLU6, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Attention(nn.Module):
    """Multi-head self-attention: softmax(q k^T / sqrt(D / heads)) v, then a projection (B, N, D) -> (B, N, D).

    arcface_torch runs this product in float32 to keep fp16 from overflowing; here it runs in the input dtype
    through scaled_dot_product_attention (fused kernels accumulate the softmax in float32 under bf16/fp16).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False, drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        return self.proj_drop(self.proj(x))


class Block(nn.Module):
    """Pre-norm transformer block: x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x)))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> D channels: Conv2d(3, D, p, stride p); (B, 3, H, W) -> (B, N, D)."""

    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """Input (B, 3, H, W) normalised -> (B, embedding_size); N = (H // p) * (W // p) tokens, no class token."""

    def __init__(
        self,
        embed_dim: int = 256,
        depth: int = 12,
        num_heads: int = 8,
        patch_size: int = 9,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
        mask_ratio: float = 0.1,
        checkpointing: bool = False,
        embedding_size: int = 512,
        input_size=112,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_positive(
            embed_dim=embed_dim, depth=depth, num_heads=num_heads, patch_size=patch_size, embedding_size=embedding_size
        )
        if embed_dim % num_heads:
            raise ConfigError(f"ViT embed_dim {embed_dim} must be divisible by num_heads {num_heads}.")
        for key, v in {"drop_path_rate": drop_path_rate, "mask_ratio": mask_ratio}.items():
            if not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise ConfigError(f"ViT {key} must be in [0, 1), got {v!r}.")
        self.embedding_size = embedding_size
        self.input_size = as_hw(input_size, minimum=patch_size)
        self.checkpointing = bool(checkpointing)
        self.mask_ratio = float(mask_ratio)
        h, w = self.input_size
        self.num_patches = (h // patch_size) * (w // patch_size)
        self.embed_dim = embed_dim
        drop = check_dropout(dropout)

        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, embed_dim))
        self.pos_drop = nn.Dropout(drop)
        rates = drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, drop, r) for r in rates)
        self.norm = nn.LayerNorm(embed_dim)
        self.feature = nn.Sequential(
            nn.Linear(embed_dim * self.num_patches, embed_dim, bias=False),
            nn.BatchNorm1d(embed_dim, eps=2e-5),
            nn.Linear(embed_dim, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size, eps=2e-5),
        )
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # kept for strict loading of arcface_torch weights; frozen when no token is ever masked, so DDP (without
        # find_unused_parameters) never waits for a gradient it cannot get
        self.mask_token.requires_grad_(self.num_masked > 0)
        self._init_weights()

    @property
    def num_masked(self) -> int:
        """Tokens replaced by the mask token per sample in training: N - int(N * (1 - mask_ratio))."""
        return self.num_patches - int(self.num_patches * (1.0 - self.mask_ratio))

    def _init_weights(self) -> None:
        """As arcface_torch: mask token N(0, 0.02), positions and Linear weights truncated N(0, 0.02)."""
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        init_transformer_weights(self)

    def _run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            if self.checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "VisionTransformer")
        x = self.pos_drop(self.patch_embed(x) + self.pos_embed)
        b, n, d = x.shape
        if self.training and self.num_masked > 0:
            # per-sample random subset of n - num_masked tokens through the blocks; mask tokens fill the rest
            order = torch.rand(b, n, device=x.device).argsort(dim=1)
            keep = order[:, : n - self.num_masked]
            x = self.norm(self._run_blocks(torch.gather(x, 1, keep[..., None].expand(-1, -1, d))))
            x = torch.cat([x, self.mask_token.to(x.dtype).expand(b, self.num_masked, d)], dim=1)
            x = torch.gather(x, 1, order.argsort(dim=1)[..., None].expand(-1, -1, d))  # back to patch order
        else:
            x = self.norm(self._run_blocks(x))
        return self.feature(x.reshape(b, n * d))


_VARIANTS = {
    # name: embed_dim, depth, drop_path_rate, mask_ratio, checkpointing (arcface_torch get_model)
    "vit_t": (256, 12, 0.1, 0.1, False),
    "vit_s": (512, 12, 0.1, 0.1, False),
    "vit_b": (512, 24, 0.1, 0.1, True),
    "vit_l": (768, 24, 0.05, 0.05, True),
    "vit_h": (1024, 48, 0.1, 0.0, True),
}
_INFO = {
    "reference": "Dosovitskiy et al., ViT (ICLR 2021); arcface_torch backbones/vit.py",
    "test_kwargs": {"embed_dim": 32, "depth": 2, "num_heads": 4, "input_size": 36},  # a 4x4 grid of 9-px patches
}
for _name, (_dim, _depth, _dpr, _mask, _ckpt) in _VARIANTS.items():
    BACKBONES.register(
        _name, info=_INFO, embed_dim=_dim, depth=_depth, drop_path_rate=_dpr, mask_ratio=_mask, checkpointing=_ckpt
    )(VisionTransformer)
