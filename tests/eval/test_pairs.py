"""Pair-set readers against pair lists and folders written by hand in the official layouts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from facezoo.data.image import encode_image
from facezoo.errors import ConfigError, DataError
from facezoo.eval.pairs import (
    PAIR_PROTOCOLS,
    PairSet,
    load_pair_images,
    read_calfw_pairs,
    read_cfp_pairs,
    read_cplfw_pairs,
    read_lfw_pairs,
    read_pairs,
    read_rfw_pairs,
    rfw_summary,
)
from facezoo.sdk.align import arcface_template


def colour_of(path: Path) -> tuple[int, int, int]:
    """A deterministic colour per file name, so decoded pixels tell which file was read."""
    h = sum((i + 1) * ord(c) for i, c in enumerate(str(path.name) + path.parent.name))
    return (h % 251, (h // 7) % 253, (h // 13) % 241)


def write_image(path: Path, size=(8, 8)) -> None:
    """A constant-colour PNG (lossless) under any file name; decode_image reads it by its magic number."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.empty((*size, 3), dtype=np.uint8)
    img[:] = colour_of(path)
    path.write_bytes(encode_image(img, fmt="png"))


# ------------------------------------------------------------------ LFW

LFW_TEXT = (
    "2\t2\n"
    "Alice\t1\t2\n"
    "Bob\t1\t3\n"
    "Alice\t1\tBob\t2\n"
    "Carol\t1\tBob\t1\n"
    "Carol\t1\t2\n"
    "Dave\t2\t10\n"
    "Dave\t1\tAlice\t2\n"
    "Bob\t3\tDave\t1\n"
)


def lfw_images(root: Path) -> None:
    for name, nums in {"Alice": (1, 2), "Bob": (1, 2, 3), "Carol": (1, 2), "Dave": (1, 2, 10)}.items():
        for n in nums:
            write_image(root / name / f"{name}_{n:04d}.jpg")


def test_lfw_paths_labels_folds(tmp_path):
    (tmp_path / "pairs.txt").write_text(LFW_TEXT)
    lfw_images(tmp_path / "imgs")
    ps = read_lfw_pairs(tmp_path / "pairs.txt", tmp_path / "imgs")
    root = tmp_path / "imgs"
    assert len(ps) == 8
    assert ps.paths1[0] == root / "Alice" / "Alice_0001.jpg"
    assert ps.paths2[0] == root / "Alice" / "Alice_0002.jpg"
    assert ps.paths1[3] == root / "Carol" / "Carol_0001.jpg"
    assert ps.paths2[3] == root / "Bob" / "Bob_0001.jpg"
    assert ps.paths2[5] == root / "Dave" / "Dave_0010.jpg"
    assert ps.issame.tolist() == [True, True, False, False, True, True, False, False]
    assert ps.folds.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_lfw_registry_finds_image_subfolder(tmp_path):
    (tmp_path / "pairs.txt").write_text(LFW_TEXT)
    lfw_images(tmp_path / "lfw")
    ps = read_pairs(f"lfw:{tmp_path}")
    assert ps.paths1[0] == tmp_path / "lfw" / "Alice" / "Alice_0001.jpg"
    assert ps.name == "lfw"


@pytest.mark.parametrize(
    "text, where",
    [
        ("10\n", "pairs.txt:1"),  # header with one field
        ("ten 300\n", "pairs.txt:1"),  # non-integer header
        (LFW_TEXT.replace("Bob\t1\t3\n", "Bob\t1\t3\t4\t5\n"), "pairs.txt:3"),  # 5 fields
        (LFW_TEXT.replace("Carol\t1\t2\n", "Carol\tx\t2\n"), "pairs.txt:6"),  # non-integer image number
        (LFW_TEXT.replace("Alice\t1\tBob\t2\n", "Alice\t1\t2\n"), "pairs.txt:4"),  # matched where mismatched due
        ("\n".join(LFW_TEXT.splitlines()[:-1]) + "\n", "pairs.txt:1"),  # truncated: header disagrees
    ],
)
def test_lfw_malformed_names_file_and_line(tmp_path, text, where):
    (tmp_path / "pairs.txt").write_text(text)
    with pytest.raises(DataError, match=where.replace(".", r"\.")):
        read_lfw_pairs(tmp_path / "pairs.txt", tmp_path, check=False)


