"""Checks shared by the per-family backbone tests (test_backbone_<family>.py): forward, backward, sizes, ONNX.

Each family test passes its registered name and the small keywords ("test size") that keep a CPU run short.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import facezoo
from facezoo.errors import ModelError
from facezoo.models.backbones.facts import build_meta
from facezoo.models.checkpoint import save_checkpoint
from facezoo.models.embedder import ModelMeta

from .test_backbones import _bn as bn_keys  # noqa: F401  (key tables of a BatchNorm, shared with IResNet's)
from .test_backbones import random_state_dict  # noqa: F401


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Intra-op threads fight each other on a loaded machine (tens of ms per new conv shape): run on one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_params(name: str, **kw) -> int:
    """Parameter count of the full-size model, built on the meta device (no memory, no init cost)."""
    return n_params(build_meta(name, **kw))


def small_build(name: str) -> tuple[dict, tuple[int, int]]:
    """(keywords without input_size, (H, W)) of the registration's small test build (its info["test_kwargs"])."""
    from facezoo.models.backbones import BACKBONES

    kw = dict(BACKBONES.info(name).get("test_kwargs", {}))
    size = kw.pop("input_size", None)
    return kw, tuple(build_meta(name, **kw, **({"input_size": size} if size else {})).input_size)


def randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """BN running statistics and affine parameters (and LayerNorm affines) away from their identity init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)) and m.weight is not None:
                if m.weight.requires_grad:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model


def check_forward_backward(name: str, kw: dict, size, embedding_size: int = 16, batch: int = 2) -> nn.Module:
    """Train-mode forward gives finite (B, D); backward reaches every trainable parameter with a finite gradient
    (what DDP without find_unused_parameters requires). Returns the model."""
    torch.manual_seed(0)
    model = facezoo.create_backbone(name, embedding_size=embedding_size, input_size=size, **kw).train()
    assert model.input_size == tuple(size) and model.embedding_size == embedding_size
    out = model(torch.randn(batch, 3, *size))
    assert out.shape == (batch, embedding_size) and torch.isfinite(out).all()
    out.pow(2).sum().backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: {pname} gets no gradient"
            assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
    return model


def check_trains(name: str, kw: dict, tmp_path, size: int = 32) -> None:
    """Three trainer steps (bf16 autocast, channels_last, AdamW, ArcFace with Partial FC 0.5): finite losses, and
    the model.pt it writes rebuilds this backbone from its metadata and embeds."""
    from facezoo.config import load_config
    from facezoo.train.trainer import Trainer

    from ..train.conftest import TinyFaces

    flow = "{" + ", ".join(f"{k}: {list(v) if isinstance(v, tuple) else v}" for k, v in kw.items()) + "}"
    cfg = load_config(
        None,
        [
            f"output={tmp_path}/run", f"model.backbone={name}", f"model.input_size={size}", "model.embedding_size=16",
            f"model.kwargs={flow}", "head.name=arcface", "head.kwargs={s: 16, m: 0.2}", "head.sample_rate=0.5",
            "batch_size=16", "epochs=1", "optim.name=adamw", "optim.lr=0.001", "log_every=1", "save_every=3",
            "data.num_workers=0", "tensorboard=false", "precision=bf16",
        ],
    )  # fmt: skip
    history = Trainer(cfg, dataset=TinyFaces(size=size)).fit(max_steps=3)
    losses = [row["train/loss"] for row in history if "train/loss" in row]
    assert len(losses) == 3 and all(np.isfinite(losses)), losses
    embedder = facezoo.load_model(tmp_path / "run" / "model.pt")
    assert embedder.meta.backbone == name and embedder.meta.backbone_kwargs == cfg.model.kwargs
    out = embedder(torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8))
    assert out.shape == (2, 16) and np.isfinite(out).all()


def check_input_errors(name: str, kw: dict, size) -> None:
    """Wrong spatial size, channel count or rank is a ModelError that names the expected shape."""
    model = facezoo.create_backbone(name, embedding_size=8, input_size=size, **kw).eval()
    h, w = size
    for bad in [(1, 3, h + 4, w), (1, 1, h, w), (3, h, w)]:
        with pytest.raises(ModelError, match=rf"\(B, 3, {h}, {w}\)"):
            model(torch.zeros(bad))


def check_onnx_parity(name: str, kw: dict, size, tmp_path, embedding_size: int = 16) -> dict:
    """Export a checkpoint (norm statistics randomised) with facezoo.export.onnx; onnxruntime on uint8 faces
    equals the PyTorch embedder. Returns the export result."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from facezoo.export.onnx import export_onnx

    meta = ModelMeta(backbone=name, backbone_kwargs=dict(kw), embedding_size=embedding_size, input_size=tuple(size))
    torch.manual_seed(0)
    net = randomise_norms(meta.build_backbone())
    ckpt = tmp_path / f"{name}.pt"
    save_checkpoint(ckpt, meta, net.state_dict())
    result = export_onnx(ckpt, tmp_path / f"{name}.onnx")
    images = np.random.default_rng(1).integers(0, 256, (3, *size, 3), dtype=np.uint8)
    want = facezoo.load_model(ckpt)(images)
    got = facezoo.load_model(tmp_path / f"{name}.onnx")(images)
    assert facezoo.load_model(tmp_path / f"{name}.onnx").describe().count("onnxruntime")
    assert got.shape == (3, embedding_size)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * max(1.0, float(np.abs(want).max())))
    return result


def table_params(table: dict[str, tuple], buffers=("running_mean", "running_var", "num_batches_tracked")) -> int:
    """Number of parameters in a key table (buffers left out)."""
    return sum(int(np.prod(s)) for k, s in table.items() if not k.endswith(buffers))
