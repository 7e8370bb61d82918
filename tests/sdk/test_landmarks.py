"""Dense landmark layouts -> 5 ArcFace points, on point sets built by hand with known eye/nose/mouth positions."""

import numpy as np
import pytest

from facezoo.errors import DataError
from facezoo.sdk.align import arcface_template
from facezoo.sdk.landmarks import LANDMARK_LAYOUTS, to_five_points

# where the 5 points should land: eye centres, nose tip, mouth corners (x, y), image-left first
EYE_L, EYE_R, NOSE, MOUTH_L, MOUTH_R = (30.0, 40.0), (70.0, 41.0), (50.0, 60.0), (35.0, 80.0), (66.0, 81.0)
WANT = np.array([EYE_L, EYE_R, NOSE, MOUTH_L, MOUTH_R])


def ring(centre, n=6, rx=6.0, ry=3.0):
    """n points on an ellipse around `centre` (their mean is the centre)."""
    t = np.arange(n) * 2 * np.pi / n
    return np.stack([centre[0] + rx * np.cos(t), centre[1] + ry * np.sin(t)], 1)


def face68():
    """iBUG 300-W markup: jaw 0-16, brows 17-26, nose 27-35 (tip 30), eyes 36-41 / 42-47, mouth 48-67."""
    p = np.zeros((68, 2))
    p[0:17] = np.stack([np.linspace(10, 90, 17), 70 + 25 * np.sin(np.linspace(0, np.pi, 17))], 1)
    p[17:22] = np.stack([np.linspace(20, 42, 5), np.full(5, 30.0)], 1)
    p[22:27] = np.stack([np.linspace(58, 80, 5), np.full(5, 30.0)], 1)
    p[27:31] = np.stack([np.full(4, 50.0), np.linspace(42, 60, 4)], 1)  # bridge down to the tip (30)
    p[31:36] = np.stack([np.linspace(44, 56, 5), np.full(5, 63.0)], 1)
    p[36:42] = ring(EYE_L)
    p[42:48] = ring(EYE_R)
    p[48:60] = np.stack([np.linspace(MOUTH_L[0], MOUTH_R[0], 12), np.linspace(MOUTH_L[1], MOUTH_R[1], 12)], 1)
    p[54] = MOUTH_R
    p[60:68] = ring((50.5, 80.5), 8, 10.0, 2.0)
    return p


def test_68_points_map_to_eye_centres_nose_tip_mouth_corners():
    np.testing.assert_allclose(to_five_points(face68()), WANT, atol=1e-5)


def test_68_points_in_3d_and_batched():
    p3 = np.concatenate([face68(), np.full((68, 1), 7.0)], 1)  # (x, y, z): z dropped
    out = to_five_points(np.stack([face68(), p3[:, :2] + 10]))
    assert out.shape == (2, 5, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[1], WANT + 10, atol=1e-5)
    np.testing.assert_allclose(to_five_points(p3), WANT, atol=1e-5)


def test_106_points_insightface_layout():
    p = np.random.default_rng(0).uniform(0, 100, (106, 2))
    for idx, point in zip((38, 88, 86, 52, 61), WANT):  # 2d106det: pupils, nose tip, mouth corners
        p[idx] = point
    np.testing.assert_allclose(to_five_points(p), WANT, atol=1e-5)


def test_98_points_wflw_layout():
    p = np.random.default_rng(1).uniform(0, 100, (98, 2))
    for idx, point in zip((96, 97, 54, 76, 82), WANT):
        p[idx] = point
    np.testing.assert_allclose(to_five_points(p), WANT, atol=1e-5)


def test_mapped_points_follow_the_arcface_template_order():
    # a frontal face drawn at the template's own positions maps back onto the template
    t = arcface_template()
    p = np.zeros((68, 2))
    p[36:42], p[42:48], p[30], p[48], p[54] = ring(t[0]), ring(t[1]), t[2], t[3], t[4]
    five = to_five_points(p)
    np.testing.assert_allclose(five, t, atol=1e-4)
    assert five[0, 0] < five[1, 0] and five[3, 0] < five[4, 0]  # image-left eye and mouth corner first


def test_five_points_pass_through():
    np.testing.assert_allclose(to_five_points(WANT), WANT)


def test_unknown_count_and_bad_shape():
    with pytest.raises(DataError, match=r"face.json: no mapping from 21-point landmarks .* 5, 68, 98, 106 points"):
        to_five_points(np.zeros((21, 2)), where="face.json")
    with pytest.raises(DataError, match=r"expected landmarks of shape \(P, 2\) or \(N, P, 2\), got \(68,\)"):
        to_five_points(np.zeros(68))
    assert set(LANDMARK_LAYOUTS.names()) == {"5", "68", "98", "106"}
