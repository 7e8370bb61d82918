"""`facezoo export --check FILE.onnx`: the rules InsightFace's MFR challenge applies to a submitted ONNX embedder.

From the challenge's rules (insightface challenges/iccv21-mfr and challenges/mfr READMEs) and its checker script
(onnx_helper.py), each a named check here:
  loads           onnx's checker accepts the model and onnxruntime (CPU) opens it;
  single input    one graph input (initialisers aside);
  input shape     rank 4, (batch, 3, H, W) with H x W the stated size (112 x 112 in the challenge; NCHW, RGB);
  input dtype     float32;
  dynamic batch   the batch axis is symbolic and the graph runs at batch 1 and 2 (the challenge embeds in batches);
  single output   one graph output;
  embedding size  the output is (B, D) with D <= the limit (512 for track A / MS1M, 1024 for track B / Glint360K),
                  and D equal to the stated size when one is given;
  finite output   a random face gives a finite, non-zero embedding;
  standard ops    every node in a standard ONNX domain ("", ai.onnx, ai.onnx.ml): no custom or contrib ops;
  float32 weights no initialiser narrower than 4 bytes ("any float-16 model weights is prohibited"; the checker
                  refuses every dtype of itemsize < 4, so int8 QDQ exports fail too);
  model size      the file (with external data) at most 1024 MB;
  graph size      at least 8 nodes (the checker's "too small onnx graph");
  normalisation   the input normalisation is stated: facezoo metadata (mean, std, channel order RGB) or given
                  (--mean and --std); the challenge feeds RGB (pixel - mean) / std.
The challenge's time limit (10 ms / 20 ms on a V100) is not checked: a timing here would not be that machine's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.runtimes.ort import META_KEY, open_session, require

STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
MAX_SIZE_MB = 1024
MIN_NODES = 8


@dataclass
class Check:
    name: str
    ok: bool | None  # None: not run (an earlier check it needs failed)
    detail: str


def _file_mb(path: Path, proto, onnx) -> float:
    size = path.stat().st_size
    seen = set()
    for t in proto.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            location = {e.key: e.value for e in t.external_data}.get("location")
            if location and location not in seen and (path.parent / location).is_file():
                seen.add(location)
                size += (path.parent / location).stat().st_size
    return size / 2**20


def _dims(value_info) -> list:
    return [
        d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in value_info.type.tensor_type.shape.dim
    ]


def _normalisation(proto, mean, std) -> Check:
    if mean is not None and std is not None:
        return Check("normalisation", True, f"given: (x - {mean}) / {std}, RGB")
    props = {p.key: p.value for p in proto.metadata_props}
    if META_KEY not in props:
        return Check("normalisation", False, "not stated: no facezoo metadata; pass --mean and --std")
    try:
        meta = json.loads(props[META_KEY])
        stated = meta["mean"], meta["std"], meta.get("channel_order", "RGB")
    except (ValueError, KeyError, TypeError):
        return Check("normalisation", False, f"'{META_KEY}' metadata is unreadable; re-export with facezoo export")
    if stated[2] != "RGB":
        return Check("normalisation", False, f"the network takes {stated[2]}; the challenge feeds RGB")
    return Check("normalisation", True, f"metadata: (x - {stated[0]}) / {stated[1]}, RGB")


ORDER = (
    "loads",
    "single input",
    "input shape",
    "input dtype",
    "single output",
    "dynamic batch",
    "embedding size",
    "finite output",
    "standard ops",
    "float32 weights",
    "model size",
    "graph size",
    "normalisation",
)


def _runs(session, name: str, h: int, w: int, symbolic: bool, first_dim, max_embedding, embedding_size) -> list:
    """dynamic batch, embedding size and finite output, from runs at batch 1 and 2 of random faces."""
    rng = np.random.default_rng(0)
    x = ((rng.integers(0, 256, (2, 3, h, w)) - 127.5) / 127.5).astype(np.float32)
    try:
        one, two = (session.run(None, {name: x[:b]})[0] for b in (1, 2))
    except Exception as e:
        reason = f"{type(e).__name__}: {str(e)[:160]}"
        return [Check("dynamic batch", False, f"batch 1 / 2 run failed ({reason})")] + [
            Check(n, None, "the graph does not run") for n in ("embedding size", "finite output")
        ]
    ran = f"ran at batch 1 {tuple(one.shape)} and 2 {tuple(two.shape)}"
    batch_ok = symbolic and one.shape[0] == 1 and two.shape[0] == 2
    d = one.shape[-1] if one.ndim == 2 else None
    size_ok = d is not None and d <= max_embedding and (embedding_size is None or d == embedding_size)
    want = f"(B, D), D <= {max_embedding}" + ("" if embedding_size is None else f", D = {embedding_size}")
    finite = bool(np.isfinite(two).all() and (np.abs(two).sum(-1) > 0).all())
    return [
        Check("dynamic batch", batch_ok, ran + ("" if symbolic else f"; the batch axis is fixed at {first_dim}")),
        Check("embedding size", size_ok, f"{tuple(one.shape)}; want {want}"),
        Check("finite output", finite, "finite, non-zero" if finite else "NaN/inf or all zeros"),
    ]


def check_submission(
    path, input_size=(112, 112), max_embedding: int = 512, embedding_size: int | None = None, mean=None, std=None
) -> list[Check]:
    """Every check of the module doc for the ONNX file at `path`, in ORDER."""
    onnx = require("onnx")
    path = Path(path)
    try:
        proto = onnx.load(str(path))
    except Exception as e:
        detail = f"{path}: not a readable ONNX file ({type(e).__name__}: {str(e)[:160]})"
        return [Check("loads", False, detail)] + [Check(n, None, "the file does not load") for n in ORDER[1:]]
    checks: list[Check] = []
    session, problems = None, []
    try:
        onnx.checker.check_model(proto)
    except Exception as e:
        problems.append(f"onnx checker: {str(e).splitlines()[0][:160]}")
    try:
        session = open_session(path, ["CPUExecutionProvider"])
    except Exception as e:
        problems.append(f"onnxruntime: {str(e)[:200]}")
    version = require("onnxruntime").__version__
    checks.append(Check("loads", not problems, "; ".join(problems) or f"onnx checker, onnxruntime {version}"))
    inits = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    checks.append(Check("single input", len(inputs) == 1, f"{len(inputs)} input(s): {[i.name for i in inputs]}"))
    h, w = (int(v) for v in input_size)
    runnable = len(inputs) == 1
    if runnable:
        dims = _dims(inputs[0])
        shape_ok = len(dims) == 4 and dims[1:] == [3, h, w]
        checks.append(Check("input shape", shape_ok, f"{dims}; want (batch, 3, {h}, {w})"))
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(inputs[0].type.tensor_type.elem_type))
        checks.append(Check("input dtype", dtype == np.float32, f"{dtype.name}; want float32"))
        runnable = shape_ok and dtype == np.float32
    else:
        checks += [Check(n, None, "needs one input") for n in ("input shape", "input dtype")]
    outputs = list(proto.graph.output)
    checks.append(Check("single output", len(outputs) == 1, f"{len(outputs)} output(s): {[o.name for o in outputs]}"))
    if runnable and session is not None:
        symbolic = not isinstance(dims[0], int)
        checks += _runs(session, inputs[0].name, h, w, symbolic, dims[0], max_embedding, embedding_size)
    else:
        why = "onnxruntime cannot open it" if session is None else "needs one float32 (batch, 3, H, W) input"
        checks += [Check(n, None, f"{why}") for n in ("dynamic batch", "embedding size", "finite output")]
    custom = sorted({f"{n.domain}:{n.op_type}" for n in proto.graph.node if n.domain not in STANDARD_DOMAINS})
    checks.append(Check("standard ops", not custom, f"non-standard: {', '.join(custom)}" if custom else "all standard"))
    dtypes = {np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)) for t in proto.graph.initializer}
    narrow = sorted(d.name for d in dtypes if d.itemsize < 4)
    detail = f"initialisers of {', '.join(narrow)}" if narrow else "none below 32 bits"
    checks.append(Check("float32 weights", not narrow, detail))
    mb = _file_mb(path, proto, onnx)
    checks.append(Check("model size", mb <= MAX_SIZE_MB, f"{mb:.1f} MB; limit {MAX_SIZE_MB} MB"))
    n = len(proto.graph.node)
    checks.append(Check("graph size", n >= MIN_NODES, f"{n} nodes; at least {MIN_NODES}"))
    checks.append(_normalisation(proto, mean, std))
    return checks


def format_checks(checks: list[Check]) -> str:
    """A Markdown table: check | result (pass / FAIL / not run) | detail."""
    mark = {True: "pass", False: "FAIL", None: "not run"}
    lines = ["| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c.name} | {mark[c.ok]} | {c.detail.replace('|', '/')} |" for c in checks]
    return "\n".join(lines)
