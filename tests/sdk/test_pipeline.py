"""FaceAnalyzer with a fixed-answer detector (the pipeline, not detection) and a real tiny facezoo model:
crops, embeddings, verify with thresholds, identify, enrolment; plus the real MTCNN when its weights are present."""

import numpy as np
import pytest
import torch
from PIL import Image

from facezoo.errors import ConfigError, DataError, NoFaceError
from facezoo.models.checkpoint import save_checkpoint
from facezoo.models.embedder import ARCFACE_TEMPLATE_112
from facezoo.sdk.align import align_face
from facezoo.sdk.detect.base import Detections, Detector
from facezoo.sdk.gallery import Gallery
from facezoo.sdk.pipeline import FaceAnalyzer
from facezoo.sdk.thresholds import write_thresholds
from tests.sdk.conftest import META

KPS = np.asarray(ARCFACE_TEMPLATE_112, np.float32)


class FixedDetector(Detector):
    """Two faces per image, given in score order low-high (the analyzer must sort); none in an all-black image."""

    def __init__(self):
        self.kps = np.stack([KPS + 20, KPS * 0.5 + 5]).astype(np.float32)
        self.boxes = np.array([[20, 20, 132, 132], [5, 5, 61, 61]], np.float32)
        self.scores = np.array([0.9, 0.6], np.float32)

    def detect(self, image, max_faces=None):
        if not np.asarray(image).any():
            return Detections.empty()
        order = [1, 0]
        return Detections(self.boxes[order], self.scores[order], self.kps[order])


def face_like(seed, size=160):
    """A smooth random RGB image (upsampled 8x8 noise): distinct images give distinct embeddings."""
    low = np.random.default_rng(seed).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(low).resize((size, size), Image.BILINEAR))


@pytest.fixture(scope="module")
def fa(model):
    return FaceAnalyzer(FixedDetector(), model, device="cpu", min_det_score=0.5)


def test_analyze_sorts_aligns_and_embeds(fa):
    img = face_like(0)
    faces = fa.analyze(img)
    assert [f.det_score for f in faces] == pytest.approx([0.9, 0.6])
    det = FixedDetector()
    for face, kps in zip(faces, det.kps):
        np.testing.assert_array_equal(face.kps, kps)
        np.testing.assert_array_equal(face.crop, align_face(img, kps, (64, 64))[0])  # recognizer input size
    crops = np.stack([f.crop for f in faces])
    np.testing.assert_allclose(np.stack([f.embedding for f in faces]), fa.recognizer(crops), rtol=1e-5, atol=1e-3)
    assert np.linalg.norm(faces[0].normed_embedding) == pytest.approx(1.0, abs=1e-6)
    assert len(fa.analyze(img, max_faces=1)) == 1 and fa.analyze(img, max_faces=1)[0].det_score == pytest.approx(0.9)


def test_min_score_and_detect_only(model):
    only = FaceAnalyzer(FixedDetector(), None, min_det_score=0.7)
    faces = only.analyze(face_like(0))
    assert len(faces) == 1 and faces[0].embedding is None and faces[0].crop.shape == (112, 112, 3)
    with pytest.raises(ConfigError, match="recognition model"):
        only.verify(face_like(0), face_like(0), threshold=0.5)


def test_inputs_path_pil_and_array_agree(fa, tmp_path):
    img = face_like(1)
    path = tmp_path / "a.png"
    Image.fromarray(img).save(path)
    a = fa.analyze(img)[0].embedding
    np.testing.assert_array_equal(fa.analyze(path)[0].embedding, a)
    np.testing.assert_array_equal(fa.analyze(Image.fromarray(img))[0].embedding, a)
    with pytest.raises(DataError, match="missing.png"):
        fa.analyze(tmp_path / "missing.png")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.jpg"):
        fa.analyze(tmp_path / "bad.jpg")
    with pytest.raises(DataError, match="uint8"):
        fa.analyze(img.astype(np.float32))


def test_verify_same_and_different(fa):
    a, b = face_like(2), face_like(3)
    r = fa.verify(a, a, threshold=0.9)
    assert r["same"] is True and r["similarity"] == pytest.approx(1.0, abs=1e-5) and r["far"] is None
    assert r["face1"].det_score == pytest.approx(0.9)  # the best face of each image
    cos = float(np.dot(fa.analyze(a)[0].normed_embedding, fa.analyze(b)[0].normed_embedding))
    r = fa.verify(a, b, threshold=cos + 1e-3)
    assert r["same"] is False and r["similarity"] == pytest.approx(cos, abs=1e-6)
    assert fa.verify(a, b, threshold=cos - 1e-3)["same"] is True


def test_verify_threshold_sources(model, tmp_path):
    a = face_like(4)
    bare = FaceAnalyzer(FixedDetector(), model, device="cpu")
    with pytest.raises(ConfigError, match="facezoo calibrate"):
        bare.verify(a, a)  # default far 1e-4, no thresholds anywhere
    calibrated = write_thresholds(model, {"1e-04": 0.25, "1e-03": 0.2}, tmp_path / "cal.pt")
    fa = FaceAnalyzer(FixedDetector(), calibrated, device="cpu")
    assert fa.verify(a, a)["threshold"] == 0.25 and fa.threshold_for(1e-3) == 0.2
    with pytest.raises(ConfigError, match="calibrated FARs: 1e-04, 1e-03"):
        fa.threshold_for(1e-6)
    override = FaceAnalyzer(FixedDetector(), calibrated, device="cpu", thresholds={1e-4: 0.7})
    r = override.verify(a, a)
    assert r["threshold"] == 0.7 and r["far"] == 1e-4


