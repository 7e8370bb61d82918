"""`facezoo eval-megaface` on tiny MegaFace trees (InsightFace test pack and devkit template lists) built here.

Images are plain colours in the red-green plane, (200 cos t, 200 sin t, 0); the fake model returns the mean colour,
so after flip-summing and L2-normalising every image's feature is the unit vector at angle t and cosine similarity
falls with the angle between two images. Rank and TAR answers below are worked out from the angles by hand.
"""

import json
import math

import numpy as np
import pytest
import torch

import facezoo
from facezoo.cli import main
from facezoo.data.image import encode_image
from facezoo.eval import megaface_data as md

PROBES = {"A/A_1.png": 0, "A/A_2.png": 10, "A/A_3.png": 30, "B/B_1.png": 60, "B/B_2.png": 80}
D1, D3 = "000/x@N00/d1_0.png", "001/y@N00/d3_0.png"
DISTRACTORS = {D1: 5, D3: 85}
MASKED = dict(PROBES, **{"A/A_1.png": 50})  # the mask moves a1 to 50 degrees

# ordered pairs (p, g) -> distractors nearer to p than g is (angles): with d1 (5) and d3 (85)
#   (a1,a2) 10: d1 -> 2   (a1,a3) 30: d1 -> 2   (a2,a1) 10: d1 -> 2   (a2,a3) 20: d1 -> 2
#   (a3,a1) 30: d1 (25) -> 2   (a3,a2) 20: none -> 1   (b1,b2) 20: none (d3 25) -> 1   (b2,b1) 20: d3 (5) -> 2
RANK1_BOTH, RANK2_BOTH = 2 / 8, 8 / 8
# with the first distractor only (d1): (b2,b1) becomes rank 1
RANK1_D1 = 3 / 8
# verification, far=0.3: genuine (unordered) angles 10, 30, 20 | 20; 10 impostor angles sorted
# 5,5,5,25,25,55,55,75,75,85; k = floor(0.3 * 10) = 3 -> threshold at 25 degrees -> 10, 20, 20 pass
TAR_BOTH = 3 / 4
# cleaned: a3 (a FaceScrub noise image) becomes A's centre (5 degrees), d1 (a MegaFace noise image) gets 100 in the
# extra slot, so its cosine with every probe is below 0.01. Identification: only (b2,b1) loses to d3 -> 7/8.
# Verification: impostor cosines cos5 (b2,d3), cos25 (b1,d3), cos75 (a2,d3), cos80 (a3,d3), cos85 (a1,d3), 5 x <0.01:
# k = 3 -> threshold cos80 -> genuine angles 10, 5, 5, 20 all pass.
RANK1_CLEAN, TAR_CLEAN = 7 / 8, 1.0
# MegaFace-mask (masked query p, unmasked gallery g): (a1m=50, a2) 40: d3 (35) -> 2; (a1m, a3) 20 -> 1; the rest as
# unmasked -> rank-1 3/8. Genuine ordered angles 40,20,10,20,30,20,20,20; impostors 5,5,25,25,35,45,55,55,75,75;
# threshold at 25 degrees -> 6 of 8 pass.
RANK1_MASKED, TAR_MASKED = 3 / 8, 6 / 8


class MeanColour(torch.nn.Module):
    """Mean colour times a learnable scale: the direction (what cosine sees) is the image's colour."""

    input_size = (8, 8)

    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor([scale]))

    def forward(self, x):
        return x.float().mean(dim=(1, 2)) * self.scale


def colour_png(deg):
    t = math.radians(deg)
    img = np.zeros((16, 16, 3), np.uint8)
    img[..., 0], img[..., 1] = round(200 * math.cos(t)), round(200 * math.sin(t))
    return encode_image(img, "png")


def write_images(folder, angles):
    for rel, deg in angles.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(colour_png(deg))


def make_testpack(root, noises=True):
    write_images(root / "facescrub_images", PROBES)
    write_images(root / "megaface_images", DISTRACTORS)
    (root / "facescrub_lst").write_text("".join(f"{p}\n" for p in PROBES))
    (root / "megaface_lst").write_text(f"{D1}\n{D3}\n")
    if noises:
        (root / "facescrub_noises.txt").write_text("# FaceScrub noises\nA_3.png\n")
        (root / "megaface_noises.txt").write_text(f"# MegaFace noises\nsome-id\t{D1}\n")
    return root


