"""CBAM IR-50 (Face_Pytorch layout): count against IR-50, key table and strict load, CBAM by hand, ONNX."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import facezoo
from facezoo.errors import ConfigError
from facezoo.models.backbones.cbam import ChannelAttention, SpatialAttention

from .backbone_checks import (
    bn_keys,
    check_forward_backward,
    check_input_errors,
    check_onnx_parity,
    check_trains,
    meta_params,
    one_thread,  # noqa: F401  (autouse fixture)
    random_state_dict,
)

SMALL = {"width": 0.125}
LAYERS, CHANNELS = (3, 4, 14, 3), (64, 128, 256, 512)


def test_count_is_ir50_plus_the_attention_weights():
    # per unit: channel MLP C -> C/16 -> C (two bias-free 1x1 convs) and a 2 -> 1 3x3 conv; the rest is IR-50
    extra = sum(n * (2 * c * (c // 16) + 2 * 9) for n, c in zip(LAYERS, CHANNELS))
    assert meta_params("cbam_ir50") == meta_params("ir50") + extra


def face_pytorch_cbam_table(width=1.0, size=112, emb=512) -> dict:
    """Key -> shape of Face_Pytorch's CBAMResNet(50, mode="ir_cbam") state dict, from its module rules."""
    chans = [round(c * width) for c in CHANNELS]
    t = {"input_layer.0.weight": (chans[0], 3, 3, 3), **bn_keys("input_layer.1", chans[0])}
    t["input_layer.2.weight"] = (chans[0],)
    c_in = chans[0]
    for s, (n, c) in enumerate(zip(LAYERS, chans), start=1):
        for u in range(n):
            p, cin = f"layer{s}.{u}", c_in if u == 0 else c
            t.update(bn_keys(f"{p}.res_layer.0", cin))
            t[f"{p}.res_layer.1.weight"] = (c, cin, 3, 3)
            t.update(bn_keys(f"{p}.res_layer.2", c))
            t[f"{p}.res_layer.3.weight"] = (c,)
            t[f"{p}.res_layer.4.weight"] = (c, c, 3, 3)
            t.update(bn_keys(f"{p}.res_layer.5", c))
            t[f"{p}.res_layer.6.shared_mlp.0.weight"] = (c // 16, c, 1, 1)
            t[f"{p}.res_layer.6.shared_mlp.2.weight"] = (c, c // 16, 1, 1)
            t[f"{p}.res_layer.7.conv.weight"] = (1, 2, 3, 3)
            if u == 0:  # dim_match False: first unit of every stage strides 2
                t[f"{p}.shortcut_layer.0.weight"] = (c, cin, 1, 1)
                t.update(bn_keys(f"{p}.shortcut_layer.1", c))
        c_in = c
    side = size // 16
    t.update(bn_keys("output_layer.0", c_in))
    t["output_layer.3.weight"], t["output_layer.3.bias"] = (emb, c_in * side * side), (emb,)
    t.update(bn_keys("output_layer.4", emb))
    return t


def test_loads_a_face_pytorch_state_dict_strictly():
    with torch.device("meta"):
        full = facezoo.create_backbone("cbam_ir50")
    assert {k: tuple(v.shape) for k, v in full.state_dict().items()} == face_pytorch_cbam_table()
    model = facezoo.create_backbone("cbam_ir50", width=0.25, input_size=32, embedding_size=16).eval()
    sd = random_state_dict(face_pytorch_cbam_table(0.25, 32, 16))
    model.load_state_dict(sd, strict=True)
    assert torch.equal(
        model.layer3[13].res_layer[6].shared_mlp[2].weight, sd["layer3.13.res_layer.6.shared_mlp.2.weight"]
    )


def test_channel_and_spatial_attention_by_hand():
    torch.manual_seed(0)
    cam, sam = ChannelAttention(32, 16), SpatialAttention()
    x = torch.randn(2, 32, 5, 5)
    w1, w2 = cam.shared_mlp[0].weight[:, :, 0, 0], cam.shared_mlp[2].weight[:, :, 0, 0]

    def mlp(v):  # (B, C) -> (B, C)
        return torch.relu(v @ w1.T) @ w2.T

    gate = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.flatten(2).max(-1).values))
    spatial = torch.sigmoid(F.conv2d(torch.stack([x.mean(1), x.max(1).values], 1), sam.conv.weight, padding=1))
    with torch.no_grad():
        assert torch.allclose(cam(x), x * gate[:, :, None, None], atol=1e-6)
        assert torch.allclose(sam(x), x * spatial, atol=1e-6)


def test_forward_backward_small():
    check_forward_backward("cbam_ir50", SMALL, (32, 32))
    check_forward_backward("cbam_ir50", {**SMALL, "layers": (1, 1, 1, 1), "dropout": 0.4}, (32, 24))


def test_trains_with_partial_fc_and_reloads(tmp_path):
    check_trains("cbam_ir50", SMALL, tmp_path)


def test_input_errors():
    check_input_errors("cbam_ir50", SMALL, (32, 32))


def test_bad_keywords():
    with pytest.raises(ConfigError, match="layers"):
        facezoo.create_backbone("cbam_ir50", layers=(3, 4, 0, 3))


def test_onnx_export_parity(tmp_path):
    check_onnx_parity("cbam_ir50", {**SMALL, "layers": (1, 1, 1, 1)}, (32, 32), tmp_path)
