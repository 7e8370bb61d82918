"""Registry-driven sweep over EVERY registered backbone (tests iterate BACKBONES.names(), so a new family is
covered by its registration alone, plus its row in PARAMS):

- the parameter count at the full default size, counted on the meta device, equals PARAMS (and the seed's
  published figure where the seed counts the same network);
- forward shape and finite backward at the registration's `test_kwargs` (small width / input / depth);
- the common keywords (embedding_size, input_size, dropout) and check_input errors;
- a checkpoint rebuilt from its metadata (strict load), exported to ONNX, matching PyTorch in onnxruntime.
The forward, input and ONNX checks are backbone_checks' (shared with the per-family tests).
"""

from __future__ import annotations

import math

import pytest
import torch

from facezoo.errors import ConfigError
from facezoo.models.backbones import BACKBONES
from facezoo.models.backbones.facts import build_meta, count_parameters, describe

from .backbone_checks import (
    check_forward_backward,
    check_input_errors,
    check_onnx_parity,
    one_thread,  # noqa: F401  (autouse fixture)
    small_build,
)

NAMES = BACKBONES.names()

# Every parameter (frozen ones included, buffers excluded) at the registration's defaults. A new backbone adds
# its row; the published figures below check the rows against the seeds.
PARAMS = {
    "attention56": 81_138_880,
    "attention92": 101_794_496,
    "cbam_ir50": 43_814_000,
    "dlib_resnet": 5_614_592,  # dlib publishes no count; the converted file loads strictly (tests/dlib)
    "efficientnet_b0": 4_057_600,
    "efficientnet_b1": 6_567_648,
    "fbnet_a": 11_016_864,
    "fbnet_b": 10_879_024,
    "fbnet_c": 11_697_344,
    "ghostnet": 4_057_584,
    "hrnet_w18": 70_631_252,
    "ir18": 24_025_600,
    "ir34": 34_139_328,
    "ir50": 43_590_848,
    "ir100": 65_156_160,
    "ir152": 70_765_760,
    "ir200": 118_833_920,
    "ir2060": 1_122_301_120,
    "ir_se50": 43_813_568,
    "ir_se100": 65_528_384,
    "ir_se152": 71_176_896,
    "ir_se200": 119_578_368,
    "lightcnn29": 11_596_320,
    "mobilefacenet": 2_059_520,
    "mobilefacenet_large": 6_314_880,
    "mobilefacenet_original": 1_003_136,
    "repvgg_a0": 39_944_704,
    "repvgg_b0": 46_653_696,
    "repvgg_b1": 106_751_872,
    "resnest50": 76_793_248,
    "resnet50": 40_290_880,
    "resnet101": 59_283_008,
    "resnet152": 74_926_656,
    "rexnet_1_0": 15_197_128,
    "sphere20": 24_512_320,
    "sphere64": 50_052_160,
    "swin_t": 46_788_474,  # at 224x224
    "swin_s": 68_106_378,
    "tf_nas_a": 39_590_703,
    "vit_t": 19_137_792,
    "vit_s": 76_023_296,
    "vit_b": 113_833_472,
    "vit_l": 255_684_352,
    "vit_h": 756_393_984,
}

