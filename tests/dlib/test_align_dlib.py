"""Alignment by model metadata: dlib face chips for dlib's template, the ArcFace warp otherwise (no model files)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facezoo.errors import DataError
from facezoo.models.dlib.mean_face import FACEZOO_FIVE, MEAN_FACE_68, chip_points, facezoo_template
from facezoo.models.embedder import ARCFACE_TEMPLATE_112
from facezoo.sdk.align import align_face, align_for_model, dlib_chip_padding
from facezoo.sdk.dlib_chip import face_chip_details


def test_template_is_the_mean_face_points_with_padding():
    # chip pixel = size * (padding + p) / (1 + 2 padding); facezoo's 5 = eye means, nose tip 30, mouth 48 / 54
    t = facezoo_template(150, 0.25)
    left_eye = np.mean(MEAN_FACE_68[36:42], 0)
    np.testing.assert_allclose(t[0], 150 * (0.25 + left_eye) / 1.5)
    np.testing.assert_allclose(t[2], 150 * (0.25 + np.array([0.490127, 0.515625])) / 1.5)  # point 30
    assert FACEZOO_FIVE.shape == (5, 2) and t[0, 0] < t[1, 0] and t[3, 1] > t[2, 1] > t[0, 1]


@pytest.mark.parametrize("size, padding", [(150, 0.25), (200, 0.4), (112, 0.0)])
def test_padding_is_recovered_from_a_dlib_template(size, padding):
    assert dlib_chip_padding(facezoo_template(size, padding), size) == pytest.approx(padding)


def test_other_templates_are_not_dlib():
    assert dlib_chip_padding(ARCFACE_TEMPLATE_112, 112) is None
    assert dlib_chip_padding(facezoo_template(150, 0.25), (150, 120)) is None  # not square
    assert dlib_chip_padding(facezoo_template(150, 0.25), 160) is None  # another size
    assert dlib_chip_padding(None, 150) is None


def test_arcface_models_keep_the_arcface_warp():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    pts = np.array(ARCFACE_TEMPLATE_112) + 30
    a, ma = align_for_model(img, pts, (112, 112), ARCFACE_TEMPLATE_112)
    b, mb = align_face(img, pts, (112, 112))
    assert np.array_equal(a, b) and np.allclose(ma, mb)


def test_chip_details_of_points_on_the_template_is_the_identity():
    pts = chip_points(MEAN_FACE_68[17:], 150, 0.25)
    d = face_chip_details(np.concatenate([np.zeros((17, 2)), pts]), 150, 0.25)  # 68 points, jaw ignored
    assert d["angle"] == pytest.approx(0, abs=1e-12) and (d["rows"], d["cols"]) == (150, 150)
    np.testing.assert_allclose(d["rect"], (0.5, 0.5, 149.5, 149.5), atol=1e-9)  # centred 150-wide drect at 75
    with pytest.raises(DataError, match="5 or 68"):
        face_chip_details(np.zeros((7, 2)))


def test_dlib_chip_of_a_linear_image_follows_its_matrix():
    """On I(x, y) = 0.5 x + 0.3 y + 10 (bilinear is exact on it), chip pixel (c, r) = I(M^-1 (c, r)) up to the
    truncation, and M maps the 5 points onto the template (within dlib's corner-pixel convention)."""
    h, w = 300, 360
    ys, xs = np.mgrid[0:h, 0:w]
    grey = 0.5 * xs + 0.3 * ys + 10
    img = np.repeat(np.floor(grey)[..., None], 3, 2).astype(np.uint8)
    angle, scale, shift = math.radians(20), 1.3, np.array([60.0, 40.0])
    rot = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    template = facezoo_template(150, 0.25)
    pts = template @ rot.T + shift  # the face as seen in the image
    chip, m = align_for_model(img, pts, (150, 150), template)
    assert chip.shape == (150, 150, 3)
    # dlib's chip spans its rectangle corner pixel to corner pixel (width size * scale - 1, centered_drect), not
    # exactly the fitted similarity: the points land within a pixel of the template
    np.testing.assert_allclose(pts @ m[:, :2].T + m[:, 2], template, atol=1.0)
    r, c = np.mgrid[10:140:13, 10:140:13]
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
    x = inv[0, 0] * c + inv[0, 1] * r + inv[0, 2]
    y = inv[1, 0] * c + inv[1, 1] * r + inv[1, 2]
    expected = 0.5 * x + 0.3 * y + 10
    err = expected - chip[r, c, 0]  # the image is floored and dlib truncates: each loses less than 1
    assert err.min() > -1e-6 and err.max() < 2
