"""ONNX export: ORT equals PyTorch at any batch, metadata round trip, uint8 graphs, BGR, parity failures."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import onnx
import onnxruntime as ort

import facezoo
from facezoo.errors import ConfigError, ModelError
from facezoo.export import onnx as fonnx
from facezoo.models.checkpoint import save_checkpoint
from facezoo.models.embedder import ModelMeta
from facezoo.models.runtimes.ort import read_onnx_meta

MODELS = {
    "ir18": ModelMeta(backbone="ir18", backbone_kwargs={"width": 0.25}, embedding_size=16, input_size=(32, 32)),
    # FaceX-Zoo convention: BGR, (x - 127.5) / 128
    "mbf": ModelMeta(
        backbone="mobilefacenet",
        backbone_kwargs={"scale": 1},
        embedding_size=16,
        input_size=(64, 64),
        channel_order="BGR",
        mean=127.5,
        std=128.0,
    ),
}


def _train_briefly(meta: ModelMeta, seed: int) -> dict:
    """A few SGD steps from scratch on random faces, so weights and BN statistics are no longer at init."""
    torch.manual_seed(seed)
    net = meta.build_backbone()
    fc = torch.nn.Linear(meta.embedding_size, 4)
    opt = torch.optim.SGD([*net.parameters(), *fc.parameters()], lr=0.05, momentum=0.9)
    h, w = meta.input_size
    for _ in range(2):
        x = torch.randn(4, 3, h, w)
        loss = torch.nn.functional.cross_entropy(fc(net(x)), torch.randint(0, 4, (4,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.state_dict()


def _faces(n: int, size, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def _by_hand(images: np.ndarray, meta: ModelMeta) -> np.ndarray:
    """The float graph's input written out: channel order, (pixel - mean) / std, NHWC -> NCHW."""
    x = images.astype(np.float64)
    if meta.channel_order == "BGR":
        x = x[..., [2, 1, 0]]
    return ((x - meta.mean) / meta.std).transpose(0, 3, 1, 2).astype(np.float32).copy()


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    out = {}
    for i, (name, meta) in enumerate(MODELS.items()):
        out[name] = root / f"{name}.pt"
        save_checkpoint(out[name], meta, _train_briefly(meta, i))
    return out


# Exports are the slow part (~2 s each): ir18 float, mbf float and mbf uint8 here; test_cli_export adds ir18 uint8.
EXPORTS = (("ir18", "float"), ("mbf", "float"), ("mbf", "uint8"))


@pytest.fixture(scope="module")
def exported(ckpts, tmp_path_factory):
    """{(model, input): (onnx path, export result)}."""
    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for name, layout in EXPORTS:
        path = root / f"{name}_{layout}.onnx"
        out[name, layout] = path, fonnx.export_onnx(ckpts[name], path, input=layout)
    return out


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", list(MODELS))
def test_float_graph_equals_pytorch_at_batch_1_and_5(name, ckpts, exported):
    path, result = exported[name, "float"]
    meta = MODELS[name]
    assert result["parity"]["max_abs_diff"] <= result["parity"]["tolerance"]
    assert result["parity"]["min_cosine"] > 0.9999
    sess = _session(path)
    (inp,) = sess.get_inputs()
    assert inp.type == "tensor(float)" and inp.shape[1:] == [3, *meta.input_size] and isinstance(inp.shape[0], str)
    backbone = facezoo.load_model(ckpts[name], "cpu").module.backbone
    for batch in (1, 5):
        x = _by_hand(_faces(batch, meta.input_size, batch), meta)
        got = sess.run(None, {inp.name: x})[0]
        with torch.no_grad():
            want = backbone(torch.from_numpy(x)).numpy()
        assert got.shape == (batch, meta.embedding_size)
        scale = max(1.0, np.abs(want).max())
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 * scale)


