"""The SDK commands end to end through facezoo.cli.main: detect, align, embed, verify, identify, gallery and
calibrate, with a fixed-answer detector registered for the test (spec "fixedtest:answers.json") and a real tiny
facezoo model; error lines for a missing file, an undecodable image and no face."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facezoo import load_model
from facezoo.cli import main
from facezoo.data.image import encode_image
from facezoo.data.verification_bin import write_bin
from facezoo.models.checkpoint import load_checkpoint, save_checkpoint
from facezoo.models.embedder import ARCFACE_TEMPLATE_112, ModelMeta
from facezoo.sdk.align import align_face
from facezoo.sdk.detect.base import DETECTORS, Detections, Detector
from facezoo.sdk.thresholds import calibrate_thresholds

META = ModelMeta(backbone="ir18", backbone_kwargs={"width": 0.25}, embedding_size=32, input_size=(64, 64))
KPS = np.asarray(ARCFACE_TEMPLATE_112, np.float32)


class FixedTest(Detector):
    """The faces listed in a JSON file, for every image that is not all black."""

    def __init__(self, answers):
        d = json.loads(Path(answers).read_text())
        self.det = Detections(
            np.asarray(d["boxes"], np.float32), np.asarray(d["scores"], np.float32), np.asarray(d["kps"], np.float32)
        )

    def detect(self, image, max_faces=None):
        return self.det if np.asarray(image).any() else Detections.empty()


if "fixedtest" not in DETECTORS:
    DETECTORS.register("fixedtest")(FixedTest)


def face_like(seed, size=160):
    low = np.random.default_rng(seed).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(low).resize((size, size), Image.BILINEAR))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_sdk")
    torch.manual_seed(0)
    save_checkpoint(root / "tiny.pt", META, META.build_backbone().state_dict())
    kps = [(KPS + 20).tolist(), (KPS * 0.5 + 5).tolist()]
    (root / "answers.json").write_text(
        json.dumps({"boxes": [[20, 20, 132, 132], [5, 5, 61, 61]], "scores": [0.95, 0.7], "kps": kps})
    )
    for i in range(3):
        Image.fromarray(face_like(i)).save(root / f"p{i}.png")
    Image.fromarray(np.zeros((90, 90, 3), np.uint8)).save(root / "black.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return root


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def _det(env):
    return ["--detector", f"fixedtest:{env / 'answers.json'}", "--device", "cpu"]


def _model(env):
    return ["--model", env / "tiny.pt"]


def test_detect_prints_faces_and_writes_annotated_copies(env, capsys, tmp_path):
    code, recs, _ = _run(capsys, "detect", env / "p0.png", env / "p1.png", "--out", tmp_path, *_det(env))
    assert code == 0 and [r["image"] for r in recs] == [str(env / "p0.png"), str(env / "p1.png")]
    face = recs[0]["faces"][0]
    assert face["bbox"] == [20, 20, 132, 132] and face["det_score"] == pytest.approx(0.95)
    assert np.allclose(face["kps"], KPS + 20, atol=1e-4) and len(recs[0]["faces"]) == 2
    annotated = np.asarray(Image.open(tmp_path / "p0.png"))
    assert annotated.shape == (160, 160, 3)
    assert tuple(annotated[80, 20]) == (0, 255, 0)  # left edge of the first box, drawn in green
    assert np.array_equal(annotated[150:, 150:], face_like(0)[150:, 150:])  # untouched elsewhere


def test_align_writes_crops_equal_to_align_face(env, capsys, tmp_path):
    code, recs, _ = _run(capsys, "align", env / "p1.png", "--out", tmp_path, "--size", 112, *_det(env))
    assert code == 0
    crops = [f["crop"] for f in recs[0]["faces"]]
    assert crops == [str(tmp_path / "p1_0.png"), str(tmp_path / "p1_1.png")]
    want = align_face(face_like(1), KPS + 20, (112, 112))[0]
    np.testing.assert_array_equal(np.asarray(Image.open(crops[0])), want)


def test_embed_npy_rows_are_normalised_model_embeddings(env, capsys, tmp_path):
    out = tmp_path / "emb.npy"
    code, recs, err = _run(capsys, "embed", env / "p0.png", env / "p2.png", *_model(env), "--out", out, *_det(env))
    assert code == 0 and "torch on cpu" in err  # the device in use is said
    emb = np.load(out)
    assert emb.shape == (4, 32) and [f["row"] for r in recs for f in r["faces"]] == [0, 1, 2, 3]
    rec = load_model(env / "tiny.pt", "cpu")
    crop = align_face(face_like(2), KPS + 20, (64, 64))[0]
    want = rec(crop[None])[0]
    np.testing.assert_allclose(emb[2], want / np.linalg.norm(want), atol=1e-5)
    Image.fromarray(crop).save(tmp_path / "crop.png")
    code, (r,), _ = _run(capsys, "embed", tmp_path / "crop.png", *_model(env), "--aligned", "--device", "cpu")
    np.testing.assert_allclose(r["embedding"], want, rtol=1e-5, atol=1e-3)


def test_verify_same_and_different_exit_0(env, capsys):
    code, (r,), _ = _run(capsys, "verify", env / "p0.png", env / "p0.png", *_model(env), "--threshold", 0.5, *_det(env))
    assert code == 0 and r["same"] is True and r["similarity"] == pytest.approx(1, abs=1e-5)
    assert r["face1"]["det_score"] == pytest.approx(0.95) and "embedding" not in r["face1"]
    code, (r,), _ = _run(
        capsys, "verify", env / "p0.png", env / "p1.png", *_model(env), "--threshold", 0.999, *_det(env)
    )
    assert code == 0 and r["same"] is False and r["similarity"] < 0.999


@pytest.mark.parametrize(
    "bad, message",
    [
        ("missing.png", "missing.png: no such file"),
        ("broken.jpg", "broken.jpg: cannot decode image"),
        ("black.png", "black.png: no face found"),
    ],
)
def test_error_lines(env, capsys, bad, message):
    code, recs, err = _run(capsys, "verify", env / "p0.png", env / bad, *_model(env), "--threshold", 0.5, *_det(env))
    lines = [ln for ln in err.splitlines() if ln.startswith("facezoo: error:")]
    assert code == 2 and recs == [] and len(lines) == 1 and message in lines[0] and "Traceback" not in err


def test_verify_without_calibration_names_facezoo_calibrate(env, capsys):
    code, _, err = _run(capsys, "verify", env / "p0.png", env / "p0.png", *_model(env), *_det(env))
    assert code == 2 and "facezoo calibrate" in err


def test_gallery_round_trip_and_identify(env, capsys, tmp_path):
    people = tmp_path / "people"
    for i, name in enumerate(["ann", "ben", "cat"]):
        (people / name).mkdir(parents=True)
        Image.fromarray(face_like(i)).save(people / name / "a.png")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(people / "cat" / "black.png")
    g = tmp_path / "g.db"
    code, (r,), err = _run(capsys, "gallery", "enroll", g, people, *_model(env), *_det(env))
    assert code == 0 and (r["identities"], r["images"]) == (3, 3) and "black.png" in r["errors"][0]["path"]
    code, (r,), _ = _run(
        capsys, "identify", env / "p1.png", *_model(env), "--gallery", g, "--top-k", 2, "--threshold", -1, *_det(env)
    )
    matches = r["faces"][0]["matches"]
    assert code == 0 and matches[0]["identity"] == "ben" and matches[0]["score"] == pytest.approx(1, abs=1e-5)
    assert len(matches) == 2 and matches[0]["source"].endswith("ben/a.png")
    code, (r,), _ = _run(capsys, "gallery", "add", g, "dan", env / "p2.png", *_model(env), *_det(env))
    assert code == 0 and r["added"] == 1
    code, (r,), _ = _run(capsys, "gallery", "remove", g, "ann")
    assert code == 0 and r["entries"] == 1
    code, (r,), _ = _run(capsys, "gallery", "list", g)
    assert [i["name"] for i in r["identities"]] == ["ben", "cat", "dan"] and r["faces"] == 3
    assert r["embedding_size"] == 32 and r["model_key"] == load_model(env / "tiny.pt", "cpu").key
    code, (r,), _ = _run(capsys, "gallery", "index", g, "--kind", "ivf", "--recall", "--k", 2)
    # 3 entries give one IVF cell, searched whole: the approximate top-k equals the exact one
    assert code == 0 and r["recall_at_k"] == 1.0 and r["queries"] == 3 and r["k"] == 2
    code, _, err = _run(capsys, "gallery", "remove", g, "bne")
    assert code == 2 and "Did you mean 'ben'" in err


def test_calibrate_writes_thresholds_that_verify_uses(env, capsys, tmp_path):
    rec = load_model(env / "tiny.pt", "cpu")
    imgs = np.stack([align_face(face_like(50 + i), KPS + 20, (64, 64))[0] for i in range(40)])
    issame = [False] * 20
    write_bin(tmp_path / "set.bin", [encode_image(im, "png") for im in imgs], issame)
    out = tmp_path / "cal.pt"
    code, (r,), _ = _run(
        capsys,
        "calibrate",
        env / "tiny.pt",
        "--bin",
        tmp_path / "set.bin",
        "--far",
        0.1,
        "--out",
        out,
        "--device",
        "cpu",
    )
    e = rec(imgs).astype(np.float64)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    want = calibrate_thresholds(np.sum(e[0::2] * e[1::2], 1), [0.1])
    assert code == 0 and r["thresholds"] == pytest.approx(want) and r["impostors"] == 20
    assert load_checkpoint(out)["meta"]["thresholds"] == pytest.approx(want)
    code, (v,), _ = _run(capsys, "verify", env / "p0.png", env / "p0.png", "--model", out, "--far", 0.1, *_det(env))
    assert code == 0 and v["threshold"] == pytest.approx(want["1e-01"]) and v["same"] is True
    code, _, err = _run(
        capsys,
        "calibrate",
        env / "tiny.pt",
        "--bin",
        tmp_path / "set.bin",
        "--far",
        1e-3,
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert code == 2 and "needs at least 1000 impostor pairs" in err
