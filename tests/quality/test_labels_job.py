"""`facezoo quality labels`: a training set and a model in, labels.npy out; an interrupted run resumes exactly."""

import json

import numpy as np
import pytest
import torch

import facezoo.quality.labels as L
from facezoo.cli import main
from facezoo.data.synthetic import synthesize
from facezoo.errors import ConfigError
from facezoo.models.checkpoint import save_checkpoint
from facezoo.models.embedder import ModelMeta
from facezoo.quality.labels import Identities, labels_from_features, make_labels


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("labels")
    synthesize(tmp / "data", identities=6, images_per_identity=4, image_size=32, val_pairs=0, workers=1)
    meta = ModelMeta(backbone="ir18", backbone_kwargs={"width": 0.125}, embedding_size=8, input_size=(32, 32))
    torch.manual_seed(0)
    save_checkpoint(tmp / "rec.pt", meta, meta.build_backbone().state_dict())
    return tmp


def test_labels_equal_the_formula_on_the_models_features(setup, tmp_path):
    from facezoo import load_model
    from facezoo.data.datasets import open_dataset
    from facezoo.eval.features import embed_chunk

    q = make_labels(setup / "data" / "train", setup / "rec.pt", tmp_path / "l.npy", m=3, device="cpu", progress=False)
    assert np.array_equal(np.load(tmp_path / "l.npy"), q) and q.shape == (24,) and np.isfinite(q).all()
    ds = open_dataset(setup / "data" / "train")
    images = np.stack([ds[i][0] for i in range(len(ds))])
    views = embed_chunk(load_model(setup / "rec.pt", "cpu"), images)
    np.testing.assert_allclose(q, labels_from_features(views[0] + views[1], ds.labels, m=3), rtol=1e-5)
    info = json.loads((tmp_path / "l.npy.json").read_text())
    assert info["images"] == 24 and info["labelled"] == 24 and info["m"] == 3 and info["flip"] is True
    assert not (tmp_path / "l.npy.parts").exists()  # the work folder is removed once labels.npy is written


def test_interrupted_run_resumes_exactly(setup, tmp_path, monkeypatch):
    args = {"m": 4, "device": "cpu", "chunk_images": 8, "progress": False, "seed": 3}
    whole = make_labels(setup / "data" / "train", setup / "rec.pt", tmp_path / "whole.npy", **args)
    real, calls, kill = L.identity_labels, [], [True]

    def dying(*a, **kw):
        calls.append(a[2])
        if kill[0] and len(calls) == 4:  # chunks hold two identities (8 images): dies inside the second chunk
            raise RuntimeError("killed")
        return real(*a, **kw)

    monkeypatch.setattr(L, "identity_labels", dying)
    with pytest.raises(RuntimeError, match="killed"):
        make_labels(setup / "data" / "train", setup / "rec.pt", tmp_path / "q.npy", **args)
    assert not (tmp_path / "q.npy").exists()
    parts = list((tmp_path / "q.npy.parts").rglob("labels_*.npy"))
    assert len(parts) == 1 and not list((tmp_path / "q.npy.parts").rglob("*.tmp"))  # one whole chunk, no litter
    calls.clear()
    kill[0] = False
    logged = []
    again = make_labels(setup / "data" / "train", setup / "rec.pt", tmp_path / "q.npy", log=logged.append, **args)
    assert np.array_equal(again, whole)
    assert sorted(calls) == [2, 3, 4, 5]  # identities 0 and 1 came from the finished chunk
    assert any("1 of 3 chunks found" in line for line in logged)
    assert any("1 of 1 chunks found" in line for line in logged)  # features from the cache: nothing re-embedded


def test_cli_and_errors(setup, tmp_path, capsys):
    out = tmp_path / "cli.npy"
    argv = ["quality", "labels", str(setup / "data" / "train"), "--model", str(setup / "rec.pt"), "--out", str(out)]
    assert main([*argv, "--device", "cpu", "--m", "2", "--quiet"]) == 0
    assert np.load(out).shape == (24,)
    assert main([*argv[:-1], str(tmp_path / "x.txt"), "--device", "cpu"]) == 2
    assert ".npy file" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="positive int"):
        labels_from_features(np.ones((4, 2)), np.array([0, 0, 1, 1]), max_positives=0)


def test_one_image_identities_are_nan():
    feats = np.eye(5)
    q = labels_from_features(feats, np.array([0, 0, 1, 2, 2]), m=2)
    assert np.isnan(q[2]) and np.isfinite(q[[0, 1, 3, 4]]).all()
    assert Identities(np.array([3])).chunks(10) == [(0, 1)]


def test_cli_train_resume_and_score(setup, tmp_path, capsys):
    """labels -> `quality train` (stopped after 1 step, resumed) -> `quality score --aligned` = the sdd_fiqa score."""
    from facezoo.data.datasets import open_dataset
    from facezoo.data.image import encode_image, read_image_file
    from facezoo.models.checkpoint import load_checkpoint
    from facezoo.quality import create_quality

    data, labels, run = setup / "data" / "train", tmp_path / "l.npy", tmp_path / "q"
    assert main(["quality", "labels", str(data), "--model", str(setup / "rec.pt"), "--out", str(labels),
                 "--device", "cpu", "--m", "2", "--quiet"]) == 0  # fmt: skip
    argv = ["quality", "train", str(data), "model.backbone=ir18", "model.kwargs={width: 0.125}", "model.input_size=32",
            "batch_size=8", "epochs=1", "data.num_workers=0", "tensorboard=false", "device=cpu"]  # fmt: skip
    argv += ["--labels", str(labels), "--output", str(run), "--init", str(setup / "rec.pt")]
    assert main([*argv, "--max-steps", "1"]) == 0 and "1 steps to step 1 of 3" in capsys.readouterr().out
    assert main([*argv, "--resume"]) == 0 and "2 steps to step 3 of 3" in capsys.readouterr().out
    ckpt = load_checkpoint(run / "model.pt")  # a facezoo model file: metadata for scoring, the config that made it
    assert ckpt["meta"]["embedding_size"] == 1 and list(ckpt["meta"]["input_size"]) == [32, 32]
    assert ckpt["config"]["mode"] == "quality_regression"
    assert ckpt["config"]["quality_regression"]["labels"] == str(labels)
    ds = open_dataset(data)
    paths = [tmp_path / f"{i}.png" for i in range(2)]
    for i, path in enumerate(paths):
        path.write_bytes(encode_image(ds[i][0], "png"))
    capsys.readouterr()
    assert main(["quality", "score", *map(str, paths), "--model", f"sdd_fiqa:{run / 'model.pt'}", "--aligned",
                 "--device", "cpu"]) == 0  # fmt: skip
    got = [json.loads(line)["quality"] for line in capsys.readouterr().out.splitlines() if line.strip()]
    want = create_quality("sdd_fiqa", model=run / "model.pt", device="cpu").score(
        np.stack([read_image_file(p) for p in paths])
    )
    np.testing.assert_allclose(got, want, rtol=1e-5)  # float32, other batch sizes
