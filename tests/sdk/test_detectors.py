"""Every detector the library registers, against the Detector contract: built by name through the registry, it
finds the face in an image with one, nothing in a dark one, returns float32 boxes (N, 4), scores (N,) best first
in [0, 1] and 5 landmarks (N, 5, 2) (or None), honours max_faces, batches exactly like single calls and rejects a
non-image with a DataError.

A new detector needs a builder in BUILDERS (test weights or a small graph, and an image with a face in it); the
sweep fails for a registered name without one.
"""

import numpy as np
import pytest

from facezoo.errors import DataError
from facezoo.sdk.detect import Detections, Detector, create_detector
from facezoo.sdk.detect.base import registered

from . import test_retinaface, test_scrfd
from .test_mtcnn import weights_dir  # noqa: F401  (the fixture: MTCNN's weights, skipped or failed in CI without)

LIBRARY_DETECTORS = [n for n in registered().names() if registered().get(n).__module__.startswith("facezoo.")]


def _mtcnn(request, tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    folder = request.getfixturevalue("weights_dir")
    return {"weights_dir": folder}, np.ascontiguousarray(skimage_data.astronaut()[::2, ::2])  # face ~45 px


def _scrfd(request, tmp_path):
    model = test_scrfd.export(test_scrfd.FakeSCRFD(), tmp_path / "scrfd.onnx")
    return {"model": str(model), "input_size": (64, 96)}, test_scrfd.bright(60, 90)


def _retinaface(request, tmp_path):
    model = test_retinaface.export(test_retinaface.FakeRetinaFace(), tmp_path / "retinaface.onnx")
    return {"model": str(model)}, test_retinaface.bright(60, 90)


def _dlib_mmod(request, tmp_path):
    import os

    from facezoo.paths import models_dir

    skimage_data = pytest.importorskip("skimage.data")
    weights = models_dir() / "dlib" / "dlib_mmod.pt"
    if not weights.is_file():
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"{weights} missing: run `facezoo models fetch dlib`")
    return {"weights": str(weights)}, np.ascontiguousarray(skimage_data.astronaut())  # face ~110 px


BUILDERS = {"mtcnn": _mtcnn, "scrfd": _scrfd, "retinaface": _retinaface, "dlib_mmod": _dlib_mmod}


def _check(d: Detections) -> None:
    n = len(d)
    assert d.boxes.dtype == np.float32 and d.boxes.shape == (n, 4)
    assert d.scores.dtype == np.float32 and d.scores.shape == (n,)
    assert d.kps is None or (d.kps.dtype == np.float32 and d.kps.shape == (n, 5, 2))
    assert (
        np.isfinite(d.boxes).all() and (d.boxes[:, 2] > d.boxes[:, 0]).all() and (d.boxes[:, 3] > d.boxes[:, 1]).all()
    )
    assert ((d.scores >= 0) & (d.scores <= 1)).all() and (np.diff(d.scores) <= 0).all()


def _same(a: Detections, b: Detections) -> None:
    assert len(a) == len(b)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    if a.kps is not None or b.kps is not None:
        np.testing.assert_allclose(a.kps, b.kps, atol=1e-2)


@pytest.mark.parametrize("name", LIBRARY_DETECTORS)
def test_every_registered_detector_keeps_the_contract(name, request, tmp_path):
    assert name in BUILDERS, f"detector '{name}' is registered but has no test builder in {__name__}.BUILDERS"
    kwargs, image = BUILDERS[name](request, tmp_path)
    det = create_detector(name, **kwargs)
    assert isinstance(det, Detector)

    found = det.detect(image)
    _check(found)
    assert len(found) >= 1
    h, w = image.shape[:2]
    assert (found.boxes[:, :2] < [w, h]).all() and (found.boxes[:, 2:] > 0).all()  # overlaps the image
    dark = np.zeros((48, 64, 3), np.uint8)
    nothing = det.detect(dark)
    _check(nothing)
    assert len(nothing) == 0

    top = det.detect(image, max_faces=1)
    assert len(top) == 1
    _same(top, found.take([0]))

    batch = det.detect_batch([image, dark, image])
    assert len(batch) == 3
    for got, want in zip(batch, [found, nothing, found]):
        _check(got)
        _same(got, want)
    assert det.detect_batch([]) == []

    with pytest.raises(DataError):
        det.detect(image.astype(np.float32))
