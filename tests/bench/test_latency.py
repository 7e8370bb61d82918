"""`facezoo bench latency`: the interleaving order (no timing assertions), statistics against hand computations,
rows per (backbone, batch, variant) with skipped GPU variants and their reasons, parity before timing, tables."""

import json

import numpy as np
import pytest
import torch

import facezoo
from facezoo.bench import latency
from facezoo.cli import main
from facezoo.errors import ConfigError, ModelError

TINY_KW = {
    "backbones": ["ir18"],
    "backbone_kwargs": {"width": 0.25},
    "input_size": 32,
    "embedding_size": 16,
    "batch_sizes": [1, 2],
    "iters": 2,
    "warmup": 0,
    "threads": 1,
}
TINY = ["--backbones", "ir18", "--backbone-kwargs", '{"width": 0.25}', "--input-size", "32", "--embedding-size", "16"]
TINY += ["--batch-sizes", "1", "2", "--iters", "1", "--warmup", "1", "--threads", "1"]


def test_interleave_rotates_the_order_every_round_and_times_each_call():
    now, log = [0.0], []
    cost = {"a": 0.001, "b": 0.002, "c": 0.004}  # seconds each call advances the fake clock

    def call(name):
        def run():
            log.append(name)
            now[0] += cost[name]

        return run

    syncs = []
    times = latency.interleave(
        {n: call(n) for n in cost}, 1, 3, lambda: syncs.append(1), clock=lambda: now[0], settle=0
    )
    assert log == ["a", "b", "c"] + ["a", "b", "c"] + ["b", "c", "a"] + ["c", "a", "b"]
    assert len(syncs) == len(log)  # every call is synchronised before the clock is read
    for name, ms in times.items():
        assert ms == pytest.approx([1000 * cost[name]] * 3)
    # each variant is first in one round and last in one: no variant always follows the same one
    rounds = [log[3 + 3 * r : 6 + 3 * r] for r in range(3)]
    assert {r[0] for r in rounds} == {"a", "b", "c"} == {r[-1] for r in rounds}


def test_each_timed_call_follows_an_untimed_call_of_the_same_variant():
    """The settling call takes what the previous variant's spinning pool leaves: only the second call is timed."""
    now, log = [0.0], []
    first = {"a": 0.050, "b": 0.070}  # a settling call that pays for the previous variant's spin
    steady = {"a": 0.001, "b": 0.002}

    def call(name):
        def run():
            settling = not log or log[-1] != name
            log.append(name)
            now[0] += first[name] if settling else steady[name]

        return run

    times = latency.interleave({n: call(n) for n in steady}, 0, 2, clock=lambda: now[0])
    assert log == ["a", "a", "b", "b", "b", "b", "a", "a"]
    for name, ms in times.items():
        assert ms == pytest.approx([1000 * steady[name]] * 2)


def test_summary_statistics_by_hand():
    s = latency.summarize(list(range(1, 11)))
    # numpy's linear interpolation: position q/100 * (n - 1) between order statistics
    assert s["median_ms"] == pytest.approx(5.5) and s["p10_ms"] == pytest.approx(1.9)
    assert s["p90_ms"] == pytest.approx(9.1) and s["spread"] == pytest.approx((9.1 - 1.9) / 5.5)
    assert latency.percentile([5.0], 90) == 5.0


def test_eager_rows_gpu_variants_skipped_with_reasons_threads_restored():
    if torch.cuda.is_available():
        pytest.skip("with CUDA the GPU variants run instead of being skipped")
    before = torch.get_num_threads()
    rows = latency.bench_latency(**{**TINY_KW, "variants": ["eager", "eager-bf16", "ort-cuda", "tensorrt-fp16"]})
    assert torch.get_num_threads() == before
    assert [(r["batch"], r["variant"]) for r in rows] == [
        (b, v) for b in (1, 2) for v in ("eager", "eager-bf16", "ort-cuda", "tensorrt-fp16")
    ]
    net = facezoo.create_backbone("ir18", width=0.25, embedding_size=16, input_size=32)
    params = sum(p.numel() for p in net.parameters()) / 1e6
    for r in rows:
        assert r["params_m"] == pytest.approx(params) and r["gflops"] > 0 and r["iters"] == 2
        if r["variant"] == "eager":
            assert r["skipped"] is None and r["threads"] == 1 and r["max_abs_diff"] == 0.0
            assert 0 < r["p10_ms"] <= r["median_ms"] <= r["p90_ms"]
            assert r["ms_per_image"] == pytest.approx(r["median_ms"] / r["batch"])
        else:
            assert r["skipped"] == "no CUDA device" and "median_ms" not in r
    table = latency.format_latency_table(rows)
    assert "| Backbone | Params (M) | GFLOPs | Size fp32 (MB) | Size int8 (MB) | PyTorch eager fp32 |" in table
    assert "- TensorRT fp16: skipped (no CUDA device)" in table  # every cell: not listed one by one
    partial = latency.format_latency_table([rows[0], {**rows[0], "batch": 2, "skipped": "a broken graph"}])
    assert "- PyTorch eager fp32: skipped for ir18 at batch 2 (a broken graph)" in partial
    line = next(x for x in table.splitlines() if x.startswith("| ir18 "))
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert cells[3:5] == ["-", "-"] and cells[6:] == ["-", "-", "-"]  # no ONNX file for eager; skipped GPU cells
    med, spread = cells[5].split(" ", 1)
    assert float(med) > 0 and spread.startswith("(") and spread.endswith(")")


