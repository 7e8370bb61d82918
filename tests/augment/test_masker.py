"""Compositing (against its formula in float64 with scipy's Gaussian), the Masker (determinism, probabilities,
landmark layouts, bad input) and the occluders on synthetic faces (where they land)."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from facezoo.augment.blend import SKIN_LUMA, composite
from facezoo.augment.landmarks import FaceLandmarks, face_landmarks
from facezoo.augment.masker import Masker, parse_occluders
from facezoo.augment.occluders import OCCLUDERS, template_to_image
from facezoo.errors import ConfigError, DataError

from .faces import face


def _reference(x, layer, sigma):
    """out = x (1 - a) + clip(255 c (L / L_ref)^0.8 (L_ref / 150)^0.25) a, L = mirror-padded Gaussian of the luma."""
    y = x @ np.array([0.299, 0.587, 0.114])
    r = math.ceil(3 * sigma)
    low = gaussian_filter(y, sigma, mode="mirror", truncate=r / sigma)
    a = layer[..., 3]
    ref = (low * a).sum() / a.sum()
    rel = np.clip(low / max(ref, 1.0), 0.45, 1.6) ** 0.8
    exposure = np.clip(ref / SKIN_LUMA, 0.4, 1.1) ** 0.25
    c = np.clip(255 * layer[..., :3] * (rel * exposure)[..., None], 0, 255)
    return x * (1 - a[..., None]) + c * a[..., None]


def test_composite_follows_its_formula():
    rng = np.random.default_rng(0)
    h, w = 40, 48
    ramp = np.linspace(40, 220, w)[None, :, None] * np.ones((h, 1, 3)) * [1.0, 0.8, 0.7]
    x = ramp + rng.normal(0, 5, (h, w, 3))
    layer = np.zeros((h, w, 4))
    layer[8:32, 6:42] = [0.9, 0.9, 0.95, 1.0]
    layer[8:32, 6:10, 3] = 0.5
    got = composite(torch.from_numpy(x).permute(2, 0, 1)[None], torch.from_numpy(layer).permute(2, 0, 1)[None], 3.0)[
        0
    ].permute(1, 2, 0)
    assert np.allclose(got.numpy(), _reference(x, layer, 3.0), atol=1e-6)
    plain = composite(torch.from_numpy(x).permute(2, 0, 1)[None], torch.from_numpy(layer).permute(2, 0, 1)[None], 3.0,
                      match=False)[0].permute(1, 2, 0).numpy()  # fmt: skip
    a = layer[..., 3:]
    assert np.allclose(plain, x * (1 - a) + 255 * layer[..., :3] * a)
    # the mask inherits the light gradient: darker on the dark side of the face
    assert got[20, 12, 0] < got[20, 24, 0] < got[20, 38, 0]


def test_masker_is_deterministic_from_the_generator():
    _, _, img, five = face(3, 0, 20)
    m = Masker("3d", "procedural", occluders="glasses:0.5")
    a = m(img, five, np.random.default_rng([9, 1]))
    b = m(img, five, np.random.default_rng([9, 1]))
    c = m(img, five, np.random.default_rng([9, 2]))
    assert np.array_equal(a.image, b.image) and a.texture == b.texture and a.occluders == b.occluders
    assert not np.array_equal(a.image, c.image)
    plain = Masker("3d")(img, five, np.random.default_rng(0))  # a mask alone changes exactly where it lies
    changed = np.abs(plain.image.astype(int) - img).sum(-1) > 0
    assert changed[plain.alpha > 0.5].mean() > 0.95 and not changed[plain.alpha == 0].any()


def test_probability_zero_leaves_the_image_alone_and_occluders_hide_the_mask():
    _, _, img, five = face(3, 1)
    r = Masker("2d", p=0.0)(img, five, np.random.default_rng(0))
    assert np.array_equal(r.image, img) and r.texture is None and not r.alpha.any()
    masked = Masker("2d", p=1.0)(img, five, np.random.default_rng(0))
    both = Masker("2d", p=1.0, occluders="hand:1")(img, five, np.random.default_rng(0))
    assert both.occluders == ["hand"] and (both.alpha <= masked.alpha + 1e-6).all()
    assert both.alpha.sum() < masked.alpha.sum()


def test_landmark_layouts_map_to_the_same_five_points():
    _, _, img, five = face(3, 2)
    ref = Masker("3d")(img, five, np.random.default_rng(1)).image
    pts98 = np.zeros((98, 2))
    pts98[[96, 97, 54, 76, 82]] = five
    pts106 = np.zeros((106, 2))
    pts106[[38, 88, 86, 52, 61]] = five
    for pts in (pts98, pts106):
        assert np.allclose(face_landmarks(pts).five, five, atol=1e-4)
        out = Masker("3d")(img, pts, np.random.default_rng(1)).image  # 3-D uses the 5 points only
        assert np.abs(out.astype(int) - ref).max() <= 1
    with pytest.raises(DataError, match="no mapping from 7-point"):
        Masker()(img, np.zeros((7, 2)), np.random.default_rng(0))
    with pytest.raises(DataError, match="NaN"):
        Masker()(img, np.full((5, 2), np.nan), np.random.default_rng(0))
    with pytest.raises(DataError, match="coincide"):
        Masker()(img, np.zeros((5, 2)), np.random.default_rng(0))


def test_option_errors_name_the_fix():
    with pytest.raises(ConfigError, match="Did you mean 'sunglasses'"):
        parse_occluders("sunglass:0.2")
    with pytest.raises(ConfigError, match=r"in \[0, 1\]"):
        parse_occluders("hand:1.5")
    with pytest.raises(ConfigError, match="Did you mean '3d'"):
        Masker("3D")
    assert parse_occluders("glasses, hand:0.25") == {"glasses": 1.0, "hand": 0.25}


def _layer(name, seed, i=0, yaw=0.0):
    _, _, img, five = face(11, i, yaw)
    lm = FaceLandmarks(five)
    return img, five, OCCLUDERS.get(name)(np.random.default_rng(seed), template_to_image(lm), img.shape[:2], img)


def _disc(shape, centre, r):
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (xs - centre[0]) ** 2 + (ys - centre[1]) ** 2 <= r * r


@pytest.mark.parametrize("seed", range(4))
def test_sunglasses_cover_the_eyes_glasses_frame_them_neither_the_mouth(seed):
    img, five, sun = _layer("sunglasses", seed, seed)
    eyes = _disc(img.shape[:2], five[0], 3) | _disc(img.shape[:2], five[1], 3)
    mouth = _disc(img.shape[:2], five[3:].mean(0), 8)
    assert sun[..., 3][eyes].mean() > 0.8 and sun[..., 3][mouth].max() < 0.01
    img, five, gl = _layer("glasses", seed, seed)
    eyes = _disc(img.shape[:2], five[0], 3) | _disc(img.shape[:2], five[1], 3)
    ring = (_disc(img.shape[:2], five[0], 16) | _disc(img.shape[:2], five[1], 16)) & ~eyes
    assert gl[..., 3][eyes].max() < 0.2 and (gl[..., 3][ring] > 0.5).sum() > 30
    assert gl[..., 3][_disc(img.shape[:2], five[3:].mean(0), 8)].max() < 0.01


@pytest.mark.parametrize("seed", range(4))
def test_headband_sits_above_the_brows_and_the_headscarf_frames_the_face(seed):
    img, five, band = _layer("headband", seed, seed)
    rows = np.nonzero((band[..., 3] > 0.5).any(1))[0]
    assert len(rows) and rows.max() < five[:2, 1].min() - 8
    img, five, scarf = _layer("headscarf", seed, seed)
    centre = _disc(img.shape[:2], five[2], 10) | _disc(img.shape[:2], five[3:].mean(0), 6)
    assert scarf[..., 3][centre].max() < 0.01 and scarf[0, 0, 3] == 1 and scarf[0, -1, 3] == 1


def test_hands_take_the_faces_skin_colour_and_erasing_its_area():
    tones = []
    for seed in range(12):
        img, five, hand = _layer("hand", seed, seed)
        m = hand[..., 3] > 0.99
        assert m.sum() > 100
        y, x0, x1 = int(five[2, 1]), int(five[0, 0]), int(five[1, 0])
        cheeks = np.median(img[y - 2 : y + 3, x0:x1].reshape(-1, 3), 0)
        tones.append(np.abs(np.median(hand[m, :3], 0) * 255 - cheeks).max())
    assert np.mean(np.array(tones) < 30) >= 0.7  # a glove (random colour) 15% of the time
    img, five, er = _layer("erase", 0)
    scale = np.linalg.det(template_to_image(FaceLandmarks(five))[:, :2])
    share = (er[..., 3] > 0.5).sum() / (96 * 96 * scale)
    assert 0.015 < share < 0.27
