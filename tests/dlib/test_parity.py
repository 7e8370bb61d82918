"""facezoo's dlib models against dlib itself (dlib-bin) on real photos: same boxes, landmarks, chips, descriptors.

Needs `facezoo models fetch dlib` (it keeps the original .dat files beside the converted ones, which dlib loads here)
and the test extra (dlib-bin, scikit-image; insightface's wheel is downloaded for its photos)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import facezoo
from facezoo.models.dlib.resample import pyramid_down2, pyramid_up, resize_bilinear
from facezoo.sdk.detect.dlib_mmod import DlibMMOD
from facezoo.sdk.dlib_chip import face_chip
from facezoo.sdk.landmarker import create_landmarker


def crops(photos):
    """Small real scenes (dlib's CNN is slow on big images): one face, three faces, a 112x112 face."""
    return {
        "astronaut": np.ascontiguousarray(photos["astronaut"][0:320, 100:420]),
        "t1_left": np.ascontiguousarray(photos["t1"][100:500, 0:640]),
        "hanks": photos["hanks"],
    }


@pytest.fixture(scope="module")
def mmod(dlib_dir):
    return DlibMMOD(dlib_dir / "dlib_mmod.pt", landmarker=None)


@pytest.fixture(scope="module")
def dlib_mmod(dlib, dlib_dir):
    return dlib.cnn_face_detection_model_v1(str(dlib_dir / "mmod_human_face_detector.dat"))


def dlib_rects(dets):
    r = np.array([[d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()] for d in dets], np.int64)
    return r.reshape(-1, 4), np.array([d.confidence for d in dets])


@pytest.mark.parametrize("name, upsample", [("astronaut", 0), ("t1_left", 0), ("hanks", 0), ("hanks", 1)])
def test_mmod_boxes_equal_dlib(mmod, dlib_mmod, photos, name, upsample):
    img = crops(photos)[name]
    want, conf = dlib_rects(dlib_mmod(img, upsample))
    mmod.upsample = upsample
    got, got_conf = mmod.detect_rects(img)
    assert len(want) >= 1 and np.array_equal(got, want)
    np.testing.assert_allclose(got_conf, conf, atol=1e-4)
    dets = mmod.detect(img)  # the Detector view: x2 = right + 1, score = sigmoid(confidence)
    order = np.argsort(-conf, kind="stable")
    np.testing.assert_array_equal(dets.boxes, np.concatenate([want[order, :2], want[order, 2:] + 1], 1))
    np.testing.assert_allclose(np.log(dets.scores / (1 - dets.scores)), conf[order], atol=1e-3)


def test_mmod_finds_the_six_faces_of_t1_and_the_upsampled_small_ones(mmod, photos):
    """The group photo at full size (six faces of 95-136 px); at half size most faces are under dlib's 80 px window
    and only upsampling finds them again."""
    t1 = photos["t1"]
    mmod.upsample = 0
    assert len(mmod.detect_rects(t1)[0]) == 6
    half = np.ascontiguousarray(t1[::2, ::2])
    few = len(mmod.detect_rects(half)[0])
    mmod.upsample = 1
    assert few < 6 <= len(mmod.detect_rects(half)[0])
    mmod.upsample = 0


def test_resampling_equals_dlib(dlib):
    rng = np.random.default_rng(0)
    grey = (rng.random((37, 53)) * 3 - 1).astype(np.float32)
    for size in [(31, 44), (30, 45), (80, 101), (5, 7)]:
        ours = resize_bilinear(torch.from_numpy(grey)[None], *size)[0].numpy()
        assert np.array_equal(ours, dlib.resize_image(grey, *size))
    img = (rng.random((37, 53, 3)) * 255).astype(np.uint8)
    up = pyramid_up(torch.from_numpy(img).permute(2, 0, 1).float()).permute(1, 2, 0).numpy().astype(np.uint8)
    assert up.shape == (75, 108, 3)  # dlib's pyramid_up: (2H + 1, 2W + 2)
    assert np.array_equal(up, dlib.resize_image(img, 75, 108))
    assert np.array_equal(pyramid_down2(img), dlib.pyramid_down(2)(img))


@pytest.fixture(scope="module")
def boxes(photos, mmod):
    """(image name, dlib rectangle) pairs: detected faces plus shifted and rescaled versions of them."""
    mmod.upsample = 0
    out = []
    rng = np.random.default_rng(3)
    for name, img in crops(photos).items():
        for left, top, right, bottom in mmod.detect_rects(img)[0]:
            out.append((name, (left, top, right, bottom)))
            for _ in range(3):
                dx, dy, grow = rng.integers(-12, 13), rng.integers(-12, 13), rng.integers(-10, 15)
                out.append((name, (left + dx - grow, top + dy - grow, right + dx + grow, bottom + dy + grow)))
    return out


@pytest.mark.parametrize("which, dat", [("dlib_sp5", "shape_predictor_5_face_landmarks.dat"),
                                        ("dlib_sp68", "shape_predictor_68_face_landmarks.dat")])  # fmt: skip
def test_landmarks_equal_dlib(dlib, dlib_dir, photos, boxes, which, dat):
    ref = dlib.shape_predictor(str(dlib_dir / dat))
    ours = create_landmarker(which)
    images = crops(photos)
    for name, (left, top, right, bottom) in boxes:
        shape = ref(images[name], dlib.rectangle(int(left), int(top), int(right), int(bottom)))
        want = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
        got = ours(images[name], (left, top, right + 1, bottom + 1))  # a detector box of that rectangle
        assert got.shape == want.shape and np.abs(got - want).max() <= 0.01, (name, left, top)


def test_chips_equal_dlib_at_every_scale_and_angle(dlib, dlib_dir, photos):
    from PIL import Image

    sp5 = dlib.shape_predictor(str(dlib_dir / "shape_predictor_5_face_landmarks.dat"))
    sp68 = dlib.shape_predictor(str(dlib_dir / "shape_predictor_68_face_landmarks.dat"))
    base = photos["astronaut"]
    for scale, angle in [(1.0, 0), (2.5, 0), (0.6, 0), (1.0, 25), (1.7, -40)]:
        im = Image.fromarray(base).rotate(angle, resample=Image.BILINEAR)
        im = np.array(im.resize((round(512 * scale), round(512 * scale)), Image.BILINEAR))
        c = np.array([225, 131]) - 256  # the face centre, rotated and scaled with the image
        t = np.deg2rad(angle)
        cx, cy = (np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]) @ c + 256) * scale
        half = 56 * scale
        rect = dlib.rectangle(int(cx - half), int(cy - half), int(cx + half), int(cy + half))
        for sp in (sp5, sp68):
            shape = sp(im, rect)
            want = dlib.get_face_chip(im, shape, size=150, padding=0.25)
            got = face_chip(im, np.array([[p.x, p.y] for p in shape.parts()]))
            assert np.array_equal(got, want), (scale, angle, shape.num_parts)


def test_descriptors_equal_dlib_on_the_same_chips(dlib, dlib_dir, photos, boxes):
    rec = dlib.face_recognition_model_v1(str(dlib_dir / "dlib_face_recognition_resnet_model_v1.dat"))
    sp5 = dlib.shape_predictor(str(dlib_dir / "shape_predictor_5_face_landmarks.dat"))
    images = crops(photos)
    chips, want = [], []
    for name, (left, top, right, bottom) in boxes[::2]:
        shape = sp5(images[name], dlib.rectangle(int(left), int(top), int(right), int(bottom)))
        chip = dlib.get_face_chip(images[name], shape, size=150, padding=0.25)
        chips.append(chip)
        want.append(np.array(rec.compute_face_descriptor(chip)))
        full = np.array(rec.compute_face_descriptor(images[name], shape))  # dlib's own chip inside
        np.testing.assert_allclose(full, want[-1], atol=1e-5)
    model = facezoo.load_model("dlib_resnet")
    got = model(np.stack(chips))
    assert got.shape == (len(chips), 128)
    assert np.abs(got - np.stack(want)).max() <= 1e-4
