"""ONNX Runtime session settings against each other and PyTorch eager, per backbone and batch: why ORT lost to eager
at batch 1 on MobileFaceNet, and what facezoo's session defaults (models/runtimes/ort.py SESSION_DEFAULTS) do.

Every row is one way to run the same exported model (random weights, BatchNorm calibrated; uint8 crops in,
embeddings out, normalisation included) and all rows of a (backbone, batch) are timed interleaved, call by call
(facezoo.bench.latency.interleave), so a shared machine's load falls on all of them alike. Rows:
  eager                PyTorch eager, torch.set_num_threads(threads)
  ort: plain           onnxruntime.SessionOptions() untouched (all of onnxruntime's defaults)
  ort: facezoo         SESSION_DEFAULTS (ORT_ENABLE_ALL, NCHWc on, PRelu rewritten), what facezoo's sessions use;
                       intra = threads
  ort: PRelu kernel    the same with rewrite_prelu off: onnxruntime's own PRelu kernel (facezoo before 2026-12-01)
  ort: NCHWc off       the same with the NchwcTransformer disabled (no layout copies around PReLUs)
  ort: facezoo, uint8  the same on the "uint8" export (channel order and normalisation inside the graph)
  ort: EXTENDED        graph_optimization_level ORT_ENABLE_EXTENDED (no layout transformation at all)
  ort: BASIC           ORT_ENABLE_BASIC (constant folding and redundant-node removal only)
  ort: no spinning     facezoo's defaults with session.intra_op.allow_spinning 0
  ort: parallel        facezoo's defaults with ORT_PARALLEL and inter_op_num_threads 2
  ort: no arena        facezoo's defaults with enable_cpu_mem_arena and enable_mem_pattern off
Each row: median ms per call, p10-p90, spread, and the number of ReorderInput/ReorderOutput nodes the optimised
graph holds (a load-independent count: each copies a whole activation between NCHW and NCHWc).
Thread pools spin-wait after a call (onnxruntime's by default, OpenMP's) and take cores from the row timed next;
each timed call is therefore preceded by an untimed call of the same row (interleave's `settle`), which absorbs it.
(The run in RESULTS.md of 2026-12-01 predates that and is biased at batch 1.) At batch 1 even settled
interleaving of eleven sessions' thread pools stays noisy (spreads near 100%); --isolated R times every row alone,
in a fresh process, R times with the rows taken in turn, and each cell is over those R per-process medians.

    python benchmarks/ort_settings.py --backbones mobilefacenet ir18 ir50 --batch-sizes 1 32 --threads 2 \
        --warmup 5 2 --iters 50 10            # the lead's run on a quiet machine (about 12 minutes on 2 cores)
    python benchmarks/ort_settings.py --backbones mobilefacenet ir50 --batch-sizes 1 --threads 2 --warmup 20 \
        --iters 100 --isolated 5              # batch 1, every row alone (about 8 minutes)
    python benchmarks/ort_settings.py --backbones ir18 --kwargs '{"width": 0.25}' --input-size 32 \
        --batch-sizes 1 --iters 2 --warmup 0  # a dry run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from facezoo.bench.latency import calibrate_batchnorm, interleave, summarize
from facezoo.export.onnx import export_onnx
from facezoo.models.embedder import EmbedderModule, ModelMeta
from facezoo.models.runtimes import ort as fort
from facezoo.models.runtimes.ort_prelu import cpu_graph

E: dict = {}  # facezoo's sessions: SESSION_DEFAULTS unchanged
# (label, layout, settings for fort.session_options, or None for a plain SessionOptions())
ROWS = (
    ("ort: plain", "float", None),
    ("ort: facezoo", "float", E),
    ("ort: PRelu kernel", "float", {**E, "rewrite_prelu": False}),
    ("ort: NCHWc off", "float", {**E, "disabled_optimizers": ("NchwcTransformer",)}),
    ("ort: facezoo, uint8", "uint8", E),
    ("ort: EXTENDED", "float", {"graph_optimization_level": "ORT_ENABLE_EXTENDED"}),
    ("ort: BASIC", "float", {"graph_optimization_level": "ORT_ENABLE_BASIC"}),
    ("ort: no spinning", "float", {**E, "config": {"session.intra_op.allow_spinning": "0"}}),
    ("ort: parallel", "float", {**E, "execution_mode": "ORT_PARALLEL", "inter_op_num_threads": 2}),
    ("ort: no arena", "float", {**E, "enable_cpu_mem_arena": False, "enable_mem_pattern": False}),
)


def _session(path: Path, settings, threads: int, optimised: Path):
    """(session, number of NCHWc reorder nodes in its optimised graph)."""
    import onnx
    import onnxruntime as ort

    if settings is None:
        opts, disabled = ort.SessionOptions(), ()
    else:
        opts, disabled = fort.session_options(threads, **settings)
    opts.optimized_model_filepath = str(optimised)
    opts.log_severity_level = 3  # not the warning that an NCHWc graph saved is hardware-specific
    extra = {"disabled_optimizers": list(disabled)} if disabled else {}
    rewrite = settings is not None and {**fort.SESSION_DEFAULTS, **settings}["rewrite_prelu"]
    sess = ort.InferenceSession(
        cpu_graph(path) if rewrite else str(path), opts, providers=["CPUExecutionProvider"], **extra
    )
    ops = Counter(n.op_type for n in onnx.load(str(optimised), load_external_data=False).graph.node)
    return sess, ops["ReorderInput"] + ops["ReorderOutput"]


def _ort_call(sess, layout: str, meta: ModelMeta, crops: np.ndarray):
    name = sess.get_inputs()[0].name
    if layout == "uint8":
        return lambda: sess.run(None, {name: crops})[0]
    return lambda: sess.run(None, {name: fort.normalise(crops, meta.mean, meta.std, meta.channel_order)})[0]


def _module(name, kwargs, size):
    """The benchmark's model, the same weights in every process (seeded)."""
    torch.manual_seed(0)
    meta = ModelMeta(backbone=name, backbone_kwargs=kwargs, embedding_size=512, input_size=(size, size))
    net = meta.build_backbone()
    calibrate_batchnorm(net, size)
    return EmbedderModule(net, meta).eval()


