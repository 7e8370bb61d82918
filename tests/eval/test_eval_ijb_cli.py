"""`facezoo eval-ijb` on a tiny release in the official layout (meta/ + loose_crop/ + the 1:N CSVs)."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import facezoo
from facezoo.cli import main
from facezoo.data.image import encode_image
from facezoo.eval.ijb_images import embed_ijb_images
from facezoo.models.embedder import ARCFACE_TEMPLATE_112

COLOURS = {"A": ((255, 0, 0), (0, 0, 255)), "B": ((0, 255, 0), (0, 255, 0)), "C": ((0, 0, 0), (255, 255, 255))}
# flip-summed features: A (255, 0, 255), B (0, 510, 0), C (255, 255, 255): impostor cosines 0, 0.82, 0.58 < 1
IMAGES = {
    "1.jpg": ("A", 1, 10),
    "2.jpg": ("A", 1, 11),
    "3.jpg": ("A", 2, 12),
    "4.jpg": ("B", 3, 13),
    "5.jpg": ("B", 4, 14),
    "6.jpg": ("B", 4, 14),
    "7.jpg": ("C", 5, 15),
}
PAIRS = [(1, 2, 1), (3, 4, 1), (1, 3, 0), (2, 5, 0), (4, 5, 0), (1, 5, 0)]
SUBJECT = {"A": 11, "B": 12, "C": 13}
# 1:N: gallery G1 = template 1 (A), G2 = template 3 (B); probes 2 (A), 4 (B), 5 (C, in neither gallery).
CSV_HEADER = "TEMPLATE_ID,SUBJECT_ID,FILENAME,SIGHTING_ID,FRAME,FACE_X,FACE_Y,FACE_WIDTH,FACE_HEIGHT\n"
ONE_N = {"ijbc_1N_gallery_G1.csv": (1,), "ijbc_1N_gallery_G2.csv": (3,), "ijbc_1N_probe_mixed.csv": (2, 4, 5)}


class HalfMeans(torch.nn.Module):
    """Mean colour of the left and right halves (6-d): not flip-invariant, identical for one identity's images."""

    input_size = (16, 16)

    def forward(self, images):
        x = images.float()
        return torch.cat([x[:, :, :8].mean(dim=(1, 2)), x[:, :, 8:].mean(dim=(1, 2))], dim=1)


