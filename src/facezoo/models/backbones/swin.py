"""Swin Transformer for faces at 224x224 as FaceX-Zoo trains it: `swin_t swin_s`.

Reference: Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows" (ICCV 2021);
the face variant follows FaceX-Zoo (JDAI-CV/FaceX-Zoo, backbone/Swin_Transformer.py, training_mode/swin_training):
112x112 crops resized to 224x224, patch 4, window 7, four stages (56, 28, 14, 7 tokens a side) joined by patch
merging, qkv bias, relative position bias, GELU MLPs, no absolute position embedding; the classifier's average
pool is replaced by a head over all 49 final tokens: LayerNorm -> flatten (49 * 8C) -> Linear -> BN1d.
Trained with AdamW (lr 5e-4, weight decay 0.05) and a cosine schedule with warm-up (configs/ms1mv2_swin_t_arcface.yaml).

| name   | C  | depths        | heads          | drop path | params (ours) | FaceX-Zoo (THOP) | GFLOPs at 224 |
| swin_t | 96 | (2, 2, 6, 2)  | (3, 6, 12, 24) | 0.2       | 46.79M        | 46.74M           | 9.02          |
| swin_s | 96 | (2, 2, 18, 2) | (3, 6, 12, 24) | 0.3       | 68.11M        | 68.01M           | 17.52         |
Ours has FaceX-Zoo's parameters exactly (names and shapes; its Linear is hard-coded to 512-d, ours follows
embedding_size); the published counts are lower because the THOP version FaceX-Zoo used skips the relative
position bias tables (held by a non-leaf layer: 23,322 for Swin-T, 47,658 for Swin-S) and LayerNorms (no THOP
rule: 24,768 and 43,200); ours minus both is 46.740M and 68.016M. FaceX-Zoo reports 4.37 / 8.53 GMACs
(THOP counts no attention matmuls; ours are FLOPs = 2 MACs, attention included).

`dropout` is FaceX-Zoo's drop_rate: after the patch embedding, in each MLP and attention projection.

Small sizes for tests: embed_dim, depths, num_heads, window_size, patch_size and input_size are keywords; each
stage's token grid must divide by its window (a grid no larger than the window is one window, unshifted).
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError
from . import BACKBONES, as_hw, check_dropout, check_input, check_positive
from .vit import DropPath, drop_path_rates, init_transformer_weights


class Mlp(nn.Module):
    """fc1 (C -> hidden) -> GELU -> dropout -> fc2 -> dropout."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/ws * W/ws, ws * ws, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """Inverse of window_partition: (B * nW, ws * ws, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def relative_position_index(ws: int) -> torch.Tensor:
    """(ws^2, ws^2) index into the (2ws-1)^2 bias table: (dy + ws - 1) * (2ws - 1) + (dx + ws - 1)."""
    ys, xs = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + ws - 1
    dx = xs[:, None] - xs[None, :] + ws - 1
    return dy * (2 * ws - 1) + dx


def shift_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """(nW, ws^2, ws^2) additive mask for shifted windows: -100 between tokens from different image regions.

    After a cyclic shift by `shift`, the last window row/column mixes pixels from opposite image borders; the
    regions are the 3 x 3 grid cut at -ws and -shift along each axis.
    """
    region = torch.zeros(1, h, w, 1)
    cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    for i, (rows, cols) in enumerate((r, c) for r in cuts for c in cuts):
        region[:, rows, cols, :] = i
    ids = window_partition(region, ws).squeeze(-1)  # (nW, ws^2)
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention within a ws x ws window plus a learned relative position bias per head:
    softmax(q k^T / sqrt(d) + B[rel(i, j)] + mask) v; (B*nW, N, C) -> (B*nW, N, C), N = ws^2."""

    def __init__(self, dim: int, ws: int, num_heads: int, drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(ws))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).to(attn.dtype)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(bw // nw, nw, self.num_heads, n, n) + mask[:, None].to(attn.dtype)).view(
                -1, *attn.shape[1:]
            )
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj_drop(self.proj(x))


class SwinBlock(nn.Module):
    """x + DropPath(W-MSA(LN(x))) with the window grid cyclically shifted by `shift`, then x + DropPath(MLP(LN(x)))."""

    def __init__(self, dim, resolution, num_heads, ws, shift, mlp_ratio, drop, drop_path):
        super().__init__()
        self.resolution = resolution
        if min(resolution) <= ws:  # the whole grid is one window: nothing to shift
            ws, shift = min(resolution), 0
        self.ws, self.shift = ws, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, ws, num_heads, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.register_buffer("attn_mask", shift_mask(*resolution, ws, shift) if shift else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (b, _, c) = self.resolution, x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = window_reverse(self.attn(window_partition(y, self.ws), self.attn_mask), self.ws, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(y.reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbours concatenated (order (0,0), (1,0), (0,1), (1,1)) -> LN(4C) -> Linear(4C -> 2C, no bias)."""

    def __init__(self, resolution, dim: int):
        super().__init__()
        self.resolution = resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (b, _, c) = self.resolution, x.shape
        x = x.view(b, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class BasicLayer(nn.Module):
    """One stage: `depth` blocks alternating plain and shifted (by ws // 2) windows, then optional merging."""

    def __init__(self, dim, resolution, depth, num_heads, ws, mlp_ratio, drop, drop_path, downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, num_heads, ws, 0 if i % 2 == 0 else ws // 2, mlp_ratio, drop, drop_path[i])
            for i in range(depth)
        )
        self.downsample = PatchMerging(resolution, dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class PatchEmbed(nn.Module):
    """Conv2d(3, C, p, stride p) -> tokens (B, N, C) -> LayerNorm."""

    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


def stage_resolutions(hw, patch_size: int, stages: int, ws: int) -> list[tuple[int, int]]:
    """Token grid of each stage; ConfigError unless every merge sees an even grid and every window tiles it."""
    grid = (hw[0] // patch_size, hw[1] // patch_size)
    out = []
    for i in range(stages):
        win = min(ws, *grid)
        if (
            grid[0] * patch_size * 2**i != hw[0]
            or grid[1] * patch_size * 2**i != hw[1]
            or grid[0] % win
            or grid[1] % win
        ):
            raise ConfigError(
                f"Swin input_size {tuple(hw)} does not tile: stage {i + 1} grid {grid} with patch {patch_size} and "
                f"window {ws}; the sides must be patch_size * 2^{stages - 1} * a multiple of the window "
                "(224 with patch 4 and window 7)."
            )
        out.append(grid)
        grid = (grid[0] // 2, grid[1] // 2)
    return out


class SwinTransformer(nn.Module):
    """Input (B, 3, H, W) normalised (224x224 native) -> (B, embedding_size)."""

    def __init__(
        self,
        embed_dim: int = 96,
        depths=(2, 2, 6, 2),
        num_heads=(3, 6, 12, 24),
        window_size: int = 7,
        patch_size: int = 4,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.2,
        embedding_size: int = 512,
        input_size=224,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_positive(
            embed_dim=embed_dim, window_size=window_size, patch_size=patch_size, embedding_size=embedding_size
        )
        depths, num_heads = tuple(depths), tuple(num_heads)
        if len(depths) != len(num_heads) or not depths or min(depths) < 1 or min(num_heads) < 1:
            raise ConfigError(f"Swin depths {depths} and num_heads {num_heads} must be equal-length positive ints.")
        for i, heads in enumerate(num_heads):
            if (embed_dim * 2**i) % heads:
                raise ConfigError(f"Swin stage {i + 1} width {embed_dim * 2**i} is not divisible by {heads} heads.")
        if not isinstance(drop_path_rate, (int, float)) or not 0.0 <= drop_path_rate < 1.0:
            raise ConfigError(f"Swin drop_path_rate must be in [0, 1), got {drop_path_rate!r}.")
        self.embedding_size = embedding_size
        self.input_size = as_hw(input_size)
        drop = check_dropout(dropout)
        grids = stage_resolutions(self.input_size, patch_size, len(depths), window_size)

        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.pos_drop = nn.Dropout(drop)
        rates = drop_path_rates(drop_path_rate, sum(depths))
        self.layers = nn.ModuleList()
        for i, (depth, heads, grid) in enumerate(zip(depths, num_heads, grids)):
            start = sum(depths[:i])
            self.layers.append(
                BasicLayer(
                    embed_dim * 2**i,
                    grid,
                    depth,
                    heads,
                    window_size,
                    mlp_ratio,
                    drop,
                    rates[start : start + depth],
                    downsample=i < len(depths) - 1,
                )
            )
        features = embed_dim * 2 ** (len(depths) - 1)
        self.output_layer = nn.Sequential(
            nn.LayerNorm(features),
            nn.Flatten(1),
            nn.Linear(grids[-1][0] * grids[-1][1] * features, embedding_size),
            nn.BatchNorm1d(embedding_size),
        )
        init_transformer_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "SwinTransformer")
        x = self.pos_drop(self.patch_embed(x))
        for layer in self.layers:
            x = layer(x)
        return self.output_layer(x)


_INFO = {
    "reference": "Liu et al., Swin Transformer (ICCV 2021); FaceX-Zoo backbone/Swin_Transformer.py",
    "test_kwargs": {"embed_dim": 8, "depths": (2, 1), "num_heads": (1, 2), "window_size": 4, "patch_size": 2,
                    "input_size": 32},
}  # fmt: skip
BACKBONES.register("swin_t", info=_INFO, depths=(2, 2, 6, 2), drop_path_rate=0.2)(SwinTransformer)
BACKBONES.register("swin_s", info=_INFO, depths=(2, 2, 18, 2), drop_path_rate=0.3)(SwinTransformer)
