"""HRNet-W18 (FaceX-Zoo layout): count against FaceX-Zoo, branch resolutions, fusion wiring, sizes, ONNX."""

from __future__ import annotations

import pytest
import torch

import facezoo
from facezoo.errors import ConfigError

from .backbone_checks import (
    check_forward_backward,
    check_input_errors,
    check_onnx_parity,
    check_trains,
    meta_params,
    one_thread,  # noqa: F401  (autouse fixture)
)

SMALL = {"width": 4, "modules": (1, 1, 1), "blocks": 1, "head_width": 0.125}


def test_parameter_count_matches_facex_zoo():
    assert abs(meta_params("hrnet_w18") / 1e6 - 70.63) <= 0.005


def _branch_shapes(size, **kw):
    with torch.device("meta"):
        model = facezoo.create_backbone("hrnet_w18", input_size=size, **kw).eval()
        seen = {}
        model.stage4.register_forward_hook(lambda m, args, out: seen.setdefault("out", out))
        with torch.no_grad():
            model(torch.empty(1, 3, *size))
    return model, [tuple(t.shape[1:]) for t in seen["out"]]


def test_four_branches_at_56_28_14_7():
    model, shapes = _branch_shapes((112, 112))
    assert shapes == [(18, 56, 56), (36, 28, 28), (72, 14, 14), (144, 7, 7)]
    assert [len(getattr(model, f"stage{s}")) for s in (2, 3, 4)] == [1, 4, 3]  # FaceX-Zoo NUM_MODULES
    assert all(len(branch) == 4 for m in model.stage3 for branch in m.branches)  # NUM_BLOCKS 4 per branch
    # branch 0 -> 3 fuse: three stride-2 convs, 18 -> 18 -> 18 -> 144; branch 3 -> 0: 1x1 conv 144 -> 18
    down = model.stage4[0].fuse_layers[3][0]
    assert [(s[0].in_channels, s[0].out_channels, s[0].stride) for s in down] == [(18, 18, (2, 2))] * 2 + [
        (18, 144, (2, 2))
    ]
    assert model.stage4[0].fuse_layers[0][3][0].weight.shape == (18, 144, 1, 1)
    assert model.output_layer[1].in_features == 2048 * 7 * 7


def test_odd_sizes_fuse_by_size_not_scale():
    # 100 -> 50, 25, 13, 7: upsampling 13 by 2 would give 26, not 25; fusion resizes to the target branch
    _, shapes = _branch_shapes((100, 100), **SMALL)
    assert [s[1:] for s in shapes] == [(50, 50), (25, 25), (13, 13), (7, 7)]


def test_forward_backward_small():
    check_forward_backward("hrnet_w18", SMALL, (32, 32))
    check_forward_backward("hrnet_w18", {**SMALL, "modules": (1, 2, 1)}, (36, 28))


def test_trains_with_partial_fc_and_reloads(tmp_path):
    check_trains("hrnet_w18", SMALL, tmp_path)


def test_input_errors():
    check_input_errors("hrnet_w18", SMALL, (32, 32))


def test_bad_keywords():
    with pytest.raises(ConfigError, match="modules"):
        facezoo.create_backbone("hrnet_w18", modules=(1, 4))
    with pytest.raises(ConfigError, match="width"):
        facezoo.create_backbone("hrnet_w18", width=0)


def test_onnx_export_parity(tmp_path):
    check_onnx_parity("hrnet_w18", SMALL, (32, 32), tmp_path)
