"""`facezoo bench latency`: a row per (backbone, batch, runtime) with positive timings, parity checked before
timing, FLOPs and percentiles against hand computations, and the markdown table."""

import json

import numpy as np
import pytest
import torch

import facezoo
from facezoo.bench import latency
from facezoo.cli import main
from facezoo.errors import ConfigError, ModelError

TINY = [
    "--backbones",
    "ir18",
    "--backbone-kwargs",
    '{"width": 0.25}',
    "--input-size",
    "32",
    "--embedding-size",
    "16",
    "--batch-sizes",
    "1",
    "2",
    "--iters",
    "1",
    "--warmup",
    "1",
    "--threads",
    "1",
]
TINY_KW = {
    "backbones": ["ir18"],
    "backbone_kwargs": {"width": 0.25},
    "input_size": 32,
    "embedding_size": 16,
    "batch_sizes": [1, 2],
    "iters": 1,
    "warmup": 0,
    "threads": 1,
}


@pytest.fixture(scope="module")
def tiny_rows():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    return latency.bench_latency(**TINY_KW)


@pytest.mark.slow  # exports to ONNX (torch.export): ~10 s on 2 shared cores
def test_rows_per_backbone_batch_runtime_with_positive_numbers_and_parity(tiny_rows):
    keys = [(r["backbone"], r["batch"], r["runtime"]) for r in tiny_rows]
    assert sorted(keys) == sorted((b, n, rt) for b in ["ir18"] for n in (1, 2) for rt in ("torch", "onnxruntime"))
    net = facezoo.create_backbone("ir18", width=0.25, embedding_size=16, input_size=32)
    params = sum(p.numel() for p in net.parameters()) / 1e6
    for r in tiny_rows:
        assert r["median_ms"] > 0 and r["p90_ms"] >= r["median_ms"] and r["gflops"] > 0
        assert r["ms_per_image"] == pytest.approx(r["median_ms"] / r["batch"])
        assert r["images_per_s"] == pytest.approx(1000 * r["batch"] / r["median_ms"])
        assert r["params_m"] == pytest.approx(params) and r["threads"] == 1 and r["iters"] == 1
        # parity was measured (and passed) for every batch before timing
        assert r["parity_max_abs_diff"] is not None and r["parity_max_abs_diff"] < 1e-2


@pytest.mark.slow
def test_table_has_a_row_per_setting(tiny_rows):
    table = latency.format_latency_table(tiny_rows).splitlines()
    assert table[0].startswith("| backbone | params (M) | GFLOPs | runtime | batch | median ms")
    body = [line.split("|")[1:-1] for line in table[2:]]
    assert len(body) == 4
    assert {(c[0].strip(), c[3].strip(), int(c[4])) for c in body} == {
        ("ir18", rt, b) for rt in ("PyTorch eager", "ONNX Runtime") for b in (1, 2)
    }
    assert all(float(c[5]) > 0 and float(c[7]) > 0 for c in body)


@pytest.mark.slow
def test_parity_failure_stops_before_timing(monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    real_call = latency._ort_call
    timed = []

    def skewed(sess, x, device):
        call = real_call(sess, x, device)
        return lambda: call() + 1.0  # ORT now disagrees with PyTorch by 1.0

    monkeypatch.setattr(latency, "_ort_call", skewed)
    monkeypatch.setattr(latency, "_time", lambda *a: timed.append(a) or [1.0])
    with pytest.raises(ModelError, match="differs from PyTorch"):
        latency.bench_latency(**{**TINY_KW, "batch_sizes": [1]})
    assert timed == []


def test_check_parity_tolerance_is_relative_to_scale():
    ref = np.array([[100.0, -50.0]], np.float32)
    assert latency.check_parity(ref, ref + 0.05, 1e-3, "m") == pytest.approx(0.05, abs=1e-5)  # tol 0.1
    with pytest.raises(ModelError, match="m: ONNX Runtime output differs"):
        latency.check_parity(ref, ref + 0.2, 1e-3, "m")
    small = np.array([[0.5, 0.1]], np.float32)
    with pytest.raises(ModelError):
        latency.check_parity(small, small + 0.002, 1e-3, "m")  # tol 1e-3 at unit scale
    with pytest.raises(ModelError, match="shape"):
        latency.check_parity(small, small[:, :1], 1e-3, "m")


def test_flops_and_percentile_by_hand():
    assert latency.count_flops(torch.nn.Linear(10, 5), torch.zeros(1, 10)) == 2 * 10 * 5
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    assert latency.count_flops(conv, torch.zeros(1, 3, 8, 8)) == 2 * 3 * 4 * 9 * 64
    assert latency.percentile(range(1, 11), 90) == pytest.approx(9.1)
    assert latency.percentile([5.0], 90) == 5.0


def test_cli_torch_only_table_threads_restored_and_errors(capsys):
    before = torch.get_num_threads()
    assert main(["bench", "latency", *TINY, "--runtimes", "torch"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "1 threads" in out[0] and "1 warm-up + 1 timed" in out[0]
    rows = [line for line in out if line.startswith("| ir18 ")]
    assert len(rows) == 2 and all("PyTorch eager" in r for r in rows)
    assert torch.get_num_threads() == before
    assert main(["bench", "latency", *TINY, "--runtimes", "torch", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["batch"], r["runtime"], r["parity_max_abs_diff"]) for r in rows] == [
        (1, "torch", None),
        (2, "torch", None),
    ]
    assert main(["bench", "latency", *TINY, "--backbone-kwargs", "{bad"]) == 2
    assert "--backbone-kwargs" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="batch sizes"):
        latency.bench_latency(**{**TINY_KW, "batch_sizes": [0]})
    with pytest.raises(ConfigError, match="iters"):
        latency.bench_latency(**{**TINY_KW, "iters": 0})


def test_calibrate_batchnorm_sets_running_stats_from_random_inputs():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(100.0)
        conv.bias.fill_(7.0)
    net = torch.nn.Sequential(conv, torch.nn.BatchNorm2d(4))
    latency.calibrate_batchnorm(net, 16, batches=4, batch=16)
    assert not net.training and net[1].momentum == 0.1  # eval mode, momentum restored
    with torch.no_grad():
        y = net(torch.randn(64, 3, 16, 16))
    # BN (weight 1, bias 0) with the calibrated statistics: each channel ~ zero mean, unit variance
    assert y.mean(dim=(0, 2, 3)).abs().max() < 0.1
    assert (y.std(dim=(0, 2, 3)) - 1).abs().max() < 0.1
