"""Residual Attention Networks (FaceX-Zoo layout): counts against FaceX-Zoo, module wiring, sizes, ONNX."""

from __future__ import annotations

import pytest
import torch

import facezoo
from facezoo.errors import ConfigError
from facezoo.models.backbones.attention import AttentionModule

from .backbone_checks import (
    check_forward_backward,
    check_input_errors,
    check_onnx_parity,
    check_trains,
    meta_params,
    one_thread,  # noqa: F401  (autouse fixture)
)

SMALL = {"width": 0.125}


@pytest.mark.parametrize(
    "name, modules, published", [("attention56", (1, 1, 1), 98.96), ("attention92", (1, 2, 3), 134.56)]
)
def test_count_plus_facex_zoos_unused_shortcuts_is_published(name, modules, published):
    """FaceX-Zoo builds a 1x1 conv4 (C x C) in every constant-width unit and never uses it: a module with an
    hourglass of depth d has 6 + 3 (d - 1) such units; two more at 2048 after stage 3."""
    unused = sum(n * (6 + 3 * (d - 1)) * c * c for n, d, c in zip(modules, (3, 2, 1), (256, 512, 1024)))
    unused += 2 * 2048 * 2048
    assert abs((meta_params(name) + unused) / 1e6 - published) <= 0.005


def test_facex_zoo_module_names_and_hourglass():
    with torch.device("meta"):
        model = facezoo.create_backbone("attention92")
    mods = [m for m in model.attention_body if isinstance(m, AttentionModule)]
    assert [m.depth for m in mods] == [3, 2, 2, 1, 1, 1]
    names = {n.split(".")[0] for n, _ in mods[0].named_children()}
    assert names == {
        "first_residual_blocks", "trunk_branches", "last_blocks", "skip1_connection_residual_block",
        "skip2_connection_residual_block", *(f"softmax{k}_blocks" for k in range(1, 7)),
    }  # fmt: skip
    assert len(mods[0].softmax3_blocks) == 2 and isinstance(mods[0].softmax6_blocks[-1], torch.nn.Sigmoid)
    assert model.output_layer[1].in_features == 2048 * 7 * 7 and model.output_layer[1].bias is None


def test_module_output_is_unit_of_one_plus_mask_times_trunk():
    torch.manual_seed(0)
    module = AttentionModule(8, depth=2).eval()
    seen = {}
    module.trunk_branches.register_forward_hook(lambda m, a, out: seen.setdefault("trunk", out))
    module.softmax4_blocks.register_forward_hook(lambda m, a, out: seen.setdefault("mask", out))
    module.last_blocks.register_forward_pre_hook(lambda m, a: seen.setdefault("last_in", a[0]))
    with torch.no_grad():
        module(torch.randn(2, 8, 12, 12))
    assert seen["mask"].shape == seen["trunk"].shape == (2, 8, 12, 12)
    assert ((seen["mask"] > 0) & (seen["mask"] < 1)).all()
    assert torch.allclose(seen["last_in"], (1 + seen["mask"]) * seen["trunk"])


def test_forward_backward_small():
    check_forward_backward("attention56", SMALL, (32, 32))
    check_forward_backward("attention92", SMALL, (40, 36))


def test_trains_with_partial_fc_and_reloads(tmp_path):
    check_trains("attention56", SMALL, tmp_path)


def test_input_errors():
    check_input_errors("attention56", SMALL, (32, 32))


def test_bad_keywords():
    with pytest.raises(ConfigError, match="stage_modules"):
        facezoo.create_backbone("attention56", stage_modules=(1, 1))


def test_onnx_export_parity(tmp_path):
    check_onnx_parity("attention56", {**SMALL, "stage_modules": (0, 1, 0)}, (32, 32), tmp_path)  # hourglass depth 2
