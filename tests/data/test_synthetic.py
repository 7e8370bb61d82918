"""The synthetic-identity generator: determinism, identity vs nuisance, and the files synthesize() writes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from facezoo.data import synthetic as syn
from facezoo.data.image import decode_image
from facezoo.data.synthetic import write
from facezoo.data.synthetic.face import TAG_PAIRS
from facezoo.errors import ConfigError
from facezoo.geometry import ARCFACE_TEMPLATE_112


def _identity(i: int, seed: int = 0) -> syn.IdentityParams:
    return syn.sample_identity(syn.identity_rng(seed, i))


def test_identity_depends_only_on_seed_and_index():
    assert _identity(7) == _identity(7)
    assert _identity(7) != _identity(8)
    assert _identity(7, seed=1) != _identity(7)
    # image and identity streams never share a state (SeedSequence ignores trailing zeros, tags keep them apart)
    assert syn.identity_rng(0, 3).random() != syn.image_rng(0, 3, 0).random()


def test_render_is_deterministic_and_seed_dependent():
    p = _identity(3)
    a = syn.render_face(p, syn.image_rng(0, 3, 2))
    b = syn.render_face(p, syn.image_rng(0, 3, 2))
    c = syn.render_face(p, syn.image_rng(1, 3, 2))
    assert a.dtype == np.uint8 and a.shape == (112, 112, 3)
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c).mean() > 5
    assert syn.render_face(p, syn.image_rng(0, 3, 2), image_size=64).shape == (64, 64, 3)


def test_canonical_view_is_identity_only():
    """nuisance=0: every image of an identity is the same array; different identities clearly differ."""
    views = [syn.render_face(_identity(i), syn.image_rng(0, i, j), nuisance=0.0) for i in range(4) for j in range(2)]
    for i in range(4):
        assert np.array_equal(views[2 * i], views[2 * i + 1])
    for i in range(4):
        for k in range(i + 1, 4):
            assert np.abs(views[2 * i].astype(int) - views[2 * k]).mean() > 4


def test_nuisance_scale_zero_is_canonical_and_one_is_not():
    rng = np.random.default_rng(0)
    n0 = syn.sample_nuisance(rng, 0.0)
    assert (n0.yaw, n0.pitch, n0.roll, n0.smile, n0.mouth_open, n0.noise, n0.light) == (0,) * 7
    assert n0.eye_open == 1 and n0.occlusion == "" and n0.gains == (1.0, 1.0, 1.0) and n0.clutter == 0
    yaws = [syn.sample_nuisance(np.random.default_rng(s)).yaw for s in range(200)]
    assert 0.15 < np.std(yaws) < 0.5  # ~20 degrees of yaw spread, in radians


def test_hard_and_frontal_modes():
    deg = math.pi / 180
    for s in range(100):
        f = syn.sample_nuisance(np.random.default_rng([s, 1]), mode="frontal")
        h = syn.sample_nuisance(np.random.default_rng([s, 2]), mode="hard")
        assert abs(f.yaw) <= 10 * deg + 1e-9 and f.occlusion == ""
        assert 35 * deg - 1e-9 <= abs(h.yaw) <= 55 * deg + 1e-9


def test_canonical_faces_are_aligned_to_the_template():
    """Eyes land near the ArcFace template's (38.3, 51.7) / (73.5, 51.5): centroid of the white sclera pixels."""
    errors = []
    for i in range(8):
        img = syn.render_face(_identity(i), syn.image_rng(0, i, 0), nuisance=0.0).astype(int)
        white = (img.min(-1) > 200) & (np.ptp(img, -1) < 30)
        for ex, ey in ARCFACE_TEMPLATE_112[:2]:
            x0, y0 = round(ex) - 12, round(ey) - 10
            ys, xs = np.nonzero(white[y0 : y0 + 22, x0 : x0 + 25])
            assert len(xs) >= 3, f"identity {i}: no eye near ({ex:.0f}, {ey:.0f})"
            errors.append((x0 + xs.mean() - ex, y0 + ys.mean() - ey))
    errors = np.array(errors)
    assert np.abs(errors).max() < 7  # identity proportions differ, so the 5-point fit is not exact
    assert np.abs(errors.mean(0)).max() < 3


def _sample(n_ids: int, n_img: int) -> tuple[np.ndarray, np.ndarray]:
    x = [syn.render_face(_identity(i), syn.image_rng(0, i, j)) for i in range(n_ids) for j in range(n_img)]
    return np.stack(x).astype(np.float32), np.repeat(np.arange(n_ids), n_img)


