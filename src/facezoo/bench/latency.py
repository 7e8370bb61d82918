"""Inference latency of every backbone on every runtime, timed call by call in turn, with the spread.

Per backbone: random weights with BatchNorm statistics calibrated on random inputs (calibrate_batchnorm; latency
does not depend on the weights' values, but inf/NaN arithmetic would distort it), exported once to fp32 ONNX (and,
for the variants that need them, to int8 QDQ and fp16: facezoo.export). Each variant (VARIANTS) is an Embedder of
facezoo.models.runtimes, so a timed call is what an application pays: `embedder._forward(uint8 (B, H, W, 3))`,
preprocessing and (on GPU) host <-> device copies included, the output back in host memory (which synchronises).

Before timing, every variant embeds the same batch: fp32 variants must match eager fp32 within atol * max(1,
max |eager|), else their row says by how much and is not timed (it would time a different computation; one
runtime's wrong result must not end a table of the whole zoo); bf16 / fp16 / int8 variants report
their min cosine to eager fp32 and are not timed below LOW_PRECISION_FLOOR: the conversion of these random weights,
or the runtime's execution of it, is off by more than a precision cost (which benchmarks/int8_accuracy.py measures
on faces); their row gives the cosine as the reason.

Timing (`interleave`): `warmup` untimed calls of each variant, then `iters` rounds; each round calls every variant
once untimed (settling: the thread pool of the variant before it may still be spin-waiting and take the cores) and
once timed, the starting variant rotating by one per round, so drifts of a shared machine's load fall on all
variants alike instead of on whichever ran last. Per variant: median, p10, p90 and spread = (p90 - p10) / median.
Threads: torch.set_num_threads(threads) for eager; intra-op threads = threads for ORT (its other settings are
facezoo's session defaults, models/runtimes/ort.py) and INFERENCE_NUM_THREADS = threads for OpenVINO.
Variants that cannot run here (no CUDA, no TensorRT provider, no openvino package) give a row with the reason.

Isolated (`isolated=True`, `bench latency --isolated`): each variant of each backbone runs alone in a fresh
process (same seed, so the same weights and crops; its own export and parity check), so no other runtime's thread
pool exists while it is timed. Interleaving shares the load's drift fairly but not the pools: at batch 1 the small
networks' cells read up to twice their isolated time (RESULTS.md). Slower: every process builds and exports anew.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, ModelError

LOW_PRECISION_FLOOR = 0.9
# protobuf's 2 GiB message limit: a single-file ONNX export of more fp32 weights than this cannot be written
# (ir2060, vit_h at their defaults); their ONNX variants are skipped with the reason, eager still runs
ONNX_FILE_LIMIT_BYTES = 2**31


class Skip(Exception):
    """A variant that cannot run on this machine; the message says why."""


@dataclass(frozen=True)
class Variant:
    label: str  # column heading
    runtime: str  # facezoo.models.runtimes name
    precision: str  # fp32 | bf16 | fp16 | int8: which export (or autocast) it runs
    gpu: bool


VARIANTS = {
    "eager": Variant("PyTorch eager fp32", "torch", "fp32", False),
    "ort": Variant("ORT fp32", "onnxruntime", "fp32", False),
    "ort-int8": Variant("ORT int8", "onnxruntime", "int8", False),
    "openvino": Variant("OpenVINO fp32", "openvino", "fp32", False),
    "openvino-int8": Variant("OpenVINO int8", "openvino", "int8", False),
    "eager-bf16": Variant("PyTorch eager bf16 (CUDA)", "torch", "bf16", True),
    "ort-cuda": Variant("ORT CUDA fp32", "onnxruntime", "fp32", True),
    "tensorrt-fp16": Variant("TensorRT fp16", "tensorrt", "fp16", True),
}


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


def summarize(times) -> dict:
    """{median_ms, p10_ms, p90_ms, spread} of per-call milliseconds; spread = (p90 - p10) / median."""
    med = percentile(times, 50)
    p10, p90 = percentile(times, 10), percentile(times, 90)
    return {"median_ms": med, "p10_ms": p10, "p90_ms": p90, "spread": (p90 - p10) / med if med > 0 else math.inf}


def _parity_problem(reference: np.ndarray, other: np.ndarray, atol: float) -> tuple[float, str | None]:
    """(max |reference - other|, what is wrong or None): shapes must agree and the difference stay within
    atol * max(1, max |reference|)."""
    if reference.shape != other.shape:
        return math.inf, f"output shape {other.shape} differs from PyTorch's {reference.shape}"
    diff = float(np.abs(reference - other).max())
    tol = atol * max(1.0, float(np.abs(reference).max()))
    return diff, None if diff <= tol else f"output differs from PyTorch by {diff:.3g} (> {tol:.3g})"


def check_parity(reference: np.ndarray, other: np.ndarray, atol: float, what: str) -> float:
    """max |reference - other|; ModelError when it exceeds atol * max(1, max |reference|) or shapes differ."""
    diff, problem = _parity_problem(reference, other, atol)
    if problem is not None:
        raise ModelError(
            f"{what}: {problem}; the latency comparison would time different computations. Check the export "
            "(facezoo export)."
        )
    return diff


def calibrate_batchnorm(net: torch.nn.Module, input_size, batches: int = 2, batch: int = 8, seed: int = 0) -> None:
    """Set every BatchNorm's running mean/var to the statistics of random N(0, 1) inputs (cumulative average over
    `batches` forward passes in train mode, no gradients), then eval mode. input_size: a side or (H, W).

    At initialisation the running statistics are (0, 1), so in eval mode nothing rescales the activations and
    deep nets (ir100: ~50 residual blocks) overflow to inf/NaN, which would also distort timings. Calibrated,
    activations stay at the scale a trained net has; the weights themselves stay random.
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the calibration batches
    gen = torch.Generator().manual_seed(seed)
    net.train()
    with torch.no_grad():
        for _ in range(batches):
            net(torch.randn(batch, 3, h, w, generator=gen))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    net.eval()


