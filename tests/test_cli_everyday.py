"""Everyday use through facezoo.cli.main: the operating point (and the fix its error suggests), bad thresholds,
strict JSON, folders of images, identify --annotate, progress bars, a closed stdout, help defaults, DataLoader worker
errors, and eval refusing NaN models and one-kind pair sets. A fixed-answer detector and a real tiny model."""

import argparse
import io
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import facezoo.cli as cli
from facezoo.cli import main
from facezoo.data.image import encode_image
from facezoo.data.verification_bin import write_bin
from facezoo.models.checkpoint import save_checkpoint
from facezoo.models.embedder import ARCFACE_TEMPLATE_112, ModelMeta
from facezoo.sdk.align import align_face
from facezoo.sdk.detect.base import DETECTORS, Detections, Detector
from facezoo.sdk.draw import draw_faces
from facezoo.sdk.thresholds import DEFAULT_KEY, write_thresholds

META = ModelMeta(backbone="ir18", backbone_kwargs={"width": 0.25}, embedding_size=32, input_size=(64, 64))
KPS = np.asarray(ARCFACE_TEMPLATE_112, np.float32) + 20


class OneFaceTest(Detector):
    """One face at fixed points in every image that is not all black."""

    def detect(self, image, max_faces=None):
        if not np.asarray(image).any():
            return Detections.empty()
        return Detections(np.float32([[20, 20, 132, 132]]), np.float32([0.9]), KPS[None])


if "onefacetest" not in DETECTORS:
    DETECTORS.register("onefacetest")(OneFaceTest)
DET = ["--detector", "onefacetest", "--device", "cpu"]


def face_like(seed, size=160):
    low = np.random.default_rng(seed).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(low).resize((size, size), Image.BILINEAR))


def strict(line: str):
    """json.loads that refuses NaN / Infinity (Python's json accepts them; JSON does not)."""

    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(line, parse_constant=refuse)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, [strict(line) for line in out.splitlines() if line.strip()], err


