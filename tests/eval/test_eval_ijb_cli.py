"""`facezoo eval-ijb` on a tiny release in the official layout (meta/ + loose_crop/)."""

import json

import numpy as np
import torch

import facezoo
from facezoo.cli import main
from facezoo.data.image import encode_image
from facezoo.eval.ijb_images import embed_ijb_images
from facezoo.models.embedder import ARCFACE_TEMPLATE_112

COLOURS = {"A": ((255, 0, 0), (0, 0, 255)), "B": ((0, 255, 0), (0, 255, 0)), "C": ((0, 0, 0), (255, 255, 255))}
# flip-summed features: A (255, 0, 255), B (0, 510, 0), C (255, 255, 255): impostor cosines 0, 0.82, 0.58 < 1
IMAGES = {"1.jpg": ("A", 1, 10), "2.jpg": ("A", 1, 11), "3.jpg": ("A", 2, 12), "4.jpg": ("B", 3, 13),
          "5.jpg": ("B", 4, 14), "6.jpg": ("B", 4, 14), "7.jpg": ("C", 5, 15)}
PAIRS = [(1, 2, 1), (3, 4, 1), (1, 3, 0), (2, 5, 0), (4, 5, 0), (1, 5, 0)]


class HalfMeans(torch.nn.Module):
    """Mean colour of the left and right halves (6-d): not flip-invariant, identical for one identity's images."""

    input_size = (16, 16)

    def forward(self, images):
        x = images.float()
        return torch.cat([x[:, :, :8].mean(dim=(1, 2)), x[:, :, 8:].mean(dim=(1, 2))], dim=1)


def make_release(root):
    points = " ".join(f"{v:.4f}" for p in ARCFACE_TEMPLATE_112 for v in p)  # crops already aligned at 112
    (root / "loose_crop").mkdir(parents=True)
    (root / "meta").mkdir()
    for name, (who, _, _) in IMAGES.items():
        img = np.zeros((112, 112, 3), np.uint8)
        img[:, :56], img[:, 56:] = COLOURS[who]
        (root / "loose_crop" / name).write_bytes(encode_image(img, "png"))
    (root / "meta" / "ijbc_face_tid_mid.txt").write_text("".join(f"{n} {t} {m}\n" for n, (_, t, m) in IMAGES.items()))
    (root / "meta" / "ijbc_name_5pts_score.txt").write_text("".join(f"{n} {points} 0.9\n" for n in IMAGES))
    (root / "meta" / "ijbc_template_pair_label.txt").write_text("".join(f"{a} {b} {y}\n" for a, b, y in PAIRS))


def test_eval_ijb_end_to_end(tmp_path, monkeypatch, capsys):
    make_release(tmp_path / "IJBC")
    monkeypatch.setattr(facezoo, "load_model", lambda path, map_location="cpu": HalfMeans())
    assert main(["eval-ijb", str(tmp_path / "m.pt"), "--root", str(tmp_path), "--target", "IJBC", "--device", "cpu",
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "TAR@FAR=1e-06" in out and "6 pairs" in out
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    assert r["num_genuine"] == 2 and r["num_impostor"] == 4
    assert all(v["tar"] == 1.0 for v in r["tar_at_far"].values())  # every genuine template pair scores highest
    assert (tmp_path / "out" / "roc.png").stat().st_size > 1000


def test_embedding_in_chunks_equals_one_pass_and_flip_differs(tmp_path):
    make_release(tmp_path)
    e1, f1 = embed_ijb_images(HalfMeans(), tmp_path, "ijbc", chunk=2)
    e2, f2 = embed_ijb_images(HalfMeans(), tmp_path, "ijbc", chunk=100)
    assert np.array_equal(e1, e2) and np.array_equal(f1, f2) and e1.shape == (7, 6)
    assert np.allclose(f1[:, :3], e1[:, 3:]) and not np.allclose(f1, e1)  # the flip swaps the halves


def test_missing_release_parts_fail_before_the_model_loads(tmp_path, capsys, monkeypatch):
    assert main(["eval-ijb", str(tmp_path / "m.pt"), "--root", str(tmp_path)]) == 2
    assert "meta/" in capsys.readouterr().err
    make_release(tmp_path)
    (tmp_path / "loose_crop" / "3.jpg").unlink()
    monkeypatch.setattr(facezoo, "load_model", lambda path, map_location="cpu": HalfMeans())
    assert main(["eval-ijb", str(tmp_path / "m.pt"), "--root", str(tmp_path), "--device", "cpu"]) == 2
    assert "3.jpg" in capsys.readouterr().err
