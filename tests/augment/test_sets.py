"""`facezoo data mask` on the sets it reads: a synthetic verification .bin and RecordIO set (read back with facezoo's
own readers), image folders, a MegaFace test pack run end to end through `eval-megaface --masked`, a landmarks file,
a detector on a real photo; determinism, worker independence, atomic output, the contact sheet."""

import json

import numpy as np
import pytest
from PIL import Image

from facezoo.augment.sets import MaskSetOptions, mask_set
from facezoo.cli import main
from facezoo.data.image import decode_image, encode_image
from facezoo.data.recordio import RecordDataset
from facezoo.data.synthetic import synthesize
from facezoo.data.verification_bin import read_bin
from facezoo.errors import ConfigError, DataError

from .faces import face


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, identities=4, images_per_identity=3, val_identities=4, val_pairs=20, workers=1)
    return out


def _decoded(images):
    return [decode_image(b).astype(int) for b in images]


def test_bin_masks_one_image_of_each_pair_deterministically(synth, tmp_path, capsys):
    src = synth / "synth_ver.bin"
    out, sheet = tmp_path / "masked.bin", tmp_path / "sheet.png"
    assert main(["data", "mask", str(src), str(out), "--seed", "3", "--preview", str(sheet)]) == 0
    assert "20 masked" in capsys.readouterr().out
    images, issame = read_bin(src)
    masked, masked_same = read_bin(out)
    assert np.array_equal(issame, masked_same) and len(masked) == len(images) == 40
    assert all(masked[i] == images[i] for i in range(0, 40, 2))  # the references: bytes untouched
    diffs = [np.abs(a - b).mean() for a, b in zip(_decoded(images[1::2]), _decoded(masked[1::2]))]
    assert min(diffs) > 3  # every probe got a mask
    again = tmp_path / "again.bin"
    mask_set(src, again, MaskSetOptions(seed=3, workers=2))
    assert read_bin(again)[0] == masked  # same seed, other worker count: the same images (the pickle's memo of
    # an image object shared by two pairs may differ, so the file's bytes can)
    mask_set(src, tmp_path / "other.bin", MaskSetOptions(seed=4))
    assert read_bin(tmp_path / "other.bin")[0] != masked
    both = tmp_path / "both.bin"
    mask_set(src, both, MaskSetOptions(seed=3, pairs="both", method="2d"))
    assert all(a != b for a, b in zip(read_bin(both)[0], images))
    grid = np.asarray(Image.open(sheet))
    assert grid.shape == (4 * (112 + 4) + 4, 4 * (2 * 112 + 4 + 12) + 4, 3)  # 16 pairs, 4 a row


def test_recordio_keeps_labels_and_masks_about_p(synth, tmp_path):
    src = synth / "train"
    out = tmp_path / "masked_train"
    r = mask_set(src, out, MaskSetOptions(p=0.5, seed=1, texture="surgical_white:0.5,kn95:0.5"))
    a, b = RecordDataset(src), RecordDataset(out)
    assert len(a) == len(b) == 12 and np.array_equal(a.labels, b.labels) and b.num_classes == a.num_classes
    assert tuple(b.image_size) == (112, 112)
    changed = [np.abs(decode_image(a.read_encoded(i)).astype(int) - decode_image(b.read_encoded(i))).mean() > 3
               for i in range(len(a))]  # fmt: skip
    assert sum(changed) == r["masked"] and r["masked"] + r["unchanged"] == 12 and 2 <= r["masked"] <= 10
    meta = json.loads((out / "mask.json").read_text())
    assert meta["options"]["p"] == 0.5 and set(meta["textures"]) <= {"surgical_white", "kn95"}


