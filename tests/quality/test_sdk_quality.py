"""Quality in the SDK: FaceAnalyzer(quality=...) sets face.quality; enrolment refuses faces below min_quality."""

import numpy as np
import pytest
import torch
from PIL import Image

from facezoo.data.synthetic import identity_rng, image_rng, render, sample_identity, sample_nuisance
from facezoo.errors import ConfigError, DataError
from facezoo.models.checkpoint import save_checkpoint
from facezoo.models.embedder import ARCFACE_TEMPLATE_112, ModelMeta
from facezoo.quality import create_quality
from facezoo.quality.degrade import degrade
from facezoo.sdk.detect.base import Detections, Detector
from facezoo.sdk.gallery import Gallery, enroll_folder
from facezoo.sdk.pipeline import FaceAnalyzer

META = ModelMeta(backbone="ir18", backbone_kwargs={"width": 0.125}, embedding_size=16, input_size=(112, 112))


class Whole(Detector):
    """One face filling the 112x112 image: the landmarks are the template, so the crop is the image itself."""

    def detect(self, image, max_faces=None):
        kps = np.asarray(ARCFACE_TEMPLATE_112, np.float32)[None]
        return Detections(np.array([[0, 0, 112, 112]], np.float32), np.array([0.99], np.float32), kps)


def face(i, kind=None):
    im = render(sample_identity(identity_rng(5, i)), sample_nuisance(image_rng(5, i, 0), 0.7), 112)
    return im if kind is None else degrade(im, kind, 1.0, seed=i)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("q") / "tiny.pt"
    save_checkpoint(path, META, META.build_backbone().state_dict(), config={"mode": "conventional",
                                                                          "head": {"name": "magface"}})  # fmt: skip
    return path


def test_face_quality_is_the_methods_score_of_the_crop(model):
    fa = FaceAnalyzer(Whole(), model, device="cpu", quality="baseline")
    images = [face(0), face(1, "blur")]
    faces = [fs[0] for fs in fa.analyze_many(images)]
    want = create_quality("baseline").score(np.stack([f.crop for f in faces]))
    assert [f.quality for f in faces] == pytest.approx(want.tolist(), rel=1e-12)
    assert faces[1].quality < faces[0].quality
    assert faces[0].to_dict()["quality"] == pytest.approx(want[0])
    # no recognizer needed for quality alone
    only = FaceAnalyzer(Whole(), None, quality="baseline").analyze(face(0))[0]
    assert only.embedding is None and only.quality == pytest.approx(want[0])
    assert FaceAnalyzer(Whole(), None).analyze(face(0))[0].quality is None
    assert "quality" not in FaceAnalyzer(Whole(), None).analyze(face(0))[0].to_dict()


def test_magface_norm_reuses_the_recognizers_embeddings(model, monkeypatch):
    fa = FaceAnalyzer(Whole(), model, device="cpu", quality="magface_norm")
    assert fa.quality.embedder is fa.recognizer
    monkeypatch.setattr(type(fa.quality), "score", lambda *a: pytest.fail("embedded twice"))
    f = fa.analyze(face(2))[0]
    assert f.quality == pytest.approx(float(np.linalg.norm(f.embedding)), rel=1e-6)
    with pytest.raises(ConfigError, match="needs a model"):
        FaceAnalyzer(Whole(), None, quality="magface_norm")


def test_magface_norm_of_a_file_says_what_it_is(model, tmp_path):
    q = create_quality("magface_norm", model=model, device="cpu")
    assert q.magface is True and "a MagFace model" in q.describe()
    crops = np.stack([face(0), face(1)])
    np.testing.assert_allclose(q.score(crops), np.linalg.norm(q.embedder(crops), axis=1), rtol=1e-6)
    other = tmp_path / "arc.pt"
    save_checkpoint(other, META, META.build_backbone().state_dict(), config={"head": {"name": "arcface"}})
    assert "not MagFace: a weaker quality" in create_quality("magface_norm", model=other, device="cpu").describe()


def test_enroll_refuses_low_quality(model, tmp_path):
    fa = FaceAnalyzer(Whole(), model, device="cpu", quality="baseline")
    g = Gallery.open(tmp_path / "g.db")
    good, bad = face(3), face(3, "blur")
    with pytest.raises(DataError, match=r"below min_quality 0.8 .*'eve' not changed"):
        fa.enroll(g, "eve", [good, bad], min_quality=0.8)
    assert len(g) == 0
    assert fa.enroll(g, "eve", [good, bad]) == 2  # without a threshold both go in
    assert fa.enroll(g, "fay", [good], min_quality=0.8) == 1
    with pytest.raises(ConfigError, match="min_quality needs a quality method"):
        FaceAnalyzer(Whole(), model, device="cpu").enroll(g, "x", [good], min_quality=0.5)


def test_enroll_folder_reports_each_refused_image(model, tmp_path):
    root = tmp_path / "people"
    for name, images in {"ann": [face(4), face(4, "blur")], "ben": [face(5, "shrink")]}.items():
        (root / name).mkdir(parents=True)
        for j, im in enumerate(images):
            Image.fromarray(im).save(root / name / f"{j}.png")
    fa = FaceAnalyzer(Whole(), model, device="cpu", quality="baseline")
    q = create_quality("baseline")
    with Gallery.open(tmp_path / "g.db") as g:
        r = fa.enroll_folder(g, root, min_quality=0.8)
        assert (r.identities, r.images) == (1, 1) and g.identities() == ["ann"]
        reasons = {p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1]: why for p, why in r.errors}
        assert set(reasons) == {"ann/1.png", "ben/0.png", "people/ben"}
        blur = q.score(np.asarray(Image.open(root / "ann" / "1.png")))[0]
        assert reasons["ann/1.png"] == f"face quality {blur:.4g} below min_quality 0.8; not enrolled"
        assert reasons["people/ben"] == "no usable image; identity not enrolled"
    with Gallery.open(tmp_path / "g2.db") as g, pytest.raises(ConfigError, match="one quality per image"):
        enroll_folder(g, root, lambda paths: np.ones((len(paths), 3)), min_quality=0.5)


def test_gallery_cli_refuses_low_quality(model, tmp_path, monkeypatch, capsys):
    """`facezoo gallery enroll|add --quality Q --min-quality T` reaches FaceAnalyzer.enroll(_folder)(min_quality=)."""
    import json

    import facezoo.sdk.pipeline as pipeline
    from facezoo.cli import main

    real = pipeline.FaceAnalyzer
    monkeypatch.setattr(pipeline, "FaceAnalyzer", lambda detector, *a, **kw: real(Whole(), *a, **kw))
    root = tmp_path / "people"
    for name, im in {"ann": face(6), "ben": face(7, "blur")}.items():
        (root / name).mkdir(parents=True)
        Image.fromarray(im).save(root / name / "0.png")
    g = str(tmp_path / "g.db")
    common = ["--model", str(model), "--device", "cpu", "--quality", "baseline", "--min-quality", "0.8"]
    assert main(["gallery", "enroll", g, str(root), *common]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["identities"], out["images"]) == (1, 1)
    assert any("below min_quality 0.8" in e["message"] for e in out["errors"])
    assert main(["gallery", "add", g, "ben", str(root / "ben" / "0.png"), *common]) == 2
    assert "below min_quality 0.8" in capsys.readouterr().err
    assert main(["gallery", "add", g, "ben", str(root / "ben" / "0.png"), *common[:4]]) == 0  # no threshold: added
