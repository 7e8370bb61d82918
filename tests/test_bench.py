"""`facezoo bench train` runs the real training step on synthetic tensors and on a RecordIO folder."""

import json

from facezoo.cli import main


def test_bench_train_synthetic_and_recordio(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = ["model.input_size=32", "model.kwargs={width: 0.25}", "model.embedding_size=16", "precision=fp32"]
    assert (
        main(
            [
                "bench",
                "train",
                "--backbone",
                "ir18",
                "--batch-size",
                "4",
                "--classes",
                "50",
                "--steps",
                "2",
                "--warmup",
                "1",
                "--chunk-size",
                "7",
                "--json",
                *tiny,
            ]
        )
        == 0
    )
    r = json.loads(capsys.readouterr().out)
    assert r["chunk_size"] == 7 and r["compile"] is False  # the flag reached the config the step ran with
    assert r["classes"] == 50 and r["data"] == "synthetic" and r["steps"] == 2 and r["images_per_s"] > 0
    assert r["peak_gib"] is None and r["device"] == "cpu"

    assert (
        main(
            [
                "data",
                "synth",
                str(tmp_path / "d"),
                "--identities",
                "6",
                "--images-per-identity",
                "4",
                "--image-size",
                "32",
                "--val-identities",
                "4",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                "bench",
                "train",
                "--backbone",
                "ir18",
                "--batch-size",
                "4",
                "--sample-rate",
                "0.5",
                "--data",
                str(tmp_path / "d" / "train"),
                "--steps",
                "2",
                "--warmup",
                "1",
                *tiny,
            ]
        )
        == 0
    )
    line = capsys.readouterr().out
    assert "classes 6 sample_rate 0.5" in line and "images/s" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # the bench leaves no run folder behind
