"""On-device training augmentation: each op against a reference (Pillow's ImageOps / ImageEnhance, scipy's Gaussian,
colorsys, exact rotations), determinism from the generator, the typed data.augment recipe key, exact resume with
augmentation on, and crop_eye recorded in the model and applied at evaluation."""

import colorsys
import math

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageEnhance, ImageOps
from scipy.ndimage import gaussian_filter

from facezoo.augment.base import AUGMENTS, Draws
from facezoo.augment.filters import gaussian_blur
from facezoo.augment.geometric import affine, rotation_about
from facezoo.augment.photometric import hsv_to_rgb, rgb_to_hsv
from facezoo.augment.pipeline import PRESETS, build_pipeline
from facezoo.augment.randaugment import OPS
from facezoo.config import load_config, resolve_augment, save_config
from facezoo.errors import ConfigError
from facezoo.models.checkpoint import load_checkpoint
from facezoo.train.trainer import Trainer

from .conftest import TinyFaces


def batch(n=4, size=33, seed=0):
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(np.cumsum(rng.normal(0, 1, (n, size, size, 3)), 1), 2)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 200 + 20
    return torch.from_numpy(np.clip(smooth + rng.normal(0, 10, smooth.shape), 0, 255).round().astype(np.uint8))


def nchw(images):
    return images.permute(0, 3, 1, 2).float().contiguous()


def pil(x):
    return Image.fromarray(x.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy())