def _time(call, sync, warmup: int, iters: int) -> list[float]:
    """Milliseconds of each of `iters` calls of one function after `warmup` untimed ones (benchmarks/dlib_latency)."""
    return interleave({"call": call}, warmup, iters, sync)["call"]


def interleave(
    calls: dict, warmup: int, iters: int, sync=lambda: None, clock=time.perf_counter, settle: int = 1
) -> dict:
    """{name: [ms of each timed call]}: `warmup` untimed rounds, then `iters` timed rounds; every round calls each
    function `settle` times untimed and then once timed, round r starting at the (r mod n)-th name (see the module
    doc). sync() ends every call. The settling calls absorb the previous variant's thread pool spin-waiting after
    its call (onnxruntime's and OpenMP's pools do), which would otherwise be charged to the variant timed next; with
    one function there is no previous variant, so none are made."""
    names = list(calls)
    settle = settle if len(names) > 1 else 0  # alone, no other variant's pool to wait out
    for _ in range(warmup):
        for name in names:
            calls[name]()
            sync()
    times = {name: [] for name in names}
    for r in range(iters):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            for _ in range(settle):
                calls[name]()
                sync()
            start = clock()
            calls[name]()
            sync()
            times[name].append(1000.0 * (clock() - start))
    return times


def _ort_session(path: Path, device: torch.device, threads: int):
    """An onnxruntime session with facezoo's defaults and `threads` intra-op threads (benchmarks/dlib_latency)."""
    from ..models.runtimes.ort import open_session, session_providers

    name = "cpu" if device.type != "cuda" else f"cuda:{device.index or 0}"
    return open_session(path, session_providers(name)[0][:1], threads=threads)


def _available(variant: Variant) -> None:
    """Skip(reason) when the variant cannot run on this machine."""
    import importlib

    if variant.gpu and not torch.cuda.is_available():
        raise Skip("no CUDA device")
    if variant.runtime in ("onnxruntime", "tensorrt"):
        try:
            ort = importlib.import_module("onnxruntime")
        except ImportError:
            raise Skip('onnxruntime is not installed (pip install "facezoo[onnx]")') from None
        provider = "TensorrtExecutionProvider" if variant.runtime == "tensorrt" else "CUDAExecutionProvider"
        if variant.gpu and provider not in ort.get_available_providers():
            raise Skip(f"this onnxruntime has no {provider}")
    if variant.runtime == "openvino":
        try:
            importlib.import_module("openvino")
        except ImportError:
            raise Skip('openvino is not installed (pip install "facezoo[openvino]")') from None


