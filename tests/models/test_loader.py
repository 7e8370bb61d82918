"""The one loader and the one Embedder interface: every registered runtime against a torch reference written out
here, the model key across export and calibration, metadata validation, and what the loader accepts and refuses."""

import hashlib
import json

import numpy as np
import pytest
import torch

import facezoo
from facezoo.errors import ConfigError, ModelError
from facezoo.models import zoo
from facezoo.models.checkpoint import FORMAT, save_checkpoint
from facezoo.models.embedder import EmbedderModule, ModelMeta
from facezoo.models.runtimes import registered
from facezoo.registry import Registry

# dlib-style per-channel preprocessing, network in BGR order: mean/std are per channel in that order
META = ModelMeta(
    backbone="ir18",
    backbone_kwargs={"width": 0.25},
    embedding_size=16,
    input_size=(32, 32),
    channel_order="BGR",
    mean=(104.298, 117.001, 122.782),
    std=(64.0, 60.0, 58.0),
)


def _crops(n, seed=0, size=(32, 32)):
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def _reference(ckpt, crops: np.ndarray, meta: ModelMeta = META) -> np.ndarray:
    """The backbone on crops preprocessed by hand: RGB -> network order, (x - mean[c]) / std[c], NCHW."""
    net = meta.build_backbone()
    net.load_state_dict(torch.load(ckpt, weights_only=True)["backbone"])
    net.eval()
    x = crops.astype(np.float64)
    if meta.channel_order == "BGR":
        x = x[..., [2, 1, 0]]
    mean = np.broadcast_to(np.asarray(meta.mean, np.float64), (3,))
    std = np.broadcast_to(np.asarray(meta.std, np.float64), (3,))
    x = ((x - mean) / std).transpose(0, 3, 1, 2).astype(np.float32).copy()
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def _close(got, want):
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 * max(1.0, float(np.abs(want).max())))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("loader") / "tiny.pt"
    torch.manual_seed(0)
    save_checkpoint(path, META, META.build_backbone().state_dict())
    return path


def _export(ckpt, layout: str):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from facezoo.export.onnx import export_onnx

    out = ckpt.with_name(f"tiny_{layout}.onnx")
    export_onnx(ckpt, out, input=layout)
    return out


@pytest.fixture(scope="module")
def onnx_file(ckpt):
    """The uint8 export: channel swap and per-channel normalisation run inside the graph."""
    return _export(ckpt, "uint8")


@pytest.fixture(scope="module")
def onnx_float(ckpt):
    """The float export: per-channel normalisation runs in numpy before onnxruntime."""
    return _export(ckpt, "float")


def _available(runtime: str) -> None:
    """Skip a runtime whose library or hardware this machine lacks (the reason named); the rest must run here."""
    if runtime == "openvino":
        pytest.importorskip("openvino")
    if runtime == "tensorrt":
        ort = pytest.importorskip("onnxruntime")
        if "TensorrtExecutionProvider" not in ort.get_available_providers():
            pytest.skip("this onnxruntime has no TensorrtExecutionProvider (needs onnxruntime-gpu, TensorRT, a GPU)")


def _file_for(runtime: str, request):
    """A model file the runtime opens, built from the reference checkpoint. A new runtime adds its file here."""
    _available(runtime)
    suffixes = registered().get(runtime).suffixes
    if ".pt" in suffixes:
        return request.getfixturevalue("ckpt")
    if ".onnx" in suffixes:
        return request.getfixturevalue("onnx_file")
    pytest.fail(f"runtime '{runtime}' opens {suffixes}: teach _file_for to build such a file from the checkpoint")