@pytest.fixture(autouse=True)
def facezoo_home(tmp_path, monkeypatch):
    """The default feature cache goes under FACEZOO_HOME: keep it inside the test's folder."""
    monkeypatch.setenv("FACEZOO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


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
    for name, templates in ONE_N.items():
        rows = [f"{t},{SUBJECT[who]},img/{n},{t},,0,0,112,112\n" for n, (who, t, _) in IMAGES.items() if t in templates]
        (root / "meta" / name).write_text(CSV_HEADER + "".join(rows))


class Constant(torch.nn.Module):
    """The same feature for every image: every score ties."""

    input_size = (16, 16)

    def forward(self, images):
        return torch.ones(images.shape[0], 4)


def test_eval_ijb_end_to_end(tmp_path, monkeypatch, capsys):
    make_release(tmp_path / "IJBC")
    monkeypatch.setattr(facezoo, "load_model", lambda path, map_location="cpu": HalfMeans())
    assert (
        main(
            [
                "eval-ijb",
                str(tmp_path / "m.pt"),
                "--root",
                str(tmp_path),
                "--target",
                "IJBC",
                "--device",
                "cpu",
                "--protocol",
                "1:1",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "IJB-C 1e-06" in out and "6 pairs" in out and "TPIR" not in out
    r = json.loads((tmp_path / "out" / "results.json").read_text())["m"]["IJBC 1:1"]
    assert r["num_genuine"] == 2 and r["num_impostor"] == 4
    # 4 impostor pairs measure no FAR below 1/4: each default FAR is null in the JSON, "n/a" in the table
    for key, v in r["tar_at_far"].items():
        need = round(1 / float(key))
        assert v == {"tar": None, "far": None, "threshold": None, "reason": v["reason"]}
        assert v["reason"] == f"n/a: needs at least {need} impostor pairs to be measured, only 4 given"
    assert table_rows(out, "m")[0][1:] == ["n/a"] * 6
    assert "n/a: IJB-C 1e-01: needs at least 10 impostor pairs to be measured, only 4 given" in out
    assert (tmp_path / "out" / "roc.png").stat().st_size > 1000
    assert not (tmp_path / "out" / "cmc.png").exists()
    argv = ["eval-ijb", str(tmp_path / "m.pt"), "--root", str(tmp_path), "--device", "cpu", "--protocol", "1:1"]
    assert main([*argv, "--far", "0.25", "0.5", "--out", str(tmp_path / "out2")]) == 0
    r = json.loads((tmp_path / "out2" / "results.json").read_text())["m"]["IJBC 1:1"]
    assert {k: v["tar"] for k, v in r["tar_at_far"].items()} == {"2.5e-01": 1.0, "5e-01": 1.0}  # genuine on top


def table_rows(text, first_cell):
    """The cells of the markdown rows whose first cell is first_cell."""
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines() if line.startswith("|")
    ]
    return [r for r in rows if r[0] == first_cell]


def test_two_checkpoints_one_table_both_protocols(tmp_path, monkeypatch, capsys):
    make_release(tmp_path / "IJBC")
    models = {"good": HalfMeans, "flat": Constant}
    monkeypatch.setattr(facezoo, "load_model", lambda path, map_location="cpu": models[Path(path).stem]())
    out_dir = tmp_path / "out"
    assert (
        main(
            [
                "eval-ijb",
                str(tmp_path / "good.pt"),
                str(tmp_path / "flat.pt"),
                "--root",
                str(tmp_path),
                "--device",
                "cpu",
                "--per-gallery",
                "--far",
                "0.25",
                "0.5",
                "--fpir",
                "0.5",
                "--out",
                str(out_dir),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    # 1:1 table then 1:N table (mean, G1, G2): one row per checkpoint in each.
    good, flat = table_rows(out, "good"), table_rows(out, "flat")
    assert len(good) == len(flat) == 4
    header = table_rows(out, "model")
    assert header[0][1:] == ["IJB-C 2.5e-01", "IJB-C 5e-01"]  # 4 impostor pairs measure FARs from 1/4 on
    assert header[1][1:] == ["IJB-C TPIR@5e-01", "IJB-C rank-1", "IJB-C rank-5", "IJB-C rank-10"]
    assert good[0][1:] == ["100.00"] * 2
    # Good model, per gallery: the mated probe scores 1, above both non-mated maxima (G1: C.A = 0.82, B.A = 0;
    # G2: C.B = 0.58, A.B = 0; FPIR 0.5 of 2 searches: the threshold is the second, 0), so TPIR and rank-1 are 1.
    assert good[1][1:] == good[2][1:] == good[3][1:] == ["100.00"] * 4
    # Flat model: all scores tie. 1:1: the ROC is (0,0) -> (1,1); FAR 0.25 picks FPR 0 -> TAR 0; FAR 0.5 is as
    # near both points and the later one (FPR 1, TPR 1) wins the tie -> TAR 1.
    # 1:N: the mate ties the rest -> rank 1; the threshold is the (tied) non-mated score 1 and 1 is not above it.
    assert flat[0][1:] == ["0.00", "100.00"]
    assert flat[1][1:] == ["0.00", "100.00", "100.00", "100.00"]
    r = json.loads((out_dir / "results.json").read_text())
    assert set(r) == {"good", "flat"} and set(r["good"]) == {"IJBC 1:1", "IJBC 1:N"}
    one_n = r["good"]["IJBC 1:N"]
    assert one_n["num_probe_templates"] == 3
    assert {g: (v["num_mated"], v["num_nonmated"]) for g, v in one_n["galleries"].items()} == {
        "G1": (1, 2),
        "G2": (1, 2),
    }
    assert one_n["galleries"]["G1"]["tpir_at_fpir"]["5e-01"]["threshold"] == pytest.approx(0, abs=1e-12)  # B.A
    with open(out_dir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(row["model"], row["benchmark"]) for row in rows] == [
        ("good", "IJBC 1:1"),
        ("good", "IJBC 1:N"),
        ("flat", "IJBC 1:1"),
        ("flat", "IJBC 1:N"),
    ]
    assert float(rows[1]["galleries.G2.cmc.1"]) == 1.0 and float(rows[3]["tpir_at_fpir.5e-01.tpir"]) == 0.0
    for png in ("roc.png", "cmc.png"):
        assert (out_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # features were cached per model under the default folder ($FACEZOO_HOME/features): one entry per model
    assert len(list((tmp_path / "home" / "features").iterdir())) == 2


def test_cache_dir_and_no_cache(tmp_path, monkeypatch, capsys):
    make_release(tmp_path)
    monkeypatch.setattr(facezoo, "load_model", lambda path, map_location="cpu": HalfMeans())
    argv = ["eval-ijb", str(tmp_path / "m.pt"), "--root", str(tmp_path), "--device", "cpu"]
    assert main(argv + ["--no-cache"]) == 0
    assert not (tmp_path / "home").exists()
    capsys.readouterr()
    assert main(argv + ["--cache-dir", str(tmp_path / "cache")]) == 0
    first = capsys.readouterr().out
    assert any((tmp_path / "cache").rglob("*")) and not (tmp_path / "home").exists()
    assert main(argv + ["--cache-dir", str(tmp_path / "cache")]) == 0  # from the cache: the same tables
    assert capsys.readouterr().out == first


def test_protocol_1n_without_its_csv_names_the_file(tmp_path, monkeypatch, capsys):
    make_release(tmp_path)
    (tmp_path / "meta" / "ijbc_1N_probe_mixed.csv").unlink()
    loaded = []
    monkeypatch.setattr(facezoo, "load_model", lambda path, map_location="cpu": loaded.append(path) or HalfMeans())
    assert main(["eval-ijb", str(tmp_path / "m.pt"), "--root", str(tmp_path), "--protocol", "1:N"]) == 2
    assert "ijbc_1N_probe_mixed.csv" in capsys.readouterr().err and not loaded
    # "all" falls back to the protocols whose files exist
    assert main(["eval-ijb", str(tmp_path / "m.pt"), "--root", str(tmp_path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "IJB-C 1e-06" in out and "TPIR" not in out


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
