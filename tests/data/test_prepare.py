"""`data prepare` on trees built here: synthetic identities pasted on larger canvases at known positions, scales and
rotations (so the true landmarks are known), duplicates planted, junk added. The detector is KnownFaces (exact
landmarks), so what is checked is the pipeline: alignment, choice, ambiguity, size, duplicates, low-shot,
test-set overlap, report, outputs, atomicity and resume. The real detector on real photos: test_prepare_mtcnn.py.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import shutil

import numpy as np
import pytest
from PIL import Image

import facezoo.data.prepare.run as run_module
from facezoo.data.datasets import open_dataset
from facezoo.data.image import decode_image
from facezoo.data.prepare import PrepareOptions, prepare
from facezoo.data.prepare.faces import process_photo
from facezoo.data.recordio import RecordDataset
from facezoo.errors import ConfigError, DataError

from .prepare_helpers import TEMPLATE, Canvas, KnownFaces, PixelEmbedder, face, similarity


def best_shift(crop: np.ndarray, ref: np.ndarray, r: int = 2) -> tuple[tuple[int, int], dict]:
    """Integer (dy, dx) in [-r, r]^2 minimising the mean absolute difference of crop vs ref shifted (inner part)."""
    scores = {}
    c = crop.astype(float)[8:-8, 8:-8]
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            shifted = np.roll(ref.astype(float), (dy, dx), (0, 1))[8:-8, 8:-8]
            scores[(dy, dx)] = np.abs(c - shifted).mean()
    return min(scores, key=scores.get), scores


def test_alignment_lands_within_a_pixel_of_the_template():
    det = KnownFaces()
    opts = PrepareOptions(detector=det)
    for seed, (scale, angle, tx, ty) in enumerate([(1.0, 0, 40, 30), (1.8, 23, 210, 20), (2.4, -35, 60, 140)]):
        ref = face(seed, 0)
        canvas = Canvas(seed=seed).paste(ref, similarity(scale, angle, tx, ty))
        data = det.add(canvas.png(), canvas.faces)
        out = process_photo(data, "photo.png", det, opts, TEMPLATE)
        assert out.status == "kept"
        # The crop's landmarks: the known canvas points mapped by the alignment are the template, to 1e-6 px.
        kps = np.asarray(out.kps)
        assert np.abs(kps - canvas.faces[0][1]).max() < 0.01
        # And its pixels: the crop is the original aligned render, not shifted by a pixel in any direction.
        shift, scores = best_shift(out.crop, ref)
        assert shift == (0, 0), scores
        assert scores[(0, 0)] < 0.5 * min(v for k, v in scores.items() if max(map(abs, k)) == 1)


def two_faces(big_at, small_at, big=2.0, small=1.0):
    canvas = Canvas((420, 560), seed=7)
    canvas.paste(face(0, 0), similarity(big, 0, *big_at))
    canvas.paste(face(1, 0), similarity(small, 0, *small_at))
    return canvas


@pytest.mark.parametrize("rule, expected_identity", [("largest", 0), ("center", 1)])
def test_choice_largest_or_center(rule, expected_identity):
    det = KnownFaces()
    canvas = two_faces(big_at=(10, 10), small_at=(224, 154))  # small one exactly centred: centre (280, 210)
    data = det.add(canvas.png(), canvas.faces)
    out = process_photo(data, "p.png", det, PrepareOptions(detector=det, choose=rule, ambiguity=100), TEMPLATE)
    assert out.status == "kept" and out.faces == 2
    shift, scores = best_shift(out.crop, face(expected_identity, 0))
    other = best_shift(out.crop, face(1 - expected_identity, 0))[1]
    assert shift == (0, 0) and scores[(0, 0)] < min(other.values())


def test_ambiguity_and_min_face_rules():
    det = KnownFaces()
    # Areas: big (2.0)^2 = 4, small 1.0^2 = 1 -> ratio 0.25: kept at ambiguity 0.5, ambiguous at 0.2.
    data = det.add(two_faces((10, 10), (300, 200)).png(), two_faces((10, 10), (300, 200)).faces)
    assert process_photo(data, "p", det, PrepareOptions(detector=det, ambiguity=0.5), TEMPLATE).status == "kept"
    out = process_photo(data, "p", det, PrepareOptions(detector=det, ambiguity=0.2), TEMPLATE)
    assert out.status == "ambiguous" and "0.25 x the chosen" in out.detail
    small = Canvas(seed=1).paste(face(2, 0), similarity(0.25, 0, 100, 100))  # a 28 px face
    data = det.add(small.png(), small.faces)
    out = process_photo(data, "p", det, PrepareOptions(detector=det, min_face=32), TEMPLATE)
    assert out.status == "face_too_small" and "face 28 px < --min-face 32" in out.detail
    assert process_photo(Canvas(seed=2).png(), "p", det, PrepareOptions(detector=det), TEMPLATE).status == "no_face"


# ------------------------------------------------------------------------------------------------ a whole tree


def jpeg_again(data: bytes, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(decode_image(data)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def build_tree(root, det: KnownFaces) -> dict:
    """RAW tree: ann (4 distinct photos, 2 planted duplicates, nested album), ben (3 distinct, 1 two-face photo
    kept, 1 ambiguous, 1 tiny, 1 blank, a corrupt file, junk), cy (1 photo), a stray file. Returns the statuses
    the report must give (path -> status) and the aligned renders of the photos expected to be kept."""
    rng = np.random.default_rng(0)
    expect, kept = {}, {}

    def photo(name, identity, index, seed, fmt="png"):
        ref = face(identity, index)
        scale = rng.uniform(1.0, 2.2)
        size = (400, 520)
        t = similarity(scale, rng.uniform(-25, 25), rng.uniform(20, size[1] - 160 * scale), rng.uniform(10, 130))
        canvas = Canvas(size, seed).paste(ref, t)
        data = det.add(canvas.png() if fmt == "png" else canvas.jpeg(), canvas.faces)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data, ref, canvas.faces

    for j in range(4):
        name = f"ann/{j}.png" if j < 3 else "ann/album/2019/x.jpg"
        data, ref, faces = photo(name, 0, j, 10 + j, "png" if j < 3 else "jpeg")
        expect[name], kept[name] = "kept", ref
        if j == 0:
            (root / "ann/copy_of_0.png").write_bytes(data)  # byte-identical copy
            (root / "ann/0_q60.jpg").write_bytes(det.add(jpeg_again(data, 60), faces))  # same photo, new bytes
            expect["ann/copy_of_0.png"] = expect["ann/0_q60.jpg"] = "duplicate"
    for j in range(3):
        data, ref, _ = photo(f"ben/{j}.png", 1, j, 20 + j)
        expect[f"ben/{j}.png"], kept[f"ben/{j}.png"] = "kept", ref
    pair = Canvas((420, 560), 30).paste(face(1, 5), similarity(2.0, 0, 20, 30))
    pair.paste(face(4, 0), similarity(0.8, 0, 420, 300))  # area ratio 0.16: a bystander
    (root / "ben/with_bystander.png").write_bytes(det.add(pair.png(), pair.faces))
    expect["ben/with_bystander.png"], kept["ben/with_bystander.png"] = "kept", face(1, 5)
    group = Canvas((420, 560), 31).paste(face(1, 6), similarity(1.6, 0, 20, 30))
    group.paste(face(5, 0), similarity(1.5, 0, 300, 60))
    (root / "ben/group.png").write_bytes(det.add(group.png(), group.faces))
    tiny = Canvas((300, 300), 32).paste(face(1, 7), similarity(0.2, 0, 100, 100))
    (root / "ben/tiny.png").write_bytes(det.add(tiny.png(), tiny.faces))
    (root / "ben/blank.png").write_bytes(Canvas((200, 200), 33).png())
    (root / "ben/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "ben/notes.txt").write_text("where these came from")
    (root / "ben/.DS_Store").write_bytes(b"\0\0\0\1Bud1")
    expect.update(
        {
            "ben/group.png": "ambiguous",
            "ben/tiny.png": "face_too_small",
            "ben/blank.png": "no_face",
            "ben/broken.jpg": "decode_failed",
            "ben/notes.txt": "not_an_image",
            "ben/.DS_Store": "hidden",
        }
    )
    photo("cy/only.png", 2, 0, 40)
    expect["cy/only.png"] = "too_few_images"
    (root / "README.txt").write_text("stray")
    expect["README.txt"] = "outside_identity"
    return {"expect": expect, "kept": kept}


def report_rows(out):
    with open(out / "report.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def built_tree(tmp_path_factory):
    det = KnownFaces()
    root = tmp_path_factory.mktemp("tree") / "raw"
    return root, det, build_tree(root, det)


@pytest.fixture
def tree(built_tree, tmp_path):
    """A fresh copy of the module's tree (tests may change it)."""
    root, det, info = built_tree
    shutil.copytree(root, tmp_path / "raw")
    return tmp_path / "raw", det, info