def test_uint8_graph_equals_embedder(ckpts, exported):
    name = "mbf"  # BGR with std 128: channel swap and normalisation must both happen inside the graph
    path, _ = exported[name, "uint8"]
    meta = MODELS[name]
    sess = _session(path)
    (inp,) = sess.get_inputs()
    assert inp.type == "tensor(uint8)" and inp.shape[1:] == [*meta.input_size, 3]
    embedder = facezoo.load_model(ckpts[name], "cpu")
    for batch in (1, 5):
        images = _faces(batch, meta.input_size, 10 + batch)
        got = sess.run(None, {inp.name: images})[0]
        want = embedder(images)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 * max(1.0, np.abs(want).max()))


def test_metadata_round_trip(ckpts, exported):
    for (name, layout), (path, result) in exported.items():
        raw = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert json.loads(raw["facezoo.meta"]) == MODELS[name].to_dict()
        assert raw["facezoo.input"] == layout and raw["facezoo.version"] == facezoo.__version__
        assert raw["facezoo.weights"] == facezoo.load_model(ckpts[name]).weights_digest()  # by hand: test_loader
        info = read_onnx_meta(path)
        assert info["weights"] == raw["facezoo.weights"]
        assert ModelMeta.from_dict(info["meta"]) == MODELS[name]
        assert info["input"] == layout and info["opset"] == result["opset"] == 17
        assert info["input_shape"][1:] == result["input_shape"][1:]
        assert info["output_shape"][1:] == [MODELS[name].embedding_size]


def test_onnx_embedder_equals_embedder(ckpts, exported):
    for name, layout in EXPORTS:
        meta = MODELS[name]
        emb = facezoo.load_model(exported[name, layout][0], "cpu")
        assert emb.runtime == "onnxruntime" and emb.input_size == meta.input_size and emb.meta == meta
        images = _faces(3, meta.input_size, 7)
        want = facezoo.load_model(ckpts[name], "cpu")(images)
        for given in (images, torch.from_numpy(images)):
            got = emb(given)
            assert got.dtype == np.float32 and got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 * max(1.0, np.abs(want).max()))


def test_bgr_metadata_honoured(exported):
    meta = MODELS["mbf"]
    path = exported["mbf", "float"][0]
    images = _faces(2, meta.input_size, 3)
    raw = _session(path).run(None, {"input": _by_hand(images, meta)})[0]
    emb = facezoo.load_model(path)
    np.testing.assert_allclose(emb(images), raw, rtol=1e-5, atol=1e-5)
    swapped = emb(np.ascontiguousarray(images[..., ::-1]))
    assert np.abs(swapped - raw).max() > 100 * np.abs(emb(images) - raw).max() + 1e-4
    uint8_emb = facezoo.load_model(exported["mbf", "uint8"][0])
    np.testing.assert_allclose(uint8_emb(images), raw, rtol=0, atol=1e-3 * max(1.0, np.abs(raw).max()))


def test_foreign_onnx_needs_explicit_preprocessing(exported, tmp_path):
    meta = MODELS["ir18"]
    model = onnx.load(str(exported["ir18", "float"][0]))
    del model.metadata_props[:]
    bare = tmp_path / "insightface_style.onnx"
    onnx.save(model, str(bare))
    assert read_onnx_meta(bare)["meta"] is None
    with pytest.raises(ConfigError, match="mean, std, channel_order"):
        facezoo.load_model(bare)
    with pytest.raises(ConfigError, match="channel_order"):
        facezoo.load_model(bare, mean=127.5, std=127.5)
    emb = facezoo.load_model(bare, mean=127.5, std=127.5, channel_order="RGB")
    images = _faces(2, meta.input_size, 5)
    np.testing.assert_allclose(emb(images), facezoo.load_model(exported["ir18", "float"][0])(images), atol=1e-6)
    with pytest.raises(ConfigError, match="the model says"):
        facezoo.load_model(exported["ir18", "float"][0], channel_order="BGR")
    with pytest.raises(ModelError, match="uint8"):
        emb(images.astype(np.float32))


