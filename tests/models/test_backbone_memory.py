"""The deepest IResNets build, count and run one image on CPU within the 24 GiB test machine (ir2060: 1.1e9
parameters, 4.2 GiB of fp32 weights; 478 GFLOPs per 112x112 image)."""

from __future__ import annotations

import resource

import pytest
import torch

import facezoo
from facezoo.models.backbones.facts import count_parameters

from .test_backbone_zoo import PARAMS

LIMIT_GIB = 16  # peak resident memory of this test process, leaving room for the other xdist worker


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ir200", "ir2060"])
def test_deep_iresnet_builds_and_runs_one_image_on_cpu(name):
    torch.manual_seed(0)
    model = facezoo.create_backbone(name)
    assert count_parameters(model) == PARAMS[name]
    # untrained weights: eval-mode BN is the identity and the residual stream of 1,030 N(0, 0.1) blocks overflows
    # (as in arcface_torch), so BN2d uses the image's statistics; the final BN1d cannot at batch 1 and stays eval
    model.train()
    model.features.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 112, 112))
    assert out.shape == (1, 512) and torch.isfinite(out).all()
    del model
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux
    assert peak_gib < LIMIT_GIB, f"peak RSS {peak_gib:.1f} GiB"
