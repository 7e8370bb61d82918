"""fp16 and int8 exports: parity with fp32 measured independently, the key kept, the precision recorded, weights
really narrowed; refusal past the bound (bound 1.0, and a model built to be unquantisable); calibration sources."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxconverter_common")

import onnx

import facezoo
from facezoo.cli import main
from facezoo.data.image import encode_image
from facezoo.data.verification_bin import write_bin
from facezoo.errors import ConfigError, DataError, ModelError
from facezoo.export import calibration, precision
from facezoo.export.onnx import export_onnx
from facezoo.models.checkpoint import save_checkpoint
from facezoo.models.embedder import EmbedderModule, ModelMeta

# width 0.5 (32 channels in the first stage): at 0.25 (16) int8 rounding alone costs a few hundredths of cosine
META = ModelMeta(backbone="ir18", backbone_kwargs={"width": 0.5}, embedding_size=16, input_size=(32, 32))


def _train_briefly(meta: ModelMeta, seed: int = 0) -> dict:
    """A few SGD steps on random faces, so weights and BN statistics are no longer at init (outputs not degenerate)."""
    torch.manual_seed(seed)
    net = meta.build_backbone()
    fc = torch.nn.Linear(meta.embedding_size, 4)
    opt = torch.optim.SGD([*net.parameters(), *fc.parameters()], lr=0.05, momentum=0.9)
    for _ in range(3):
        x = torch.randn(8, 3, *meta.input_size)
        loss = torch.nn.functional.cross_entropy(fc(net(x)), torch.randint(0, 4, (8,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.state_dict()


def _cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Synthetic identities at 32 px (facezoo data synth): its verification .bin holds the calibration crops."""
    root = tmp_path_factory.mktemp("synth")
    args = ["data", "synth", str(root), "--identities", "8", "--images-per-identity", "4", "--image-size", "32"]
    assert main([*args, "--val-identities", "40"]) == 0
    return root


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("precision") / "tiny.pt"
    save_checkpoint(path, META, _train_briefly(META))
    return path


@pytest.fixture(scope="module")
def int8(ckpt, faces):
    out = ckpt.with_name("tiny_int8.onnx")
    r = export_onnx(
        ckpt, out, precision="int8", calibrate=faces / "synth_ver.bin", calibration_images=40, holdout_images=24
    )
    return out, r


def test_int8_export_is_quantised_keeps_the_key_and_matches_fp32(ckpt, faces, int8):
    out, r = int8
    proto = onnx.load(str(out))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert weights, "the conv weights are stored as int8"
    assert {o.domain for o in proto.opset_import} <= {"", "ai.onnx", "ai.onnx.ml"}  # no unused internal domains
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["facezoo.precision"] == "int8" and json.loads(props["facezoo.meta"]) == META.to_dict()
    q = r["precision_parity"]
    assert q["calibration"]["images"] == 40 and q["holdout"]["images"] == 24 and q["min_cosine_bound"] == 0.98
    for part in ("calibration", "holdout"):
        assert 0.98 <= q[part]["min_cosine"] <= q[part]["mean_cosine"] <= 1.0
    # independently: the loaded int8 model against the .pt in torch, on crops of another set (the training images)
    pt, low = facezoo.load_model(ckpt, "cpu"), facezoo.load_model(out, "cpu")
    assert low.key == pt.key and low.precision == "int8" and "int8" in low.describe()
    crops = calibration.face_sets(faces / "train", (32, 32), 8, 8, seed=5)
    x = np.concatenate([crops.calibration, crops.holdout])
    cos = _cos(low(x), pt(x))
    assert cos.min() > 0.97 and cos.mean() > 0.98
    assert r["size_mb"] == pytest.approx(out.stat().st_size / 2**20)


def test_fp16_export_has_fp16_weights_float32_io_and_matches_fp32(ckpt, int8, tmp_path):
    out = tmp_path / "tiny_fp16.onnx"
    r = export_onnx(ckpt, out, precision="fp16", input="uint8", calibration_images=16, holdout_images=16)
    proto = onnx.load(str(out))
    big = [t for t in proto.graph.initializer if len(t.dims) == 4]
    assert big and all(t.data_type == onnx.TensorProto.FLOAT16 for t in big)
    (inp,), (outp,) = proto.graph.input, proto.graph.output
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert outp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    q = r["precision_parity"]
    assert q["source"].startswith("random uint8") and q["holdout"]["min_cosine"] >= 0.999
    pt, half = facezoo.load_model(ckpt, "cpu"), facezoo.load_model(out, "cpu")
    x = np.random.default_rng(3).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    assert _cos(half(x), pt(x)).min() > 0.999 and half.key == pt.key and half.precision == "fp16"
    fp32 = tmp_path / "fp32.onnx"
    full = export_onnx(ckpt, fp32, check=False)["size_mb"]
    assert r["size_mb"] < 0.6 * full and int8[1]["size_mb"] < 0.4 * full  # 2 bytes and 1 byte per weight
    # same key, but the feature caches tell the graphs apart
    assert facezoo.load_model(fp32).key == half.key and facezoo.load_model(fp32).fingerprint != half.fingerprint