def test_lfw_missing_images_one_error_listing_first_few(tmp_path):
    (tmp_path / "pairs.txt").write_text(LFW_TEXT)
    with pytest.raises(DataError) as e:
        read_lfw_pairs(tmp_path / "pairs.txt", tmp_path)
    msg = str(e.value)
    # 10 distinct images are referenced, none exist: 5 listed, 5 more counted
    assert "10 image(s)" in msg and "and 5 more" in msg
    assert str(tmp_path / "Alice" / "Alice_0001.jpg") in msg


# ------------------------------------------------------------------ CALFW / CPLFW


def two_line_file(n_per_kind: int, same_label) -> tuple[str, list[tuple[str, str]], list[tuple[str, str]]]:
    """A CALFW/CPLFW-style list: n matched pairs (label same_label(i)) then n mismatched (label 0)."""
    pos = [(f"P{i}_0001.jpg", f"P{i}_0002.jpg") for i in range(n_per_kind)]
    neg = [(f"N{i}_0001.jpg", f"M{i}_0001.jpg") for i in range(n_per_kind)]
    lines = []
    for i, (a, b) in enumerate(pos):
        lines += [f"{a} {same_label(i)}", f"{b} {same_label(i)}"]
    for a, b in neg:
        lines += [f"{a} 0", f"{b} 0"]
    return "\n".join(lines) + "\n", pos, neg