def _crops(batch: int, size: int) -> np.ndarray:
    return np.random.default_rng(batch).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


def _calls(module, tmp: Path, crops, threads: int, labels) -> tuple[dict, dict]:
    """({label: call}, {label: NCHWc reorder count}) for the rows named, every ORT row checked against eager."""
    name, meta = module.meta.backbone, module.meta
    with torch.inference_mode():
        want = module(torch.from_numpy(crops)).numpy()

    def eager():
        with torch.inference_mode():
            return module(torch.from_numpy(crops))

    calls, reorders = {"eager": eager}, {"eager": "-"}
    for k, (label, layout, settings) in enumerate(ROWS):
        if label not in labels:
            continue
        sess, reorders[label] = _session(tmp / f"{name}_{layout}.onnx", settings, threads, tmp / f"opt{k}.onnx")
        call = _ort_call(sess, layout, meta, crops)
        got = call()
        if not np.abs(got - want).max() <= 1e-3 * max(1.0, float(np.abs(want).max())):
            raise SystemExit(f"{name} {label}: output differs from PyTorch; fix before timing")
        calls[label] = call
    return {k: v for k, v in calls.items() if k in labels}, reorders


def _row(label, s, reorders, name, batch) -> str:
    return (
        f"| {name} | {batch} | {label} | {s['median_ms']:.2f} | {s['p10_ms']:.2f}-{s['p90_ms']:.2f} | "
        f"{100 * s['spread']:.0f}% | {reorders[label]} |"
    )