class _Model:
    """One backbone with random weights and its exports (made when a variant first needs them)."""

    def __init__(self, name, input_size, embedding_size, kwargs, seed, tmp: Path, log):
        from ..models.embedder import EmbedderModule, ModelMeta

        torch.manual_seed(seed)
        self.meta = ModelMeta(
            backbone=name, backbone_kwargs=dict(kwargs), embedding_size=embedding_size, input_size=input_size
        )
        net = self.meta.build_backbone()
        calibrate_batchnorm(net, input_size, seed=seed)
        self.module = EmbedderModule(net, self.meta).eval()
        self.params_m = sum(p.numel() for p in net.parameters()) / 1e6
        flops = count_flops(net, torch.randn(1, 3, *input_size))
        self.gflops = None if flops is None else flops / 1e9
        self.name, self.seed, self.tmp, self.log = name, seed, tmp, log
        self.files: dict[str, Path] = {}

    def onnx(self, precision: str) -> Path:
        from ..export.onnx import export_onnx

        if precision not in self.files:
            if self.params_m * 1e6 * 4 >= ONNX_FILE_LIMIT_BYTES:
                what = f"{self.name}, {self.params_m:,.0f}M parameters"
                raise Skip(f"{what}: the fp32 ONNX file would pass protobuf's 2 GiB limit")
            path = self.tmp / f"{self.name}_{precision}.onnx"
            self.log(f"{self.name}: exporting {precision} ONNX")
            faces = np.random.default_rng(self.seed).integers(0, 256, (48, *self.meta.input_size, 3), dtype=np.uint8)
            low = {} if precision == "fp32" else {"calibrate": faces, "calibration_images": 32, "holdout_images": 16}
            # the latency bench times the graphs; their accuracy cost is benchmarks/int8_accuracy.py's
            export_onnx(self.module, path, check=False, precision=precision, min_cosine=-1.0 if low else None, **low)
            self.files[precision] = path
        return self.files[precision]

    def size_mb(self, precision: str) -> float | None:
        path = self.files.get(precision)
        return None if path is None else path.stat().st_size / 2**20

    def embedder(self, variant: Variant, threads: int):
        from ..models.runtimes import registered

        cls = registered().get(variant.runtime)
        device = "cuda" if variant.gpu else "cpu"
        if variant.runtime == "torch":  # a copy on the GPU: the CPU variants keep theirs
            emb = cls.wrap(copy.deepcopy(self.module) if variant.gpu else self.module, device)
            if variant.precision == "bf16":
                forward = emb._forward

                def bf16(batch):
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        return forward(batch)

                emb._forward = bf16
            return emb
        options = {} if variant.gpu else {"threads": threads}
        return cls.open(self.onnx(variant.precision), device, **options)


def _cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    from ..export.precision import row_cosines

    return float(row_cosines(a, b).min())


def _row(model: _Model, key: str, batch: int, threads: int, warmup: int, iters: int) -> dict:
    v = VARIANTS[key]
    return {
        "backbone": model.name,
        "params_m": model.params_m,
        "gflops": model.gflops,
        "variant": key,
        "label": v.label,
        "runtime": v.runtime,
        "precision": v.precision,
        "device": "cuda" if v.gpu else "cpu",
        "batch": batch,
        "threads": None if v.gpu else threads,
        "warmup": warmup,
        "iters": iters,
    }


