"""`facezoo eval` runs exported ONNX files beside checkpoints: both rows of one table, the same numbers."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from facezoo.cli import main
from facezoo.data.image import encode_image
from facezoo.data.verification_bin import write_bin
from facezoo.export.onnx import export_onnx
from facezoo.models.checkpoint import save_checkpoint
from facezoo.models.embedder import ModelMeta


def test_eval_onnx_equals_checkpoint(tmp_path, capsys):
    meta = ModelMeta(backbone="ir18", backbone_kwargs={"width": 0.25}, embedding_size=16, input_size=(32, 32))
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, meta, meta.build_backbone().state_dict())
    export_onnx(ckpt, tmp_path / "tiny_onnx.onnx")

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    images, issame = [], []
    for i in range(40):  # pairs: a face and a noisy copy of itself, or two different faces
        same = i % 2 == 0
        a = base[i % 10]
        b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8) if same else base[(i + 3) % 10]
        images += [encode_image(a, "png"), encode_image(b, "png")]
        issame.append(same)
    write_bin(tmp_path / "toy.bin", images, issame)

    argv = [
        "eval",
        str(ckpt),
        str(tmp_path / "tiny_onnx.onnx"),
        "--bin",
        str(tmp_path / "toy.bin"),
        "--device",
        "cpu",
        "--no-cache",
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "tiny " in out and "tiny_onnx" in out  # one table, a row per model
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    pt, ox = r["tiny"]["toy"], r["tiny_onnx"]["toy"]
    assert ox["accuracy"] == pytest.approx(pt["accuracy"], abs=1e-12)
    assert ox["xnorm"] == pytest.approx(pt["xnorm"], rel=1e-4)  # the raw embeddings agree, not just the decisions
    assert pt["accuracy"] > 0.6  # noisy copies of one face are closer than different faces even at random init


def test_onnx_without_facezoo_metadata_is_refused(tmp_path, capsys):
    import onnx

    meta = ModelMeta(backbone="ir18", backbone_kwargs={"width": 0.25}, embedding_size=16, input_size=(32, 32))
    save_checkpoint(tmp_path / "m.pt", meta, meta.build_backbone().state_dict())
    export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    proto = onnx.load(tmp_path / "m.onnx")
    del proto.metadata_props[:]
    onnx.save(proto, tmp_path / "bare.onnx")
    write_bin(tmp_path / "toy.bin", [encode_image(np.zeros((32, 32, 3), np.uint8), "png")] * 2, [True])
    assert main(["eval", str(tmp_path / "bare.onnx"), "--bin", str(tmp_path / "toy.bin"), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert "bare.onnx" in err and "metadata" in err and "Traceback" not in err