def bench(name, kwargs, size, batch_sizes, threads, warmups, iterses, tmp: Path, isolated: int) -> list[str]:
    module = _module(name, kwargs, size)
    for layout in ("float", "uint8"):
        export_onnx(module, tmp / f"{name}_{layout}.onnx", input=layout, check=False)
    labels = ["eager", *(label for label, _, _ in ROWS)]
    lines = []
    for batch, warmup, iters in zip(batch_sizes, warmups, iterses):
        calls, reorders = _calls(module, tmp, _crops(batch, size), threads, labels)
        if not isolated:
            print(f"{name} batch {batch}: {len(calls)} rows interleaved", file=sys.stderr, flush=True)
            for label, ms in interleave(calls, warmup, iters).items():
                lines.append(_row(label, summarize(ms), reorders, name, batch))
            continue
        del calls
        print(f"{name} batch {batch}: {len(labels)} rows x {isolated} processes", file=sys.stderr, flush=True)
        medians = {label: [] for label in labels}
        for r in range(isolated):  # the rows in turn, the first one rotating: drift falls on all alike
            for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
                spec = [name, json.dumps(kwargs), size, batch, label, threads, warmup, iters, str(tmp)]
                done = subprocess.run(
                    [sys.executable, __file__, "--worker", *map(str, spec)], capture_output=True, text=True
                )
                if done.returncode:
                    raise SystemExit(f"{name} {label} worker failed:\n{done.stderr[-2000:]}")
                medians[label].append(float(done.stdout.split()[-1]))
        for label, ms in medians.items():
            lines.append(_row(label, summarize(ms), reorders, name, batch))
    return lines


def worker(name, kwargs, size, batch, label, threads, warmup, iters, tmp) -> float:
    """One row alone in this process: the median ms of `iters` calls after `warmup`."""
    torch.set_num_threads(threads)
    module = _module(name, json.loads(kwargs), size)
    calls, _ = _calls(module, Path(tmp), _crops(batch, size), threads, [label])
    return summarize(interleave(calls, warmup, iters)[label])["median_ms"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", nargs="+", default=["mobilefacenet", "ir18", "ir50"])
    p.add_argument("--kwargs", default="{}", help="backbone arguments as JSON")
    p.add_argument("--input-size", type=int, default=112)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--warmup", type=int, nargs="+", default=[5, 2], help="one, or one per batch size")
    p.add_argument("--iters", type=int, nargs="+", default=[50, 10], help="one, or one per batch size")
    p.add_argument(
        "--isolated",
        type=int,
        default=0,
        metavar="R",
        help="time each row alone in its own process, R processes per row taken in turn; each cell is then over "
        "the R processes' medians (no thread pool of another row can interfere)",
    )
    p.add_argument("--worker", nargs=9, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        w = args.worker
        print(worker(w[0], w[1], int(w[2]), int(w[3]), w[4], int(w[5]), int(w[6]), int(w[7]), w[8]))
        return 0
    n = len(args.batch_sizes)
    warmups = args.warmup * n if len(args.warmup) == 1 else args.warmup
    iterses = args.iters * n if len(args.iters) == 1 else args.iters
    if len(warmups) != n or len(iterses) != n:
        p.error("give one --warmup / --iters, or one per batch size")
    torch.set_num_threads(args.threads)
    import onnxruntime

    how = (
        f"each row alone in {args.isolated} processes taken in turn, a cell over their medians"
        if args.isolated
        else "rows interleaved call by call"
    )
    print(
        f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}; {args.threads} threads; "
        f"warm-up {warmups}, timed rounds {iterses} per batch size; {how}\n"
    )
    print("| backbone | batch | setting | median ms | p10-p90 ms | spread | NCHWc reorders |")
    print("|---|---:|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="facezoo-ort-settings-") as tmp:
        for name in args.backbones:
            kwargs = json.loads(args.kwargs)
            rounds = (args.threads, warmups, iterses, Path(tmp), args.isolated)
            lines = bench(name, kwargs, args.input_size, args.batch_sizes, *rounds)
            print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