@pytest.mark.parametrize("runtime", registered().names())
def test_every_runtime_embeds_like_the_torch_reference(runtime, ckpt, request):
    path = _file_for(runtime, request)
    emb = facezoo.load_model(path, "cpu", runtime=runtime, batch_size=3)
    assert (emb.runtime, emb.device, emb.input_size, emb.embedding_size) == (runtime, "cpu", (32, 32), 16)
    assert emb.meta == META and emb.thresholds == {}
    line = emb.describe()
    assert runtime in line and "cpu" in line and "32x32" in line and "16-d" in line
    x = _crops(7, seed=1)
    got = emb(x)  # 7 crops in batches of 3, 3, 1
    assert got.dtype == np.float32 and got.shape == (7, 16)
    _close(got, _reference(ckpt, x))
    np.testing.assert_array_equal(emb(torch.from_numpy(x)), got)  # torch tensors too
    np.testing.assert_array_equal(emb(np.ascontiguousarray(x[..., ::-1]), channel_order="BGR"), got)  # cv2 order
    single = emb(x[2])  # one (H, W, 3) crop is a batch of one (another batch size: float rounding may differ)
    np.testing.assert_allclose(single[0], got[2], rtol=0, atol=1e-5 * float(np.abs(got).max()))
    assert emb(x[:0]).shape == (0, 16)
    # the key follows weights and preprocessing, so every runtime of the same model has the .pt's key
    assert emb.key == facezoo.load_model(ckpt, "cpu").key and emb.key.startswith("sha256:")
    with pytest.raises(ModelError, match="uint8"):
        emb(x.astype(np.float32))
    with pytest.raises(ModelError, match=r"\(B, H, W, 3\)"):
        emb(np.zeros((2, 32, 32, 4), np.uint8))
    with pytest.raises(ConfigError, match="channel_order"):
        emb(x, channel_order="RGBA")


def test_float_export_with_per_channel_preprocessing(ckpt, onnx_float):
    emb = facezoo.load_model(onnx_float, "cpu")
    x = _crops(4, seed=2)
    _close(emb(x), _reference(ckpt, x))
    assert emb.key == facezoo.load_model(ckpt, "cpu").key