def test_calfw_reorders_into_contiguous_folds(tmp_path):
    # 20 matched pairs labelled with their fold 1..10 (2 per fold), then 20 mismatched pairs
    text, pos, neg = two_line_file(20, lambda i: i // 2 + 1)
    (tmp_path / "pairs_CALFW.txt").write_text(text)
    ps = read_calfw_pairs(tmp_path / "pairs_CALFW.txt", tmp_path, check=False)
    assert len(ps) == 40
    # fold k = matched pairs 2k, 2k+1, then mismatched pairs 2k, 2k+1
    expect = []
    for k in range(10):
        expect += [(pos[2 * k], True), (pos[2 * k + 1], True), (neg[2 * k], False), (neg[2 * k + 1], False)]
    got = [((p1.name, p2.name), s) for p1, p2, s in zip(ps.paths1, ps.paths2, ps.issame.tolist())]
    assert got == expect
    assert ps.folds.tolist() == [k for k in range(10) for _ in range(4)]
    assert ps.paths1[0] == tmp_path / "P0_0001.jpg"


def test_cplfw_registry_aligned_images_folder(tmp_path):
    text, pos, neg = two_line_file(10, lambda i: 1)
    (tmp_path / "pairs_CPLFW.txt").write_text(text)
    for a, b in pos + neg:
        write_image(tmp_path / "aligned images" / a)
        write_image(tmp_path / "aligned images" / b)
    ps = PAIR_PROTOCOLS.create("cplfw", root=tmp_path)
    assert ps.name == "cplfw"
    assert ps.paths1[0] == tmp_path / "aligned images" / "P0_0001.jpg"
    assert ps.issame.tolist() == [True, False] * 10
    assert ps.folds.tolist() == [k for k in range(10) for _ in range(2)]


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda ls: ls[:-1], "pairs_CPLFW.txt:39"),  # odd line count: last line named
        (lambda ls: ls[:3] + ["P1_0002.jpg 0"] + ls[4:], "pairs_CPLFW.txt:4"),  # labels disagree within a pair
        (lambda ls: ls[:4] + ["P2_0001.jpg one"] + ls[5:], "pairs_CPLFW.txt:5"),  # non-integer label
        (lambda ls: ls[:4] + ["P2_0001.jpg"] + ls[5:], "pairs_CPLFW.txt:5"),  # missing label
        (lambda ls: ls[2:22] + ls[0:2] + ls[22:], "pairs_CPLFW.txt:21"),  # matched pair after mismatched ones
    ],
)
def test_cplfw_malformed_names_file_and_line(tmp_path, mutate, where):
    text, _, _ = two_line_file(10, lambda i: 1)
    lines = mutate(text.splitlines())
    (tmp_path / "pairs_CPLFW.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=where.replace(".", r"\.")):
        read_cplfw_pairs(tmp_path / "pairs_CPLFW.txt", tmp_path, check=False)


def test_two_line_unbalanced_counts_rejected(tmp_path):
    text, _, _ = two_line_file(10, lambda i: 1)
    (tmp_path / "p.txt").write_text(text + "X_0001.jpg 0\nY_0001.jpg 0\n")
    with pytest.raises(DataError, match="10 matched and 11 mismatched"):
        read_cplfw_pairs(tmp_path / "p.txt", tmp_path, check=False)


# ------------------------------------------------------------------ CFP


def make_cfp(root: Path, nsplits: int = 10) -> None:
    """CFP layout: Data/Images/<id>/{frontal,profile}/NN.jpg, Protocol lists, Split/{FP,FF}/NN/{same,diff}.txt."""
    proto = root / "Protocol"
    proto.mkdir(parents=True)
    f_lines, p_lines = [], []
    for ident in (1, 2):
        for n in (1, 2):
            idx = (ident - 1) * 2 + n
            f_lines.append(f"{idx} ../Data/Images/{ident:03d}/frontal/{n:02d}.jpg")
            p_lines.append(f"{idx} ../Data/Images/{ident:03d}/profile/{n:02d}.jpg")
            write_image(root / "Data" / "Images" / f"{ident:03d}" / "frontal" / f"{n:02d}.jpg")
            write_image(root / "Data" / "Images" / f"{ident:03d}" / "profile" / f"{n:02d}.jpg")
    (proto / "Pair_list_F.txt").write_text("\n".join(f_lines) + "\n")
    (proto / "Pair_list_P.txt").write_text("\n".join(p_lines) + "\n")
    for kind in ("FP", "FF"):
        for k in range(1, nsplits + 1):
            d = proto / "Split" / kind / f"{k:02d}"
            d.mkdir(parents=True)
            # split k: same = (1, 2) or (3, 4); diff = (1, 3), (2, 4)
            same = "1,2\n" if k % 2 else "3,4\n"
            (d / "same.txt").write_text(same)
            (d / "diff.txt").write_text("1,3\n2,4\n")


def test_cfp_fp_and_ff(tmp_path):
    make_cfp(tmp_path)
    img = tmp_path / "Data" / "Images"
    fp = read_cfp_pairs(tmp_path, "FP")
    assert fp.name == "cfp_fp" and len(fp) == 30
    # fold 0 = split 01: same (1,2) then diff (1,3), (2,4); FP: first frontal, second profile
    assert fp.paths1[0] == img / "001" / "frontal" / "01.jpg"
    assert fp.paths2[0] == img / "001" / "profile" / "02.jpg"
    assert fp.paths1[2] == img / "001" / "frontal" / "02.jpg"
    assert fp.paths2[2] == img / "002" / "profile" / "02.jpg"
    assert fp.issame.tolist() == [True, False, False] * 10
    assert fp.folds.tolist() == [k for k in range(10) for _ in range(3)]
    # split 02 (fold 1) has same (3,4); split 10 comes last, not after 01
    assert fp.paths1[3] == img / "002" / "frontal" / "01.jpg"
    assert fp.paths2[27] == img / "002" / "profile" / "02.jpg"
    ff = PAIR_PROTOCOLS.create("cfp_ff", root=tmp_path)
    assert ff.name == "cfp_ff"
    assert ff.paths2[0] == img / "001" / "frontal" / "02.jpg"


def test_cfp_bad_index_and_bad_line(tmp_path):
    make_cfp(tmp_path)
    same = tmp_path / "Protocol" / "Split" / "FP" / "03" / "same.txt"
    same.write_text("1,2\n1,9\n")
    with pytest.raises(DataError, match=r"03/same\.txt:2: index 9"):
        read_cfp_pairs(tmp_path, "FP")
    same.write_text("1;2\n")
    with pytest.raises(DataError, match=r"same\.txt:1"):
        read_cfp_pairs(tmp_path, "FP")
    with pytest.raises(ConfigError):
        read_cfp_pairs(tmp_path, "PP")


# ------------------------------------------------------------------ RFW


def test_rfw_layout_and_folds(tmp_path):
    rows = []
    for i in range(10):
        rows.append(f"m.0a{i}\t1\t2" if i % 2 == 0 else f"m.0a{i}\t1\tm.0b{i}\t3")
    txt = tmp_path / "test" / "txts" / "Asian" / "Asian_pairs.txt"
    txt.parent.mkdir(parents=True)
    txt.write_text("\n".join(rows) + "\n")
    data = tmp_path / "test" / "data" / "Asian"
    for i in range(10):
        write_image(data / f"m.0a{i}" / f"m.0a{i}_0001.jpg")
        write_image(data / f"m.0a{i}" / f"m.0a{i}_0002.jpg")
        write_image(data / f"m.0b{i}" / f"m.0b{i}_0003.jpg")
    ps = read_rfw_pairs(tmp_path, "asian")
    assert ps.name == "rfw_asian" and len(ps) == 10
    assert ps.paths1[0] == data / "m.0a0" / "m.0a0_0001.jpg"
    assert ps.paths2[0] == data / "m.0a0" / "m.0a0_0002.jpg"
    assert ps.paths2[1] == data / "m.0b1" / "m.0b1_0003.jpg"
    assert ps.issame.tolist() == [True, False] * 5
    assert ps.folds.tolist() == list(range(10))
    assert read_pairs(f"rfw_asian:{tmp_path}").paths1 == ps.paths1
    with pytest.raises(ConfigError, match="Asian"):
        read_rfw_pairs(tmp_path, "Asain")


def test_rfw_summary_arithmetic():
    accs = {"Indian": 0.95, "African": 0.90, "Asian": 0.80, "Caucasian": 0.85}
    s = rfw_summary({r: {"accuracy": a, "accuracy_std": 0.01} for r, a in accs.items()})
    mean = (0.90 + 0.80 + 0.85 + 0.95) / 4
    std = math.sqrt(sum((a - mean) ** 2 for a in accs.values()) / 4)  # population std
    assert s["mean"] == pytest.approx(0.875)
    assert s["mean"] == pytest.approx(mean)
    assert s["std"] == pytest.approx(std)
    assert list(s["accuracy"]) == ["African", "Asian", "Caucasian", "Indian"]
    assert s["accuracy"]["Asian"] == 0.80
    with pytest.raises(DataError):
        rfw_summary({})


# ------------------------------------------------------------------ images


def test_load_pair_images_interleaves_and_resizes(tmp_path):
    a, b, c = tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.jpg"
    for p in (a, b, c):
        write_image(p, size=(8, 10))
    ps = PairSet("t", [a, c, b], [b, a, c], np.array([True, False, True]))
    images, issame = load_pair_images(ps, image_size=(4, 6))
    assert images.shape == (6, 4, 6, 3) and images.dtype == np.uint8
    for i, p in enumerate([a, b, c, a, b, c]):  # interleaved: pair 0 = (a, b), pair 1 = (c, a), pair 2 = (b, c)
        assert (images[i] == np.array(colour_of(p), dtype=np.uint8)).all(), i
    assert issame.tolist() == [True, False, True]


def test_load_pair_images_aligns_with_landmarks(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(112, 112, 3), dtype=np.uint8)
    p1, p2 = tmp_path / "x.png", tmp_path / "y.png"
    p1.write_bytes(encode_image(img, fmt="png"))
    p2.write_bytes(encode_image(img[::-1].copy(), fmt="png"))
    ps = PairSet("t", [p1], [p2], np.array([False]))
    tmpl = arcface_template((112, 112))
    # landmarks already on the template: the alignment is the identity and the pixels come back unchanged
    images, _ = load_pair_images(ps, (112, 112), landmarks={p1: tmpl, str(p2): tmpl})
    assert (images[0] == img).all() and (images[1] == img[::-1]).all()
    # template shifted by (+3, +2) px: aligned crop pixel (x, y) is source pixel (x+3, y+2)
    images, _ = load_pair_images(ps, (112, 112), landmarks={p1: tmpl + [3, 2], p2: tmpl})
    assert (images[0][:100, :100] == img[2:102, 3:103]).all()
    with pytest.raises(DataError, match="no landmarks"):
        load_pair_images(ps, (112, 112), landmarks={p1: tmpl})


def test_read_pairs_bad_spec():
    with pytest.raises(ConfigError, match="name:root"):
        read_pairs("lfw")
    with pytest.raises(ConfigError, match="Did you mean 'calfw'"):
        read_pairs("calfv:/nowhere")
