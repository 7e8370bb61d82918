"""LightCNN-29 v2 (FaceX-Zoo layout): count against FaceX-Zoo, MFM and pooling by hand, sizes, ONNX."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import facezoo
from facezoo.errors import ConfigError
from facezoo.models.backbones.lightcnn import MFM, mix_pool

from .backbone_checks import (
    check_forward_backward,
    check_input_errors,
    check_onnx_parity,
    check_trains,
    meta_params,
    one_thread,  # noqa: F401  (autouse fixture)
)

SMALL = {"width": 0.25}


def test_parameter_count_matches_facex_zoo():
    assert abs(meta_params("lightcnn29") / 1e6 - 11.60) <= 0.005


def test_mfm_is_max_of_the_two_halves():
    torch.manual_seed(0)
    mfm = MFM(3, 4, kernel=3, padding=1)
    x = torch.randn(2, 3, 5, 5)
    z = F.conv2d(x, mfm.filter.weight, mfm.filter.bias, padding=1)
    with torch.no_grad():
        assert torch.equal(mfm(x), torch.where(z[:, :4] > z[:, 4:], z[:, :4], z[:, 4:]))
    lin = MFM(6, 3, linear=True)
    v = torch.randn(4, 6)
    with torch.no_grad():
        z = lin.filter(v)
        assert torch.equal(lin(v), torch.maximum(z[:, :3], z[:, 3:]))


def test_mix_pool_and_final_map():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    want = torch.tensor([[5.0 + 2.5, 7.0 + 4.5], [13.0 + 10.5, 15.0 + 12.5]])  # max + mean of each 2x2
    assert torch.equal(mix_pool(x)[0, 0], want)
    with torch.device("meta"):
        model = facezoo.create_backbone("lightcnn29")
    assert model.output_layer[3].in_features == 128 * 7 * 7
    assert [len(getattr(model, f"block{i}")) for i in range(1, 5)] == [1, 2, 3, 4]


def test_forward_backward_small():
    check_forward_backward("lightcnn29", SMALL, (32, 32))
    check_forward_backward("lightcnn29", {**SMALL, "dropout": 0.2}, (48, 32))


def test_trains_with_partial_fc_and_reloads(tmp_path):
    check_trains("lightcnn29", SMALL, tmp_path)


def test_input_errors():
    check_input_errors("lightcnn29", SMALL, (32, 32))


def test_bad_keywords():
    with pytest.raises(ConfigError, match="width"):
        facezoo.create_backbone("lightcnn29", width=-1)
    with pytest.raises(ConfigError, match="blocks"):
        facezoo.create_backbone("lightcnn29", blocks=(1, 2, 3))
    with pytest.raises(ConfigError, match="input_size"):
        facezoo.create_backbone("lightcnn29", input_size=(16, 8), width=0.25)  # four 2x2 pools need >= 16


def test_onnx_export_parity(tmp_path):
    check_onnx_parity("lightcnn29", {**SMALL, "blocks": (1, 1, 0, 1)}, (32, 32), tmp_path)
