"""`data prepare` with the real MTCNN detector on a real photo (scikit-image's astronaut) and composites of it at
known positions, scales and rotations, stored sideways with an EXIF orientation, or as a 16-bit PNG.
Needs the MTCNN weights: `facezoo models fetch mtcnn` (make test does it)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

import facezoo.cli as cli
from facezoo.data.datasets import open_dataset
from facezoo.data.image import encode_image
from facezoo.data.prepare import PrepareOptions
from facezoo.data.prepare.faces import process_photo
from facezoo.sdk.align import arcface_template, warp_affine

# The astronaut's hand-marked landmarks and head region, and the weights fixture (skips without the weights).
from ..sdk.test_mtcnn import FACE_REGION as HEAD
from ..sdk.test_mtcnn import (
    HAND_KPS,
    weights_dir,  # noqa: F401 (a fixture)
)
from .prepare_helpers import similarity

TEMPLATE = arcface_template(112)


@pytest.fixture(scope="module")
def detector(weights_dir):  # noqa: F811
    from facezoo.sdk.detect.mtcnn import MTCNN

    return MTCNN(weights_dir=weights_dir)


@pytest.fixture(scope="module")
def astronaut():
    return pytest.importorskip("skimage.data").astronaut()


def composite(astronaut, transforms, size=(480, 640), seed=0):
    """The astronaut's head pasted by each head -> canvas similarity; (canvas, true landmarks per head)."""
    rng = np.random.default_rng(seed)
    canvas = np.clip(rng.normal(120, 30, (*size, 3)), 0, 255).astype(np.uint8)
    x0, y0, x1, y1 = HEAD
    head = astronaut[y0:y1, x0:x1]
    kps = []
    for T in transforms:
        warped = warp_affine(head, T, size)
        mask = warp_affine(np.full(head.shape[:2], 255, np.uint8), T, size)[..., None] / 255.0
        canvas = np.rint(warped * mask + canvas * (1 - mask)).astype(np.uint8)
        kps.append(np.c_[HAND_KPS - [x0, y0], np.ones(5)] @ T[:2].T)
    return canvas, kps


def png(image) -> bytes:
    return encode_image(image, "png")


def test_landmarks_and_crops_on_composites(detector, astronaut):
    opts = PrepareOptions(detector=detector, min_face=0)
    ref = process_photo(png(astronaut), "astronaut", detector, opts, TEMPLATE)
    assert ref.status == "kept" and np.abs(np.asarray(ref.kps) - HAND_KPS).max() < 4
    for scale, angle, tx, ty in [(0.6, 0, 250, 40), (1.4, 15, 150, 20)]:
        canvas, (kps,) = composite(astronaut, [similarity(scale, angle, tx, ty)], size=(360, 480))
        out = process_photo(png(canvas), "composite", detector, opts, TEMPLATE)
        assert out.status == "kept" and out.faces == 1
        assert np.abs(np.asarray(out.kps) - kps).max() < 5 * max(scale, 1)  # marked by eye: within ~5% of the face
        assert np.abs(out.crop.astype(float) - ref.crop).mean() < 12  # the same aligned face wherever it was


def test_cli_on_real_photos(detector, astronaut, tmp_path, capsys):
    raw = tmp_path / "raw"
    for folder in ("astro", "exif/2019", "deep", "group", "tiny"):  # one photo of the face per identity but astro
        (raw / folder).mkdir(parents=True)
    Image.fromarray(astronaut).save(raw / "astro" / "original.jpg", quality=95)
    Image.fromarray(astronaut).save(raw / "astro" / "q50_copy.jpg", quality=50)
    big, _ = composite(astronaut, [similarity(1.4, 12, 120, 40)], size=(360, 480), seed=1)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90 degrees counter-clockwise: a viewer turns it clockwise
    Image.fromarray(np.rot90(big, 1).copy()).save(raw / "exif" / "2019" / "sideways.jpg", exif=exif, quality=95)
    small, _ = composite(astronaut, [similarity(0.7, 0, 300, 200)], size=(360, 480), seed=2)
    grey16 = (small.astype(np.float64).mean(-1) * 257).astype(np.uint16)
    Image.fromarray(grey16).save(raw / "deep" / "grey16.png")  # a 16-bit PNG: all white if clipped
    two, _ = composite(astronaut, [similarity(0.8, 0, 30, 90), similarity(0.8, 0, 300, 100)], size=(360, 480))
    Image.fromarray(two).save(raw / "group" / "two.png")
    tiny = composite(astronaut, [similarity(0.25, 0, 200, 150)], size=(360, 480), seed=3)[0]
    Image.fromarray(tiny).save(raw / "tiny" / "t.png")
    (raw / "astro" / "notes.txt").write_text("taken at JSC")
    out = tmp_path / "out"
    rc = cli.main(["data", "prepare", str(raw), str(out), "--format", "tfrecord", "--min-face", "32"])
    printed = capsys.readouterr().out
    assert rc == 0 and "kept:        3 images of 3 identities (of 5)" in printed
    with open(out / "report.csv", newline="") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    assert {p: r["status"] for p, r in rows.items()} == {
        "astro/original.jpg": "kept",
        "astro/q50_copy.jpg": "duplicate",
        "exif/2019/sideways.jpg": "kept",  # found only because the EXIF orientation is applied
        "deep/grey16.png": "kept",  # found only because 16-bit samples are scaled, not clipped
        "astro/notes.txt": "not_an_image",
        "group/two.png": "ambiguous",
        "tiny/t.png": "face_too_small",
    }
    assert rows["astro/q50_copy.jpg"]["detail"].startswith("near-duplicate of astro/original.jpg (Hamming")
    ds = open_dataset(out)
    assert len(ds) == 3 and ds.classes == ["astro", "deep", "exif"] and ds[0][0].shape == (112, 112, 3)
    first = ds[0][0].astype(float)
    assert all(np.abs(ds[i][0].astype(float).mean(-1) - first.mean(-1)).mean() < 14 for i in range(3))