def test_tree_to_recordio_with_a_full_report(tree, tmp_path):
    raw, det, info = tree
    out = tmp_path / "out"
    summary = prepare(raw, out, detector=det, min_images=2)
    rows = report_rows(out)
    assert {r["path"]: r["status"] for r in rows} == info["expect"]  # every file, each with its reason
    dup_details = {r["path"]: r["detail"] for r in rows if r["status"] == "duplicate"}
    assert dup_details["ann/copy_of_0.png"] == "same bytes as ann/0.png"
    assert dup_details["ann/0_q60.jpg"].startswith("near-duplicate of ann/0.png (Hamming")
    assert {r["identity"] for r in rows if r["status"] == "kept"} == {"ann", "ben"}
    assert summary["kept"] == 8 and summary["identities_kept"] == 2 and summary["identities_in"] == 3
    assert summary["duplicates"] == 2 and summary["rejected"]["too_few_images"] == 1
    assert summary["faces_found"] == 12  # 8 kept, the q60 copy, group, tiny and cy's (the byte copy is not read)
    assert json.loads((out / "summary.json").read_text()) == summary
    ds = RecordDataset(out)
    assert ds.num_classes == 2 and ds.image_size == (112, 112) and ds.labels.tolist() == [0] * 4 + [1] * 4
    assert (out / "identities.txt").read_text() == "0\tann\n1\tben\n"
    kept_paths = [r["path"] for r in rows if r["status"] == "kept"]
    for i, path in enumerate(kept_paths):  # rows are sorted by path; so are the records within an identity
        crop = ds[i][0]
        assert best_shift(crop, info["kept"][path])[0] == (0, 0)
    assert not (tmp_path / "out.prepare-work").exists()  # the journal goes once the set is written