def _bench_backbone(model: _Model, variants, batch_sizes, threads, warmups, iterses, atol, log) -> list[dict]:
    embedders, skipped = {}, {}
    for key in variants:
        try:
            _available(VARIANTS[key])
            embedders[key] = model.embedder(VARIANTS[key], threads)
        except Skip as e:
            skipped[key] = str(e)
    rows = []
    gen = np.random.default_rng(model.seed)
    for batch, warmup, iters in zip(batch_sizes, warmups, iterses):
        crops = gen.integers(0, 256, (batch, *model.meta.input_size, 3), dtype=np.uint8)
        calls, checks, refused = {}, {}, {}
        with torch.inference_mode():
            reference = model.module(torch.from_numpy(crops)).float().numpy()  # eager fp32 on the CPU
        for key, emb in embedders.items():
            out = np.asarray(emb._forward(crops), np.float32)
            what = f"{model.name} batch {batch} {VARIANTS[key].label}"
            if not np.isfinite(out).all():
                raise ModelError(f"{what}: non-finite output with random weights; timings would not be representative")
            if VARIANTS[key].precision == "fp32":
                diff, problem = _parity_problem(reference, out, atol)
                if problem is not None:  # a wrong runtime, or a model ill-conditioned at random weights (resnest50)
                    refused[key] = f"not timed: {problem}"
                    log(f"{what}: {refused[key]}")
                    continue
                checks[key] = {"max_abs_diff": diff}
            else:
                cos = _cosine_min(reference, out)
                if not cos >= LOW_PRECISION_FLOOR:  # too lossy here: a row saying so, not timed
                    refused[key] = f"min cosine to fp32 {cos:.3f} < {LOW_PRECISION_FLOOR}: not timed, too far from fp32"
                    log(f"{what}: {refused[key]}")
                    continue
                checks[key] = {"min_cosine": cos}
            calls[key] = lambda emb=emb, crops=crops: emb._forward(crops)
        log(f"{model.name} batch {batch}: {len(calls)} variants interleaved ({warmup} warm-up, {iters} timed rounds)")
        times = interleave(calls, warmup, iters)
        for key in variants:
            row = _row(model, key, batch, threads, warmup, iters)
            v = VARIANTS[key]
            row["size_mb"] = None if v.runtime == "torch" else model.size_mb(v.precision)
            if key in skipped or key in refused:
                rows.append({**row, "skipped": skipped.get(key) or refused[key]})
                continue
            stats = summarize(times[key])
            rows.append({**row, **stats, **checks[key], "ms_per_image": stats["median_ms"] / batch, "skipped": None})
    return rows


def _per_batch(values, batch_sizes, what: str) -> list[int]:
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    if len(values) == 1:
        values = values * len(batch_sizes)
    if len(values) != len(batch_sizes):
        raise ConfigError(f"give one {what} or one per batch size ({len(batch_sizes)}), got {values}.")
    return [int(v) for v in values]


def bench_latency(
    backbones=None,
    batch_sizes=(1, 32),
    threads: int | None = None,
    warmup=5,
    iters=20,
    variants=tuple(VARIANTS),
    input_size: int | None = None,
    embedding_size: int | None = None,
    backbone_kwargs: dict | None = None,
    atol: float = 1e-3,
    seed: int = 0,
    log=None,
    tiny: bool = False,
    isolated: bool = False,
) -> list[dict]:
    """One row per (backbone, batch, variant): {backbone, params_m, gflops, variant, label, runtime, precision,
    device, batch, threads, warmup, iters, size_mb, skipped (reason or None), and when run: median_ms, p10_ms, p90_ms,
    spread, ms_per_image, max_abs_diff (fp32) or min_cosine (others)}.

    backbones: names (default: every registered backbone); input_size / embedding_size: default each backbone's own
    (facezoo list backbones --details); warmup / iters: one value, or one per batch size. tiny: each backbone at
    its registration's test_kwargs (small width, input, depth; backbone_kwargs on top): a dry run of every backbone x
    variant in minutes, its timings meaningless. isolated: each (backbone, variant) in its own process (module doc).
    """
    from ..models.backbones import BACKBONES
    from ..models.backbones.facts import describe

    backbones = list(BACKBONES.names() if backbones is None else backbones)
    if not backbones or not batch_sizes:
        raise ConfigError("give at least one backbone and one batch size.")
    for name in backbones:
        BACKBONES.get(name)  # unknown names fail here, with the nearest
    if any(not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise ConfigError(f"batch sizes must be positive ints, got {list(batch_sizes)}.")
    warmups, iterses = _per_batch(warmup, batch_sizes, "--warmup"), _per_batch(iters, batch_sizes, "--iters")
    if min(iterses) < 1 or min(warmups) < 0:
        raise ConfigError(f"iters must be >= 1 and warmup >= 0, got iters={iterses}, warmup={warmups}.")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ConfigError(f"unknown runtime variant(s) {unknown}; choose from {', '.join(VARIANTS)}.")
    threads = int(threads) if threads else torch.get_num_threads()
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}.")
    log = log or (lambda msg: None)
    if isolated:
        spec = {"batch_sizes": list(batch_sizes), "threads": threads, "warmup": warmups, "iters": iterses,
                "atol": atol, "input_size": input_size, "embedding_size": embedding_size,
                "backbone_kwargs": backbone_kwargs, "seed": seed, "tiny": tiny}  # fmt: skip
        return [r for name in backbones for v in variants for r in _alone(name, v, spec)]
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="facezoo-latency-") as tmp:
            for name in backbones:
                kwargs = {**(BACKBONES.info(name).get("test_kwargs", {}) if tiny else {}), **(backbone_kwargs or {})}
                facts = describe(name, **kwargs)
                size = (input_size, input_size) if input_size else facts.input_size
                kwargs = {k: v for k, v in kwargs.items() if k not in ("input_size", "embedding_size")}
                model = _Model(name, size, embedding_size or facts.embedding_size, kwargs, seed, Path(tmp), log)
                rows += _bench_backbone(model, variants, batch_sizes, threads, warmups, iterses, atol, log)
    finally:
        torch.set_num_threads(previous_threads)
    return rows