def _state_sha256(ckpt) -> str:
    h = hashlib.sha256()
    for k, t in torch.load(ckpt, weights_only=True)["backbone"].items():
        h.update(f"{k}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def test_crop_eye_is_written_only_when_set():
    """A full-crop model's metadata keeps the fields it had before crop_eye existed (older readers load it, its model
    key is unchanged); a crop_eye model records it and reads back."""
    before = {"backbone", "backbone_kwargs", "embedding_size", "input_size", "channel_order", "mean", "std"}
    assert set(META.to_dict()) == before | {"template", "thresholds"}
    eye = ModelMeta(**{**META.to_dict(), "crop_eye": True})
    assert eye.to_dict()["crop_eye"] is True and ModelMeta.from_dict(eye.to_dict()) == eye
    assert ModelMeta.from_dict(META.to_dict()) == META and eye.key_json() != META.key_json()


def test_key_is_weights_and_preprocessing_as_documented(ckpt, tmp_path):
    meta = json.loads(json.dumps(META.to_dict()))
    del meta["thresholds"]
    meta["mean"], meta["std"] = list(META.mean), list(META.std)
    text = f"{_state_sha256(ckpt)}\0{json.dumps(meta, sort_keys=True, separators=(',', ':'))}"
    assert facezoo.load_model(ckpt, "cpu").key == "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
    # a scalar mean is the same preprocessing as three equal ones
    state = torch.load(ckpt, weights_only=True)["backbone"]
    one = ModelMeta(**{**META.to_dict(), "mean": 120.0, "std": 60.0})
    three = ModelMeta(**{**META.to_dict(), "mean": [120, 120, 120], "std": (60.0, 60.0, 60.0)})
    save_checkpoint(tmp_path / "one.pt", one, state)
    save_checkpoint(tmp_path / "three.pt", three, state)
    assert facezoo.load_model(tmp_path / "one.pt").key == facezoo.load_model(tmp_path / "three.pt").key


def test_key_survives_export_and_calibration_but_not_new_preprocessing(ckpt, onnx_file, tmp_path):
    import onnx

    from facezoo.sdk.thresholds import write_thresholds

    key = facezoo.load_model(ckpt, "cpu").key
    for source, suffix in ((ckpt, ".pt"), (onnx_file, ".onnx")):
        calibrated = write_thresholds(source, {"1e-03": 0.3}, tmp_path / f"cal{suffix}")
        cal = facezoo.load_model(calibrated, "cpu")
        assert cal.thresholds == {"1e-03": 0.3} and cal.key == key
    # same weights, other preprocessing: another key (.pt, and a facezoo export whose metadata is edited)
    state = torch.load(ckpt, weights_only=True)["backbone"]
    save_checkpoint(tmp_path / "rgb.pt", ModelMeta(**{**META.to_dict(), "channel_order": "RGB"}), state)
    assert facezoo.load_model(tmp_path / "rgb.pt").key != key
    proto = onnx.load(str(onnx_file))
    for p in proto.metadata_props:
        if p.key == "facezoo.meta":
            p.value = json.dumps({**json.loads(p.value), "std": 128.0})
    onnx.save(proto, str(tmp_path / "edited.onnx"))
    assert facezoo.load_model(tmp_path / "edited.onnx").key != key
    # other weights: another key
    torch.manual_seed(1)
    save_checkpoint(tmp_path / "other.pt", META, META.build_backbone().state_dict())
    assert facezoo.load_model(tmp_path / "other.pt").key != key


def test_third_party_onnx_key_is_graph_plus_given_preprocessing(onnx_float, tmp_path):
    import onnx

    from facezoo.sdk.thresholds import write_thresholds

    proto = onnx.load(str(onnx_float))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    given = {"mean": [104.298, 117.001, 122.782], "std": [64.0, 60.0, 58.0], "channel_order": "BGR"}
    a = facezoo.load_model(bare, "cpu", **given)
    x = _crops(3, seed=4)
    np.testing.assert_allclose(a(x), facezoo.load_model(onnx_float, "cpu")(x), rtol=0, atol=1e-5)
    assert a.embedding_size == 16 and a.input_size == (32, 32)
    assert facezoo.load_model(bare, "cpu", **{**given, "std": 128.0}).key != a.key
    calibrated = write_thresholds(bare, {"1e-02": 0.2}, tmp_path / "bare_cal.onnx")
    assert facezoo.load_model(calibrated, "cpu", **given).key == a.key
    with pytest.raises(ConfigError, match="std must be positive"):
        facezoo.load_model(bare, "cpu", **{**given, "std": 0.0})


def test_a_gallery_enrolled_with_the_pt_opens_with_its_export(ckpt, onnx_file, tmp_path):
    """Train -> enroll -> export -> serve without re-enrolling."""
    from facezoo.sdk import Gallery

    pt, ox = facezoo.load_model(ckpt, "cpu"), facezoo.load_model(onnx_file, "cpu")
    x = _crops(2, seed=5)
    with Gallery.open(tmp_path / "g.db", model_key=pt.key) as g:
        g.add("ann", pt(x[:1]))
    with Gallery.open(tmp_path / "g.db", model_key=ox.key) as g:
        assert g.search(ox(x[:1]), top_k=1)[0][0].identity == "ann"


def test_per_channel_meta_round_trips_and_bad_meta_names_the_field():
    d = json.loads(json.dumps(META.to_dict()))
    assert d["mean"] == [104.298, 117.001, 122.782] and ModelMeta.from_dict(d) == META
    bad = {
        "std": ({"std": 0}, "std must be positive"),
        "nan": ({"mean": float("nan")}, "mean must be finite"),
        "two": ({"mean": [1.0, 2.0]}, "mean must be a number or 3 numbers"),
        "order": ({"channel_order": "RGBA"}, "channel_order"),
        "size": ({"input_size": [0, 112]}, "input_size"),
        "emb": ({"embedding_size": -1}, "embedding_size"),
        "typo": ({"meen": 1.0}, "unknown model metadata key 'meen'. Did you mean 'mean'"),
    }
    for change, message in bad.values():
        with pytest.raises(ModelError, match="m.pt: .*" + message.replace("(", r"\(").replace(")", r"\)")):
            ModelMeta.from_dict({**d, **change}, where="m.pt")
    with pytest.raises(ModelError, match="no 'backbone'"):
        ModelMeta.from_dict({k: v for k, v in d.items() if k != "backbone"}, where="m.pt")


def test_broken_and_hostile_checkpoints_are_one_model_error(ckpt, tmp_path, capsys):
    import os

    payload = torch.load(ckpt, weights_only=True)
    torch.save({**payload, "meta": {**payload["meta"], "std": -1.0}}, tmp_path / "bad_meta.pt")
    torch.save({k: v for k, v in payload.items() if k != "meta"}, tmp_path / "no_meta.pt")
    torch.save({**payload, "meta": {**payload["meta"], "backbone": "ir5O"}}, tmp_path / "bad_backbone.pt")
    (tmp_path / "truncated.pt").write_bytes(ckpt.read_bytes()[:1000])

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "hostile.pt", "wb") as f:
        torch.save({"format": FORMAT, "x": Evil()}, f)
    cases = {
        "bad_meta.pt": "std must be positive",
        "no_meta.pt": "no model metadata",
        "bad_backbone.pt": "Did you mean 'ir50'",
        "truncated.pt": "not a readable checkpoint",
        "hostile.pt": "not a facezoo checkpoint: it holds pickled Python objects",
    }
    for name, message in cases.items():
        with pytest.raises(ModelError, match=message) as e:
            facezoo.load_model(tmp_path / name)
        assert name in str(e.value) and "weights_only" not in str(e.value)
    from facezoo.cli import main

    crop = tmp_path / "crop.png"
    from facezoo.data.image import encode_image

    crop.write_bytes(encode_image(_crops(1)[0], "png"))
    capsys.readouterr()
    assert main(["embed", str(crop), "--model", str(tmp_path / "hostile.pt"), "--aligned", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "hostile.pt: not a facezoo checkpoint" in err and "Traceback" not in err and "weights_only" not in err


def test_what_the_loader_accepts_and_refuses(ckpt, tmp_path, monkeypatch):
    emb = facezoo.load_model(ckpt, "cpu")
    assert facezoo.load_model(emb) is emb and facezoo.load_model(emb, "cpu", "torch") is emb
    with pytest.raises(ConfigError, match="runtime 'onnxruntime' was asked"):
        facezoo.load_model(emb, runtime="onnxruntime")
    with pytest.raises(ConfigError, match="std=1.0 but the model says"):
        facezoo.load_model(emb, std=1.0)
    # an EmbedderModule is wrapped by the torch runtime; a bare backbone is refused with the fix
    module = EmbedderModule(emb.module.backbone, META)
    x = _crops(2, seed=6)
    np.testing.assert_array_equal(facezoo.load_model(module)(x), emb(x))
    with pytest.raises(ConfigError, match="EmbedderModule"):
        facezoo.load_model(META.build_backbone())
    with pytest.raises(ConfigError, match="Did you mean 'onnxruntime'"):
        facezoo.load_model(ckpt, runtime="onnxrt")
    with pytest.raises(ConfigError, match="opens .onnx files, not '.pt'"):
        facezoo.load_model(ckpt, runtime="onnxruntime")
    (tmp_path / "m.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"no runtime opens '.bin' files.*\.onnx \(onnxruntime\)"):
        facezoo.load_model(tmp_path / "m.bin")
    with pytest.raises(ModelError, match="nope.pt: model file not found"):
        facezoo.load_model(tmp_path / "nope.pt")
    with pytest.raises(ConfigError, match="model must be"):
        facezoo.load_model(42)
    with pytest.raises(ConfigError, match="batch_size"):
        facezoo.load_model(ckpt, batch_size=0)
    # a pretrained name resolves through the zoo to its installed file
    names = Registry("pretrained model")
    names.register("tiny_test_model")(lambda: ckpt)
    monkeypatch.setattr(zoo, "PRETRAINED", names)
    named = facezoo.load_model("tiny_test_model", "cpu")
    assert named.name == "tiny_test_model" and named.key == emb.key
    with pytest.raises(ModelError, match="Did you mean 'tiny_test_model'"):
        facezoo.load_model("tiny_tset_model")


def test_onnxruntime_falling_back_to_cpu_is_an_error(onnx_file, monkeypatch):
    from facezoo.models.runtimes import ort as ort_runtime

    real = ort_runtime.require("onnxruntime")

    class FallingBack:
        """An onnxruntime that lists CUDA but starts every session on the CPU, as a broken CUDA install does."""

        def __getattr__(self, name):  # SessionOptions, enums: the real ones
            return getattr(real, name)

        def get_available_providers(self):
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        def InferenceSession(self, source, sess_options=None, providers=None, **kwargs):
            return real.InferenceSession(source, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort_runtime, "require", lambda name: FallingBack() if name == "onnxruntime" else real)
    with pytest.raises(ConfigError, match="could not start CUDAExecutionProvider"):
        facezoo.load_model(onnx_file, "cuda")
    with pytest.raises(ConfigError, match="could not start CUDAExecutionProvider"):
        facezoo.load_model(onnx_file, "auto")  # auto picks CUDA when listed, and must not fall back silently


def test_openvino_missing_names_the_install_command(onnx_file, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    with pytest.raises(ConfigError, match=r"needs the 'openvino' package: pip install \"facezoo\[openvino\]\""):
        facezoo.load_model(onnx_file, "cpu", runtime="openvino")


def test_openvino_refuses_cuda_and_reads_the_export_metadata(onnx_file):
    pytest.importorskip("openvino")
    with pytest.raises(ConfigError, match="runs on the CPU here; device 'cuda'"):
        facezoo.load_model(onnx_file, "cuda", runtime="openvino")
    emb = facezoo.load_model(onnx_file, "cpu", runtime="openvino", batch_size=2)
    assert emb.layout == "uint8" and emb.precision == "fp32" and "openvino on cpu" in emb.describe()


def test_tensorrt_without_its_provider_is_a_config_error_naming_the_available_ones(onnx_file, monkeypatch):
    from facezoo.models.runtimes import ort as ort_runtime

    real = ort_runtime.require("onnxruntime")
    if "TensorrtExecutionProvider" in real.get_available_providers():
        pytest.skip("this onnxruntime has TensorRT: the refusal cannot be seen here")
    with pytest.raises(ConfigError, match="TensorrtExecutionProvider, but this onnxruntime has .*CPUExecutionProvider"):
        facezoo.load_model(onnx_file, "auto", runtime="tensorrt")

    class WithTensorrt:
        """An onnxruntime listing TensorRT (as onnxruntime-gpu does): the device rule comes next."""

        def __getattr__(self, name):
            return getattr(real, name)

        def get_available_providers(self):
            return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

    import importlib

    fake = lambda name: WithTensorrt() if name == "onnxruntime" else importlib.import_module(name)
    monkeypatch.setattr(ort_runtime, "require", fake)
    with pytest.raises(ConfigError, match="runs on a CUDA GPU; device 'cpu'"):
        facezoo.load_model(onnx_file, "cpu", runtime="tensorrt")
    providers, device = ort_runtime.tensorrt_providers("cuda:1", "int8")
    assert device == "cuda:1" and [ort_runtime._provider_name(p) for p in providers] == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    options = providers[0][1]
    assert options["device_id"] == 1 and options["trt_int8_enable"] and not options["trt_fp16_enable"]
