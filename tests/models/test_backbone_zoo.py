"""Registry-driven sweep over EVERY registered backbone (tests iterate BACKBONES.names(), so a new family is
covered by its registration alone, plus its row in PARAMS):

- the parameter count at the full default size, counted on the meta device, equals PARAMS (and the seed's
  published figure where the seed counts the same network);
- forward shape and finite backward at the registration's `test_kwargs` (small width / input / depth);
- the common keywords (embedding_size, input_size, dropout) and check_input errors;
- ONNX export (facezoo.export.onnx.export_onnx) and an onnxruntime run matching PyTorch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facezoo.errors import ConfigError, ModelError
from facezoo.models.backbones import BACKBONES
from facezoo.models.backbones.facts import build_meta, count_parameters, describe

NAMES = BACKBONES.names()

# Every parameter (frozen ones included, buffers excluded) at the registration's defaults. A new backbone adds
# its row; the published figures below check the rows against the seeds.
PARAMS = {
    "efficientnet_b0": 4_057_600,
    "efficientnet_b1": 6_567_648,
    "fbnet_a": 11_016_864,
    "fbnet_b": 10_879_024,
    "fbnet_c": 11_697_344,
    "ghostnet": 4_057_584,
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
    "mobilefacenet": 2_059_520,
    "mobilefacenet_large": 6_314_880,
    "mobilefacenet_original": 1_003_136,
    "resnest50": 76_793_248,
    "resnet50": 40_290_880,
    "resnet101": 59_283_008,
    "resnet152": 74_926_656,
    "rexnet_1_0": 15_197_128,
    "tf_nas_a": 39_590_703,
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


def meta_of(name: str, model: torch.nn.Module):
    """The checkpoint metadata of a test-size build (input and embedding size have their own fields)."""
    from facezoo.models.embedder import ModelMeta

    kwargs = {k: v for k, v in BACKBONES.info(name)["test_kwargs"].items() if k not in ("input_size", "embedding_size")}
    return ModelMeta(
        backbone=name, backbone_kwargs=kwargs, embedding_size=model.embedding_size, input_size=model.input_size
    )


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
    model = build_test(name, embedding_size=24, dropout=0.3).train()
    h, w = model.input_size
    assert model.embedding_size == 24
    x = torch.randn(4, 3, h, w)
    out = model(x)
    assert out.shape == (4, 24) and out.dtype == torch.float32 and torch.isfinite(out).all()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x)), "dropout must act in training"
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: {pname} takes no part in the output"
            assert torch.isfinite(p.grad).all(), f"{name}: {pname}"
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x[:1])
        assert torch.equal(model(x), a), "eval must be deterministic"
    torch.testing.assert_close(b, a[:1], rtol=1e-4, atol=1e-4 * float(a.abs().max()))  # no batch mixing in eval


@pytest.mark.parametrize("name", NAMES)
def test_input_checks_and_keyword_errors(name):
    model = build_test(name).eval()
    h, w = model.input_size
    with pytest.raises(ModelError, match="expects input"):
        model(torch.randn(1, 3, h + 2, w))
    with pytest.raises(ModelError, match="expects input"):
        model(torch.randn(1, 1, h, w))
    with pytest.raises(ModelError, match="expects input"):
        model(torch.randn(3, h, w))
    for bad in ({"input_size": 8}, {"input_size": (32,)}, {"dropout": 1.0}, {"embedding_size": 0}):
        with pytest.raises(ConfigError):
            build_test(name, **bad)
    with pytest.raises(ConfigError, match="has no argument 'embeding_size'"):
        BACKBONES.create(name, embeding_size=128)


@pytest.mark.parametrize("name", NAMES)
def test_rebuilt_from_checkpoint_metadata_loads_strictly(name):
    # parameter names and shapes are a function of the registration and its kwargs alone
    model = build_test(name)
    _calibrate_bn(model, torch.randn(4, 3, *model.input_size))
    again = meta_of(name, model).build_backbone().eval()
    again.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, *model.input_size)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))


def _calibrate_bn(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Set BN running statistics to those of x (one train-mode pass with momentum 1), so eval outputs are scaled."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


@pytest.mark.parametrize("name", NAMES)
def test_onnx_export_matches_pytorch(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from facezoo.export.onnx import export_onnx
    from facezoo.models.embedder import Embedder

    model = build_test(name, embedding_size=32)
    h, w = model.input_size
    _calibrate_bn(model, torch.randn(8, 3, h, w))
    result = export_onnx(Embedder(model, meta_of(name, model)), tmp_path / f"{name}.onnx")
    assert result["parity"]["max_abs_diff"] <= result["parity"]["tolerance"]
    # an independent run: the exported float graph on normalised inputs of another batch size
    sess = ort.InferenceSession(str(tmp_path / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, h, w)
    with torch.no_grad():
        ref = model(x).numpy()
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    assert got.shape == ref.shape == (3, 32)
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))


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
