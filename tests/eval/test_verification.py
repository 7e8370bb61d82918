"""Embedding with flip, pair-set evaluation and the `facezoo eval` command, with fake embedders and readers."""

import json
import sys
import types

import numpy as np
import pytest
import torch

import facezoo
from facezoo.cli import main
from facezoo.errors import DataError
from facezoo.eval.metrics import verification_metrics
from facezoo.eval.verification import embed_images, embed_views, evaluate_bin, evaluate_pairs


def first_row_red(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, W): the red channel of the top row. Not flip-invariant."""
    return x[:, 0, :, 0].float()


def test_embed_images_adds_the_horizontally_flipped_embedding():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 3, 4, 3), dtype=np.uint8)
    row = images[:, 0, :, 0].astype(np.float64)  # (N, W)
    got = embed_images(first_row_red, images, batch_size=2)  # 3 batches, the last one short
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, row + row[:, ::-1])
    np.testing.assert_array_equal(embed_images(first_row_red, images, flip=False), row)


def test_embed_views_checks_the_image_array():
    with pytest.raises(DataError, match=r"uint8 \(N, H, W, 3\)"):
        embed_views(first_row_red, np.zeros((2, 4, 4, 3), np.float32))


class Linear(torch.nn.Module):
    """A fixed random projection of the flattened image; records whether it ran in training mode."""

    def __init__(self, hw=(4, 4), dim=6, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.nn.Parameter(torch.randn(hw[0] * hw[1] * 3, dim, generator=g))
        self.input_size = hw
        self.saw_training = []

    def forward(self, x):
        self.saw_training.append(self.training)
        return (x.float().flatten(1) / 255) @ self.weight


def pair_images(n_pairs, hw=(4, 4), seed=0):
    """Genuine pairs: an image and a slightly noisy copy; impostor pairs: two unrelated images."""
    rng = np.random.default_rng(seed)
    issame = np.arange(n_pairs) % 2 == 0
    a = rng.integers(0, 256, (n_pairs, *hw, 3))
    b = np.where(
        issame[:, None, None, None], np.clip(a + rng.integers(-3, 4, a.shape), 0, 255), rng.integers(0, 256, a.shape)
    )
    images = np.stack([a, b], 1).reshape(2 * n_pairs, *hw, 3).astype(np.uint8)
    return images, issame


def test_evaluate_pairs_equals_metrics_on_hand_built_embeddings():
    model = Linear().train()
    images, issame = pair_images(20)
    r = evaluate_pairs(model, images, issame, batch_size=7, nfolds=10)
    # Independent computation: each image and its W-flip through the same projection, in float64.
    w = model.weight.detach().double().numpy()
    e = (images / 255).reshape(40, -1) @ w
    e_flip = (images[:, :, ::-1] / 255).reshape(40, -1) @ w
    expected = verification_metrics((e + e_flip)[0::2], (e + e_flip)[1::2], issame, nfolds=10)
    assert r["pairs"] == 20
    assert r["accuracy"] == pytest.approx(expected["accuracy"])
    assert r["fold_thresholds"] == pytest.approx(expected["fold_thresholds"])
    # InsightFace's XNorm: mean norm of every raw view (80 vectors), not of the flip sums.
    assert r["xnorm"] == pytest.approx(np.mean(np.linalg.norm(np.r_[e, e_flip], axis=1)), rel=1e-5)
    assert set(model.saw_training) == {False} and model.training  # evaluated in eval mode, mode restored


def test_evaluate_pairs_needs_two_images_per_pair():
    images, issame = pair_images(4)
    with pytest.raises(DataError, match="7 images for 4 pairs"):
        evaluate_pairs(Linear(), images[:7], issame)


@pytest.fixture
def fake_reader(monkeypatch):
    """Stand-in for facezoo.data.verification_bin: 40 pairs per file, DataError for a missing file."""
    calls = []

    def load_bin_images(path, image_size=(112, 112)):
        from pathlib import Path

        calls.append((str(path), tuple(image_size)))
        if not Path(path).exists():
            raise DataError(f"{path}: no such .bin file")
        seed = sum(map(ord, Path(path).stem))
        return pair_images(40, tuple(image_size), seed)

    module = types.ModuleType("facezoo.data.verification_bin")
    module.load_bin_images = load_bin_images
    monkeypatch.setitem(sys.modules, "facezoo.data.verification_bin", module)
    return calls


def test_evaluate_bin_names_the_result_after_the_file(tmp_path, fake_reader):
    path = tmp_path / "agedb_30.bin"
    path.write_bytes(b"")
    r = evaluate_bin(Linear(hw=(6, 5)), path, input_size=(6, 5), batch_size=16)
    assert (r["name"], r["pairs"]) == ("agedb_30", 40)
    assert fake_reader == [(str(path), (6, 5))]
    assert 0.5 < r["accuracy"] <= 1.0


def test_cli_eval_prints_table_and_writes_reports(tmp_path, monkeypatch, capsys, fake_reader):
    models = {}

    def fake_load_model(path, map_location="cpu"):
        models[str(path)] = Linear(seed=len(models))
        return models[str(path)]

    monkeypatch.setattr(facezoo, "load_model", fake_load_model)
    bins = []
    for name in ("lfw", "cfp_fp"):
        bins.append(tmp_path / f"{name}.bin")
        bins[-1].write_bytes(b"")
    ckpts = [str(tmp_path / "run_a" / "model.pt"), str(tmp_path / "run_b" / "model.pt")]
    out = tmp_path / "report"
    rc = main(["eval", *ckpts, "--bin", *map(str, bins), "--device", "cpu", "--nfolds", "5", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    header = text.splitlines()[0]
    assert [c.strip() for c in header.strip("|").split("|")] == ["model", "LFW", "CFP-FP", "mean"]
    # Each file decoded once (both models share the input size), at the model's input size.
    assert fake_reader == [(str(bins[0]), (4, 4)), (str(bins[1]), (4, 4))]
    results = json.loads((out / "results.json").read_text())
    assert sorted(results) == ["run_a", "run_b"]  # a run's model.pt is named after its run folder
    assert sorted(results["run_a"]) == ["cfp_fp", "lfw", "mean"]
    assert len(results["run_a"]["lfw"]["fold_accuracy"]) == 5
    means = {m: (per["lfw"]["accuracy"] + per["cfp_fp"]["accuracy"]) / 2 for m, per in results.items()}
    best = max(means, key=means.get)
    for m, per in results.items():
        assert per["mean"]["accuracy"] == pytest.approx(means[m]) and per["mean"]["sets"] == ["lfw", "cfp_fp"]
        assert per["mean"]["best"] == (m == best)
    rows = [line.split("|")[1].strip() for line in text.splitlines()[2:4]]
    assert sorted(rows) == sorted([f"{best} (best)", next(m for m in results if m != best)])
    assert f"best: {best} (mean accuracy" in text
    assert "TAR (%) at FAR" in text and "LFW 1e-04" in text  # 20 pairs: both FARs n/a, with the reason
    assert "n/a: LFW 1e-03: needs at least 1000 impostor pairs to be measured, only 20 given" in text
    assert results["run_a"]["lfw"]["tar_at_far"]["1e-04"]["tar"] is None
    assert (out / "results.csv").read_text().count("\n") == 7  # header + 2 models x (2 files + mean)
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_eval_missing_bin_exits_2(tmp_path, monkeypatch, capsys, fake_reader):
    monkeypatch.setattr(facezoo, "load_model", lambda path, map_location="cpu": Linear())
    rc = main(["eval", str(tmp_path / "m.pt"), "--bin", str(tmp_path / "nope.bin"), "--device", "cpu"])
    assert rc == 2
    assert "nope.bin" in capsys.readouterr().err


def test_evaluate_bin_and_cli_with_the_real_reader(tmp_path, monkeypatch, capsys):
    vb = pytest.importorskip("facezoo.data.verification_bin")
    from facezoo.data.image import encode_image

    images, issame = pair_images(10, (4, 4), seed=3)
    path = tmp_path / "cfp_fp.bin"
    vb.write_bin(path, [encode_image(im, "png") for im in images], issame)
    model = Linear()
    r = evaluate_bin(model, path, input_size=(4, 4))
    expected = evaluate_pairs(model, images, issame)  # PNG is lossless: same pixels, same result
    assert (r["name"], r["pairs"], r["accuracy"]) == ("cfp_fp", 10, expected["accuracy"])

    monkeypatch.setattr(facezoo, "load_model", lambda p, map_location="cpu": Linear())
    assert main(["eval", str(tmp_path / "m.pt"), "--bin", str(tmp_path / "lfw.bin"), "--device", "cpu"]) == 2
    assert "lfw.bin" in capsys.readouterr().err


def test_non_finite_embeddings_are_refused_with_their_count():
    images, issame = pair_images(10)

    def nan_on_some(x):  # NaN for an image (or a flipped view) whose top-left red value is above 200
        e = (x.float().flatten(1) / 255) @ Linear().weight
        return torch.where((x[:, 0, 0, 0] > 200)[:, None], torch.full_like(e, float("nan")), e)

    n_bad = sum(bool(im[0, 0, 0] > 200 or im[0, -1, 0] > 200) for im in images)  # either view: one image
    assert 0 < n_bad < 20
    with pytest.raises(DataError, match=f"non-finite embeddings .NaN or inf. for {n_bad} of 20 images"):
        evaluate_pairs(nan_on_some, images, issame, nfolds=2)
    inf = lambda x: torch.full((len(x), 3), float("inf"))
    with pytest.raises(DataError, match="for 20 of 20 images"):
        evaluate_pairs(inf, images, issame, nfolds=2, flip=False)


@pytest.mark.parametrize("value, kind", [(True, "genuine"), (False, "impostor")])
def test_a_set_of_one_kind_of_pair_is_refused(value, kind):
    images, _ = pair_images(6)
    with pytest.raises(DataError, match=f"toy: all 6 pairs are {kind}"):
        evaluate_pairs(Linear(), images, [value] * 6, nfolds=2, desc="toy")