def make_devkit(root, lists):
    """Devkit template lists {size: [paths]} with images in facescrub/ and megaface/."""
    tl = root / "devkit" / "templatelists"
    tl.mkdir(parents=True)
    write_images(root / "facescrub", PROBES)
    write_images(root / "megaface", DISTRACTORS)
    (tl / "facescrub_features_list.json").write_text(
        json.dumps({"path": list(PROBES), "id": [p.split("/")[0] for p in PROBES]})
    )
    for size, paths in lists.items():
        (tl / f"megaface_features_list.json_{size}_1").write_text(json.dumps({"path": paths}))
    return root


@pytest.fixture
def models(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEZOO_HOME", str(tmp_path / "home"))
    scales = {"m1.pt": 1.0, "m2.pt": 3.0}
    monkeypatch.setattr(
        facezoo, "load_model", lambda path, map_location="cpu": MeanColour(scales[str(path).rsplit("/", 1)[-1]])
    )
    return [str(tmp_path / n) for n in scales]


def test_testpack_two_checkpoints_raw_and_cleaned(tmp_path, models, capsys):
    root = make_testpack(tmp_path / "pack")
    out = tmp_path / "out"
    assert (
        main(
            [
                "eval-megaface",
                *models,
                "--root",
                str(root),
                "--sizes",
                "1",
                "2",
                "--far",
                "0.3",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    rows = [ln for ln in text.splitlines() if ln.startswith("| m") and not ln.startswith("| model")]
    assert [r.split("|")[1].strip() for r in rows] == ["m1", "m2"]  # one table, a row per checkpoint
    assert "MegaFace Id 2" in text and "MegaFace Ver 0.3 (R)" in text
    assert rows[0].split("|")[2].strip() == f"{100 * RANK1_BOTH:.2f}"
    r = json.loads((out / "results.json").read_text())
    for name in ("m1", "m2"):
        raw, clean = r[name]["raw"], r[name]["clean"]
        assert raw["identification"]["2"]["rank1"] == pytest.approx(RANK1_BOTH)
        assert raw["identification"]["2"]["rank2"] == pytest.approx(RANK2_BOTH)
        assert raw["identification"]["1"]["rank1"] == pytest.approx(RANK1_D1)
        assert raw["verification"]["2"]["tar"] == pytest.approx(TAR_BOTH)
        assert raw["verification"]["2"]["threshold"] == pytest.approx(math.cos(math.radians(25)), abs=3e-3)
        assert clean["identification"]["2"]["rank1"] == pytest.approx(RANK1_CLEAN)
        assert clean["verification"]["2"]["tar"] == pytest.approx(TAR_CLEAN)
        assert clean["verification"]["2"]["threshold"] == pytest.approx(math.cos(math.radians(80)), abs=3e-3)
    csv = (out / "results.csv").read_text().splitlines()
    assert len(csv) == 1 + 2 * 4  # header + (2 models x Id/Ver x raw/clean)
    assert (out / "cmc.png").stat().st_size > 1000 and (out / "rank1_vs_distractors.png").stat().st_size > 1000
    # a second run finds every feature in the cache: the model is never called
    calls = []
    orig = MeanColour.forward
    MeanColour.forward = lambda self, x: calls.append(1) or orig(self, x)
    try:
        assert (
            main(
                [
                    "eval-megaface",
                    models[0],
                    "--root",
                    str(root),
                    "--sizes",
                    "1",
                    "2",
                    "--far",
                    "0.3",
                    "--device",
                    "cpu",
                ]
            )
            == 0
        )
    finally:
        MeanColour.forward = orig
    assert calls == []


@pytest.mark.parametrize("search", ["torch", "faiss"])
def test_devkit_lists_nested_and_not(tmp_path, models, search):
    nested = make_devkit(tmp_path / "a", {1: [D1], 2: [D1, D3]})
    lists = md.read_lists(nested)
    assert lists.layout == "devkit" and lists.size_index == {1: None, 2: None} and not lists.has_noise
    out = tmp_path / "out_a"
    assert (
        main(
            [
                "eval-megaface",
                models[0],
                "--root",
                str(nested),
                "--far",
                "0.3",
                "--device",
                "cpu",
                "--search",
                search,
                "--no-cache",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads((out / "results.json").read_text())["m1"]
    assert "clean" not in r  # no noise lists, so raw only
    assert r["raw"]["identification"]["1"]["rank1"] == pytest.approx(RANK1_D1)
    assert r["raw"]["identification"]["2"]["rank1"] == pytest.approx(RANK1_BOTH)
    assert r["raw"]["verification"]["2"]["tar"] == pytest.approx(TAR_BOTH)
    # size-1 list is d3 alone, not a prefix of the size-2 list [d1, d3]: scored on its own
    apart = make_devkit(tmp_path / "b", {1: [D3], 2: [D1, D3]})
    lists = md.read_lists(apart)
    assert lists.distractor_paths == [D3, D1] and lists.size_index[1] is None
    assert lists.size_index[2].tolist() == [1, 0]
    out = tmp_path / "out_b"
    assert (
        main(
            [
                "eval-megaface",
                models[0],
                "--root",
                str(apart),
                "--far",
                "0.3",
                "--device",
                "cpu",
                "--search",
                search,
                "--no-cache",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads((out / "results.json").read_text())["m1"]["raw"]
    assert r["identification"]["1"]["rank1"] == pytest.approx(7 / 8)  # d3 alone beats only (b2, b1)
    assert r["identification"]["2"]["rank1"] == pytest.approx(RANK1_BOTH)


def test_masked_probes(tmp_path, models):
    root = make_testpack(tmp_path / "pack", noises=False)
    write_images(tmp_path / "masked", MASKED)
    out = tmp_path / "out"
    assert (
        main(
            [
                "eval-megaface",
                models[0],
                "--root",
                str(root),
                "--masked",
                str(tmp_path / "masked"),
                "--far",
                "0.3",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads((out / "results.json").read_text())["m1"]
    assert r["raw"]["identification"]["2"]["rank1"] == pytest.approx(RANK1_MASKED)
    assert r["raw"]["verification"]["2"]["tar"] == pytest.approx(TAR_MASKED)
    assert r["raw"]["verification"]["2"]["genuine"] == 8
    assert "MegaFace-mask Id 2" in r["benchmarks"]


def test_write_features_then_evaluate_feature_files(tmp_path, models, capsys):
    root = make_testpack(tmp_path / "pack")
    feats = tmp_path / "feats"
    assert (
        main(
            [
                "eval-megaface",
                models[0],
                "--root",
                str(root),
                "--far",
                "0.3",
                "--device",
                "cpu",
                "--write-features",
                str(feats),
                "--out",
                str(tmp_path / "o1"),
            ]
        )
        == 0
    )
    f = feats / "megaface" / "001" / "y@N00" / "d3_0.png_facezoo.bin"
    vec = md.mf.read_feature(f)  # devkit layout, unit vector at 85 degrees
    np.testing.assert_allclose(vec, [math.cos(math.radians(85)), math.sin(math.radians(85)), 0], atol=3e-3)
    assert (feats / "facescrub" / "A" / "A_3.png_facezoo.bin").is_file()
    assert (
        main(
            [
                "eval-megaface",
                "--features",
                str(feats),
                "--root",
                str(root),
                "--far",
                "0.3",
                "--out",
                str(tmp_path / "o2"),
            ]
        )
        == 0
    )
    a = json.loads((tmp_path / "o1" / "results.json").read_text())["m1"]
    b = json.loads((tmp_path / "o2" / "results.json").read_text())["feats"]
    assert a["raw"] == b["raw"] and a["clean"] == b["clean"]


def test_errors_name_the_missing_file(tmp_path, models, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval-megaface", models[0], "--root", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "facescrub_lst" in err and "facescrub_features_list.json" in err
    root = make_testpack(tmp_path / "pack")
    (root / "megaface_images" / D3).unlink()
    assert main(["eval-megaface", models[0], "--root", str(root)]) == 2
    assert "d3_0.png" in capsys.readouterr().err
    (root / "megaface_lst").unlink()
    assert main(["eval-megaface", models[0], "--root", str(root)]) == 2
    assert "megaface_lst" in capsys.readouterr().err
    nested = make_devkit(tmp_path / "dk", {1: [D1]})
    assert main(["eval-megaface", models[0], "--root", str(nested), "--sizes", "2"]) == 2
    assert "megaface_features_list.json_2_1" in capsys.readouterr().err
    assert main(["eval-megaface", models[0], "--root", str(root), "--clean", "--no-clean"]) == 2
