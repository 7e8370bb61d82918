"""dlib_resnet with MTCNN and dlib_mmod on real photos: the same person across flips, rescales, crops and rotations
stays far closer than different people; named models work in the API, the CLI, export, eval and the server.
Photos: scikit-image's astronaut and camera, insightface's wheel (t1.jpg group of six, a 112x112 face)."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

import facezoo
from facezoo.cli import main
from facezoo.models.dlib.convert import DEFAULT_COSINE
from facezoo.sdk.dlib_chip import face_chip
from facezoo.sdk.pipeline import FaceAnalyzer


def variants(im, small: bool = True) -> dict:
    """The same photo flipped, rescaled, cropped and rotated (PIL bilinear)."""
    p = Image.fromarray(im)
    w, h = p.size
    out = {
        "flip": np.ascontiguousarray(im[:, ::-1]),
        "big": np.array(p.resize((w * 3 // 2, h * 3 // 2), Image.BILINEAR)),
        "crop": np.ascontiguousarray(im[h // 12 :, w // 12 :]),
        "rot15": np.array(p.rotate(15, resample=Image.BILINEAR)),
    }
    if small:  # faces below dlib's 80 px window need upsample for dlib_mmod
        out["small"] = np.array(p.resize((w * 3 // 5, h * 3 // 5), Image.BILINEAR))
    return out


@pytest.fixture(scope="module", params=["mtcnn", "dlib_mmod"])
def analyzer(request, dlib_dir):
    if request.param == "mtcnn":
        from facezoo.models.fetch import is_present

        if not is_present("mtcnn"):
            pytest.skip("run `facezoo models fetch mtcnn`")
    return FaceAnalyzer(request.param, "dlib_resnet", device="cpu")


def head(photos):
    """The astronaut's head and shoulders (240x210): small enough for dlib's CNN to be quick."""
    return np.ascontiguousarray(photos["astronaut"][30:240, 120:360])


def embed(fa, im):
    faces = fa.analyze(im, max_faces=1)
    assert faces, "no face found"
    return faces[0].embedding


def test_same_person_far_closer_than_different_people(analyzer, photos):
    dlib_det = type(analyzer.detector).__name__ == "DlibMMOD"
    people = {"astronaut": head(photos), "hanks": photos["hanks"]}
    same = []
    for im in people.values():
        ref = embed(analyzer, im)
        for v in variants(im, small=not dlib_det).values():
            same.append(np.linalg.norm(embed(analyzer, v) - ref))
    others = [f.embedding for f in analyzer.analyze(np.ascontiguousarray(photos["t1"][100:500, 0:640]))]
    assert len(others) == 3  # the three faces of that part of the group photo
    others += [embed(analyzer, photos["camera"])]
    refs = [embed(analyzer, im) for im in people.values()]
    everyone = refs + others
    different = [np.linalg.norm(a - b) for i, a in enumerate(everyone) for b in everyone[:i]]
    # dlib's rule (Euclidean < 0.6) holds with a wide margin on both sides
    assert max(same) < 0.3 < 0.55 < min(different), (max(same), min(different))
    assert max(same) * 2 < min(different)


def test_chips_from_facezoo_points_frame_the_face_as_dlib(dlib_dir, dlib, photos):
    """The documented template: an MTCNN / sp68-based chip and dlib's own sp5 chip of a face give close descriptors
    (closer than any two people above)."""
    img = photos["astronaut"]
    sp5 = dlib.shape_predictor(str(dlib_dir / "shape_predictor_5_face_landmarks.dat"))
    shape = sp5(img, dlib.rectangle(178, 75, 272, 187))
    dlib_chip = face_chip(img, np.array([[p.x, p.y] for p in shape.parts()]))
    model = facezoo.load_model("dlib_resnet")
    ref = model(dlib_chip[None])[0]
    fa = FaceAnalyzer("dlib_mmod", "dlib_resnet", device="cpu")
    face = fa.analyze(head(photos), max_faces=1)[0]
    assert face.crop.shape == (150, 150, 3)
    assert np.linalg.norm(face.embedding - ref) < 0.2


def test_named_model_metadata_and_default_operating_point(dlib_dir):
    model = facezoo.load_model("dlib_resnet")
    meta = model.meta
    assert meta.backbone == "dlib_resnet" and meta.input_size == (150, 150) and meta.embedding_size == 128
    assert meta.backbone_kwargs == {} and meta.std == 256.0
    assert list(meta.mean) == pytest.approx([122.782, 117.001, 104.298]) and meta.channel_order == "RGB"
    # dlib's rule d < 0.6 for descriptors of norm 1.45: cos = 1 - 0.36 / (2 * 1.45^2)
    assert meta.thresholds["default"] == pytest.approx(1 - 0.36 / (2 * 1.45**2))
    from facezoo.models.zoo import resolve

    assert resolve("dlib_resnet").resolve() == (dlib_dir / "dlib_resnet.pt").resolve()


def png(im) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, format="PNG")
    return buf.getvalue()


def test_cli_verify_with_named_model_and_both_detectors(dlib_dir, photos, tmp_path, capsys):
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    astronaut = head(photos)
    a.write_bytes(png(astronaut))
    b.write_bytes(png(variants(astronaut)["rot15"]))
    c.write_bytes(png(photos["camera"]))
    assert main(["verify", str(a), str(b), "--model", "dlib_resnet", "--detector", "dlib_mmod", "--device", "cpu"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["same"] is True and r["threshold"] == pytest.approx(DEFAULT_COSINE) and r["far"] is None
    assert main(["verify", str(a), str(c), "--model", "dlib_resnet", "--device", "cpu"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["same"] is False and r["similarity"] < DEFAULT_COSINE


def test_server_verify_uses_the_default_operating_point(dlib_dir, photos, tmp_path):
    from facezoo.sdk.gallery import Gallery
    from facezoo.sdk.server import FaceService

    fa = FaceAnalyzer("dlib_mmod", "dlib_resnet", device="cpu")
    astronaut = head(photos)
    body = {
        "image1": base64.b64encode(png(astronaut)).decode(),
        "image2": base64.b64encode(png(astronaut[:, ::-1].copy())).decode(),
    }
    with Gallery.open(tmp_path / "g.db") as g:
        r = FaceService(fa, g).verify(body)
    assert r["same"] is True and r["threshold"] == pytest.approx(DEFAULT_COSINE)


@pytest.mark.slow
def test_export_onnx_and_eval_bin_with_the_named_model(dlib_dir, photos, tmp_path, capsys):
    """`facezoo export dlib_resnet --onnx` matches torch on real chips; `facezoo eval dlib_resnet --bin` on a .bin
    of real chips (each person against a variant of themselves, and against the others) is right on every pair."""
    from facezoo.data.verification_bin import write_bin

    fa = FaceAnalyzer("mtcnn", "dlib_resnet", device="cpu")
    people = [photos["astronaut"], photos["hanks"], photos["camera"]]
    people += [np.ascontiguousarray(photos["t1"][100:500, 0:640])]
    chips = [(f.crop, np.ascontiguousarray(f.crop[:, ::-1])) for im in people for f in fa.analyze(im)]  # + mirrored
    images, issame = [], []
    for i, (a, a2) in enumerate(chips):
        images += [png(a), png(a2)]
        issame.append(True)
        b = chips[(i + 1) % len(chips)][0]
        images += [png(a), png(b)]
        issame.append(False)
    bin_path = tmp_path / "real.bin"
    write_bin(bin_path, images, issame)
    out = tmp_path / "dlib_resnet.onnx"
    assert main(["export", "dlib_resnet", "--onnx", str(out)]) == 0
    onnx_rec, torch_rec = facezoo.load_model(str(out), "cpu"), facezoo.load_model("dlib_resnet", "cpu")
    batch = np.stack([c[0] for c in chips])
    assert np.abs(onnx_rec(batch) - torch_rec(batch)).max() < 1e-4
    capsys.readouterr()
    assert main(["eval", "dlib_resnet", "--bin", str(bin_path), "--nfolds", "2", "--no-cache", "--device", "cpu"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| dlib_resnet"))
    assert row.split("|")[2].strip() == "100.00"  # every pair right (accuracy in percent)