@pytest.fixture()
def model(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "models" / "tiny.pt"
    path.parent.mkdir()
    save_checkpoint(path, META, META.build_backbone().state_dict())
    return path


@pytest.fixture()
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(face_like(i)).save(folder / f"p{i}.png")
    return folder


def pair_set(path: Path, impostors: int, genuine: int) -> Path:
    """A .bin of aligned 64x64 crops: `impostors` pairs of different random faces, `genuine` pairs of one face."""
    imgs = []
    for i in range(impostors):
        imgs += [align_face(face_like(1000 + 2 * i), KPS, (64, 64))[0], align_face(face_like(1001 + 2 * i), KPS, 64)[0]]
    for i in range(genuine):
        crop = align_face(face_like(5000 + i), KPS, (64, 64))[0]
        imgs += [crop, crop]
    write_bin(path, [encode_image(im, "png") for im in imgs], [False] * impostors + [True] * genuine)
    return path


# ---------------------------------------------------------------------- operating point


def test_verify_error_gives_commands_that_work(model, photos, tmp_path, capsys):
    code, recs, err = run(capsys, "verify", photos / "p0.png", photos / "p1.png", "--model", model, *DET)
    assert code == 2 and recs == [] and "Traceback" not in err
    command = re.search(r"`(facezoo calibrate [^`]+)`", err).group(1)
    assert command == f"facezoo calibrate {model} --bin PAIRS.bin [--folder CROPS/]"
    calibrated = re.search(r"then use --model (\S+?)\.(\s|$)", err).group(1) + ""
    assert "--threshold T" in err and "threshold=" in err.split("API:")[-1]
    # the fix, as written (the optional folder left out): 100 impostor pairs measure FAR 1e-2
    argv = command.replace("PAIRS.bin", str(pair_set(tmp_path / "pairs.bin", 100, 10))).split()[1:]
    argv = [a for a in argv if a not in ("[--folder", "CROPS/]")]
    code, (cal,), err = run(capsys, *argv, "--device", "cpu")
    assert code == 0 and cal["out"] == calibrated and list(cal["thresholds"]) == ["1e-02"]
    code, (v,), err = run(capsys, "verify", photos / "p0.png", photos / "p1.png", "--model", calibrated, *DET)
    assert code == 0 and v["operating_point"] == {
        "far": 0.01,
        "threshold": cal["thresholds"]["1e-02"],
        "source": "calibrated",
    }
    assert v["threshold"] == cal["thresholds"]["1e-02"] and v["same"] == (v["similarity"] >= v["threshold"])
    # a FAR the pairs cannot measure: the error says how many pairs it needs, and that leaving --far out works
    code, _, err = run(
        capsys, "verify", photos / "p0.png", photos / "p1.png", "--model", calibrated, "--far", 1e-4, *DET
    )
    assert code == 2 and "needs at least 10000 impostor pairs" in err and "leave out --far" in err


def test_calibrate_keeps_a_stated_default_and_verify_says_which_it_used(model, photos, tmp_path, capsys):
    stated = write_thresholds(model, {DEFAULT_KEY: 0.25}, tmp_path / "stated.pt")
    code, (v,), _ = run(capsys, "verify", photos / "p0.png", photos / "p0.png", "--model", stated, *DET)
    assert code == 0 and v["operating_point"] == {"threshold": 0.25, "source": "model default"} and v["same"]
    code, (v,), _ = run(
        capsys, "verify", photos / "p0.png", photos / "p1.png", "--model", stated, "--threshold", 0.999, *DET
    )
    assert v["operating_point"] == {"threshold": 0.999, "source": "--threshold"} and v["same"] is False
    out = tmp_path / "stated_cal.pt"
    code, (cal,), _ = run(
        capsys, "calibrate", stated, "--bin", pair_set(tmp_path / "p.bin", 100, 0), "--out", out, "--device", "cpu"
    )
    # an impostor-only set still calibrates; its TAR is not a number and is printed as null, never a bare NaN
    assert code == 0 and cal["genuine"] == 0 and cal["report"]["1e-02"]["tar"] is None
    assert torch.load(out, weights_only=True)["meta"]["thresholds"] == {DEFAULT_KEY: 0.25, **cal["thresholds"]}


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "1.5", "-2"])
def test_verify_refuses_a_threshold_that_is_not_a_cosine(bad, photos, tmp_path, capsys):
    missing = tmp_path / "never_loaded.pt"  # the threshold is checked before any model is read
    code, recs, err = run(
        capsys, "verify", photos / "p0.png", photos / "p1.png", "--model", missing, f"--threshold={bad}", *DET
    )
    assert code == 2 and recs == [] and "--threshold" in err and "finite number in [-1, 1]" in err
    assert "never_loaded" not in err


def test_print_json_is_strict():
    from facezoo.cli._sdk_args import finite_json

    assert finite_json({"a": float("nan"), "b": [np.float32(1.5), float("inf")], "c": np.arange(2)}) == {
        "a": None,
        "b": [1.5, None],
        "c": [0, 1],
    }


# ---------------------------------------------------------------------- folders, annotate, progress


