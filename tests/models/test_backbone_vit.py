"""ViT (arcface_torch layout): key tables and strict loading, token masking, attention formula, sizes, ONNX."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import facezoo
from facezoo.errors import ConfigError

from .backbone_checks import (
    bn_keys,
    check_forward_backward,
    check_input_errors,
    check_onnx_parity,
    check_trains,
    n_params,
    one_thread,  # noqa: F401  (autouse fixture)
    random_state_dict,
    table_params,
)

# arcface_torch get_model: (embed_dim, depth); all have 8 heads, patch 9, MLP ratio 4, 144 tokens at 112x112
VARIANTS = {"vit_t": (256, 12), "vit_s": (512, 12), "vit_b": (512, 24), "vit_l": (768, 24), "vit_h": (1024, 48)}
SMALL = {"embed_dim": 32, "depth": 2, "num_heads": 4}  # 36x36 input: a 4x4 grid of 9-pixel patches


def arcface_torch_vit_table(dim: int, depth: int, emb: int = 512, tokens: int = 144, patch: int = 9) -> dict:
    """Key -> shape of arcface_torch's VisionTransformer state dict, written from its module rules."""
    t = {
        "pos_embed": (1, tokens, dim),
        "mask_token": (1, 1, dim),
        "patch_embed.proj.weight": (dim, 3, patch, patch),
        "patch_embed.proj.bias": (dim,),
    }
    for i in range(depth):
        p = f"blocks.{i}"
        for norm in ("norm1", "norm2"):
            t[f"{p}.{norm}.weight"] = t[f"{p}.{norm}.bias"] = (dim,)
        t[f"{p}.attn.qkv.weight"] = (3 * dim, dim)  # qkv_bias=False
        t[f"{p}.attn.proj.weight"], t[f"{p}.attn.proj.bias"] = (dim, dim), (dim,)
        t[f"{p}.mlp.fc1.weight"], t[f"{p}.mlp.fc1.bias"] = (4 * dim, dim), (4 * dim,)
        t[f"{p}.mlp.fc2.weight"], t[f"{p}.mlp.fc2.bias"] = (dim, 4 * dim), (dim,)
    t["norm.weight"] = t["norm.bias"] = (dim,)
    t["feature.0.weight"] = (dim, dim * tokens)
    t.update(bn_keys("feature.1", dim))
    t["feature.2.weight"] = (emb, dim)
    t.update(bn_keys("feature.3", emb))
    return t


@pytest.mark.parametrize("name", list(VARIANTS))
def test_layout_is_arcface_torch_key_for_key(name):
    dim, depth = VARIANTS[name]
    with torch.device("meta"):
        model = facezoo.create_backbone(name)
    table = arcface_torch_vit_table(dim, depth)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == table
    assert n_params(model) == table_params(table)


def test_vit_t_loads_an_arcface_torch_state_dict_strictly():
    torch.manual_seed(0)
    model = facezoo.create_backbone("vit_t").eval()
    table = arcface_torch_vit_table(256, 12)
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        before = model(x)
        sd = random_state_dict(table)
        model.load_state_dict(sd, strict=True)
        after = model(x)
    assert after.shape == (2, 512) and torch.isfinite(after).all() and not torch.allclose(before, after)
    for key in ("blocks.11.attn.qkv.weight", "feature.0.weight", "mask_token"):
        assert torch.equal(model.state_dict()[key], sd[key])
    del sd["blocks.3.mlp.fc2.bias"]
    with pytest.raises(RuntimeError, match=r"blocks\.3\.mlp\.fc2\.bias"):
        model.load_state_dict(sd, strict=True)


@pytest.mark.parametrize("name, gmacs", [("vit_t", 1.5), ("vit_s", 5.7), ("vit_b", 11.4), ("vit_l", 25.3)])
def test_flops_match_arcface_torch_readme(name, gmacs):
    # arcface_torch's README lists GMACs at 112x112 (1 MAC = 2 FLOPs); counted on the meta device
    with torch.device("meta"):
        model = facezoo.create_backbone(name).eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.empty(1, 3, 112, 112))
    assert abs(counter.get_total_flops() / 2e9 - gmacs) <= 0.02 * gmacs