@pytest.fixture(scope="module")
def cpu_rows():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    pytest.importorskip("openvino")
    kw = {**TINY_KW, "batch_sizes": [2], "variants": ["eager", "ort", "ort-int8", "openvino", "openvino-int8"]}
    return latency.bench_latency(**kw)


@pytest.mark.slow  # exports fp32 and int8 (torch.export, quantisation): ~30 s on 2 shared cores
def test_every_cpu_variant_runs_after_its_parity_check(cpu_rows):
    by = {r["variant"]: r for r in cpu_rows}
    assert set(by) == {"eager", "ort", "ort-int8", "openvino", "openvino-int8"}
    assert all(r["skipped"] is None and r["median_ms"] > 0 for r in cpu_rows)
    for v in ("ort", "openvino"):
        assert by[v]["max_abs_diff"] < 1e-2 and by[v]["precision"] == "fp32"
    for v in ("ort-int8", "openvino-int8"):
        assert latency.LOW_PRECISION_FLOOR <= by[v]["min_cosine"] <= 1.0 and by[v]["precision"] == "int8"
    assert by["ort-int8"]["size_mb"] < 0.5 * by["ort"]["size_mb"] and by["eager"]["size_mb"] is None


@pytest.mark.slow
def test_isolated_rows_come_from_processes_with_the_same_weights_and_crops(cpu_rows):
    kw = {**TINY_KW, "batch_sizes": [2], "variants": ["eager", "ort", "ort-int8"]}
    alone = latency.bench_latency(**kw, isolated=True)
    shared = {r["variant"]: r for r in cpu_rows}
    assert [r["variant"] for r in alone] == ["eager", "ort", "ort-int8"]
    for r in alone:  # same seed in each process: the same model, export and crops, so the same parity figures
        for key in ("max_abs_diff", "min_cosine", "size_mb", "params_m"):
            assert r.get(key) == pytest.approx(shared[r["variant"]].get(key), rel=1e-6)
        assert r["skipped"] is None and r["median_ms"] > 0 and r["iters"] == 2
    with pytest.raises(ModelError, match="ir18 eager: the isolated run failed"):
        latency.bench_latency(**{**kw, "variants": ["eager"], "backbone_kwargs": {"nope": 1}}, isolated=True)