def _alone(name: str, variant: str, spec: dict) -> list[dict]:
    """bench_latency's rows for one backbone and variant, from a fresh Python process (its log on our stderr)."""
    spec = {**spec, "backbones": [name], "variants": [variant]}
    code = "import sys; from facezoo.bench.latency import _worker; _worker(sys.argv[1])"
    done = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], stdout=subprocess.PIPE, text=True)
    if done.returncode:
        raise ModelError(f"{name} {variant}: the isolated run failed (exit {done.returncode}); its error is above.")
    return json.loads(done.stdout)


def _worker(spec: str) -> None:
    """The isolated process: bench_latency(**spec) as JSON on stdout, its log on stderr."""
    rows = bench_latency(**json.loads(spec), log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(json.dumps(rows))


def _cell(r: dict) -> str:
    if r["skipped"]:
        return "-"
    return f"{r['median_ms']:.2f} ({r['p10_ms']:.2f}-{r['p90_ms']:.2f})"


def format_latency_table(rows: list[dict]) -> str:
    """Markdown in the layout of TFace's table: per batch size, one row per backbone with its parameters, GFLOPs,
    fp32 and int8 file sizes, and one column per variant: median ms per call (p10-p90); then the skipped variants
    with their reasons (and the cells they apply to, unless every one) and the range of the measured spreads."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    out = []
    for batch in dict.fromkeys(r["batch"] for r in rows):
        at = [r for r in rows if r["batch"] == batch]
        heads = " | ".join(VARIANTS[v].label for v in variants)
        out.append(f"Batch {batch}: median ms per call (p10-p90)\n")
        out.append(f"| Backbone | Params (M) | GFLOPs | Size fp32 (MB) | Size int8 (MB) | {heads} |")
        out.append("|---|---:|---:|---:|---:|" + "---:|" * len(variants))
        for name in dict.fromkeys(r["backbone"] for r in at):
            mine = {r["variant"]: r for r in at if r["backbone"] == name}
            first = next(iter(mine.values()))
            sizes = [
                next((r["size_mb"] for r in mine.values() if r["precision"] == p and r["size_mb"]), None)
                for p in ("fp32", "int8")
            ]
            size_cells = " | ".join("-" if s is None else f"{s:.1f}" for s in sizes)
            gflops = "-" if first["gflops"] is None else f"{first['gflops']:.2f}"
            cells = " | ".join(_cell(mine[v]) if v in mine else "-" for v in variants)
            out.append(f"| {name} | {first['params_m']:.2f} | {gflops} | {size_cells} | {cells} |")
        out.append("")
    cells = {(r["backbone"], r["batch"]) for r in rows}
    skipped: dict = {}
    for r in rows:
        if r["skipped"]:
            skipped.setdefault((r["variant"], r["skipped"]), []).append((r["backbone"], r["batch"]))
    for (v, why), where in sorted(skipped.items()):
        at = "" if set(where) == cells else " for " + ", ".join(f"{b} at batch {n}" for b, n in where)
        out.append(f"- {VARIANTS[v].label}: skipped{at} ({why})")
    spreads = [r["spread"] for r in rows if not r["skipped"]]
    if spreads:
        low, high = 100 * min(spreads), 100 * max(spreads)
        out.append(f"- spread (p90 - p10) / median: {low:.0f}% to {high:.0f}% over the measured cells")
    return "\n".join(out).rstrip()
