"""Mask textures: the procedural ones, user images with alpha, spec parsing, and the mix's probabilities over many
draws (a chi-square test, with a deliberately wrong expectation to show it has power)."""

import numpy as np
import pytest
from PIL import Image
from scipy.stats import chisquare

from facezoo.augment.textures import MIXES, SURGICAL_COLOURS, TEX_HW, TEXTURES, parse_textures, sample_texture
from facezoo.errors import ConfigError


@pytest.mark.parametrize("name", TEXTURES.names())
def test_each_procedural_texture_is_rgba_in_range_and_seeded(name):
    a = TEXTURES.get(name)(rng=np.random.default_rng(3))
    b = TEXTURES.get(name)(rng=np.random.default_rng(3))
    c = TEXTURES.get(name)(rng=np.random.default_rng(4))
    assert a.shape == (*TEX_HW, 4) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("colour", sorted(SURGICAL_COLOURS))
def test_surgical_masks_have_their_colour(colour):
    tex = TEXTURES.get(f"surgical_{colour}")(rng=np.random.default_rng(0))
    mean = tex[..., :3].reshape(-1, 3).mean(0)
    assert np.abs(mean - np.array(SURGICAL_COLOURS[colour])).max() < 0.08
    assert (tex[..., 3] == 1).all()


def test_kn95_has_its_pointed_outline():
    a = TEXTURES.get("kn95")(rng=np.random.default_rng(0))[..., 3]
    h, w = a.shape
    assert a[h // 2, w // 2] == 1 and a[3, w // 2] == 1  # the nose point reaches the top edge
    assert a[1, 2] == 0 and a[h - 2, 2] == 0  # the corners are cut away
    assert 0.6 < a.mean() < 0.9


def test_user_images_with_their_alpha_or_a_separate_one(tmp_path):
    rgba = np.zeros((20, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[5:15, 10:30, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "m.png")
    Image.fromarray(np.full((20, 40, 3), 90, np.uint8)).save(tmp_path / "f.jpg")
    alpha = np.zeros((10, 20), np.uint8)
    alpha[:, :10] = 255
    Image.fromarray(alpha).save(tmp_path / "a.png")
    mix = parse_textures(f"{tmp_path / 'm.png'}:0.5,{tmp_path / 'f.jpg'}+{tmp_path / 'a.png'}:0.5")
    t1 = mix.sources[0](rng=None)
    assert t1.shape == (20, 40, 4) and t1[10, 20, 3] == 1 and t1[0, 0, 3] == 0
    assert t1[10, 20, 0] == pytest.approx(200 / 255)
    t2 = mix.sources[1](rng=None)
    assert t2.shape == (20, 40, 4) and t2[5, 5, 3] == 1 and t2[5, 35, 3] == 0  # the alpha resized to the image
    uv = np.array([[0.5, 0.5], [0.0, 0.0]])
    assert np.allclose(sample_texture(t1, uv)[:, 3], [1, 0])


def test_spec_strings():
    mix = parse_textures(None)
    assert mix.names == list(MIXES["insightface"]) and np.allclose(mix.probs, [0.4, 0.4, 0.1, 0.1])
    mix = parse_textures("surgical_white:0.5,cloth,kn95")
    assert np.allclose(mix.probs, [0.5, 0.25, 0.25])
    assert np.allclose(parse_textures("cloth:2,kn95:6").probs, [0.25, 0.75])
    with pytest.raises(ConfigError, match="Did you mean 'surgical_blue'"):
        parse_textures("surgical_blu")
    with pytest.raises(ConfigError, match="must be a number >= 0"):
        parse_textures("cloth:-1")
    with pytest.raises(ConfigError, match="sum to 0"):
        parse_textures("cloth:0")


def test_the_insightface_mix_is_drawn_with_its_probabilities():
    mix = parse_textures("insightface")
    rng = np.random.default_rng(123)
    n = 20000
    counts = np.bincount([mix.choose(rng) for _ in range(n)], minlength=4)
    assert chisquare(counts, n * np.array([0.4, 0.4, 0.1, 0.1])).pvalue > 1e-3
    assert chisquare(counts, n * np.array([0.37, 0.43, 0.1, 0.1])).pvalue < 1e-6  # the test notices 3% off
