"""Inference latency: PyTorch eager vs ONNX Runtime for each backbone, per batch size, after warm-up.

Each backbone is built with random weights (latency does not depend on their values; BatchNorm statistics are
calibrated on random inputs so activations stay finite, see calibrate_batchnorm) and exported to ONNX with the
"float" input (normalised float32 (B, 3, H, W)), so both runtimes time the same graph: the backbone alone,
without uint8 decoding or normalisation. Before timing, both runtimes embed the same random batch and must agree
(max |torch - ort| <= atol * max(1, max |torch|), as export_onnx's check). Each of `iters` timed calls is one
forward of one batch: wall-clock with a device sync (CUDA) after it; median and p90 over the calls.

Threads: torch.set_num_threads(threads) for eager; intra_op_num_threads=threads, inter_op_num_threads=1 for ORT.
CUDA: torch runs on the GPU in float32; ORT uses the CUDAExecutionProvider with inputs and outputs bound on the
GPU (IO binding), so neither figure includes host <-> device copies.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, ModelError
from ..models.embedder import EmbedderModule, ModelMeta

RUNTIMES = ("torch", "onnxruntime")
RUNTIME_LABELS = {"torch": "PyTorch eager", "onnxruntime": "ONNX Runtime"}


def count_flops(module: torch.nn.Module, example: torch.Tensor) -> float | None:
    """Forward FLOPs of one call (torch FlopCounterMode: 2 per multiply-add of conv/matmul), or None."""
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return None
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        module(example)
    return float(counter.get_total_flops())


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform's processor or machine string."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def percentile(values, q: float) -> float:
    """q-th percentile (0..100) by linear interpolation between order statistics (numpy's default)."""
    return float(np.percentile(np.asarray(values, np.float64), q))


def check_parity(reference: np.ndarray, other: np.ndarray, atol: float, what: str) -> float:
    """max |reference - other|; ModelError when it exceeds atol * max(1, max |reference|) or shapes differ."""
    if reference.shape != other.shape:
        raise ModelError(f"{what}: ONNX Runtime output shape {other.shape} differs from PyTorch {reference.shape}.")
    diff = float(np.abs(reference - other).max())
    tol = atol * max(1.0, float(np.abs(reference).max()))
    if not diff <= tol:
        raise ModelError(
            f"{what}: ONNX Runtime output differs from PyTorch by {diff:.3g} (> {tol:.3g}); the "
            "latency comparison would time different computations. Check the export (facezoo export)."
        )
    return diff


def calibrate_batchnorm(net: torch.nn.Module, input_size: int, batches: int = 2, batch: int = 8, seed: int = 0) -> None:
    """Set every BatchNorm's running mean/var to the statistics of random N(0, 1) inputs (cumulative average over
    `batches` forward passes in train mode, no gradients), then eval mode.

    At initialisation the running statistics are (0, 1), so in eval mode nothing rescales the activations and
    deep nets (ir100: ~50 residual blocks) overflow to inf/NaN, which would also distort timings. Calibrated,
    activations stay at the scale a trained net has; the weights themselves stay random.
    """
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the calibration batches
    gen = torch.Generator().manual_seed(seed)
    net.train()
    with torch.no_grad():
        for _ in range(batches):
            net(torch.randn(batch, 3, input_size, input_size, generator=gen))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    net.eval()


def _time(call, sync, warmup: int, iters: int) -> list[float]:
    """Milliseconds of each of `iters` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        call()
        sync()
        times.append(1000.0 * (time.perf_counter() - start))
    return times


def _ort_session(path: Path, device: torch.device, threads: int):
    """An onnxruntime session on `device` with `threads` intra-op threads; ConfigError if the provider is absent."""
    from ..models.runtimes.ort import open_session, require, session_providers

    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    name = "cpu" if device.type != "cuda" else f"cuda:{device.index or 0}"
    return open_session(path, session_providers(name)[0][:1], options=opts)


def _ort_call(sess, x: np.ndarray, device: torch.device):
    """A no-argument function running `sess` on x: plain run on CPU; IO binding with GPU-resident tensors on CUDA."""
    name = sess.get_inputs()[0].name
    out_name = sess.get_outputs()[0].name
    if device.type != "cuda":
        return lambda: sess.run(None, {name: x})[0]
    import onnxruntime as ort

    value = ort.OrtValue.ortvalue_from_numpy(x, "cuda", device.index or 0)
    binding = sess.io_binding()
    binding.bind_ortvalue_input(name, value)
    binding.bind_output(out_name, "cuda", device.index or 0)

    def call():
        sess.run_with_iobinding(binding)
        return binding.get_outputs()[0]

    return call


def bench_latency(
    backbones=("mobilefacenet", "ir18", "ir50"),
    batch_sizes=(1, 32),
    threads: int | None = None,
    warmup: int = 5,
    iters: int = 20,
    device: str = "cpu",
    input_size: int = 112,
    embedding_size: int = 512,
    backbone_kwargs: dict | None = None,
    runtimes=RUNTIMES,
    atol: float = 1e-3,
    seed: int = 0,
    log=None,
) -> list[dict]:
    """One row per (backbone, batch size, runtime): {backbone, params_m, gflops (per image), runtime, device,
    batch, threads, warmup, iters, median_ms, p90_ms (per batch), ms_per_image, images_per_s, parity_max_abs_diff}.
    """
    from ..device import resolve_device
    from ..export.onnx import export_onnx

    if not backbones or not batch_sizes:
        raise ConfigError("give at least one backbone and one batch size.")
    if any(not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise ConfigError(f"batch sizes must be positive ints, got {list(batch_sizes)}.")
    if iters < 1 or warmup < 0:
        raise ConfigError(f"iters must be >= 1 and warmup >= 0, got iters={iters}, warmup={warmup}.")
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown or not runtimes:
        raise ConfigError(f"unknown runtime(s) {unknown}; choose from {', '.join(RUNTIMES)}.")
    dev = resolve_device(device)
    threads = int(threads) if threads else torch.get_num_threads()
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}.")
    log = log or (lambda msg: None)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="facezoo-latency-") as tmp:
            for name in backbones:
                rows += _bench_backbone(
                    name,
                    batch_sizes,
                    threads,
                    warmup,
                    iters,
                    dev,
                    input_size,
                    embedding_size,
                    backbone_kwargs or {},
                    runtimes,
                    atol,
                    seed,
                    Path(tmp),
                    sync,
                    log,
                    export_onnx,
                )
    finally:
        torch.set_num_threads(previous_threads)
    return rows


def _bench_backbone(
    name,
    batch_sizes,
    threads,
    warmup,
    iters,
    dev,
    input_size,
    embedding_size,
    kwargs,
    runtimes,
    atol,
    seed,
    tmp,
    sync,
    log,
    export_onnx,
) -> list[dict]:
    torch.manual_seed(seed)
    meta = ModelMeta(
        backbone=name, backbone_kwargs=dict(kwargs), embedding_size=embedding_size, input_size=(input_size, input_size)
    )
    embedder = EmbedderModule(meta.build_backbone(), meta).eval()
    net = embedder.backbone
    calibrate_batchnorm(net, input_size, seed=seed)
    params = sum(p.numel() for p in net.parameters()) / 1e6
    example = torch.randn(1, 3, input_size, input_size)
    flops = count_flops(net, example)
    gflops = None if flops is None else flops / 1e9
    sessions = {}
    if "onnxruntime" in runtimes:
        log(f"{name}: exporting to ONNX")
        path = tmp / f"{name}.onnx"
        export_onnx(embedder, path, input="float", check=False)
        sessions = {"session": _ort_session(path, dev, threads)}
    net = net.to(dev)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for batch in batch_sizes:
        x = torch.randn(batch, 3, input_size, input_size, generator=gen)
        xd = x.to(dev)
        with torch.inference_mode():
            reference = net(xd).float().cpu().numpy()
        if not np.isfinite(reference).all():
            raise ModelError(
                f"{name} batch {batch}: PyTorch output has NaN/inf with random weights; timings of "
                "non-finite arithmetic are not representative."
            )
        calls, parity = {}, None
        if "torch" in runtimes:

            def eager(xd=xd):
                with torch.inference_mode():
                    return net(xd)

            calls["torch"] = eager
        if sessions:
            ort_call = _ort_call(sessions["session"], x.numpy(), dev)
            out = ort_call()
            out = out.numpy() if hasattr(out, "numpy") else np.asarray(out)
            parity = check_parity(reference, np.asarray(out, np.float32), atol, f"{name} batch {batch}")
            calls["onnxruntime"] = ort_call
        for runtime in runtimes:
            log(f"{name} batch {batch}: timing {RUNTIME_LABELS[runtime]} ({warmup} warm-up, {iters} timed)")
            times = _time(calls[runtime], sync, warmup, iters)
            median = statistics.median(times)
            rows.append(
                {
                    "backbone": name,
                    "params_m": params,
                    "gflops": gflops,
                    "runtime": runtime,
                    "device": str(dev),
                    "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                    "batch": batch,
                    "threads": threads,
                    "warmup": warmup,
                    "iters": iters,
                    "median_ms": median,
                    "p90_ms": percentile(times, 90),
                    "ms_per_image": median / batch,
                    "images_per_s": 1000.0 * batch / median,
                    "parity_max_abs_diff": parity,
                }
            )
    return rows


def format_latency_table(rows: list[dict]) -> str:
    """A markdown table: one row per (backbone, batch, runtime)."""
    head = (
        "| backbone | params (M) | GFLOPs | runtime | batch | median ms | p90 ms | ms / image | images/s |\n"
        "|---|---:|---:|---|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        gflops = "-" if r["gflops"] is None else f"{r['gflops']:.2f}"
        lines.append(
            f"| {r['backbone']} | {r['params_m']:.2f} | {gflops} | {RUNTIME_LABELS[r['runtime']]} | "
            f"{r['batch']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {r['ms_per_image']:.2f} | "
            f"{r['images_per_s']:,.0f} |"
        )
    return "\n".join(lines)