@pytest.mark.slow
def test_a_parity_failure_is_a_row_saying_so_and_the_rest_is_timed(monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from facezoo.models.runtimes.ort import OnnxEmbedder

    real = OnnxEmbedder._run
    monkeypatch.setattr(OnnxEmbedder, "_run", lambda self, x: real(self, x) + 1.0)  # ORT now disagrees by 1.0
    timed = []
    real_interleave = latency.interleave
    monkeypatch.setattr(
        latency, "interleave", lambda calls, *a, **k: timed.append(set(calls)) or real_interleave(calls, *a, **k)
    )
    rows = latency.bench_latency(**{**TINY_KW, "batch_sizes": [1], "variants": ["eager", "ort"]})
    assert timed == [{"eager"}]  # the disagreeing variant is never timed
    by = {r["variant"]: r for r in rows}
    assert by["eager"]["skipped"] is None and by["eager"]["median_ms"] > 0
    assert by["ort"]["skipped"].startswith("not timed: output differs from PyTorch by 1 (> ")
    assert "median_ms" not in by["ort"]


@pytest.mark.slow
def test_a_broken_low_precision_graph_is_a_row_with_its_cosine_and_the_rest_is_timed(monkeypatch):
    """One runtime's broken int8 conversion must not end a table of every backbone x runtime."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    monkeypatch.setattr(latency, "_cosine_min", lambda a, b: 0.307)
    rows = latency.bench_latency(**{**TINY_KW, "batch_sizes": [1], "variants": ["eager", "ort-int8"]})
    by = {r["variant"]: r for r in rows}
    assert by["eager"]["skipped"] is None and by["eager"]["median_ms"] > 0
    floor = latency.LOW_PRECISION_FLOOR
    assert by["ort-int8"]["skipped"] == f"min cosine to fp32 0.307 < {floor}: not timed, too far from fp32"
    assert "median_ms" not in by["ort-int8"]


def test_check_parity_tolerance_is_relative_to_scale():
    ref = np.array([[100.0, -50.0]], np.float32)
    assert latency.check_parity(ref, ref + 0.05, 1e-3, "m") == pytest.approx(0.05, abs=1e-5)  # tol 0.1
    with pytest.raises(ModelError, match="m: output differs from PyTorch"):
        latency.check_parity(ref, ref + 0.2, 1e-3, "m")
    small = np.array([[0.5, 0.1]], np.float32)
    with pytest.raises(ModelError):
        latency.check_parity(small, small + 0.002, 1e-3, "m")  # tol 1e-3 at unit scale
    with pytest.raises(ModelError, match="shape"):
        latency.check_parity(small, small[:, :1], 1e-3, "m")


def test_flops_by_hand():
    assert latency.count_flops(torch.nn.Linear(10, 5), torch.zeros(1, 10)) == 2 * 10 * 5
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    assert latency.count_flops(conv, torch.zeros(1, 3, 8, 8)) == 2 * 3 * 4 * 9 * 64


def test_cli_eager_table_json_and_errors(capsys):
    assert main(["bench", "latency", *TINY, "--runtimes", "eager"]) == 0
    out = capsys.readouterr().out
    assert "| CPU |" in out and "1 threads per runtime" in out and "batch 1: 1 warm-up + 1 timed" in out
    assert "Batch 1: median ms per call (p10-p90)" in out and "Batch 2:" in out
    assert len([line for line in out.splitlines() if line.startswith("| ir18 ")]) == 2
    assert main(["bench", "latency", *TINY, "--runtimes", "eager", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["batch"], r["variant"], r["skipped"]) for r in rows] == [(1, "eager", None), (2, "eager", None)]
    assert main(["bench", "latency", *TINY, "--backbone-kwargs", "{bad"]) == 2
    assert "--backbone-kwargs" in capsys.readouterr().err
    assert main(["bench", "latency", *TINY, "--runtimes", "ort-gpu"]) == 2
    assert "unknown runtime variant(s) ['ort-gpu']" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="batch sizes"):
        latency.bench_latency(**{**TINY_KW, "batch_sizes": [0]})
    with pytest.raises(ConfigError, match="one per batch size"):
        latency.bench_latency(**{**TINY_KW, "iters": [1, 2, 3]})
    with pytest.raises(ConfigError, match="Did you mean 'ir18'"):
        latency.bench_latency(**{**TINY_KW, "backbones": ["ir81"]})


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


def test_a_model_past_the_onnx_file_limit_skips_its_onnx_variants_and_still_times_eager(monkeypatch):
    """ir2060 and vit_h hold over 2 GiB of fp32 weights: no single-file ONNX export; the limit is lowered here so a
    tiny model stands in for them (nothing is exported: the check comes before)."""
    pytest.importorskip("onnxruntime")
    exported = []
    monkeypatch.setattr("facezoo.export.onnx.export_onnx", lambda *a, **k: exported.append(a))
    net = facezoo.create_backbone("ir18", width=0.25, embedding_size=16, input_size=32)
    nbytes = 4 * sum(p.numel() for p in net.parameters())
    monkeypatch.setattr(latency, "ONNX_FILE_LIMIT_BYTES", nbytes)
    rows = latency.bench_latency(**{**TINY_KW, "batch_sizes": [1], "variants": ["eager", "ort", "ort-int8"]})
    by = {r["variant"]: r for r in rows}
    assert by["eager"]["skipped"] is None and by["eager"]["median_ms"] > 0 and exported == []
    for v in ("ort", "ort-int8"):
        assert "would pass protobuf's 2 GiB limit" in by[v]["skipped"] and "median_ms" not in by[v]


def test_tiny_builds_each_backbone_at_its_registered_test_kwargs():
    """--tiny: the dry run's models are the registrations' test builds (input size included), not the full ones."""
    from facezoo.models.backbones import BACKBONES

    kw = {k: v for k, v in TINY_KW.items() if k not in ("backbone_kwargs", "input_size", "embedding_size")}
    kw.update(backbones=["ir18", "swin_t"], batch_sizes=[1], variants=["eager"], tiny=True)
    rows = latency.bench_latency(**kw)
    for r in rows:
        test_kwargs = BACKBONES.info(r["backbone"])["test_kwargs"]
        net = facezoo.create_backbone(r["backbone"], **test_kwargs)
        assert r["params_m"] == pytest.approx(sum(p.numel() for p in net.parameters()) / 1e6)
        assert r["skipped"] is None and r["max_abs_diff"] == 0.0
    assert len(rows) == 2
