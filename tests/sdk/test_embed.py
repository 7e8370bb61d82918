"""Embedders: torch and ONNX give the same embeddings, preprocessing from metadata, batching, devices, keys."""

import json

import numpy as np
import pytest
import torch

from facezoo import load_model
from facezoo.errors import ConfigError, ModelError
from facezoo.models.checkpoint import save_checkpoint
from facezoo.models.runtimes.ort import THRESHOLDS_KEY
from tests.sdk.conftest import META


def _normed(e):
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def onnx_model(model):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from facezoo.export.onnx import export_onnx

    out = model.with_suffix(".onnx")
    export_onnx(model, out, check=False)
    return out


def _crops(n, seed=0, size=(64, 64)):
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def test_torch_embedder_matches_the_backbone_by_hand(model):
    rec = load_model(model, "cpu")
    assert rec.input_size == (64, 64) and rec.device == "cpu" and rec.runtime == "torch"
    x = _crops(3)
    net = load_model(model).module.backbone
    by_hand = torch.from_numpy(((x.astype(np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        want = net(by_hand).numpy()
    got = rec(x)
    assert got.dtype == np.float32 and got.shape == (3, 32)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4 * np.abs(want).max())


def test_batching_does_not_change_results(model):
    x = _crops(7, seed=1)
    whole = load_model(model, "cpu", batch_size=64)(x)
    in_threes = load_model(model, "cpu", batch_size=3)(x)
    np.testing.assert_allclose(in_threes, whole, rtol=1e-5, atol=1e-4 * np.abs(whole).max())
    one = load_model(model, "cpu")(x[4])  # a single (H, W, 3) crop is a batch of one
    np.testing.assert_allclose(one[0], whole[4], rtol=1e-5, atol=1e-4 * np.abs(whole).max())


def test_onnx_and_torch_embedders_agree_within_1e_4(model, onnx_model):
    torch_rec = load_model(model, "cpu")
    onnx_rec = load_model(onnx_model, "cpu")
    assert onnx_rec.runtime == "onnxruntime" and onnx_rec.providers[0] == "CPUExecutionProvider"
    x = _crops(5, seed=2)
    a, b = torch_rec(x), onnx_rec(x)
    # untrained weights give embeddings in the hundreds: 1e-4 relative to the scale, and on unit vectors
    assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()
    assert np.abs(_normed(a) - _normed(b)).max() <= 1e-4


def test_insightface_style_onnx_needs_explicit_preprocessing(onnx_model, tmp_path):
    import onnx

    proto = onnx.load(str(onnx_model))
    del proto.metadata_props[:]  # like w600k_r50.onnx: no facezoo metadata
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ConfigError, match="mean, std, channel_order"):
        load_model(bare, "cpu")
    rec = load_model(bare, "cpu", mean=127.5, std=127.5, channel_order="RGB")
    assert rec.input_size == (64, 64) and rec.thresholds == {} and rec.embedding_size == 32
    assert (rec.meta.mean, rec.meta.std, rec.meta.channel_order) == (127.5, 127.5, "RGB")  # as given
    x = _crops(2, seed=3)
    np.testing.assert_allclose(rec(x), load_model(onnx_model, "cpu")(x), rtol=0, atol=1e-6)
    # BGR reverses the channels before normalising: same as feeding the channel-reversed crops as RGB
    bgr = load_model(bare, "cpu", mean=127.5, std=127.5, channel_order="BGR")
    np.testing.assert_allclose(bgr(x), rec(np.ascontiguousarray(x[..., ::-1])), rtol=0, atol=1e-6)


def test_preprocessing_that_contradicts_metadata_is_refused(model):
    with pytest.raises(ConfigError, match="std=128.0 but the model says 127.5"):
        load_model(model, "cpu", std=128.0)


def test_cuda_without_cuda_is_an_error_not_a_cpu_run(model, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA"):
        load_model(model, "cuda")
    assert load_model(model, "auto").device == "cpu"


def test_onnx_cuda_without_provider_is_an_error(onnx_model):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(ConfigError, match="CUDAExecutionProvider"):
        load_model(onnx_model, "cuda")


def test_other_crop_sizes_are_resized_and_bad_dtypes_refused(model):
    rec = load_model(model, "cpu")
    from facezoo.data.image import resize_image

    big = _crops(2, seed=4, size=(128, 128))
    want = rec(np.stack([resize_image(c, (64, 64)) for c in big]))
    np.testing.assert_array_equal(rec(big), want)
    with pytest.raises(ModelError, match="uint8"):
        rec(big.astype(np.float32))


def test_missing_model_and_key_ignores_metadata(model, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nope.pt")
    from facezoo.sdk.thresholds import write_thresholds

    calibrated = write_thresholds(model, {"1e-03": 0.3}, tmp_path / "cal.pt")
    a, b = load_model(model, "cpu"), load_model(calibrated, "cpu")
    assert b.thresholds == {"1e-03": 0.3} and a.thresholds == {}
    assert a.key == b.key and a.key.startswith("sha256:")
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    save_checkpoint(other, META, META.build_backbone().state_dict())
    assert load_model(other, "cpu").key != a.key


def test_onnx_thresholds_round_trip(onnx_model, tmp_path):
    import onnx

    from facezoo.sdk.thresholds import write_thresholds

    out = write_thresholds(onnx_model, {"1e-04": 0.41, "1e-03": 0.33}, tmp_path / "cal.onnx")
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props[THRESHOLDS_KEY]) == {"1e-04": 0.41, "1e-03": 0.33}
    assert json.loads(props["facezoo.meta"])["thresholds"] == {"1e-04": 0.41, "1e-03": 0.33}
    rec = load_model(out, "cpu")
    assert rec.thresholds == {"1e-04": 0.41, "1e-03": 0.33}
    x = _crops(2, seed=5)
    np.testing.assert_array_equal(rec(x), load_model(onnx_model, "cpu")(x))  # weights untouched
