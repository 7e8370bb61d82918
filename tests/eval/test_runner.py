"""The evaluation loop in the library (facezoo.eval.run): model names, run folders with the best checkpoint marked,
--name, sets files, the Python API, and progress bars that only a terminal sees."""

import io
import json

import numpy as np
import pytest
import torch

import facezoo
import facezoo.eval
from facezoo.cli import main
from facezoo.data.image import encode_image
from facezoo.data.verification_bin import write_bin
from facezoo.errors import ConfigError
from facezoo.eval import features as ft
from facezoo.eval.runner import model_names


@pytest.fixture(autouse=True)
def facezoo_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEZOO_HOME", str(tmp_path / "home"))


# ---------------------------------------------------------------------------------------------------- names


def test_model_names_are_file_names_made_unique_minimally(tmp_path):
    assert model_names(["tmp/m.pt", "tmp/m.onnx"]) == ["m.pt", "m.onnx"]  # a checkpoint and its export
    assert model_names(["a/r50.pt", "b/r100.pt"]) == ["r50", "r100"]
    assert model_names(["run_a/model.pt", "run_b/model.pt"]) == ["run_a", "run_b"]  # named after the run
    assert model_names(["run/model.pt", "run/checkpoint.pt"]) == ["model.pt", "checkpoint.pt"]
    assert model_names(["runs/r50/best.pt"]) == ["r50"]  # the best checkpoint a training run keeps
    assert model_names(["x/m.pt", "y/m.pt", "z/q.pt"]) == ["x/m.pt", "y/m.pt", "q"]
    assert model_names(["a/run/model.pt", "b/run/model.pt"]) == ["a/run/model.pt", "b/run/model.pt"]
    assert model_names(["m.pt", "m.pt"]) == ["m#1", "m#2"]  # the same file twice: numbered
    lin = torch.nn.Linear(2, 2)
    assert model_names([lin, torch.nn.Linear(2, 2)]) == ["Linear#1", "Linear#2"]


# ---------------------------------------------------------------------------------------------------- models


class Flat(torch.nn.Module):
    """The flattened image in [0, 1]: noisy copies are near, different images far (high accuracy)."""

    input_size = (8, 8)

    def __init__(self, noise=0.0):
        super().__init__()
        self.noise = torch.nn.Parameter(torch.tensor([noise]))  # weights to fingerprint for the cache

    def forward(self, x):
        e = x.float().flatten(1) / 255
        g = torch.Generator().manual_seed(int(x.sum()))
        return e + self.noise * torch.randn(e.shape, generator=g)  # noise per batch content: deterministic


def write_pairs(path, n_pairs, seed):
    rng = np.random.default_rng(seed)
    images, issame = [], []
    for i in range(n_pairs):
        a = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        same = i % 2 == 0
        b = np.clip(a + rng.integers(-8, 9, a.shape), 0, 255) if same else rng.integers(0, 256, a.shape)
        images += [encode_image(a, "png"), encode_image(b.astype(np.uint8), "png")]
        issame.append(same)
    write_bin(path, images, issame)
    return path


@pytest.fixture
def sets(tmp_path):
    return [write_pairs(tmp_path / "alpha.bin", 40, 0), write_pairs(tmp_path / "beta.bin", 40, 1)]