def _tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(face_like(10)).save(root / "a.png")
    Image.fromarray(face_like(11)).save(root / "sub" / "b.jpg")
    Image.fromarray(face_like(12)).save(root / "sub" / "deeper" / "a.png")  # the same name, another folder
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"skipped without a word")
    (root / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")


def test_detect_walks_folders_and_skips_junk(tmp_path, capsys):
    root = tmp_path / "in"
    _tree(root)
    Image.fromarray(face_like(13)).save(tmp_path / "single.png")
    code, recs, err = run(capsys, "detect", root, tmp_path / "single.png", "--out", tmp_path / "out", *DET)
    assert code == 0
    assert [r["image"] for r in recs] == [
        str(root / "a.png"),
        str(root / "sub" / "b.jpg"),
        str(root / "sub" / "deeper" / "a.png"),
        str(tmp_path / "single.png"),
    ]
    assert f"skipped {root / 'notes.txt'}: not an image" in err and f"skipped {root / 'sub' / 'broken.jpg'}" in err
    assert "hidden" not in err and "Traceback" not in err
    assert [r["annotated"] for r in recs] == [
        str(tmp_path / "out" / p) for p in ("a.png", "sub/b.jpg", "sub/deeper/a.png", "single.png")
    ]
    assert all(Path(r["annotated"]).is_file() for r in recs)
    # a file named on the command line that cannot be decoded is an error, not a skip
    code, _, err = run(capsys, "detect", root / "sub" / "broken.jpg", *DET)
    assert code == 2 and "broken.jpg: cannot decode image" in err
    code, _, err = run(capsys, "detect", tmp_path / "nowhere", *DET)
    assert code == 2 and "nowhere: no such file or folder" in err


def test_embed_walks_folders(model, tmp_path, capsys):
    root = tmp_path / "in"
    _tree(root)
    code, recs, _ = run(capsys, "embed", root, "--model", model, "--out", tmp_path / "e.npy", *DET)
    assert code == 0 and len(recs) == 3 and np.load(tmp_path / "e.npy").shape == (3, 32)


def test_identify_folders_unknown_and_annotate(model, tmp_path, capsys):
    people = tmp_path / "people"
    for i, name in enumerate(["ann", "ben"]):
        (people / name).mkdir(parents=True)
        Image.fromarray(face_like(i)).save(people / name / "a.png")
    g = tmp_path / "g.db"
    stated = write_thresholds(model, {DEFAULT_KEY: 0.999}, tmp_path / "stated.pt")  # only near-copies match
    assert run(capsys, "gallery", "enroll", g, people, "--model", stated, *DET)[0] == 0
    queries = tmp_path / "queries"
    queries.mkdir()
    Image.fromarray(face_like(1)).save(queries / "ben_again.png")
    Image.fromarray(face_like(77)).save(queries / "stranger.png")
    (queries / "readme.md").write_text("junk")
    code, recs, err = run(
        capsys, "identify", queries, "--model", stated, "--gallery", g, "--annotate", tmp_path / "ann", *DET
    )
    assert code == 0 and "skipped" in err and "readme.md" in err
    by_name = {Path(r["image"]).name: r for r in recs}
    assert set(by_name) == {"ben_again.png", "stranger.png"}
    for r in recs:
        assert r["operating_point"] == {"threshold": 0.999, "source": "model default"}
    (ben,) = by_name["ben_again.png"]["faces"]
    assert ben["identity"] == "ben" and ben["unknown"] is False and ben["matches"][0]["score"] > 0.999
    (stranger,) = by_name["stranger.png"]["faces"]
    assert stranger["identity"] is None and stranger["unknown"] is True and stranger["matches"] == []
    # the annotated copies carry the names: the same drawing as draw_faces with those labels
    from facezoo.sdk.face import Face

    for file, text in [("ben_again.png", f"ben {ben['matches'][0]['score']:.2f}"), ("stranger.png", "unknown")]:
        face = Face(np.float32([20, 20, 132, 132]), 0.9, KPS, None)
        want = draw_faces(face_like(1 if file.startswith("ben") else 77), [face], labels=[text])
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "ann" / file)), want)
    # an uncalibrated model: the same error as verify, before any image is read
    code, _, err = run(capsys, "identify", queries, "--model", model, "--gallery", g, *DET)
    assert code == 2 and "no operating point" in err


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_long_loops_show_progress_on_a_terminal_unless_quiet(tmp_path, capsys, monkeypatch):
    for quiet in (False, True):
        term = Terminal()
        monkeypatch.setattr(sys, "stderr", term)
        out = tmp_path / f"synth{quiet}"
        argv = [
            "data",
            "synth",
            out,
            "--identities",
            4,
            "--images-per-identity",
            3,
            "--val-identities",
            2,
            "--image-size",
            32,
        ]
        assert main([str(a) for a in argv + (["--quiet"] if quiet else [])]) == 0
        assert (
            main(
                [
                    str(a)
                    for a in ["data", "unpack", out / "train", tmp_path / f"un{quiet}"] + (["--quiet"] if quiet else [])
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    str(a)
                    for a in ["data", "pack", tmp_path / f"un{quiet}", tmp_path / f"re{quiet}"]
                    + (["--quiet"] if quiet else [])
                ]
            )
            == 0
        )
        text = term.getvalue()
        for bar in ("synth train", "synth synth_ver.bin", "unpack", "pack"):
            assert (f"{bar}:" in text and "/12 [" in text and "img/s" in text) != quiet, (bar, text)
    monkeypatch.undo()
    capsys.readouterr()