def test_registered_hyperparameters():
    expected = {  # arcface_torch get_model: drop_path_rate, mask_ratio, using_checkpoint
        "vit_t": (0.1, 0.1, False),
        "vit_s": (0.1, 0.1, False),
        "vit_b": (0.1, 0.1, True),
        "vit_l": (0.05, 0.05, True),
        "vit_h": (0.1, 0.0, True),
    }
    for name, (dpr, mask, ckpt) in expected.items():
        with torch.device("meta"):
            m = facezoo.create_backbone(name)
        assert m.mask_ratio == mask and m.checkpointing == ckpt, name
        assert m.blocks[-1].drop_path.p == pytest.approx(dpr) and m.blocks[0].drop_path.p == 0.0, name
        assert m.num_patches == 144 and len(m.blocks[0].attn.qkv.weight) == 3 * m.embed_dim
        assert m.mask_token.requires_grad == (mask > 0), name  # unused -> frozen, so DDP never waits for it


def test_forward_backward_small():
    check_forward_backward("vit_t", SMALL, (36, 36))
    check_forward_backward("vit_h", {**SMALL, "depth": 1}, (36, 45))  # checkpointing on, non-square grid


def test_trains_with_partial_fc_and_reloads(tmp_path):
    check_trains("vit_t", SMALL, tmp_path)


def test_input_errors():
    check_input_errors("vit_s", SMALL, (36, 36))


def test_bad_keywords():
    with pytest.raises(ConfigError, match="divisible"):
        facezoo.create_backbone("vit_t", embed_dim=30, num_heads=4)
    with pytest.raises(ConfigError, match="mask_ratio"):
        facezoo.create_backbone("vit_t", mask_ratio=1.0)
    with pytest.raises(ConfigError, match="input_size"):
        facezoo.create_backbone("vit_t", input_size=8)  # smaller than one patch


def _feature_input(model, x):
    seen = {}
    handle = model.feature.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen["x"].reshape(x.shape[0], model.num_patches, model.embed_dim)


def test_training_masks_exactly_mask_ratio_of_the_tokens_per_sample():
    torch.manual_seed(0)
    model = facezoo.create_backbone("vit_t", **SMALL, input_size=36, mask_ratio=0.25, drop_path_rate=0.0)
    assert model.num_masked == 16 - int(16 * 0.75) == 4
    x = torch.randn(6, 3, 36, 36)
    model.train()
    tokens = _feature_input(model, x)
    is_mask = (tokens == model.mask_token[0, 0]).all(dim=-1)  # (B, N): positions holding the mask token
    assert (is_mask.sum(dim=1) == 4).all()
    assert len({tuple(row.nonzero().flatten().tolist()) for row in is_mask}) > 1  # drawn per sample
    model.eval()
    assert not (_feature_input(model, x) == model.mask_token[0, 0]).all(dim=-1).any()


def test_attention_is_scaled_dot_product_softmax():
    torch.manual_seed(0)
    attn = facezoo.create_backbone("vit_t", **SMALL, input_size=36).blocks[0].attn.double()
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    q, k, v = (attn.qkv.weight.reshape(3, 32, 32) @ x.transpose(1, 2)[:, None]).transpose(-1, -2).unbind(1)
    heads = [slice(h * 8, (h + 1) * 8) for h in range(4)]
    outs = [torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(8), -1) @ v[..., s] for s in heads]
    want = torch.cat(outs, -1) @ attn.proj.weight.T + attn.proj.bias
    with torch.no_grad():
        assert torch.allclose(attn(x), want, atol=1e-10)


def test_onnx_export_parity(tmp_path):
    check_onnx_parity("vit_t", SMALL, (36, 36), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_l", "vit_h"])
def test_full_size_forward_batch_1(name):
    torch.manual_seed(0)
    model = facezoo.create_backbone(name).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 112, 112))
    assert out.shape == (1, 512) and torch.isfinite(out).all()