def test_run_folder_evaluates_every_checkpoint_and_marks_the_best(tmp_path, sets, monkeypatch, capsys):
    run = tmp_path / "run"
    run.mkdir()
    noise = {"best.pt": 0.0, "checkpoint.pt": 50.0, "model.pt": 0.0, "step_100.pt": 5.0}
    for name in noise:
        (run / name).write_bytes(b"")
    (run / "notes.txt").write_text("not a checkpoint")
    loaded = []
    monkeypatch.setattr(
        facezoo, "load_model", lambda path, map_location="cpu": loaded.append(path.name) or Flat(noise[path.name])
    )
    out = tmp_path / "out"
    argv = ["eval", str(run), "--bin", *map(str, sets), "--device", "cpu", "--nfolds", "2", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert loaded == sorted(noise)  # every *.pt, one at a time, in name order
    r = json.loads((out / "results.json").read_text())
    assert list(r) == ["best.pt", "checkpoint.pt", "model.pt", "step_100"]  # run files: by file name once they clash
    for per in r.values():
        mean = (per["alpha"]["accuracy"] + per["beta"]["accuracy"]) / 2
        assert per["mean"]["accuracy"] == pytest.approx(mean) and per["mean"]["sets"] == ["alpha", "beta"]
    assert r["model.pt"]["mean"]["accuracy"] > r["checkpoint.pt"]["mean"]["accuracy"]  # noise-free beats noisy
    best = max(r, key=lambda m: r[m]["mean"]["accuracy"])
    assert [m for m in r if r[m]["mean"]["best"]] == [best]
    assert f"| {best} (best)" in text and f"best: {best} (mean accuracy" in text
    assert text.count("(best)") == 1  # one row marked


def test_names_option(tmp_path, sets, monkeypatch, capsys):
    monkeypatch.setattr("facezoo.load_model", lambda path, device: Flat())  # .pt and .onnx alike
    models = [str(tmp_path / "m.pt"), str(tmp_path / "m.onnx")]
    out = tmp_path / "out"
    base = ["eval", *models, "--bin", str(sets[0]), "--device", "cpu", "--nfolds", "2", "--no-cache"]
    assert main([*base, "--name", "torch", "onnx", "--out", str(out)]) == 0
    assert list(json.loads((out / "results.json").read_text())) == ["torch", "onnx"]
    capsys.readouterr()
    assert main([*base, "--name", "only_one"]) == 2
    assert "1 names for 2 models" in capsys.readouterr().err
    assert main([*base, "--name", "same", "same"]) == 2
    assert "'same' is given twice" in capsys.readouterr().err
    assert main(base) == 0
    assert "| m.pt " in capsys.readouterr().out  # default names: m.pt and m.onnx, not m#1 / m#2


# ---------------------------------------------------------------------------------------------------- sets files


def test_sets_file(tmp_path, sets, monkeypatch, capsys):
    monkeypatch.setattr(facezoo, "load_model", lambda path, map_location="cpu": Flat())
    (tmp_path / "sets.yaml").write_text("sets:\n  - bin: alpha.bin\n  - bin: beta.bin\n    name: second\n")
    out = tmp_path / "out"
    argv = ["eval", str(tmp_path / "m.pt"), "--sets", str(tmp_path / "sets.yaml"), "--device", "cpu"]
    assert main([*argv, "--nfolds", "2", "--out", str(out)]) == 0  # relative paths: relative to the sets file
    per = json.loads((out / "results.json").read_text())["m"]
    assert list(per) == ["alpha", "second", "mean"]
    # the same sets through --bin give the same numbers
    assert main(["eval", str(tmp_path / "m.pt"), "--bin", *map(str, sets), "--nfolds", "2", "--out", str(out)]) == 0
    again = json.loads((out / "results.json").read_text())["m"]
    assert again["beta"]["accuracy"] == per["second"]["accuracy"]
    capsys.readouterr()
    for text, words in [
        ("sets:\n  - bins: alpha.bin\n", "sets[0].bins'. Did you mean 'sets[0].bin'"),
        ("sets:\n  - bin: alpha.bin\n    pairs: lfw:/x\n", "exactly one of"),
        ("sets:\n  - bin: alpha.bin\n  - bin: alpha.bin\n", "'alpha' is given twice"),
        ("sets:\n  - bin: missing.bin\n", "missing.bin"),
        ("set:\n  - bin: alpha.bin\n", "Did you mean 'sets'"),
        ("sets: [\n", "not valid YAML"),
    ]:
        (tmp_path / "bad.yaml").write_text(text)
        assert main(["eval", str(tmp_path / "m.pt"), "--sets", str(tmp_path / "bad.yaml")]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, (text, err)


# ---------------------------------------------------------------------------------------------------- Python API


def test_python_api_several_models_one_call(tmp_path, sets):
    report = facezoo.eval.run({"clean": Flat(), "noisy": Flat(50.0)}, sets, nfolds=2, cache=False, fars=(0.1,))
    assert isinstance(report, facezoo.eval.Report) and report.best == "clean"
    assert report.results["clean"]["mean"]["best"] is True
    assert report.results["noisy"]["alpha"]["tar_at_far"]["1e-01"]["tar"] < 1.0
    written = report.write(tmp_path / "api")
    assert [p.name for p in written] == ["results.json", "results.csv", "roc.png"]
    assert "clean (best)" in report.text
    with pytest.raises(ConfigError, match="names once"):
        facezoo.eval.run({"a": Flat()}, sets, names=["b"])


# ---------------------------------------------------------------------------------------------------- progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal(monkeypatch):
    imgs = np.random.default_rng(0).integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    for stream, enabled, shown in [(Terminal(), True, True), (Terminal(), False, False), (io.StringIO(), True, False)]:
        monkeypatch.setattr("sys.stderr", stream)
        ft.extract_features(Flat(), "k", 10, lambda a, b: imgs[a:b], batch_size=4, progress=enabled, desc="toy")
        text = stream.getvalue()
        assert ("embedding toy" in text and "/10" in text and "img/s" in text) == shown, text