def _rank1(features: np.ndarray, labels: np.ndarray) -> float:
    d = ((features[:, None] - features[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float((labels[d.argmin(1)] == labels).mean())


def test_colour_and_pixels_alone_do_not_identify():
    """Per-image nuisance dominates global statistics: mean-RGB nearest neighbour is near chance."""
    x, y = _sample(20, 6)
    assert _rank1(x.mean((1, 2)), y) < 0.3  # chance is 5/119 ~ 0.04
    flat = x.reshape(len(x), -1)
    d = np.sqrt(((flat[:, None] - flat[None]) ** 2).mean(-1))
    same = (y[:, None] == y[None]) & ~np.eye(len(y), dtype=bool)
    assert d[same].mean() > 0.75 * d[y[:, None] != y[None]].mean()
    # yet the nuisance is not total: images of one identity are still closer on average than strangers' images
    assert d[same].mean() < d[y[:, None] != y[None]].mean()


def test_contact_sheet_layout():
    sheet = syn.contact_sheet(seed=0, identities=2, images=3, image_size=48)
    assert sheet.shape == (96, 144, 3) and sheet.dtype == np.uint8
    canon = syn.render_face(_identity(1), syn.image_rng(0, 1, 5), image_size=48, nuisance=0.0)
    assert np.array_equal(sheet[48:, :48], canon)


def test_pairs_are_balanced_per_fold_and_held_out():
    pairs = write._pairs(np.random.default_rng(0), first=50, n_ids=20, per_id=4, n_pairs=200, hard=False)
    same = np.array([s for *_, s in pairs])
    assert same.sum() == 100
    assert all(fold.sum() == 10 for fold in same.reshape(10, 20))
    for (ia, ka, kind_a), (ib, kb, kind_b), s in pairs:
        assert 50 <= ia < 70 and 50 <= ib < 70 and kind_a == kind_b == "normal"
        assert (ia == ib) == s
        assert not s or ka != kb
    hard = write._pairs(np.random.default_rng(0), first=50, n_ids=20, per_id=4, n_pairs=40, hard=True)
    assert {(a[2], b[2]) for a, b, _ in hard} == {("frontal", "hard")}


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = syn.synthesize(
        out, identities=5, images_per_identity=3, seed=4, val_identities=4, image_size=64, val_pairs=49, workers=1
    )
    return out, summary


def test_synthesize_writes_training_set(synth_dir):
    from facezoo.data.recordio import RecordDataset

    out, summary = synth_dir
    assert summary["train_images"] == 15 and summary["val_pairs"] == 40
    ds = RecordDataset(out / "train")
    assert len(ds) == 15 and ds.num_classes == 5
    assert sorted(ds.labels.tolist()) == sorted([i for i in range(5) for _ in range(3)])
    image, label = ds[0]
    assert image.shape == (64, 64, 3)
    # any image regenerates alone from (seed, identity, index); the pack keeps images in (label, index) order
    assert label == 0 and ds.read_encoded(0) == write._job((4, 0, 0, 64, "normal"))
    assert ds.read_encoded(14) == write._job((4, 4, 2, 64, "normal"))
    meta = json.loads((out / "synth.json").read_text())
    assert meta["seed"] == 4 and meta["identities"] == 5 and meta["image_size"] == 64
    assert meta["generator_version"] == syn.GENERATOR_VERSION and meta["val_identity_range"] == [5, 9]


def test_synthesize_writes_verification_sets_of_held_out_identities(synth_dir):
    from facezoo.data.verification_bin import read_bin

    out, _ = synth_dir
    for name, hard in (("synth_ver.bin", False), ("synth_hard.bin", True)):
        images, issame = read_bin(out / name)
        assert len(issame) == 40 and len(images) == 80
        assert all(fold.sum() == 2 for fold in issame.reshape(10, 4))
        looks = np.array([write._looks(_identity(5 + v, seed=4)) for v in range(4)])
        plan = write._pairs(np.random.default_rng([4, TAG_PAIRS, int(hard)]), 5, 4, 3, 40, hard, looks)
        assert all(a[0] >= 5 and b[0] >= 5 for a, b, _ in plan)  # identities after the training ones
        assert [s for *_, s in plan] == issame.tolist()
        a, b, _ = plan[1]
        assert images[2] == write._job((4, a[0], a[1], 64, a[2])) and images[3] == write._job((4, b[0], b[1], 64, b[2]))
        assert decode_image(images[0]).shape == (64, 64, 3)


def test_worker_count_does_not_change_bytes(tmp_path, synth_dir):
    out1, _ = synth_dir
    syn.synthesize(
        tmp_path, identities=5, images_per_identity=3, seed=4, val_identities=4, image_size=64, val_pairs=49, workers=2
    )
    for name in ("train/train.rec", "train/train.idx", "synth_ver.bin", "synth_hard.bin"):
        assert (tmp_path / name).read_bytes() == (out1 / name).read_bytes(), name


def test_different_seed_gives_different_data(tmp_path, synth_dir):
    out1, _ = synth_dir
    syn.synthesize(
        tmp_path, identities=5, images_per_identity=3, seed=5, val_identities=4, image_size=64, val_pairs=0, workers=1
    )
    assert (tmp_path / "train/train.rec").read_bytes() != (out1 / "train/train.rec").read_bytes()
    assert not (tmp_path / "synth_ver.bin").exists()


@pytest.mark.parametrize(
    "kw", [{"identities": 0}, {"images_per_identity": -1}, {"val_pairs": 10}, {"val_identities": 1}]
)
def test_bad_arguments_are_config_errors(tmp_path, kw):
    args = {"identities": 3, "images_per_identity": 2, "val_pairs": 20, "workers": 1} | kw
    with pytest.raises(ConfigError):
        syn.synthesize(tmp_path, **args)


def test_hard_impostors_look_alike():
    looks = np.random.default_rng(1).normal(size=(30, 7))

    def impostor_distance(lk):
        pairs = write._pairs(np.random.default_rng(0), 0, 30, 4, 400, True, lk)
        return np.mean([np.linalg.norm(looks[a[0]] - looks[b[0]]) for a, b, s in pairs if not s])

    assert impostor_distance(looks) < 0.8 * impostor_distance(None)
