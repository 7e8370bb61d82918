"""MTCNN on a real photo (scikit-image's astronaut) with hand-marked face, eyes, nose and mouth, and on composites
of it with known positions and scales. Needs the weights: `facezoo models fetch mtcnn` (make test does it)."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from facezoo.errors import ConfigError, DataError, ModelError
from facezoo.paths import models_dir
from facezoo.sdk.detect.mtcnn import MTCNN, ONet, PNet, RNet, pyramid_scales, regress, square

# Marked by eye on a 10x enlargement of data.astronaut() (pixel x, y; "left" = image left).
HAND_BOX = np.array([178, 75, 272, 187])  # cheek to cheek, hairline to chin
HAND_KPS = np.array([[203.5, 100.5], [246.5, 103.0], [224.0, 127.5], [204.0, 140.5], [242.0, 141.5]])
FACE_REGION = (140, 30, 310, 210)  # x0, y0, x1, y1: the head with some margin, pasted into composites


def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def weights_dir():
    folder = models_dir() / "mtcnn"
    if not all((folder / f).is_file() for f in ("pnet.pt", "rnet.pt", "onet.pt")):
        reason = "run `facezoo models fetch mtcnn` (make test does it)"
        if os.environ.get("CI"):
            pytest.fail(f"MTCNN weights missing in {folder}: {reason}")
        pytest.skip(reason)
    return folder


@pytest.fixture(scope="module")
def det(weights_dir):
    return MTCNN(weights_dir=weights_dir)


@pytest.fixture(scope="module")
def astronaut():
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def astro_det(det, astronaut):
    return det.detect(astronaut)


# ------------------------------------------------------------------ pure helpers (no weights)


def test_pyramid_scales_by_hand():
    # min side 100, min face 20: 100 * 0.6 * 0.709^k = 60, 42.5, 30.2, 21.4, 15.2, (10.7 < 12 stops)
    scales = pyramid_scales(100, 200, 20, 0.709)
    assert np.allclose(scales, [0.6 * 0.709**k for k in range(5)])
    assert pyramid_scales(11, 500, 12, 0.709) == []  # smaller than one 12x12 window


def test_square_and_regress_by_hand():
    b = np.array([[10.0, 20.0, 30.0, 28.0, 0.9]])  # w 20, h 8 -> side 20, centred vertically
    assert np.allclose(square(b), [[10, 14, 30, 34, 0.9]])
    r = np.array([[0.1, -0.5, 0.0, 0.25]])
    assert np.allclose(regress(b, r, plus_one=False), [[12, 16, 30, 30, 0.9]])  # w = 20, h = 8
    assert np.allclose(regress(b, r, plus_one=True), [[12.1, 15.5, 30, 30.25, 0.9]])  # w = 21, h = 9


def test_net_output_shapes():
    prob, reg = PNet()(torch.zeros(2, 3, 12, 12))
    assert prob.shape == (2, 1, 1) and reg.shape == (2, 4, 1, 1)
    prob, reg = PNet()(torch.zeros(1, 3, 30, 40))  # cells: ceil((30 - 2) / 2) - 4 = 10, ceil(38 / 2) - 4 = 15
    assert prob.shape == (1, 10, 15)
    prob, reg = RNet()(torch.zeros(3, 3, 24, 24))
    assert prob.shape == (3,) and reg.shape == (3, 4)
    prob, reg, pts = ONet()(torch.zeros(3, 3, 48, 48))
    assert prob.shape == (3,) and reg.shape == (3, 4) and pts.shape == (3, 10)


def test_registered_as_mtcnn():
    from facezoo.sdk.detect.base import DETECTORS

    assert DETECTORS.get("mtcnn") is MTCNN


def test_missing_weights_names_fetch_command(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="facezoo models fetch mtcnn") as e:
        MTCNN(weights_dir=tmp_path)
    assert str(tmp_path / "pnet.pt") in str(e.value)
    monkeypatch.setenv("FACEZOO_HOME", str(tmp_path / "home"))
    with pytest.raises(ModelError, match="facezoo models fetch mtcnn"):
        MTCNN()


def test_corrupt_weights_is_model_error(tmp_path):
    for name in ("pnet.pt", "rnet.pt", "onet.pt"):
        (tmp_path / name).write_bytes(b"not a state dict")
    with pytest.raises(ModelError, match="pnet.pt"):
        MTCNN(weights_dir=tmp_path)


def test_bad_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="factor"):
        MTCNN(weights_dir=tmp_path, factor=1.5)
    with pytest.raises(ConfigError, match="thresholds"):
        MTCNN(weights_dir=tmp_path, thresholds=(0.6, 0.7))


# ------------------------------------------------------------------ the real photo


def test_astronaut_one_face_at_hand_marked_place(astro_det):
    d = astro_det
    assert len(d) == 1
    assert d.boxes.dtype == np.float32 and d.kps.shape == (1, 5, 2) and d.scores.shape == (1,)
    assert d.scores[0] > 0.9
    assert iou(d.boxes[0], HAND_BOX) >= 0.5
    err = np.linalg.norm(d.kps[0] - HAND_KPS, axis=1)
    assert np.all(err <= 5.0), err  # a face ~95 px wide: 5 px is ~5% of it


@pytest.fixture(scope="module")
def flipped(det, astronaut):
    image = np.ascontiguousarray(astronaut[:, ::-1])
    return image, det.detect(image)


def test_mirrored_photo_mirrors_the_detection(astronaut, astro_det, flipped):
    """Flipping left-right maps x -> W - x and swaps left/right eyes and mouth corners."""
    d = flipped[1]
    assert len(d) == 1
    w = astronaut.shape[1]
    b0 = astro_det.boxes[0]
    assert iou(d.boxes[0], [w - b0[2], b0[1], w - b0[0], b0[3]]) >= 0.85
    k0 = astro_det.kps[0]
    expected = np.stack([w - k0[:, 0], k0[:, 1]], 1)[[1, 0, 2, 4, 3]]
    assert np.all(np.linalg.norm(d.kps[0] - expected, axis=1) <= 4.0)


def test_composite_known_offsets_and_scales(det, astronaut, astro_det):
    """Three copies of the head at 0.5x, 1x, 2x on a uniform canvas: each detection is the original detection
    under that copy's transform x' = s * (x - region origin) + offset (box IoU >= 0.8; landmarks within 5% of
    the face side)."""
    x0, y0, x1, y1 = FACE_REGION
    region = Image.fromarray(astronaut[y0:y1, x0:x1])
    canvas = np.full((720, 960, 3), 120, np.uint8)
    places = [(0.5, 40, 60), (1.0, 300, 400), (2.0, 560, 200)]  # scale, x offset, y offset
    for s, ox, oy in places:
        c = np.asarray(region.resize((round((x1 - x0) * s), round((y1 - y0) * s)), Image.BILINEAR))
        canvas[oy : oy + c.shape[0], ox : ox + c.shape[1]] = c
    d = det.detect(canvas)
    assert len(d) == 3
    matched = set()
    for s, ox, oy in places:
        eb = (astro_det.boxes[0] - [x0, y0, x0, y0]) * s + [ox, oy, ox, oy]
        ek = (astro_det.kps[0] - [x0, y0]) * s + [ox, oy]
        ious = [iou(b, eb) for b in d.boxes]
        j = int(np.argmax(ious))
        matched.add(j)
        assert ious[j] >= 0.8, (s, d.boxes[j], eb)
        assert np.all(np.linalg.norm(d.kps[j] - ek, axis=1) <= 0.05 * (eb[2] - eb[0])), (s, d.kps[j], ek)
    assert matched == {0, 1, 2}


def _contrast_canvas(astronaut):
    """Five copies of the head at decreasing contrast / with noise: faces of different confidence."""
    x0, y0, x1, y1 = FACE_REGION
    crop = astronaut[y0:y1, x0:x1].astype(np.float64)
    canvas = np.full((400, 800, 3), 120.0)
    rng = np.random.default_rng(0)
    for k, (a, noise) in enumerate([(1, 0), (0.35, 0), (0.25, 0), (0.6, 40), (0.15, 0)]):
        y, x = 10 + (k // 4) * 190, 10 + (k % 4) * 195
        canvas[y : y + 180, x : x + 170] = 120 + a * (crop - 120) + rng.normal(0, noise, crop.shape)
    return np.clip(canvas, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def contrast(det, astronaut):
    canvas = _contrast_canvas(astronaut)
    return canvas, det.detect(canvas)


def test_sorted_by_score_and_max_faces(det, contrast):
    canvas, d = contrast
    assert len(d) >= 3
    assert np.all(np.diff(d.scores) <= 0) and d.scores[0] > d.scores[-1]
    assert len(det.detect(canvas, max_faces=0)) == 0
    top = det.detect(canvas, max_faces=2)
    assert len(top) == 2
    np.testing.assert_allclose(top.boxes, d.boxes[:2])
    np.testing.assert_allclose(top.kps, d.kps[:2])


def test_batch_equals_single(det, astronaut, astro_det, flipped, contrast):
    """The astronaut and its mirror share a size (one batched P-Net pyramid); the canvas is its own group."""
    batch = det.detect_batch([astronaut, flipped[0], contrast[0]])
    for s, b in zip([astro_det, flipped[1], contrast[1]], batch):
        assert len(s) == len(b)
        np.testing.assert_allclose(b.boxes, s.boxes, atol=1e-2)
        np.testing.assert_allclose(b.scores, s.scores, atol=1e-4)
        np.testing.assert_allclose(b.kps, s.kps, atol=1e-2)


def test_blank_and_tiny_images_give_no_face(det):
    for im in (
        np.full((240, 320, 3), 120, np.uint8),
        np.zeros((200, 200, 3), np.uint8),
        np.full((8, 8, 3), 200, np.uint8),
    ):
        d = det.detect(im)
        assert len(d) == 0 and d.boxes.shape == (0, 4) and d.kps.shape == (0, 5, 2)


def test_bad_image_is_data_error(det):
    with pytest.raises(DataError, match="uint8"):
        det.detect(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(DataError, match=r"image 1"):
        det.detect_batch([np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.uint8)])
