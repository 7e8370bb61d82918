"""SphereNet (SphereFace Table 2; Face_Pytorch layout): counts by formula, key table, 112x96, sizes, ONNX."""

from __future__ import annotations

import pytest
import torch

import facezoo
from facezoo.errors import ConfigError
from facezoo.models.backbones.iresnet import strided_size

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
CHANNELS = (64, 128, 256, 512)


def _final_map(h, w):
    for _ in range(4):
        h, w = strided_size(h), strided_size(w)
    return h, w


def sphere_count(units, size=(112, 112), emb=512, bn=True) -> int:
    """Stage conv 3x3 (bias) [+ BN] + PReLU, units of two bias-free 3x3 convs [+ BN] + PReLU, fc (bias) [+ BN1d]."""
    total, c_in = 0, 3
    for c, n in zip(CHANNELS, units):
        total += c * c_in * 9 + c + (2 * c if bn else 0) + c
        total += n * 2 * (c * c * 9 + (2 * c if bn else 0) + c)
        c_in = c
    h, w = _final_map(*size)
    return total + 512 * h * w * emb + emb + (2 * emb if bn else 0)


@pytest.mark.parametrize("name, units", [("sphere20", (1, 2, 4, 1)), ("sphere64", (3, 8, 16, 3))])
@pytest.mark.parametrize("size", [(112, 112), (112, 96)])
def test_parameter_counts_by_formula(name, units, size):
    # the paper's depth: 4 stage convs + 2 per unit = 20 / 64
    assert 4 + 2 * sum(units) == int(name[len("sphere") :])
    assert meta_params(name, input_size=size) == sphere_count(units, size)
    assert meta_params(name, input_size=size, batch_norm=False) == sphere_count(units, size, bn=False)


def face_pytorch_sphere_table(units, width=1.0, size=(112, 112), emb=512) -> dict:
    """Key -> shape of Face_Pytorch's SphereNet state dict (backbone/spherenet.py), from its module rules."""
    t, c_in = {}, 3
    for s, (base, n) in enumerate(zip(CHANNELS, units), start=1):
        c = round(base * width)
        t[f"layer{s}.0.weight"], t[f"layer{s}.0.bias"] = (c, c_in, 3, 3), (c,)
        t.update(bn_keys(f"layer{s}.1", c))
        t[f"layer{s}.2.weight"] = (c,)
        for u in range(n):
            p = f"layer{s}.{3 + u}"
            for k in (1, 2):
                t[f"{p}.conv{k}.weight"] = (c, c, 3, 3)
                t.update(bn_keys(f"{p}.bn{k}", c))
                t[f"{p}.prelu{k}.weight"] = (c,)
        c_in = c
    h, w = _final_map(*size)
    t["fc.weight"], t["fc.bias"] = (emb, c_in * h * w), (emb,)
    t.update(bn_keys("last_bn", emb))
    return t


def test_loads_a_face_pytorch_state_dict_strictly():
    with torch.device("meta"):  # Face_Pytorch's sphere64 has (3, 7, 16, 3) units
        full = facezoo.create_backbone("sphere64", layers=(3, 7, 16, 3))
    assert {k: tuple(v.shape) for k, v in full.state_dict().items()} == face_pytorch_sphere_table((3, 7, 16, 3))
    model = facezoo.create_backbone("sphere20", width=0.125, input_size=32, embedding_size=16).eval()
    sd = random_state_dict(face_pytorch_sphere_table((1, 2, 4, 1), 0.125, (32, 32), 16))
    model.load_state_dict(sd, strict=True)
    assert torch.equal(model.layer3[5].conv2.weight, sd["layer3.5.conv2.weight"])


def test_paper_net_has_no_batch_norm_and_sphereface_crop_gives_7x6():
    with torch.device("meta"):
        paper = facezoo.create_backbone("sphere20", batch_norm=False, input_size=(112, 96))
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in paper.modules())
    assert paper.fc.in_features == 512 * 7 * 6


def test_forward_backward_small():
    check_forward_backward("sphere20", SMALL, (32, 32))
    check_forward_backward("sphere64", {**SMALL, "batch_norm": False}, (32, 24))


def test_trains_with_partial_fc_and_reloads(tmp_path):
    check_trains("sphere20", SMALL, tmp_path)


def test_input_errors():
    check_input_errors("sphere20", SMALL, (32, 32))


def test_bad_keywords():
    with pytest.raises(ConfigError, match="layers"):
        facezoo.create_backbone("sphere20", layers=(1, 2, 4))


def test_onnx_export_parity(tmp_path):
    check_onnx_parity("sphere20", SMALL, (32, 32), tmp_path)
