"""RetinaFace decoding against hand computations, on small ONNX graphs shaped like Pytorch_Retinaface's export.

The fake graph puts chosen loc / conf / landms values at chosen priors (level, row, col, size index) and background
([1, 0]) everywhere else; an image whose pixels are all dark (x = pixel - 104/117/123 < 0) gets background only.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facezoo.errors import ModelError
from facezoo.sdk.detect import create_detector
from facezoo.sdk.detect.retinaface import RetinaFace, priors

from .onnx_fakes import assert_faces as check_faces
from .onnx_fakes import export_graph

pytest.importorskip("onnxruntime")

STEPS = (8, 16, 32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
# (level, row, col, size index, score, loc (dx, dy, dw, dh), landms (10,))
A = (0, 2, 3, 1, 0.9, (0.5, -0.5, 1.0, 0.5), (-2.0, -1.0, 2.0, -1.0, 0.0, 0.5, -1.5, 2.0, 1.5, 2.0))
B = (0, 2, 3, 0, 0.8, (1.0, -1.0, 4.5, 4.0), (0.0,) * 10)  # m = 16 grown to ~A's box: a duplicate
C = (1, 1, 4, 0, 0.7, (0.0, 0.0, -1.0, -1.0), (1.0, 1.0, -1.0, 1.0, 0.0, 0.0, 1.0, -1.0, -1.0, -1.0))
D = (2, 0, 0, 0, 0.3, (0.0, 0.0, -5.0, -5.0), (0.0,) * 10)
FACES = (A, B, C, D)


class FakeRetinaFace(torch.nn.Module):
    def __init__(self, faces=FACES, logits=False, order=(0, 1, 2), batched=True):
        super().__init__()
        self.faces, self.logits, self.order, self.batched = faces, logits, order, batched

    def forward(self, x):
        gate = (x.amax(dim=(1, 2, 3)) > 0).to(x.dtype).view(-1, 1, 1, 1)
        bg = torch.tensor([0.0, -20.0] if self.logits else [1.0, 0.0])
        outs = ([], [], [])
        for level, (s, sizes) in enumerate(zip(STEPS, MIN_SIZES)):
            zero = (F.avg_pool2d(x[:, :1], s, ceil_mode=True) * 0).permute(0, 2, 3, 1)  # (B, ceil H/s, ceil W/s, 1)
            row, col = (zero + 1).cumsum(1) - 1, (zero + 1).cumsum(2) - 1
            loc, conf, lm = [], [], []
            for a in range(len(sizes)):
                vl, vc, vm = zero * torch.zeros(4), zero + bg, zero * torch.zeros(10)
                for f in self.faces:
                    if f[0] == level and f[3] == a:
                        mask = ((row == f[1]) & (col == f[2])).to(x.dtype)
                        p = f[4]
                        face = torch.tensor([0.0, math.log(p / (1 - p))] if self.logits else [1 - p, p])
                        vl, vm = vl + mask * torch.tensor(f[5]), vm + mask * torch.tensor(f[6])
                        vc = vc + mask * gate * (face - bg)
                loc.append(vl)
                conf.append(vc)
                lm.append(vm)
            for g, items in enumerate((loc, conf, lm)):
                t = torch.stack(items, 3)  # (B, fh, fw, sizes, k)
                outs[g].append(t.reshape(x.shape[0], -1, t.shape[-1]))
        cat = [torch.cat(o, 1) for o in outs]
        if not self.batched:
            cat = [c.reshape(-1, c.shape[-1]) for c in cat]
        return tuple(cat[g] for g in self.order)


def export(module, path, size=(60, 90), dynamic=False):
    return export_graph(module, path, "input0", size, 2, {0: "batch", 2: "h", 3: "w"} if dynamic else {0: "batch"})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("retina")
    return {
        "fixed": export(FakeRetinaFace(), d / "fixed.onnx"),
        "dynamic": export(FakeRetinaFace(), d / "dynamic.onnx", dynamic=True),
        "logits": export(FakeRetinaFace(logits=True, order=(2, 0, 1)), d / "logits.onnx"),
        "flat": export(FakeRetinaFace(batched=False), d / "flat.onnx"),
    }


def bright(h, w):
    return np.full((h, w, 3), 220, np.uint8)


def expected(face, sx, sy):
    """Hand decoding in input pixels: prior centre ((col + .5) s, (row + .5) s), size m;
    centre += loc[:2] * 0.1 * m; (w, h) = m * exp(loc[2:] * 0.2); point = prior centre + landms * 0.1 * m."""
    level, r, c, a, score, loc, lm = face
    s, m = STEPS[level], MIN_SIZES[level][a]
    pcx, pcy = (c + 0.5) * s, (r + 0.5) * s
    cx, cy = pcx + loc[0] * 0.1 * m, pcy + loc[1] * 0.1 * m
    w, h = m * math.exp(loc[2] * 0.2), m * math.exp(loc[3] * 0.2)
    box = [(cx - w / 2) / sx, (cy - h / 2) / sy, (cx + w / 2) / sx, (cy + h / 2) / sy]
    kps = [[(pcx + lm[2 * i] * 0.1 * m) / sx, (pcy + lm[2 * i + 1] * 0.1 * m) / sy] for i in range(5)]
    return np.array(box), score, np.array(kps)


def assert_faces(det, faces, sx, sy):
    check_faces(det, faces, expected, sx, sy, score_rtol=1e-5)


def test_priors_order_and_count():
    p = priors(20, 30, ((4, 6),), (16,))  # a 2 x 2 grid (ceil), two sizes per location
    want = [
        [8, 8, 4, 4],
        [8, 8, 6, 6],
        [24, 8, 4, 4],
        [24, 8, 6, 6],
        [8, 24, 4, 4],
        [8, 24, 6, 6],
        [24, 24, 4, 4],
        [24, 24, 6, 6],
    ]
    np.testing.assert_array_equal(p, want)
    assert len(priors(60, 90, MIN_SIZES, STEPS)) == 2 * (8 * 12 + 4 * 6 + 2 * 3)


def test_decoded_boxes_and_points_after_letterbox(models):
    det = RetinaFace(models["fixed"])
    assert det.input_size == (60, 90)
    out = det.detect(bright(40, 100))  # r = min(60/40, 90/100) = 0.9: (nh, nw) = (36, 90)
    # A: prior centre (28, 20), m = 32: centre (29.6, 18.4), w = 32 e^0.2, h = 32 e^0.1; canvas -> image: / 0.9
    w, h = 32 * math.exp(0.2), 32 * math.exp(0.1)
    np.testing.assert_allclose(
        out.boxes[0], np.array([29.6 - w / 2, 18.4 - h / 2, 29.6 + w / 2, 18.4 + h / 2]) / 0.9, rtol=1e-5
    )
    np.testing.assert_allclose(out.kps[0, 0], [(28 - 6.4) / 0.9, (20 - 3.2) / 0.9], rtol=1e-5)
    assert_faces(out, [A, C], 0.9, 0.9)  # B overlaps A (IoU > 0.4, lower score); D scores 0.3


def test_thresholds_and_max_faces(models):
    image = bright(40, 100)
    assert_faces(RetinaFace(models["fixed"], score_threshold=0.2).detect(image), [A, C, D], 0.9, 0.9)
    assert_faces(RetinaFace(models["fixed"], nms_threshold=1.0).detect(image), [A, B, C], 0.9, 0.9)
    assert_faces(RetinaFace(models["fixed"]).detect(image, max_faces=1), [A], 0.9, 0.9)


def test_logits_and_any_output_order(models):
    det = RetinaFace(models["logits"])  # outputs landms, loc, conf; conf as logits (softmax applied here)
    assert_faces(det.detect(bright(40, 100)), [A, C], 0.9, 0.9)


def test_dynamic_input_size_and_batch_equals_single(models):
    for size in [(64, 96), (100, 70)]:  # 100 x 70: ceil grids 13 x 9, 7 x 5, 4 x 3
        det = RetinaFace(models["dynamic"], input_size=size)
        images = [bright(40, 100), np.zeros((30, 30, 3), np.uint8), bright(50, 35)]
        singles = [det.detect(im) for im in images]
        batch = det.detect_batch(images)
        assert len(batch[1]) == 0
        for _im, b, s in zip(images, batch, singles):
            np.testing.assert_array_equal(b.boxes, s.boxes)
            np.testing.assert_array_equal(b.kps, s.kps)
        r = min(size[0] / 40, size[1] / 100)
        assert_faces(batch[0], [A, C], round(100 * r) / 100, round(40 * r) / 40)


def test_flattened_batch_outputs(models):
    det = RetinaFace(models["flat"])
    out = det.detect_batch([bright(60, 90), np.zeros((60, 90, 3), np.uint8)])
    assert_faces(out[0], [A, C], 1.0, 1.0)
    assert len(out[1]) == 0


def test_input_normalisation_bgr_minus_mean(models):
    det = RetinaFace(models["fixed"])
    seen = []
    session = det.session

    class Spy:
        def run(self, names, feed):
            seen.append(feed["input0"])
            return session.run(names, feed)

    det.session = Spy()
    image = np.zeros((60, 90, 3), np.uint8)
    image[0, 0] = (10, 20, 200)  # R, G, B
    det.detect(image)
    np.testing.assert_allclose(seen[0][0, :, 0, 0], [200 - 104, 20 - 117, 10 - 123])


def test_registry(models):
    assert isinstance(create_detector("retinaface", model=str(models["fixed"])), RetinaFace)


def test_layout_errors(models, tmp_path):
    with pytest.raises(ModelError, match="nope.onnx: ONNX detector file not found"):
        RetinaFace(tmp_path / "nope.onnx")
    with pytest.raises(
        ModelError,
        match=r"per-image outputs have shapes .* expected \(N, 4\), \(N, 2\), \(N, 10\) "
        r"with N = 348 priors",
    ):
        # three sizes at stride 8: 3 * 96 + 2 * 24 + 2 * 6 priors, the graph has 2 * (96 + 24 + 6) = 252
        RetinaFace(models["fixed"], min_sizes=((16, 32, 48), (64, 128), (256, 512))).detect(bright(60, 90))

    class TwoOut(torch.nn.Module):
        def forward(self, x):
            return x.mean((2, 3)), x.amax((2, 3))

    path = export(TwoOut(), tmp_path / "two.onnx")
    with pytest.raises(ModelError, match=r"two.onnx: outputs .*a RetinaFace graph has three"):
        RetinaFace(path)
