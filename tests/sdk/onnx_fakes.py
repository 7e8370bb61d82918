"""Helpers shared by the ONNX-detector tests: export a fake detector graph, compare detections with hand values."""

import io
import warnings

import numpy as np
import torch


def export_graph(module, path, input_name: str, size, batch: int, axes: dict):
    """torch.onnx.export (TorchScript exporter: fast) of `module` on zeros (batch, 3, *size) to `path`."""
    x = torch.zeros(batch, 3, *size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        buf = io.BytesIO()
        torch.onnx.export(
            module,
            (x,),
            buf,
            input_names=[input_name],
            opset_version=17,
            dynamo=False,
            dynamic_axes={input_name: axes} if axes else None,
        )
    path.write_bytes(buf.getvalue())
    return path


def assert_faces(det, faces, expected, sx, sy, score_rtol=1e-6):
    """det holds exactly `faces`, in order, each as `expected(face, sx, sy)` -> (box, score, kps) decodes it."""
    assert len(det) == len(faces)
    for i, face in enumerate(faces):
        box, score, kps = expected(face, sx, sy)
        np.testing.assert_allclose(det.boxes[i], box, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(det.scores[i], score, rtol=score_rtol)
        np.testing.assert_allclose(det.kps[i], kps, rtol=1e-5, atol=1e-4)