def test_tfrecord_and_folder_outputs(tree, tmp_path):
    raw, det, _ = tree
    prepare(raw, tmp_path / "t", detector=det, format="tfrecord", format_options={"shard_size": 3})
    ds = open_dataset(tmp_path / "t")
    assert ds.classes == ["ann", "ben", "cy"] and len(ds.shard_files) == 3 and len(ds) == 9
    prepare(raw, tmp_path / "f", detector=det, format="folder", image_size=(128, 128), min_images=2)
    ds = open_dataset(tmp_path / "f")
    assert ds.classes == ["ann", "ben"] and len(ds) == 8 and ds[0][0].shape == (128, 128, 3)


class Interrupted(Exception):
    pass


def counting(real, calls: list):
    def wrapper(identity, *args):
        calls.append(identity.name)
        return real(identity, *args)

    return wrapper


def test_resume_after_an_interruption_gives_the_same_set(tree, tmp_path, monkeypatch):
    raw, det, _ = tree
    prepare(raw, tmp_path / "whole", detector=det, min_images=2)
    real = run_module.prepare_identity
    calls = []

    def dies_on_the_second(identity, *args):
        calls.append(identity.name)
        if len(calls) == 2:
            raise Interrupted
        return real(identity, *args)

    monkeypatch.setattr(run_module, "prepare_identity", dies_on_the_second)
    with pytest.raises(Interrupted):
        prepare(raw, tmp_path / "out", detector=det, min_images=2)
    assert not (tmp_path / "out").exists()  # nothing half-written appears
    assert len(list((tmp_path / "out.prepare-work" / "ids").glob("*.zip"))) == 1
    calls.clear()
    monkeypatch.setattr(
        run_module, "prepare_identity", lambda identity, *a: calls.append(identity.name) or real(identity, *a)
    )
    summary = prepare(raw, tmp_path / "out", detector=det, min_images=2)
    assert calls == ["ben", "cy"] and summary["identities_resumed"] == 1  # ann was not redone
    for name in ("train.rec", "train.idx", "property", "report.csv", "identities.txt"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


def test_changed_identity_folder_is_prepared_again(tree, tmp_path, monkeypatch):
    raw, det, _ = tree
    work = tmp_path / "w"
    monkeypatch.setattr(run_module, "staged_dir", _failing_stage)
    with pytest.raises(Interrupted):
        prepare(raw, tmp_path / "out", detector=det, work_dir=work)
    (raw / "cy" / "only.png").unlink()
    Image.new("RGB", (50, 50)).save(raw / "cy" / "new.png")
    monkeypatch.undo()
    calls = []
    real = run_module.prepare_identity
    monkeypatch.setattr(
        run_module, "prepare_identity", lambda identity, *a: calls.append(identity.name) or real(identity, *a)
    )
    prepare(raw, tmp_path / "out", detector=det, work_dir=work)
    assert calls == ["cy"]
    assert {r["path"]: r["status"] for r in report_rows(tmp_path / "out")}["cy/new.png"] == "no_face"


def _failing_stage(path):
    raise Interrupted


def test_workers_give_the_same_set_as_one_process(tree, tmp_path):
    raw, det, _ = tree
    prepare(raw, tmp_path / "one", detector=det)
    prepare(raw, tmp_path / "two", detector=det, workers=2)
    for name in ("train.rec", "report.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_exclude_identities_of_a_test_set(tree, tmp_path):
    raw, det, info = tree
    # A test set whose people are ben: six other photos of identity 1 (aligned crops, as .bin files hold them).
    bins = [Image.fromarray(face(1, 10 + k)) for k in range(6)]
    encoded = []
    for im in bins:
        buf = io.BytesIO()
        im.save(buf, "PNG")
        encoded.append(buf.getvalue())
    (tmp_path / "test.bin").write_bytes(pickle.dumps((encoded, [True, False, True]), protocol=2))
    model = PixelEmbedder()

    def centre(images):
        e = model(np.stack([np.asarray(Image.fromarray(i).resize((16, 16), Image.BILINEAR)) for i in images]))
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        m = e.mean(0)
        return m / np.linalg.norm(m), e

    test_e = centre([np.asarray(im) for im in bins])[1]
    ann = centre([info["kept"][p] for p in info["kept"] if p.startswith("ann")])[0]
    ben = centre([info["kept"][p] for p in info["kept"] if p.startswith("ben")])[0]
    s_ann, s_ben = (test_e @ ann).max(), (test_e @ ben).max()
    assert s_ben > s_ann + 0.1  # the stand-in model does tell these two apart
    threshold = (s_ann + s_ben) / 2
    summary = prepare(
        raw, tmp_path / "out", detector=det, model=model, exclude=[tmp_path / "test.bin"], exclude_threshold=threshold
    )
    rows = report_rows(tmp_path / "out")
    overlap = [r for r in rows if r["status"] == "test_overlap"]
    assert {r["identity"] for r in overlap} == {"ben"} and len(overlap) == 4
    assert "test.bin#" in overlap[0]["detail"] and summary["identities_kept"] == 2  # ann and cy
    with pytest.raises(ConfigError, match="give the recognition model with --model"):
        PrepareOptions(exclude=("x.bin",))


def test_bad_output_folders_and_empty_inputs(tree, tmp_path):
    raw, det, _ = tree
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(DataError, match="busy: already exists and is not an empty folder"):
        prepare(raw, tmp_path / "busy", detector=det)
    with pytest.raises(DataError, match="must not be inside the input folder"):
        prepare(raw, raw / "out", detector=det)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no identity with photos found"):
        prepare(tmp_path / "empty", tmp_path / "o", detector=det)
    (tmp_path / "faceless" / "zed").mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(tmp_path / "faceless" / "zed" / "a.png")
    with pytest.raises(DataError, match=r"no photo survived preparation; see .*o2.prepare-work/report.csv"):
        prepare(tmp_path / "faceless", tmp_path / "o2", detector=det)
    with pytest.raises(ConfigError, match="unknown face choice 'centre'. Did you mean 'center'"):
        PrepareOptions(choose="centre")


def test_list_file_input(tree, tmp_path):
    _, det, _ = tree
    (tmp_path / "list.txt").write_text("raw/ben/0.png 7\nraw/ann/1.png 12\nraw/ben/group.png 7\nraw/ann/2.png 12\n")
    summary = prepare(tmp_path / "list.txt", tmp_path / "out", detector=det)
    rows = {r["path"]: (r["identity"], r["label"], r["status"]) for r in report_rows(tmp_path / "out")}
    assert rows == {  # labels become zero-padded names (07 < 12), numbered 0.. in that order
        "raw/ann/1.png": ("12", "1", "kept"),
        "raw/ann/2.png": ("12", "1", "kept"),
        "raw/ben/0.png": ("07", "0", "kept"),
        "raw/ben/group.png": ("07", "", "ambiguous"),
    }
    assert summary["identities_kept"] == 2 and open_dataset(tmp_path / "out").labels.tolist() == [0, 1, 1]


def test_embedding_dedup_and_template_file(tree, tmp_path):
    raw, det, info = tree
    prepare(raw, tmp_path / "e", detector=det, dedup="embedding", dedup_threshold=0.995, model=PixelEmbedder())
    statuses = {r["path"]: r for r in report_rows(tmp_path / "e")}
    assert statuses["ann/copy_of_0.png"]["detail"] == "same bytes as ann/0.png"
    assert statuses["ann/0_q60.jpg"]["detail"].startswith("near-duplicate of ann/0.png (cosine ")
    assert {p: r["status"] for p, r in statuses.items()} == info["expect"] | {"cy/only.png": "kept"}
    # A template twice the ArcFace one, for 224 x 224 crops: each crop is the 112 render at twice the size.
    (tmp_path / "t.txt").write_text("\n".join(f"{2 * x} {2 * y}" for x, y in TEMPLATE))
    prepare(raw, tmp_path / "t", detector=det, template=tmp_path / "t.txt", image_size=224, format="folder")
    ds = open_dataset(tmp_path / "t")
    crop = np.asarray(Image.fromarray(ds[0][0]).resize((112, 112), Image.BOX))
    assert ds[0][0].shape == (224, 224, 3) and best_shift(crop, info["kept"]["ann/0.png"])[0] == (0, 0)
