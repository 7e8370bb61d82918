"""SCRFD decoding against hand computations, on small ONNX graphs shaped exactly like insightface's exports.

The fake graph's outputs are a fixed function of anchor position: chosen anchors get a chosen score, box distances
and keypoint offsets (in stride units), all other anchors score 0. A per-image gate zeroes every score of an image
whose pixels are all dark, so batching mistakes show up.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facezoo.errors import ConfigError, DataError, ModelError
from facezoo.sdk.detect import create_detector
from facezoo.sdk.detect.onnx_common import anchor_centres, letterbox
from facezoo.sdk.detect.scrfd import SCRFD

from .onnx_fakes import assert_faces as check_faces
from .onnx_fakes import export_graph

pytest.importorskip("onnxruntime")

# (stride, row, col, anchor, score, distances l, t, r, b, keypoint offsets x0, y0, ..., x4, y4), stride units
A = (8, 2, 3, 1, 0.9, (1.0, 1.5, 2.0, 2.5), (-0.5, -0.5, 0.5, -0.5, 0.0, 0.25, -0.4, 0.75, 0.4, 0.75))
B = (8, 2, 4, 0, 0.8, (2.1, 1.5, 0.9, 2.5), (-1.5, -0.5, -0.5, -0.5, -1.0, 0.25, -1.4, 0.75, -0.6, 0.75))  # ~A
C = (16, 2, 3, 0, 0.7, (1.0, 1.0, 1.0, 1.0), (-0.5, -0.4, 0.5, -0.4, 0.0, 0.1, -0.3, 0.5, 0.3, 0.5))
D = (32, 1, 0, 1, 0.3, (0.0, 0.25, 0.5, 0.5), (0.1, 0.0, 0.4, 0.0, 0.25, 0.2, 0.1, 0.4, 0.4, 0.4))
FACES = (A, B, C, D)


class FakeSCRFD(torch.nn.Module):
    """Outputs of an SCRFD graph: scores (1), boxes (4), kps (10) per stride 8/16/32, (B, N, k) or (B*N, k)."""

    def __init__(self, faces=FACES, num_anchors=2, batched=True, order=(0, 1, 2)):
        super().__init__()
        self.faces, self.num_anchors, self.batched, self.order = faces, num_anchors, batched, order

    def forward(self, x):
        gate = (x.amax(dim=(1, 2, 3)) > 0).to(x.dtype).view(-1, 1, 1, 1)
        groups = ([], [], [])
        for s in (8, 16, 32):
            zero = (F.avg_pool2d(x[:, :1], s) * 0).permute(0, 2, 3, 1)  # (B, H // s, W // s, 1)
            row, col = (zero + 1).cumsum(1) - 1, (zero + 1).cumsum(2) - 1
            for g, (k, field) in enumerate(((1, 4), (4, 5), (10, 6))):
                per_anchor = []
                for a in range(self.num_anchors):
                    v = zero * torch.zeros(k)
                    for f in self.faces:
                        if f[0] == s and f[3] == a:
                            mask = ((row == f[1]) & (col == f[2])).to(x.dtype)
                            v = v + mask * torch.tensor([f[field]] if k == 1 else list(f[field]))
                    per_anchor.append(v * gate if k == 1 else v)
                t = torch.stack(per_anchor, 3)  # (B, fh, fw, A, k): locations outer, anchors inner
                groups[g].append(t.reshape(x.shape[0], -1, k) if self.batched else t.reshape(-1, k))
        return tuple(o for g in self.order for o in groups[g])


def export(module, path, size=(64, 96), dynamic_size=True, dynamic_batch=True):
    axes = ({0: "batch"} if dynamic_batch else {}) | ({2: "h", 3: "w"} if dynamic_size else {})
    return export_graph(module, path, "input.1", size, 2 if dynamic_batch else 1, axes)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("scrfd")
    return {
        "batched": export(FakeSCRFD(), d / "batched.onnx"),
        "flat": export(FakeSCRFD(batched=False), d / "flat.onnx"),
        "single": export(FakeSCRFD(batched=False), d / "single.onnx", dynamic_batch=False),
        "fixed": export(FakeSCRFD(), d / "fixed.onnx", dynamic_size=False),
        "one_anchor": export(FakeSCRFD([f[:3] + (0,) + f[4:] for f in FACES], num_anchors=1), d / "a1.onnx"),
    }


def bright(h, w):
    return np.full((h, w, 3), 200, np.uint8)


def expected(face, sx, sy):
    """Hand decoding: centre (col*s, row*s); box = centre -/+ distances*s; kps = centre + offsets*s; / scale."""
    s, r, c, _, score, d, o = face
    cx, cy = c * s, r * s
    box = [(cx - d[0] * s) / sx, (cy - d[1] * s) / sy, (cx + d[2] * s) / sx, (cy + d[3] * s) / sy]
    kps = [[(cx + o[2 * i] * s) / sx, (cy + o[2 * i + 1] * s) / sy] for i in range(5)]
    return np.array(box), score, np.array(kps)


def assert_faces(det, faces, sx, sy):
    check_faces(det, faces, expected, sx, sy)


# ---------------------------------------------------------------- pieces


def test_anchor_centres_order():
    c = anchor_centres(2, 3, 16, 2)
    want = [
        [0, 0],
        [0, 0],
        [16, 0],
        [16, 0],
        [32, 0],
        [32, 0],
        [0, 16],
        [0, 16],
        [16, 16],
        [16, 16],
        [32, 16],
        [32, 16],
    ]
    np.testing.assert_array_equal(c, want)


def test_letterbox_keeps_aspect_and_pads_right_bottom():
    image = np.full((37, 80, 3), 255, np.uint8)
    canvas, (sx, sy) = letterbox(image, (64, 96))
    # r = min(64/37, 96/80) = 1.2 -> (nh, nw) = (round(44.4), 96) = (44, 96)
    assert canvas.shape == (64, 96, 3)
    assert (canvas[:44] == 255).all() and (canvas[44:] == 0).all()
    assert sx == pytest.approx(96 / 80) and sy == pytest.approx(44 / 37)


# ---------------------------------------------------------------- decoding


def test_decoded_boxes_and_points_in_image_coordinates(models):
    det = SCRFD(models["batched"], input_size=(64, 96)).detect(bright(37, 80))
    # A: centre (24, 16), stride 8: canvas box (16, 4, 40, 36); letterbox sx = 96/80, sy = 44/37
    np.testing.assert_allclose(det.boxes[0], [16 / 1.2, 4 * 37 / 44, 40 / 1.2, 36 * 37 / 44], rtol=1e-5)
    np.testing.assert_allclose(det.kps[0, 0], [(24 - 4) / 1.2, (16 - 4) * 37 / 44], rtol=1e-5)
    # B duplicates A (IoU > 0.4) with a lower score: suppressed; D scores 0.3 < 0.5
    assert_faces(det, [A, C], 96 / 80, 44 / 37)
    assert det.boxes.dtype == np.float32 and det.kps.shape == (2, 5, 2)


def test_threshold_and_max_faces(models):
    image = bright(37, 80)
    low = SCRFD(models["batched"], input_size=(64, 96), score_threshold=0.2).detect(image)
    assert_faces(low, [A, C, D], 96 / 80, 44 / 37)
    top = SCRFD(models["batched"], input_size=(64, 96)).detect(image, max_faces=1)
    assert_faces(top, [A], 96 / 80, 44 / 37)
    no_nms = SCRFD(models["batched"], input_size=(64, 96), nms_threshold=1.0).detect(image)
    assert_faces(no_nms, [A, B, C], 96 / 80, 44 / 37)


def test_dynamic_input_sizes_follow_the_grid(models):
    image = bright(50, 40)
    for size in [(64, 96), (96, 64), (128, 128)]:
        det = SCRFD(models["batched"], input_size=size).detect(image)
        r = min(size[0] / 50, size[1] / 40)
        assert_faces(det, [A, C], round(40 * r) / 40, round(50 * r) / 50)


def test_one_anchor_per_location_is_inferred(models):
    det = SCRFD(models["one_anchor"], input_size=(64, 96)).detect(bright(64, 96))
    assert_faces(det, [A, C], 1.0, 1.0)


def test_fixed_input_size_comes_from_the_model(models):
    det = SCRFD(models["fixed"])
    assert det.input_size == (64, 96)
    assert_faces(det.detect(bright(32, 48)), [A, C], 2.0, 2.0)
    with pytest.raises(ConfigError, match=r"fixed at \(H, W\) = \(64, 96\)"):
        SCRFD(models["fixed"], input_size=640)


def test_input_normalisation_rgb(models):
    det = SCRFD(models["batched"], input_size=(64, 96))
    seen = []
    session = det.session

    class Spy:
        def run(self, names, feed):
            seen.append(feed["input.1"])
            return session.run(names, feed)

    det.session = Spy()
    image = np.zeros((64, 48, 3), np.uint8)
    image[0, 0] = (255, 100, 0)
    det.detect(image)
    x = seen[0]
    assert x.shape == (1, 3, 64, 96) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], [(255 - 127.5) / 128, (100 - 127.5) / 128, -127.5 / 128])
    assert np.all(x[0, :, :, 48:] == np.float32(-127.5 / 128))  # right padding is black


# ---------------------------------------------------------------- batching


@pytest.mark.parametrize("kind, calls", [("batched", [3]), ("flat", [3]), ("single", [1, 1, 1])])
def test_batch_equals_single(models, kind, calls):
    det = SCRFD(models[kind], input_size=(64, 96))
    images = [bright(37, 80), np.zeros((50, 50, 3), np.uint8), bright(96, 40)]
    singles = [det.detect(im) for im in images]
    seen = []
    session = det.session

    class Spy:
        def run(self, names, feed):
            seen.append(len(feed["input.1"]))
            return session.run(names, feed)

    det.session = Spy()
    batch = det.detect_batch(images)
    assert seen == calls
    assert len(batch[1]) == 0  # the dark image: every score gated to 0
    assert_faces(batch[0], [A, C], 1.2, 44 / 37)
    assert_faces(batch[2], [A, C], 27 / 40, 64 / 96)  # r = 2/3: (nh, nw) = (64, round(26.67) = 27)
    for b, s in zip(batch, singles):
        np.testing.assert_array_equal(b.boxes, s.boxes)
        np.testing.assert_array_equal(b.kps, s.kps)
        np.testing.assert_array_equal(b.scores, s.scores)


def test_registry_and_empty_batch(models):
    det = create_detector("scrfd", model=str(models["batched"]), input_size=(64, 96))
    assert isinstance(det, SCRFD) and det.detect_batch([]) == []


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="det_missing.onnx: ONNX detector file not found"):
        SCRFD(tmp_path / "det_missing.onnx")


def test_wrong_number_of_outputs(tmp_path):
    class Two(torch.nn.Module):
        def forward(self, x):
            return x.mean((2, 3)), x.amax((2, 3))

    path = export(Two(), tmp_path / "two.onnx")
    with pytest.raises(ModelError, match=r"two.onnx: 2 outputs .*SCRFD graph has 6 or 9"):
        SCRFD(path)


def test_outputs_in_the_wrong_order(tmp_path):
    # static output shapes: caught when loading
    path = export(FakeSCRFD(order=(1, 0, 2)), tmp_path / "static.onnx", dynamic_size=False, dynamic_batch=False)
    with pytest.raises(
        ModelError,
        match=r"static.onnx: output 0 '\w+' has shape \[1, 192, 4\], but SCRFD's output 0 "
        r"holds scores \(last dim 1\)",
    ):
        SCRFD(path)
    # symbolic output shapes: caught on the first run
    path = export(FakeSCRFD(order=(1, 0, 2)), tmp_path / "boxes_first.onnx")
    det = SCRFD(path, input_size=(64, 96))
    with pytest.raises(ModelError, match=r"boxes_first.onnx: stride-8 outputs have per-image shapes \[\(192, 4\)"):
        det.detect(bright(64, 96))


def test_bad_arguments(models):
    with pytest.raises(ConfigError, match="divisible by 32"):
        SCRFD(models["batched"], input_size=(60, 96))
    with pytest.raises(ConfigError, match="score_threshold"):
        SCRFD(models["batched"], input_size=64, score_threshold=1.5)
    det = SCRFD(models["batched"], input_size=64)
    with pytest.raises(DataError, match="image 0: expected a uint8"):
        det.detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(ConfigError, match="max_faces"):
        det.detect(bright(10, 10), max_faces=-1)