# Published parameter counts, in millions: (value, relative tolerance, source).
PUBLISHED_PARAMS = {
    "ir50": (43.6, 0.002, "arcface_torch IR-50 (models.md)"),
    "ir100": (65.2, 0.002, "arcface_torch IR-100"),
    "mobilefacenet": (2.1, 0.025, "arcface_torch mbf, 2.1M rounded"),
    "mobilefacenet_original": (0.99, 0.02, "MobileFaceNets paper, 0.99M"),
    # FaceX-Zoo's table (THOP, which skips PReLU): Resnet152-irse 71.14M; ours adds the arcface_torch block's middle
    # BN (23,936 parameters) and counts the PReLUs (12,032): 71.14M + 0.036M
    "ir_se152": (71.14, 0.001, "FaceX-Zoo Resnet152-irse"),
    "resnest50": (76.79, 0.001, "FaceX-Zoo ResNeSt50"),
    "rexnet_1_0": (15.20, 0.001, "FaceX-Zoo ReXNet_1.0"),
    "tf_nas_a": (39.59, 0.001, "FaceX-Zoo TF-NAS-A"),
    "hrnet_w18": (70.63, 0.001, "FaceX-Zoo HRNet"),
    "lightcnn29": (11.60, 0.001, "FaceX-Zoo LightCNN-29"),
    "repvgg_a0": (39.94, 0.001, "FaceX-Zoo RepVGG_A0"),
    "repvgg_b0": (46.65, 0.001, "FaceX-Zoo RepVGG_B0"),
    "repvgg_b1": (106.75, 0.001, "FaceX-Zoo RepVGG_B1"),
    # Swin and Attention differ on purpose; test_backbone_swin / _attention reconcile them with FaceX-Zoo's
}
# TFace's "Model Size (fp32)" table in MB: ceil((parameters + BN buffers) * 4 bytes / 2^20) matches every entry.
PUBLISHED_MIB = {
    "ir18": 92,
    "ir34": 131,
    "ir50": 167,
    "ir100": 249,  # TFace IR_101 is this network
    "efficientnet_b0": 16,
    "efficientnet_b1": 26,
    "ghostnet": 16,
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def build_test(name: str, **kwargs) -> torch.nn.Module:
    return BACKBONES.create(name, **{**BACKBONES.info(name).get("test_kwargs", {}), **kwargs})


@pytest.mark.parametrize("name", NAMES)
def test_registration_carries_facts(name):
    info = BACKBONES.info(name)
    assert isinstance(info.get("reference"), str) and info["reference"], f"{name}: register it with info={{...}}"
    assert isinstance(info.get("test_kwargs"), dict), f"{name}: info needs test_kwargs (a small, fast build)"
    assert name in PARAMS, f"{name}: add its full-size parameter count to PARAMS in this file"


def test_parameter_table_has_no_stale_rows():
    assert set(PARAMS) <= set(NAMES), f"rows for unregistered names: {sorted(set(PARAMS) - set(NAMES))}"


@pytest.mark.parametrize("name", NAMES)
def test_full_size_parameter_count(name):
    model = build_meta(name)  # shapes only: ir2060's 1.1e9 parameters cost no memory here
    n = count_parameters(model)
    assert n == PARAMS.get(name), f"{name}: {n:_} parameters"
    if name in PUBLISHED_PARAMS:
        millions, tol, source = PUBLISHED_PARAMS[name]
        assert abs(n / 1e6 - millions) <= tol * millions, f"{name}: {n / 1e6:.3f}M vs {source} {millions}M"
    if name in PUBLISHED_MIB:
        buffers = sum(b.numel() for b in model.buffers() if b.dim() > 0)  # not num_batches_tracked
        assert math.ceil((n + buffers) * 4 / 2**20) == PUBLISHED_MIB[name], name


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_and_common_keywords(name):
    kw, size = small_build(name)
    model = check_forward_backward(name, {**kw, "dropout": 0.3}, size, embedding_size=24, batch=4)
    x = torch.randn(4, 3, *size)
    with torch.no_grad():
        assert not torch.equal(model(x), model(x)), "dropout must act in training"
        model.eval()
        a, b = model(x), model(x[:1])
        assert torch.equal(model(x), a), "eval must be deterministic"
    torch.testing.assert_close(b, a[:1], rtol=1e-4, atol=1e-4 * float(a.abs().max()))  # no batch mixing in eval


@pytest.mark.parametrize("name", NAMES)
def test_input_checks_and_keyword_errors(name):
    kw, size = small_build(name)
    check_input_errors(name, kw, size)
    for bad in ({"input_size": 8}, {"input_size": (32,)}, {"dropout": 1.0}, {"embedding_size": 0}):
        with pytest.raises(ConfigError):
            build_test(name, **bad)
    with pytest.raises(ConfigError, match="has no argument 'embeding_size'"):
        BACKBONES.create(name, embeding_size=128)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_rebuild_and_onnx_parity(name, tmp_path):
    # save_checkpoint -> load_model (rebuilt from the metadata, strict load) -> export_onnx -> onnxruntime == PyTorch
    kw, size = small_build(name)
    result = check_onnx_parity(name, kw, size, tmp_path)
    assert result["parity"]["max_abs_diff"] <= result["parity"]["tolerance"]


def test_details_table_lists_every_backbone(capsys):
    from facezoo.cli import main

    assert main(["list", "backbones", "--details"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split("|")[1].strip().strip("`"): line.split("|")[2:-1] for line in lines[2:]}
    assert sorted(rows) == NAMES
    for name, (params, gflops, size, emb, ref) in rows.items():
        assert params.strip() == f"{PARAMS[name] / 1e6:.2f}M"
        assert float(gflops) > 0 and "x" in size and int(emb) > 0 and ref.strip()


def test_details_flag_rejects_other_tables():
    from facezoo.cli import main

    assert main(["list", "heads", "--details"]) == 2


def test_ir50_flops_match_the_anchor():
    # FlopCounterMode on the meta device equals the count on real weights (anchors.md: IR-50 12.62 GFLOPs)
    f = describe("ir50")
    assert abs(f.gflops - 12.62) < 0.01 and f.input_size == (112, 112) and f.embedding_size == 512


def test_registry_info_is_kept_apart_from_the_constructor():
    from facezoo.registry import Registry

    r = Registry("thing")
    r.register("a", info={"reference": "paper", "test_kwargs": {"n": 1}}, n=3)(lambda n: n)
    r.register("b")(lambda n=2: n)
    assert r.create("a") == 3 and r.create("b") == 2  # info is never passed as a keyword
    assert r.info("a") == {"reference": "paper", "test_kwargs": {"n": 1}} and r.info("b") == {}
    r.info("a")["test_kwargs"]["n"] = 5  # a copy: callers cannot change the registration
    assert r.info("a")["test_kwargs"] == {"n": 1}
    with pytest.raises(ConfigError, match="unknown thing 'c'"):
        r.info("c")