# ---------------------------------------------------------------------- the command line itself


def test_a_closed_stdout_exits_quietly(monkeypatch, capsys):
    read, write = os.pipe()
    os.close(read)  # the reader (e.g. `head`) has gone
    stdout = os.fdopen(write, "w")
    monkeypatch.setattr(sys, "stdout", stdout)
    code = main(["list"])
    monkeypatch.undo()
    stdout.close()
    err = capsys.readouterr().err
    assert code == 141 and err == ""


def _parsers(parser, path="facezoo"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_option_with_a_default_shows_it():
    missing = []
    for path, parser in _parsers(cli.build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.default in (None, False, [], argparse.SUPPRESS):
                continue
            text = formatter._expand_help(action) if action.help else ""
            if "default" not in text.lower():
                missing.append(f"{path} {action.option_strings[-1]}")
    assert missing == []
    helptext = dict(_parsers(cli.build_parser()))["facezoo identify"].format_help()
    assert "(default: 5)" in " ".join(helptext.split())  # --top-k


def test_every_argument_has_help():
    bare = [
        f"{path} {action.option_strings[-1] if action.option_strings else action.dest}"
        for path, parser in _parsers(cli.build_parser())
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) and not action.help
    ]
    assert bare == []


@pytest.mark.slow
def test_a_corrupt_image_in_a_dataloader_worker_is_one_error_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[1])
    train = tmp_path / "train"
    for person in range(2):
        (train / f"p{person}").mkdir(parents=True)
        for j in range(4):
            Image.fromarray(face_like(10 * person + j, 32)).save(train / f"p{person}" / f"{j}.png")
    (train / "p1" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    argv = [
        "train",
        "configs/synthetic_demo.yaml",
        f"output={tmp_path / 'run'}",
        f"data.train={train}",
        "data.val=[]",
        "model.input_size=32",
        "batch_size=3",
        "epochs=1",
        "data.num_workers=1",
        "tensorboard=false",
    ]
    assert main(argv) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert lines[-1].startswith("facezoo: error: ") and "9.png: cannot decode image" in lines[-1]
    assert not any("Traceback" in ln or "DataLoader worker" in ln for ln in lines)


# ---------------------------------------------------------------------- eval refuses what it cannot score


def test_eval_refuses_a_nan_model_and_one_kind_pair_sets(model, tmp_path, capsys):
    state = {
        k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
        for k, v in META.build_backbone().state_dict().items()
    }
    nan_model = tmp_path / "nan.pt"
    save_checkpoint(nan_model, META, state)
    mixed = pair_set(tmp_path / "mixed.bin", 10, 10)
    code = main(["eval", str(nan_model), "--bin", str(mixed), "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "the model produced non-finite embeddings (NaN or inf) for 40 of 40 images" in err
    assert "Traceback" not in err
    for impostors, genuine, kind in [(0, 10, "genuine"), (10, 0, "impostor")]:
        one_kind = pair_set(tmp_path / f"only_{kind}.bin", impostors, genuine)
        code = main(["eval", str(model), "--bin", str(one_kind), "--quiet", "--device", "cpu"])
        err = capsys.readouterr().err
        assert code == 2 and f"all 10 pairs are {kind}" in err and "Traceback" not in err
    shutil.rmtree(tmp_path / "models")


def test_many_junk_files_are_counted_not_listed_and_bad_devices_are_one_line(model, photos, capsys):
    for i in range(25):
        (photos / f"note{i:02d}.txt").write_text("junk")
    code, recs, err = run(capsys, "detect", photos, *DET)
    named = [ln for ln in err.splitlines() if ln.startswith("skipped") and "not an image file" in ln]
    assert code == 0 and len(recs) == 3 and len(named) == 20 and "skipped 5 more files that are not images" in err
    code, _, err = run(
        capsys, "embed", photos / "p0.png", "--model", model, "--detector", "onefacetest", "--device", "tpu"
    )
    assert code == 2 and "device 'tpu' is not one of auto, cpu, cuda, cuda:N" in err and "Traceback" not in err