def test_a_crop_eye_model_takes_full_crops_in_either_layout(tmp_path):
    """FaceX-Zoo's upper-face mode: the float graph, like the uint8 one, takes the full aligned crop and keeps the top
    round(60 x 32 / 112) = 17 rows inside; the rows below have no effect."""
    meta = ModelMeta(
        backbone="ir18", backbone_kwargs={"width": 0.25}, embedding_size=16, input_size=(32, 32), crop_eye=True
    )
    upper = ModelMeta(backbone="ir18", backbone_kwargs={"width": 0.25}, embedding_size=16, input_size=(17, 32))
    save_checkpoint(tmp_path / "eye.pt", meta, _train_briefly(upper, 5))  # the same backbone: 17x32 inputs
    fonnx.export_onnx(tmp_path / "eye.pt", tmp_path / "eye.onnx", input="float")
    sess = _session(tmp_path / "eye.onnx")
    (inp,) = sess.get_inputs()
    assert inp.shape[1:] == [3, 32, 32]
    images = _faces(3, (32, 32), 4)
    x = _by_hand(images, meta)
    backbone = facezoo.load_model(tmp_path / "eye.pt", "cpu").module.backbone
    with torch.no_grad():
        want = backbone(torch.from_numpy(x[:, :, :17].copy())).numpy()
    got = sess.run(None, {inp.name: x})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 * max(1.0, np.abs(want).max()))
    x[:, :, 17:] = 0
    np.testing.assert_allclose(sess.run(None, {inp.name: x})[0], got, rtol=0, atol=1e-6)
    emb = facezoo.load_model(tmp_path / "eye.onnx", "cpu")
    want = facezoo.load_model(tmp_path / "eye.pt", "cpu")(images)
    np.testing.assert_allclose(emb(images), want, rtol=0, atol=1e-3 * max(1.0, np.abs(want).max()))


def test_broken_parity_raises_and_writes_nothing(ckpts, exported, tmp_path, monkeypatch):
    """ORT made to disagree (negated outputs); the export itself is reused from the fixture to save time."""
    real = fonnx._ort_run
    done = exported["ir18", "float"][0]
    monkeypatch.setattr(fonnx, "_export_proto", lambda *a: (onnx.load(str(done)), "dynamo"))
    monkeypatch.setattr(fonnx, "_ort_run", lambda model, feeds: [-o for o in real(model, feeds)])
    out = tmp_path / "sub" / "model.onnx"
    with pytest.raises(ModelError, match="differs from PyTorch"):
        fonnx.export_onnx(ckpts["ir18"], out)
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_missing_onnxruntime_names_the_extra(ckpts, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    with pytest.raises(ConfigError, match=r"facezoo\[onnx\]"):
        fonnx.export_onnx(ckpts["ir18"], tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="input 'rgb' is unknown"):
        fonnx.export_onnx(ckpts["ir18"], tmp_path / "m.onnx", input="rgb", check=False)
    assert not (tmp_path / "m.onnx").exists()


def test_cli_export(ckpts, tmp_path, monkeypatch, capsys):
    from facezoo import cli

    out = tmp_path / "cli.onnx"
    assert cli.main(["export", str(ckpts["ir18"]), "--onnx", str(out), "--input", "uint8"]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "max |diff|" in printed and "min cosine" in printed
    assert read_onnx_meta(out)["input"] == "uint8"
    images = _faces(2, MODELS["ir18"].input_size, 9)
    want = facezoo.load_model(ckpts["ir18"], "cpu")(images)
    np.testing.assert_allclose(facezoo.load_model(out)(images), want, rtol=0, atol=1e-3 * max(1, np.abs(want).max()))
    assert cli.main(["export", str(tmp_path / "missing.pt"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "missing.pt: model file not found" in capsys.readouterr().err
