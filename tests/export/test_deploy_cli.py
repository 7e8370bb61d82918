"""--runtime through the SDK and the evaluation CLI: the same ONNX export evaluated on onnxruntime and OpenVINO gives
the same verification table; a runtime that cannot open the file is one error line, exit 2."""

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import facezoo
from facezoo.cli import main
from facezoo.export.onnx import export_onnx
from facezoo.models.checkpoint import save_checkpoint
from facezoo.models.embedder import ModelMeta
from facezoo.sdk.detect.base import Detections, Detector
from facezoo.sdk.pipeline import FaceAnalyzer

META = ModelMeta(backbone="ir18", backbone_kwargs={"width": 0.25}, embedding_size=16, input_size=(32, 32))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    args = ["data", "synth", str(root / "d"), "--identities", "4", "--images-per-identity", "2", "--image-size", "32"]
    assert main([*args, "--val-identities", "20"]) == 0
    torch.manual_seed(0)
    save_checkpoint(root / "m.pt", META, META.build_backbone().state_dict())
    export_onnx(root / "m.pt", root / "m.onnx")
    return root


def _accuracy_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("| m "))


def test_eval_runtime_option_runs_the_export_on_each_runtime(files, capsys):
    pytest.importorskip("openvino")
    base = ["eval", str(files / "m.onnx"), "--bin", str(files / "d" / "synth_ver.bin"), "--device", "cpu"]
    base += ["--no-cache", "--quiet"]
    assert main(base) == 0
    default = _accuracy_line(capsys.readouterr().out)
    for runtime in ("onnxruntime", "openvino"):
        assert main([*base, "--runtime", runtime]) == 0
        assert _accuracy_line(capsys.readouterr().out) == default  # same accuracy to the printed digits
    assert main([*base[:2], str(files / "m.pt"), *base[2:], "--runtime", "openvino"]) == 2
    err = capsys.readouterr().err
    assert "runtime 'openvino' opens .onnx files, not '.pt'" in err and "Traceback" not in err


class _WholeImage(Detector):
    """The whole image is the face (crops are already aligned)."""

    def detect(self, image, max_faces=None):
        h, w = image.shape[:2]
        five = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]]) * [w, h]
        return Detections(np.array([[0, 0, w, h]], np.float32), np.ones(1, np.float32), five[None].astype(np.float32))


def test_face_analyzer_takes_the_runtime(files):
    pytest.importorskip("openvino")
    ort = facezoo.load_model(files / "m.onnx", "cpu")
    fa = FaceAnalyzer(_WholeImage(), files / "m.onnx", device="cpu", runtime="openvino")
    assert fa.recognizer.runtime == "openvino" and fa.recognizer.key == ort.key
    crop = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(fa.recognizer(crop), ort(crop), rtol=0, atol=1e-3 * max(1, np.abs(ort(crop)).max()))


@pytest.mark.parametrize("backend", ["stdlib", "asgi"])
def test_serve_takes_the_runtime_on_each_backend(files, backend, monkeypatch, capsys):
    """`facezoo serve --runtime openvino`: the analyzer the backend would serve embeds with OpenVINO (same key and
    embeddings as onnxruntime's); a file the runtime cannot open is exit 2 before anything listens."""
    pytest.importorskip("openvino")
    if backend == "asgi":
        pytest.importorskip("uvicorn", reason="the asgi backend needs the serve extra")
        pytest.importorskip("starlette", reason="the asgi backend needs the serve extra")
    from facezoo.sdk import pipeline, server

    served = {}
    monkeypatch.setattr(pipeline, "build_detector", lambda detector, device="auto": _WholeImage())
    monkeypatch.setattr(server, "serve", lambda analyzer, gallery, **kw: served.update(analyzer=analyzer, **kw))
    args = ["serve", "--gallery", str(files / f"g_{backend}.db"), "--backend", backend, "--port", "0"]
    args += ["--insecure-no-auth", "--device", "cpu", "--quiet"]
    assert main([*args, "--model", str(files / "m.onnx"), "--runtime", "openvino"]) == 0
    rec = served["analyzer"].recognizer
    ort = facezoo.load_model(files / "m.onnx", "cpu")
    assert served["backend"] == backend and rec.runtime == "openvino" and rec.key == ort.key
    crop = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(rec(crop), ort(crop), rtol=0, atol=1e-3 * max(1, np.abs(ort(crop)).max()))
    served.clear()
    assert main([*args, "--model", str(files / "m.pt"), "--runtime", "openvino"]) == 2
    err = capsys.readouterr().err
    assert "runtime 'openvino' opens .onnx files, not '.pt'" in err and "Traceback" not in err and not served