def run(spec, images, seed=0):
    pipe = build_pipeline(resolve_augment(spec), images.shape[1:3], seed=0)
    return pipe(images, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", AUGMENTS.names())
def test_every_op_is_deterministic_from_the_generator_and_keeps_shape_and_range(name):
    images = batch(6, 32)
    spec = [{"name": name, "p": 0.5, **({"bank": 3} if name in ("mask", "occlude") else {})}]
    a, b, c = run(spec, images, 1), run(spec, images, 1), run(spec, images, 2)
    assert a.shape == images.shape and a.dtype == torch.float32 and a.min() >= 0 and a.max() <= 255
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(run([{**spec[0], "p": 0.0}], images, 1), images.float())


def test_grayscale_and_blur_match_their_formulas():
    x = nchw(batch())
    g = AUGMENTS.get("grayscale")
    y = g(g.Options(), (33, 33), 0, 0).apply(x, None)
    expect = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert torch.allclose(y, expect.expand_as(x))
    sigma = torch.tensor([0.7, 1.3, 2.0, 0.0])
    got = gaussian_blur(x.double(), sigma.double(), max_sigma=2.0)
    r = math.ceil(3 * 2.0)
    for i, s in enumerate(sigma.tolist()):
        ref = x[i].double().numpy() if s == 0 else gaussian_filter(x[i].double().numpy(), (0, s, s), mode="mirror",
                                                                  truncate=r / s)  # fmt: skip
        assert np.allclose(got[i].numpy(), ref, atol=1e-6 if s else 0)


def test_hsv_conversions_match_colorsys_and_zero_jitter_is_identity():
    rng = np.random.default_rng(0)
    px = rng.uniform(0, 1, (200, 3))
    ours = rgb_to_hsv(torch.from_numpy(px).T.reshape(1, 3, 200, 1).double())[0, :, :, 0].T.numpy()
    ref = np.array([colorsys.rgb_to_hsv(*p) for p in px])
    assert np.allclose(ours, ref, atol=1e-12)
    back = hsv_to_rgb(torch.from_numpy(ref).T.reshape(1, 3, 200, 1).double())[0, :, :, 0].T.numpy()
    assert np.allclose(back, px, atol=1e-12)
    images = batch()
    same = run([{"name": "hsv", "p": 1.0, "hue": 0.0, "saturation": 0.0, "value": 0.0}], images)
    assert torch.allclose(same, images.float(), atol=1e-3)


def test_rotations_by_quarter_turns_are_exact_and_translation_shifts():
    x = nchw(batch(2, 33))
    quarter = affine(x, rotation_about(torch.full((2,), math.pi / 2), 16.0, 16.0))
    assert any(torch.allclose(quarter, torch.rot90(x, k, (2, 3)), atol=1e-3) for k in (1, -1))
    half = affine(x, rotation_about(torch.full((2,), math.pi), 16.0, 16.0))
    assert torch.allclose(half, torch.rot90(x, 2, (2, 3)), atol=1e-3)
    shifted = OPS["translate_x"][0](x, torch.full((2,), 3.0 / 33))
    assert torch.allclose(shifted[..., 3:], x[..., :-3], atol=1e-3) and (shifted[..., :3] == 0).all()


@pytest.mark.parametrize("name", ["posterize", "solarize", "autocontrast", "equalize"])
def test_randaugment_pixel_ops_match_pillow(name):
    x = nchw(batch(3)).double()
    value = {"posterize": torch.full((3,), 7.0), "solarize": torch.full((3,), 178.5)}.get(name)
    value = value.double() if value is not None else None
    got = OPS[name][0](x, value)
    reference = {
        "posterize": lambda im: ImageOps.posterize(im, 7),
        "solarize": lambda im: ImageOps.solarize(im, 178.5),
        "autocontrast": ImageOps.autocontrast,
        "equalize": ImageOps.equalize,
    }[name]
    for i in range(3):
        ref = reference(pil(x[i]))
        ours = got[i].permute(1, 2, 0).numpy()
        # Pillow's autocontrast truncates int(i * scale - lo * scale), which float error can put just below an
        # integer: one level
        tol = 1 if name == "autocontrast" else 0
        ours = np.floor(ours + 1e-6) if name == "autocontrast" else ours
        assert np.abs(ours - np.asarray(ref, float)).max() <= tol, name


@pytest.mark.parametrize(("name", "enhancer"), [("brightness", ImageEnhance.Brightness), ("color", ImageEnhance.Color),
                                                ("contrast", ImageEnhance.Contrast),
                                                ("sharpness", ImageEnhance.Sharpness)])  # fmt: skip
def test_randaugment_enhancements_match_pillow(name, enhancer):
    x = nchw(batch(2))
    for v in (-0.27, 0.27):
        got = OPS[name][0](x, torch.full((2,), v))
        for i in range(2):
            ref = np.asarray(enhancer(pil(x[i])).enhance(1 + v), float)
            ours = got[i].permute(1, 2, 0).numpy()
            inner = (slice(1, -1), slice(1, -1))  # Pillow's 3x3 smoothing leaves the border as it was
            assert np.abs(ours[inner] - ref[inner]).max() <= 2.01, (name, v)  # Pillow's integer grey and rounding


def test_downscale_removes_what_the_small_size_cannot_hold():
    checker = torch.zeros(2, 112, 112, 3, dtype=torch.uint8)
    checker[:, ::2, ::2] = checker[:, 1::2, 1::2] = 255
    low = run([{"name": "downscale", "p": 1.0, "size": [56, 60]}], checker)
    assert low.var() < 0.05 * checker.float().var()
    smooth = torch.from_numpy(np.tile(np.linspace(0, 255, 112), (2, 112, 1))[..., None].repeat(3, -1)).to(torch.uint8)
    assert (run([{"name": "downscale", "p": 1.0}], smooth) - smooth.float()).abs().max() < 3
    same = run([{"name": "downscale", "p": 1.0, "size": [112, 112]}], checker)
    assert torch.allclose(same, checker.float(), atol=0.05)  # grid_sample's float32 coordinates, 255 per pixel


def test_facex_crop_resizes_a_cut_of_integer_borders_back():
    ramp = torch.from_numpy(np.tile(np.arange(112.0), (8, 112, 1))[..., None].repeat(3, -1)).to(torch.uint8)
    out = run([{"name": "crop", "p": 1.0, "max_px": 9}], ramp)[:, 56, :, 0].double()  # one row: a ramp again
    xs = torch.arange(112.0, dtype=torch.float64)
    for row in out[:, 2:-2]:  # skip the border taps
        slope, offset = np.polyfit(xs[2:-2].numpy(), row.numpy(), 1)
        x1 = offset - 0.5 * slope + 0.5  # out(x) = x1 + (x + 0.5) (x2 - x1) / 112 - 0.5
        x2 = x1 + slope * 112
        assert abs(x1 - round(x1)) < 0.02 and 0 <= round(x1) < 9 and abs(x2 - round(x2)) < 0.05
        assert 103 <= round(x2) <= 111


def test_random_erasing_covers_its_share_of_the_image():
    images = torch.full((32, 40, 40, 3), 100, dtype=torch.uint8)
    out = run([{"name": "erase", "p": 1.0, "value": "zero", "scale": [0.1, 0.2]}], images)
    share = (out[..., 0] == 0).float().mean((1, 2))
    assert ((share > 0.07) & (share < 0.23)).all()
    assert ((out == 0) | (out == 100)).all()


def test_mask_op_covers_the_lower_face_of_aligned_crops_only():
    images = torch.full((8, 112, 112, 3), 150, dtype=torch.uint8)
    out = run([{"name": "mask", "p": 1.0, "bank": 6, "texture": "surgical_black"}], images)
    changed = (out - 150).abs().sum(-1) > 30
    nose_mouth = changed[:, 78:95, 45:67].float().mean()  # below the nose tip (71.7) to the mouth (92.3)
    eyes = changed[:, 46:57, 30:82].float().mean()  # the eye line (51.6)
    assert nose_mouth > 0.95 and eyes < 0.01


def test_the_recipe_key_is_typed_expanded_and_round_trips(tmp_path):
    cfg = load_config(None, ["data.augment=[arcface_torch, {name: mask, p: 0.3, method: 2d}]"])
    assert [o.name for o in cfg.data.augment] == [op["name"] for op in PRESETS["arcface_torch"]] + ["mask"]
    assert cfg.data.augment[0].size == [56, 90] and cfg.data.augment[-1].method == "2d"
    save_config(cfg, tmp_path / "c.yaml")
    saved = yaml.safe_load((tmp_path / "c.yaml").read_text())["data"]["augment"]
    assert saved[-1] == {**saved[-1], "name": "mask", "p": 0.3, "method": "2d"}
    assert load_config(tmp_path / "c.yaml").data.augment == cfg.data.augment
    assert load_config(None, ["data.augment=facex_zoo"]).data.augment[2].degrees == 10.0
    for bad, match in (
        ("[{name: bluur}]", "unknown augmentation 'bluur'. Did you mean 'blur'"),
        ("arcface_torc", "Did you mean 'arcface_torch'"),
        ("[{name: hsv, hue: 0.9}]", r"hue must be in \[0, 0.5\]"),
        ("[{name: rotate, degres: 5}]", "unknown config key 'data.augment\\[0\\].degres'. Did you mean"),
        ("[{name: mask, method: 4d}]", r"'4d' is not one of \['2d', '3d'\]"),
        ("[{name: grayscale, p: 1.5}]", r"p: a probability in \[0, 1\]"),
        ("[{p: 0.5}]", "expected a preset name or a mapping"),
    ):
        with pytest.raises(ConfigError, match=match):
            load_config(None, [f"data.augment={bad}"])


def test_the_pipeline_takes_only_validated_options():
    with pytest.raises(ConfigError, match="untyped entries"):
        build_pipeline([{"name": "blur"}], (32, 32))
    assert build_pipeline([], (32, 32)) is None


def test_draws_come_from_the_given_generator_only():
    torch.manual_seed(0)
    d = Draws(torch.Generator().manual_seed(3), 5, "cpu")
    first = (d.uniform(0, 1), d.integers(0, 10), d.sign())
    torch.manual_seed(123)  # the global RNG has no say
    d = Draws(torch.Generator().manual_seed(3), 5, "cpu")
    assert all(torch.equal(a, b) for a, b in zip(first, (d.uniform(0, 1), d.integers(0, 10), d.sign())))


# every kind of draw: per-sample coins and parameters, host-side choices (the bank), device noise (erasing)
AUGMENT = "data.augment=[arcface_torch, erasing, {name: mask, p: 0.5, bank: 3}, {name: occlude, p: 0.3, bank: 3}]"


def losses(history):
    return [row["train/loss"] for row in history if "train/loss" in row]


@pytest.mark.slow
def test_training_with_augmentation_resumes_exactly(tiny_cfg, tmp_path):
    full = losses(Trainer(tiny_cfg(f"output={tmp_path}/a", AUGMENT), dataset=TinyFaces()).fit())
    plain = losses(Trainer(tiny_cfg(f"output={tmp_path}/p", "epochs=1"), dataset=TinyFaces()).fit())
    assert full[: len(plain)] != plain  # the augmentation is on
    part = Trainer(tiny_cfg(f"output={tmp_path}/b", AUGMENT), dataset=TinyFaces())
    head = losses(part.fit(max_steps=4))
    resumed = Trainer(tiny_cfg(f"output={tmp_path}/b", AUGMENT), dataset=TinyFaces())
    resumed.resume(tmp_path / "b" / "checkpoint.pt")
    assert head + losses(resumed.fit()) == full


def test_prepare_applies_the_augmentation_per_step_and_rank(tiny_cfg, tmp_path):
    t = Trainer(tiny_cfg(f"output={tmp_path}/a", "data.augment=[{name: grayscale, p: 1.0}]", "data.flip=false"),
                dataset=TinyFaces(), verbose=False)  # fmt: skip
    images = torch.from_numpy(np.stack([TinyFaces()[i][0] for i in range(4)]))
    x, _ = t.ctx.prepare({"images": images, "labels": torch.zeros(4, dtype=torch.long)}, torch.Generator())
    assert torch.allclose(x[:, 0], x[:, 1]) and torch.allclose(x[:, 1], x[:, 2])


def test_crop_eye_trains_on_the_upper_face_and_evaluation_applies_it(tiny_cfg, tmp_path):
    import facezoo

    t = Trainer(tiny_cfg(f"output={tmp_path}/a", "model.crop_eye=true", "epochs=1"), dataset=TinyFaces())
    t.fit()
    assert t.backbone.input_size == (17, 32)  # round(60 x 32 / 112) rows of the 32-row crop
    meta = load_checkpoint(tmp_path / "a" / "model.pt")["meta"]
    assert meta["crop_eye"] is True and tuple(meta["input_size"]) == (32, 32)
    model = facezoo.load_model(tmp_path / "a" / "model.pt", device="cpu")  # full 32x32 aligned crops go in
    images = np.stack([TinyFaces()[i][0] for i in range(3)])
    got = model(images)
    top = torch.from_numpy(images[:, :17]).permute(0, 3, 1, 2).float().sub(127.5).div(127.5)
    with torch.no_grad():
        assert np.allclose(got, model.module.backbone(top).float().numpy(), atol=1e-5)
    changed = images.copy()
    changed[:, 17:] = 0  # below the kept rows: no effect
    assert np.allclose(model(changed), got, atol=1e-5)