def test_folders_are_mirrored_with_other_files_copied(tmp_path):
    src = tmp_path / "src"
    for who in ("ann", "bob"):
        (src / who).mkdir(parents=True)
        for j, fmt in enumerate(("png", "jpeg")):
            img = face(5, j + (who == "bob") * 2)[2]
            (src / who / f"{j}.{'png' if fmt == 'png' else 'jpg'}").write_bytes(encode_image(img, fmt))
    (src / "notes.txt").write_text("keep me")
    out = tmp_path / "out"
    assert main(["data", "mask", str(src), str(out), "--method", "2d", "--occluders", "glasses:1"]) == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["ann/0.png", "ann/1.jpg", "bob/0.png", "bob/1.jpg", "mask.json", "notes.txt"]
    assert (out / "notes.txt").read_text() == "keep me"
    assert (out / "ann" / "0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before, after = decode_image((src / "ann/0.png").read_bytes()), decode_image((out / "ann/0.png").read_bytes())
    assert np.abs(before.astype(int) - after).mean() > 3


def test_a_failure_midway_leaves_no_output_and_no_litter(tmp_path):
    src = tmp_path / "src" / "ann"
    src.mkdir(parents=True)
    (src / "a.png").write_bytes(encode_image(face(5, 0)[2], "png"))
    (src / "b.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    assert main(["data", "mask", str(tmp_path / "src"), str(out)]) == 2
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    (out / "x").mkdir(parents=True)
    with pytest.raises(DataError, match="not an empty folder"):
        mask_set(tmp_path / "src", out)
    with pytest.raises(ConfigError, match="lies inside the source"):
        mask_set(tmp_path / "src", tmp_path / "src" / "masked")
    (src / "b.png").unlink()
    with pytest.raises(ConfigError, match="quality 0"):
        mask_set(tmp_path / "src", tmp_path / "o3", MaskSetOptions(quality=0))


def test_megaface_probes_masked_then_evaluated_end_to_end(tmp_path, capsys):
    import torch

    from facezoo.models.checkpoint import save_checkpoint
    from facezoo.models.embedder import ModelMeta

    root = tmp_path / "megaface"
    probes = [f"id{i}/id{i}_{j}.png" for i in range(3) for j in range(2)]
    dists = [f"00{k}/x@N00/d{k}.png" for k in range(4)]
    for n, rel in enumerate(probes):
        (root / "facescrub_images" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "facescrub_images" / rel).write_bytes(encode_image(face(21, n // 2, 10 * (n % 2))[2], "png"))
    for k, rel in enumerate(dists):
        (root / "megaface_images" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "megaface_images" / rel).write_bytes(encode_image(face(22, k)[2], "png"))
    (root / "facescrub_lst").write_text("".join(f"{p}\n" for p in probes))
    (root / "megaface_lst").write_text("".join(f"{p}\n" for p in dists))
    masked = tmp_path / "masked"
    assert main(["data", "mask", str(root), str(masked), "--seed", "1"]) == 0
    assert all((masked / p).is_file() for p in probes)
    meta = ModelMeta("ir18", {"width": 0.25}, embedding_size=16, input_size=(112, 112))
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", meta, meta.build_backbone().state_dict())
    capsys.readouterr()
    args = ["eval-megaface", str(tmp_path / "m.pt"), "--root", str(root), "--masked", str(masked), "--sizes", "4"]
    assert main([*args, "--device", "cpu", "--no-cache", "--far", "0.2"]) == 0
    assert "MegaFace-mask Id 4" in capsys.readouterr().out


def test_a_landmarks_file_places_the_mask(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    img = np.full((160, 200, 3), 150, np.uint8)
    (src / "a.png").write_bytes(encode_image(img, "png"))
    (src / "b.png").write_bytes(encode_image(img, "png"))
    five = np.array([[70.0, 60.0], [110.0, 60.0], [90.0, 82.0], [74.0, 104.0], [106.0, 104.0]])
    shifted = five + [40, 20]
    lm = tmp_path / "lm.txt"
    lm.write_text("# key x1 y1 ...\n" + "\n".join(f"{k} " + " ".join(f"{v:g}" for v in p.ravel())
                                                 for k, p in (("a.png", five), ("b.png", shifted))))  # fmt: skip
    out = tmp_path / "out"
    mask_set(src, out, MaskSetOptions(landmarks=str(lm), texture="surgical_black"))

    def centre(name):
        d = np.abs(decode_image((out / name).read_bytes()).astype(int) - 150).sum(-1) > 30
        ys, xs = np.nonzero(d)
        return np.array([xs.mean(), ys.mean()])

    assert np.allclose(centre("b.png") - centre("a.png"), [40, 20], atol=1.0)
    assert 85 < centre("a.png")[0] < 95 and centre("a.png")[1] > 82  # centred under the nose
    lm.write_text("a.png 1 2 3\n")
    with pytest.raises(DataError, match=r"lm.txt:1: 3 values"):
        mask_set(src, tmp_path / "o2", MaskSetOptions(landmarks=str(lm)))


def test_detect_finds_a_real_face(tmp_path):
    from ..sdk.test_mtcnn import HAND_KPS, weights_dir  # noqa: F401

    skimage = pytest.importorskip("skimage.data")
    from facezoo.paths import models_dir

    if not (models_dir() / "mtcnn" / "onet.pt").is_file():
        pytest.skip("run `facezoo models fetch mtcnn` (make test does it)")
    photo = skimage.astronaut()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "astronaut.png").write_bytes(encode_image(photo, "png"))
    out = tmp_path / "out"
    assert main(["data", "mask", str(tmp_path / "src"), str(out), "--detect", "--texture", "surgical_black"]) == 0
    after = decode_image((out / "astronaut.png").read_bytes())
    dark = after.astype(int).sum(-1) < 150
    changed = np.abs(after.astype(int) - photo).sum(-1) > 40
    covered = lambda p, m: m[round(p[1]), round(p[0])]
    nose, mouth = HAND_KPS[2], HAND_KPS[3:].mean(0)
    assert covered(nose + [0, 6], changed & dark) and covered(mouth, changed & dark)
    for eye in HAND_KPS[:2]:
        assert not changed[int(eye[1]) - 3 : int(eye[1]) + 4, int(eye[0]) - 3 : int(eye[0]) + 4].any()