def test_verify_without_a_face_names_the_image(fa, tmp_path):
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(black)
    with pytest.raises(NoFaceError, match="black.png: no face"):
        fa.verify(face_like(0), black, threshold=0.5)


def test_identify_returns_the_enrolled_identity_first(fa, tmp_path):
    g = Gallery.open(tmp_path / "g.db")
    for seed, name in enumerate(["alice", "bob", "carol"]):
        assert fa.enroll(g, name, [face_like(10 + seed)]) == 1
    noisy = np.clip(face_like(11).astype(int) + np.random.default_rng(0).integers(-8, 9, (160, 160, 3)), 0, 255)
    results = fa.identify(noisy.astype(np.uint8), g, top_k=3, threshold=-1)  # -1: every candidate
    assert len(results) == 2  # both detected faces are searched, best first
    top = results[0]["matches"]
    assert next(m["identity"] for m in top) == "bob" and len(top) == 3
    assert top[0]["score"] > 0.9 and top[0]["score"] > top[1]["score"]
    filtered = fa.identify(noisy.astype(np.uint8), g, top_k=3, threshold=top[0]["score"] - 1e-6)
    assert [m["identity"] for m in filtered[0]["matches"]] == ["bob"]
    assert g.model_key is None  # a Gallery object is used as given
    g.close()


def test_gallery_path_records_and_checks_the_model_key(fa, tmp_path):
    path = tmp_path / "g.db"
    fa.enroll(path, "alice", [face_like(20)])
    with Gallery.open(path) as g:
        assert g.model_key == fa.recognizer.key
    torch.manual_seed(5)
    other_path = tmp_path / "other.pt"
    save_checkpoint(other_path, META, META.build_backbone().state_dict())
    other = FaceAnalyzer(FixedDetector(), other_path, device="cpu")
    with pytest.raises(ConfigError, match="built with model"):
        other.identify(face_like(20), path, threshold=0.5)


def test_enroll_with_a_faceless_image_writes_nothing(fa, tmp_path):
    g = Gallery.open(tmp_path / "g.db")
    with pytest.raises(NoFaceError, match="'dave' not changed"):
        fa.enroll(g, "dave", [face_like(30), np.zeros((50, 50, 3), np.uint8)])
    assert len(g) == 0 and g.identities() == []


def test_enroll_folder_counts_images_and_errors(fa, tmp_path):
    root = tmp_path / "people"
    for i, (name, n) in enumerate({"ann": 2, "ben": 3, "empty": 0}.items()):
        (root / name).mkdir(parents=True)
        for j in range(n):
            Image.fromarray(face_like(100 + 10 * i + j)).save(root / name / f"{j}.png")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(root / "ben" / "black.png")  # no face
    (root / "ann" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")  # undecodable
    g = Gallery.open(tmp_path / "g.db")
    r = fa.enroll_folder(g, root)
    assert (r.identities, r.images) == (2, 5)
    assert sorted(p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1] for p, _ in r.errors) == [
        "ann/broken.jpg",
        "ben/black.png",
        "people/empty",
    ]
    assert g.identities() == ["ann", "ben"] and g.count("ben") == 3


# ---------------------------------------------------------------------- real detector, when available


def _mtcnn_or_skip():
    try:
        import facezoo.sdk.detect.mtcnn  # noqa: F401
    except ModuleNotFoundError:
        pytest.skip("facezoo.sdk.detect.mtcnn is not written yet")
    from facezoo.paths import models_dir

    folder = models_dir() / "mtcnn"
    if not all((folder / f"{n}.pt").is_file() for n in ("pnet", "rnet", "onet")):
        pytest.skip(f"MTCNN weights not in {folder}; run `facezoo models fetch mtcnn`")
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data


@pytest.mark.slow
def test_mtcnn_end_to_end_on_astronaut(model):
    data = _mtcnn_or_skip()
    astronaut = data.astronaut()
    fa = FaceAnalyzer("mtcnn", model, device="cpu", crop_size=112)
    faces = fa.analyze(astronaut)
    assert len(faces) == 1 and faces[0].crop.shape == (112, 112, 3) and faces[0].det_score > 0.9
    x1, y1, x2, y2 = faces[0].bbox
    assert 150 < (x1 + x2) / 2 < 230 and 50 < (y1 + y2) / 2 < 150  # Eileen Collins' face, upper middle
    # the same face shifted and rescaled: alignment undoes both, so the embeddings stay close
    shifted = np.zeros_like(astronaut)
    shifted[30:, 40:] = astronaut[:-30, :-40]
    moved = np.asarray(Image.fromarray(shifted).resize((384, 384), Image.BILINEAR))
    # calibrate on impostors: the face against crops of other photos aligned with the same 5 points
    others = [data.chelsea(), data.coffee(), data.rocket(), data.immunohistochemistry()]
    rng = np.random.default_rng(0)
    kps = faces[0].kps
    crops = []
    for img in others:
        for _ in range(30):
            dx, dy = rng.uniform(0, img.shape[1] - 200), rng.uniform(0, img.shape[0] - 200)
            crops.append(align_face(img, kps - kps.min(0) + [dx, dy], 112)[0])
    e = fa.embed_crops(np.stack(crops))
    imp = (e / np.linalg.norm(e, axis=1, keepdims=True)) @ faces[0].normed_embedding
    from facezoo.sdk.thresholds import calibrate_thresholds

    fa.thresholds = dict(calibrate_thresholds(imp, [1e-2]).items())
    r = fa.verify(astronaut, moved, far=1e-2)
    assert r["same"] is True and r["similarity"] > 0.9, r
