"""RepVGG (FaceX-Zoo layout): counts, key table, branch fusion, fused checkpoints, `facezoo export --deploy`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import facezoo
from facezoo.errors import ConfigError
from facezoo.models.backbones.repvgg import RepVGGBlock
from facezoo.models.checkpoint import save_checkpoint
from facezoo.models.deploy import reparameterize
from facezoo.models.embedder import EmbedderModule, ModelMeta

from .backbone_checks import (
    bn_keys,
    check_forward_backward,
    check_input_errors,
    check_trains,
    meta_params,
    one_thread,  # noqa: F401  (autouse fixture)
    randomise_norms,
)

# (1, 2, 1, 1): stage 2's second block (stride 1, constant width) is the one block with an identity branch
SMALL = {"blocks": (1, 2, 1, 1), "widths": (0.125, 0.125, 0.125, 0.125)}


@pytest.mark.parametrize("name, published", [("repvgg_a0", 39.94), ("repvgg_b0", 46.65), ("repvgg_b1", 106.75)])
def test_parameter_counts_match_facex_zoo(name, published):
    assert abs(meta_params(name) / 1e6 - published) <= 0.005


def facex_zoo_repvgg_table(blocks, widths, emb=512, fused=False) -> dict:
    """Key -> shape of FaceX-Zoo's RepVGG state dict (train or deploy layout), from its module rules."""
    t = {}

    def block(p, c_in, c_out, stride):
        if fused:
            t[f"{p}.rbr_reparam.weight"], t[f"{p}.rbr_reparam.bias"] = (c_out, c_in, 3, 3), (c_out,)
            return
        if c_in == c_out and stride == 1:
            t.update(bn_keys(f"{p}.rbr_identity", c_in))
        t[f"{p}.rbr_dense.conv.weight"] = (c_out, c_in, 3, 3)
        t.update(bn_keys(f"{p}.rbr_dense.bn", c_out))
        t[f"{p}.rbr_1x1.conv.weight"] = (c_out, c_in, 1, 1)
        t.update(bn_keys(f"{p}.rbr_1x1.bn", c_out))

    c_in = min(64, int(64 * widths[0]))
    block("stage0", 3, c_in, 1)
    for s, (n, base, w) in enumerate(zip(blocks, (64, 128, 256, 512), widths), start=1):
        c = int(base * w)
        for i in range(n):
            block(f"stage{s}.{i}", c_in if i == 0 else c, c, 2 if i == 0 else 1)
        c_in = c
    t.update(bn_keys("output_layer.0", c_in))
    t["output_layer.2.weight"], t["output_layer.2.bias"] = (emb, c_in * 49), (emb,)
    t.update(bn_keys("output_layer.3", emb))
    return t


@pytest.mark.parametrize("fused", [False, True])
def test_layout_is_facex_zoo_key_for_key(fused):
    with torch.device("meta"):
        model = facezoo.create_backbone("repvgg_a0", deploy=fused)
    table = facex_zoo_repvgg_table((2, 4, 14, 1), (0.75, 0.75, 0.75, 2.5), fused=fused)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == table


def _tiny(**kw):
    torch.manual_seed(0)
    model = facezoo.create_backbone("repvgg_a0", **SMALL, input_size=32, embedding_size=16, **kw)
    return randomise_norms(model).eval()


def test_reparameterize_equals_the_branches_in_eval_mode():
    model = _tiny()
    blocks = [m for m in model.modules() if isinstance(m, RepVGGBlock)]
    assert len(blocks) == 6 and sum(b.rbr_identity is not None for b in blocks) == 1
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        assert model.reparameterize() == {"deploy": True}
        after = model(x)
    assert (after - before).abs().max() <= 1e-4
    assert all(b.fused for b in blocks) and model.deploy
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 6 and all(c.kernel_size == (3, 3) and c.bias is not None for c in convs)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 1  # only output_layer.0 remains


