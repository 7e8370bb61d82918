"""`facezoo bench train` trains in the precision that suits the device unless told otherwise, and says which."""

import json

import torch

from facezoo.bench.train import default_precision
from facezoo.cli import main


def test_default_precision_follows_the_device(monkeypatch):
    assert default_precision(torch.device("cpu")) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert default_precision(torch.device("cuda:0")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # pre-Ampere GPUs
    assert default_precision(torch.device("cuda:0")) == "fp32"


def test_bench_train_prints_the_precision_it_chose(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = ["model.input_size=32", "model.kwargs={width: 0.25}", "model.embedding_size=16", "device=cpu"]
    args = ["bench", "train", "--backbone", "ir18", "--batch-size", "4", "--classes", "20", "--steps", "1"]
    assert main([*args, "--warmup", "0", *tiny]) == 0
    assert "fp32 (default for the device) synthetic on cpu" in capsys.readouterr().out
    assert main([*args, "--warmup", "0", "--json", *tiny, "precision=bf16"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["precision"] == "bf16" and r["precision_default"] is False
