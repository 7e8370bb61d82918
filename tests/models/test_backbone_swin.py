"""Swin Transformer (FaceX-Zoo layout): counts against FaceX-Zoo, shifted-window attention by brute force, ONNX."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import facezoo
from facezoo.errors import ConfigError
from facezoo.models.backbones.swin import shift_mask

from .backbone_checks import (
    check_forward_backward,
    check_input_errors,
    check_onnx_parity,
    check_trains,
    meta_params,
    one_thread,  # noqa: F401  (autouse fixture)
)

# patch 4, window 4: stage grids 16, 8, 4 (one window), 2 (one window, unshifted) at 64x64
SMALL = {"embed_dim": 8, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 2, 4), "window_size": 4}
# two stages, patch 2 on 32x32: a 16x16 grid (a plain and a shifted block), merging, an 8x8 grid
TINY = {"embed_dim": 8, "depths": (2, 1), "num_heads": (1, 2), "window_size": 4, "patch_size": 2}


@pytest.mark.parametrize("name, published", [("swin_t", 46.74), ("swin_s", 68.01)])
def test_parameter_count_against_facex_zoo(name, published):
    """FaceX-Zoo's THOP count misses the relative position bias tables (held by a non-leaf module) and every
    LayerNorm (no THOP rule); both written here from the architecture: (2*7-1)^2 * heads per block, 2C per LN."""
    depths = (2, 2, 6, 2) if name == "swin_t" else (2, 2, 18, 2)
    heads, dims = (3, 6, 12, 24), (96, 192, 384, 768)
    tables = sum(13 * 13 * h * d for h, d in zip(heads, depths))
    norms = 2 * 96  # patch_embed.norm
    norms += sum(2 * (2 * c) * d for c, d in zip(dims, depths))  # norm1, norm2 per block
    norms += sum(2 * 4 * c for c in dims[:3])  # patch merging norms over 4C
    norms += 2 * 768  # output_layer.0
    ours = meta_params(name)
    assert abs((ours - tables - norms) / 1e6 - published) <= 0.006
    # the head over all 49 tokens: LN(768) -> Linear(49 * 768 -> 512) -> BN1d(512)
    assert meta_params(name, embedding_size=256) == ours - 49 * 768 * 256 - 256 - 2 * 256


def test_stage_grids_and_windows_at_224():
    with torch.device("meta"):
        model = facezoo.create_backbone("swin_t")
    blocks = [layer.blocks for layer in model.layers]
    assert [b[0].resolution for b in blocks] == [(56, 56), (28, 28), (14, 14), (7, 7)]
    assert [(b.ws, b.shift) for b in blocks[0]] == [(7, 0), (7, 3)]
    assert [(b.ws, b.shift) for b in blocks[3]] == [(7, 0), (7, 0)]  # 7x7 grid is one window: no shift
    assert model.output_layer[2].in_features == 49 * 768


def test_shift_mask_separates_wrapped_tokens():
    # after rolling by -s, a token at (y, x) came from ((y + s) % H, (x + s) % W); two tokens of one window may
    # attend to each other iff neither axis wraps for one and not the other
    h, w, ws, s = 8, 12, 4, 2
    mask = shift_mask(h, w, ws, s)
    assert mask.shape == ((h // ws) * (w // ws), ws * ws, ws * ws)
    for win in range(mask.shape[0]):
        wy, wx = divmod(win, w // ws)
        coords = [(wy * ws + i // ws, wx * ws + i % ws) for i in range(ws * ws)]
        for a, (ya, xa) in enumerate(coords):
            for b, (yb, xb) in enumerate(coords):
                same = ((ya + s >= h) == (yb + s >= h)) and ((xa + s >= w) == (xb + s >= w))
                assert mask[win, a, b].item() == (0.0 if same else -100.0)


def _block_by_hand(block, x):
    """Shifted-window attention token by token (float64): roll, attend within the window with the relative
    bias and the wrap mask, roll back; then the MLP residual."""
    (h, w), ws, s = block.resolution, block.ws, block.shift
    attn = block.attn
    c = x.shape[-1]
    heads, d = attn.num_heads, c // attn.num_heads
    y = torch.roll(block.norm1(x).view(h, w, c), shifts=(-s, -s), dims=(0, 1))
    q, k, v = (y @ attn.qkv.weight.T + attn.qkv.bias).split(c, dim=-1)
    out = torch.zeros_like(y)
    table = attn.relative_position_bias_table
    for i in range(h):
        for j in range(w):
            keys = [
                (a, b) for a in range(i // ws * ws, i // ws * ws + ws) for b in range(j // ws * ws, j // ws * ws + ws)
            ]
            for hd in range(heads):
                sl = slice(hd * d, (hd + 1) * d)
                logits = []
                for a, b in keys:
                    rel = (i % ws - a % ws + ws - 1) * (2 * ws - 1) + (j % ws - b % ws + ws - 1)
                    wrap_ok = ((i + s >= h) == (a + s >= h)) and ((j + s >= w) == (b + s >= w)) if s else True
                    logits.append(q[i, j, sl] @ k[a, b, sl] / math.sqrt(d) + table[rel, hd] + (0 if wrap_ok else -100))
                p = torch.softmax(torch.stack(logits), 0)
                out[i, j, sl] = sum(pk * v[a, b, sl] for pk, (a, b) in zip(p, keys))
    out = torch.roll(out @ attn.proj.weight.T + attn.proj.bias, shifts=(s, s), dims=(0, 1)).reshape(1, h * w, c)
    x = x + out
    return x + block.mlp(block.norm2(x))


@pytest.mark.parametrize("shifted", [False, True])
def test_block_equals_token_by_token_attention(shifted):
    torch.manual_seed(0)
    model = facezoo.create_backbone("swin_t", **SMALL, input_size=64).double().eval()
    block = model.layers[1].blocks[1 if shifted else 0]  # 8x8 grid, window 4, shift 2 on the odd block
    assert (block.ws, block.shift) == (4, 2 if shifted else 0)
    with torch.no_grad():
        block.attn.relative_position_bias_table.normal_()
        x = torch.randn(1, 64, 16, dtype=torch.float64)
        assert torch.allclose(block(x), _block_by_hand(block, x), atol=1e-9)


def test_patch_merging_order():
    torch.manual_seed(0)
    merge = facezoo.create_backbone("swin_t", **SMALL, input_size=64).layers[2].downsample  # 4x4 grid, C = 32
    x = torch.randn(1, 16, 32)
    grid = x.view(1, 4, 4, 32)
    want = torch.cat([grid[:, 0::2, 0::2], grid[:, 1::2, 0::2], grid[:, 0::2, 1::2], grid[:, 1::2, 1::2]], -1)
    want = F.layer_norm(want.view(1, 4, 128), (128,), merge.norm.weight, merge.norm.bias) @ merge.reduction.weight.T
    with torch.no_grad():
        assert torch.allclose(merge(x), want, atol=1e-6)


def test_forward_backward_small():
    check_forward_backward("swin_t", SMALL, (64, 64))
    check_forward_backward("swin_s", {**SMALL, "depths": (1, 1, 2, 1)}, (64, 32))  # non-square grids


def test_trains_with_partial_fc_and_reloads(tmp_path):
    check_trains("swin_t", TINY, tmp_path)


def test_input_errors():
    check_input_errors("swin_t", SMALL, (64, 64))


def test_untileable_sizes_are_config_errors():
    with pytest.raises(ConfigError, match="does not tile"):
        facezoo.create_backbone("swin_t", input_size=112)  # 28 -> 14 -> 7 -> 3.5
    with pytest.raises(ConfigError, match="does not tile"):
        facezoo.create_backbone("swin_t", input_size=256)  # 64 is not a multiple of the 7-token window
    with pytest.raises(ConfigError, match="heads"):
        facezoo.create_backbone("swin_t", num_heads=(5, 6, 12, 24))


def test_onnx_export_parity(tmp_path):
    check_onnx_parity("swin_t", TINY, (32, 32), tmp_path)