def test_fused_kernel_by_hand():
    """One block with all three branches: the fused kernel is sum_b (K_b * gamma_b / sigma_b), identity = centre 1."""
    torch.manual_seed(0)
    block = RepVGGBlock(4, 4, 1)
    randomise_norms(block).eval()

    def t(bn):
        return bn.weight / torch.sqrt(bn.running_var + bn.eps)

    d, o, i = block.rbr_dense, block.rbr_1x1, block.rbr_identity
    eye = torch.zeros(4, 4, 3, 3)
    for c in range(4):
        eye[c, c, 1, 1] = 1.0
    want_k = (
        d.conv.weight * t(d.bn)[:, None, None, None]
        + F.pad(o.conv.weight, [1, 1, 1, 1]) * t(o.bn)[:, None, None, None]
        + eye * t(i)[:, None, None, None]
    )
    want_b = sum(bn.bias - bn.running_mean * t(bn) for bn in (d.bn, o.bn, i))
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        ref = block(x)
        block.reparameterize()
        assert torch.allclose(block.rbr_reparam.weight, want_k, atol=1e-6)
        assert torch.allclose(block.rbr_reparam.bias, want_b, atol=1e-6)
        assert torch.allclose(block(x), ref, atol=1e-5)


def test_fused_checkpoint_loads_into_a_fused_model(tmp_path):
    model = _tiny()
    meta = ModelMeta(backbone="repvgg_a0", backbone_kwargs=dict(SMALL), embedding_size=16, input_size=(32, 32))
    embedder = EmbedderModule(model, meta)
    images = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        want = embedder(images)
    assert reparameterize(embedder) and embedder.meta.backbone_kwargs == {**SMALL, "deploy": True}
    save_checkpoint(tmp_path / "fused.pt", embedder.meta, embedder.backbone.state_dict())
    loaded = facezoo.load_model(tmp_path / "fused.pt")
    backbone = loaded.module.backbone
    assert backbone.deploy and all(b.fused for b in backbone.modules() if isinstance(b, RepVGGBlock))
    assert np.abs(loaded(images) - want.numpy()).max() <= 1e-4
    # a backbone without train-time branches is left alone
    ir = EmbedderModule(facezoo.create_backbone("ir18", width=0.125, input_size=32), ModelMeta(backbone="ir18"))
    assert not reparameterize(ir) and ir.meta.backbone_kwargs == {}


def test_cli_export_deploy_writes_the_fused_graph(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnx

    from facezoo import cli

    model = _tiny()
    meta = ModelMeta(backbone="repvgg_a0", backbone_kwargs=dict(SMALL), embedding_size=16, input_size=(32, 32))
    save_checkpoint(tmp_path / "train.pt", meta, model.state_dict())
    out = tmp_path / "fused.onnx"
    assert cli.main(["export", str(tmp_path / "train.pt"), "--onnx", str(out), "--deploy"]) == 0
    assert "parity vs PyTorch" in capsys.readouterr().out
    graph = onnx.load(str(out)).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == 6  # one 3x3 conv per block: no 1x1 branch, no BatchNormalization inside blocks
    inits = {i.name: i for i in graph.initializer}
    assert all(list(inits[n.input[1]].dims[2:]) == [3, 3] for n in convs)
    stored = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["facezoo.meta"])
    assert stored["backbone_kwargs"]["deploy"] is True
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    with torch.no_grad():  # the original train-layout model, unfused
        want = EmbedderModule(model, meta).eval()(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(facezoo.load_model(out)(images), want, rtol=0, atol=1e-4 * max(1.0, np.abs(want).max()))


def test_forward_backward_small():
    check_forward_backward("repvgg_b0", SMALL, (32, 32))
    check_forward_backward("repvgg_b1", {**SMALL, "deploy": True}, (32, 40))


def test_trains_with_partial_fc_and_reloads(tmp_path):
    check_trains("repvgg_a0", SMALL, tmp_path)


def test_input_errors():
    check_input_errors("repvgg_a0", SMALL, (32, 32))


def test_bad_keywords():
    with pytest.raises(ConfigError, match="blocks"):
        facezoo.create_backbone("repvgg_a0", blocks=(2, 4, 14))
    with pytest.raises(ConfigError, match="widths"):
        facezoo.create_backbone("repvgg_a0", widths=(0.75, 0.75, 0, 2.5))