def test_a_bound_of_one_refuses_and_names_bound_and_measured(int8, ckpt, tmp_path, monkeypatch):
    """lower_precision on the fp32 graph taken from the int8 fixture's own run is slow to redo: call it directly."""
    fp32 = tmp_path / "fp32.onnx"
    export_onnx(ckpt, fp32, check=False)
    sets = calibration.random_faces((32, 32), 8, 8)
    feed = lambda x: np.ascontiguousarray(((x.astype(np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2))
    with pytest.raises(ModelError, match=r"min cosine 0\.9\d+ on the calibration set \(8 images\).*bound is 1 "):
        precision.lower_precision(onnx.load(str(fp32)), "int8", sets, feed, "input", 1.0, "out.onnx")
    out = tmp_path / "refused.onnx"
    assert main(["export", str(ckpt), "--onnx", str(out), "--fp16", "--min-cosine", "1.0"]) == 2
    assert not out.exists()
    with pytest.raises(ConfigError, match="must be a number in"):
        precision.check_bound("int8", 1.5)


class _Outlier(torch.nn.Module):
    """Unquantisable by design: one channel of the first feature map carries +1e4, so a per-tensor int8 scale of
    about 1e4 / 127 rounds every other channel (|x| ~ 1) to zero, and the embedding read from them vanishes."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 9, 3, padding=1)
        with torch.no_grad():
            self.conv.bias[8] = 1e4
        self.fc = torch.nn.Linear(8 * 8 * 8, 16, bias=False)
        self.embedding_size, self.input_size = 16, (8, 8)

    def forward(self, x):
        y = self.conv(x)
        return self.fc(y[:, :8].flatten(1))


def test_an_unquantisable_model_is_refused_at_the_default_bound(tmp_path):
    torch.manual_seed(0)
    meta = ModelMeta(backbone="outlier", embedding_size=16, input_size=(8, 8))
    module = EmbedderModule(_Outlier(), meta).eval()
    faces = np.random.default_rng(0).integers(0, 256, (32, 8, 8, 3), dtype=np.uint8)
    out = tmp_path / "outlier.onnx"
    with pytest.raises(ModelError, match=r"int8 graph's embeddings differ from fp32.*bound is 0\.98 \(--min-cosine"):
        export_onnx(module, out, precision="int8", calibrate=faces, calibration_images=16, holdout_images=16)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    # the same model in fp16 keeps the small channels (fp16 has 11 bits at every scale): accepted
    export_onnx(module, out, precision="fp16", calibrate=faces, calibration_images=16, holdout_images=16)
    assert out.exists()


def test_calibration_sets_from_a_folder_are_disjoint_resized_and_capped(tmp_path):
    crops = tmp_path / "crops"
    crops.mkdir()
    for i in range(10):  # image i is the constant 20 * i, so each crop names itself
        (crops / f"{i:02d}.png").write_bytes(encode_image(np.full((16, 16, 3), 20 * i, np.uint8), "png"))
    sets = calibration.face_sets(crops, (8, 8), count=6, holdout=3)
    assert sets.calibration.shape == (6, 8, 8, 3) and sets.holdout.shape == (3, 8, 8, 3)
    ids = [int(im[0, 0, 0]) // 20 for im in [*sets.calibration, *sets.holdout]]
    assert len(set(ids)) == 9 and set(ids) <= set(range(10))
    few = calibration.face_sets(crops, (8, 8), count=256, holdout=256)  # 10 images: a quarter held out
    assert (len(few.calibration), len(few.holdout)) == (8, 2)
    (crops / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.png"):
        calibration.face_sets(crops, (8, 8), count=10, holdout=1)
    with pytest.raises(DataError, match="not found"):
        calibration.face_sets(tmp_path / "nope", (8, 8))
    # a .bin: its images (pairs ignored)
    # a .bin: its distinct images once each (pairs ignored; the repeated 50 is read once)
    pngs = [encode_image(np.full((8, 8, 3), v, np.uint8), "png") for v in (0, 50, 100, 50, 150, 200)]
    write_bin(tmp_path / "p.bin", pngs, [1, 0, 1])
    b = calibration.face_sets(tmp_path / "p.bin", (8, 8), count=4, holdout=1)
    assert sorted(int(im[0, 0, 0]) for im in [*b.calibration, *b.holdout]) == [0, 50, 100, 150, 200]


def test_int8_needs_calibration_data_and_the_cli_reports_both_sets(ckpt, faces, tmp_path, capsys):
    with pytest.raises(ConfigError, match="--calibrate DATA"):
        export_onnx(ckpt, tmp_path / "x.onnx", precision="int8")
    assert main(["export", str(ckpt), "--onnx", str(tmp_path / "x.onnx"), "--int8"]) == 2
    assert "--calibrate DATA" in capsys.readouterr().err
    out = tmp_path / "cli_int8.onnx"
    args = ["export", str(ckpt), "--onnx", str(out), "--int8", "--calibrate", str(faces / "train")]
    assert main([*args, "--calibration-images", "16", "--holdout-images", "8", "--no-check"]) == 0
    printed = capsys.readouterr().out
    assert "int8" in printed and "calibration    16 images: min cosine" in printed
    assert "holdout         8 images" in printed and "bound: min cosine >= 0.98" in printed
