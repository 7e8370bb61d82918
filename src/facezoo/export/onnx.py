"""ONNX export with the preprocessing metadata embedded and a PyTorch/onnxruntime parity check.

Two graph inputs (both with a dynamic batch axis):
  "float": float32 (B, 3, H, W), already normalised x = (pixel - mean) / std in the metadata's channel order,
           the layout of insightface's w600k_r50.onnx;
  "uint8": uint8 (B, H, W, 3) RGB pixels; channel order and normalisation run inside the graph.
The graph's metadata_props hold "facezoo.meta" (JSON of ModelMeta.to_dict()), "facezoo.input" ("float" or
"uint8"), "facezoo.weights" (the digest of the exported state dict, so the export keeps the model key of its .pt),
"facezoo.precision" ("fp32", "fp16" or "int8") and "facezoo.version" (facezoo.models.runtimes.ort reads them), so
a loader preprocesses correctly without the checkpoint. fp16 and int8 exports (facezoo.export.precision) keep the
weights digest, hence the model key: a gallery enrolled with the fp32 model is searched with the int8 one, which
is what the parity bound (min cosine to fp32) is there to allow; their feature-cache fingerprint is their own graph.

Exporter: torch.onnx.export(dynamo=True) (torch.export + onnxscript). In torch >= 2.9 it is the default and the
TorchScript exporter is deprecated ("will be removed"); dynamo=True exports ir* and mobilefacenet with a dynamic
batch axis and matches PyTorch to float32 rounding. It builds opset 18 and converts down to a lower requested
opset. If it fails for some model, the legacy TorchScript exporter is tried and a warning names the reason.

onnx, onnxscript and onnxruntime are optional: pip install "facezoo[onnx]".
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import warnings

import numpy as np
import torch
from torch import nn

from ..augment.crop_eye import crop_eye_rows
from ..errors import ConfigError, ModelError
from ..io import atomic_write
from ..models.embedder import Embedder, EmbedderModule, ModelMeta
from ..models.runtimes.eager import TorchEmbedder
from ..models.runtimes.ort import (
    INPUT_KEY,
    INPUT_LAYOUTS,
    META_KEY,
    PRECISION_KEY,
    PRECISIONS,
    VERSION_KEY,
    WEIGHTS_KEY,
    normalise,
    open_session,
    require,
)

INPUT_NAMES = {"float": "input", "uint8": "images"}
OUTPUT_NAME = "embedding"
PARITY_BATCHES = (1, 4)


class _FloatGraph(nn.Module):
    """The backbone alone: normalised float32 (B, 3, H, W) at meta.input_size -> (B, D) float32; a crop_eye model
    keeps its upper-face rows inside the graph (augment/crop_eye.py), as EmbedderModule does for uint8 input."""

    def __init__(self, module: EmbedderModule):
        super().__init__()
        self.backbone = module.backbone
        self.rows = crop_eye_rows(module.meta.input_size[0]) if module.meta.crop_eye else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x if self.rows is None else x[:, :, : self.rows]).float()


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporters' progress logs and deprecation warnings for the duration of an export."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # legacy exporter: static shape checks
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_proto(module: nn.Module, example: torch.Tensor, opset: int, input_name: str):
    """(ModelProto, exporter name) for `module` with a dynamic batch axis on input and output."""
    onnx = require("onnx")
    try:
        require("onnxscript")
        with _quiet_exporter():
            program = torch.onnx.export(
                module,
                (example,),
                None,
                input_names=[input_name],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                verbose=False,
            )
        return program.model_proto, "dynamo"
    except ConfigError:
        raise
    except Exception as e:
        reason = f"{type(e).__name__}: {str(e)[:300]}"
    warnings.warn(f"torch.onnx dynamo exporter failed ({reason}); using the legacy TorchScript exporter", stacklevel=3)
    buf = io.BytesIO()
    try:
        with _quiet_exporter():
            torch.onnx.export(
                module,
                (example,),
                buf,
                input_names=[input_name],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamo=False,
                dynamic_axes={input_name: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
    except Exception as e:
        raise ModelError(
            f"ONNX export failed with both exporters; dynamo: {reason}; legacy: {type(e).__name__}: {str(e)[:300]}"
        ) from None
    return onnx.load_from_string(buf.getvalue()), "legacy"


def _add_metadata(proto, meta: ModelMeta, layout: str, weights: str, precision: str = "fp32") -> None:
    """Store the preprocessing metadata, the weights digest and the precision in the graph's metadata_props
    (replacing earlier facezoo entries)."""
    from .. import __version__

    props = {
        META_KEY: json.dumps(meta.to_dict()),
        INPUT_KEY: layout,
        WEIGHTS_KEY: weights,
        PRECISION_KEY: precision,
        VERSION_KEY: __version__,
    }
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    for key, value in [*keep, *props.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"facezoo {precision} embedder; input: {INPUT_LAYOUTS[layout]}; metadata key {META_KEY}"


def _ort_run(model_bytes: bytes, feeds: list[np.ndarray]) -> list[np.ndarray]:
    """Run each input array through an onnxruntime CPU session built from the serialised model."""
    sess = open_session(model_bytes, ["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return [sess.run(None, {name: x})[0] for x in feeds]


def _parity(module: nn.Module, meta: ModelMeta, model_bytes: bytes, layout: str, seed: int = 0) -> dict:
    """Max |torch - ort| and min row cosine over random uint8 faces at batch sizes PARITY_BATCHES."""
    gen = torch.Generator().manual_seed(seed)
    h, w = meta.input_size
    m = meta
    inputs = []
    for b in PARITY_BATCHES:
        images = torch.randint(0, 256, (b, h, w, 3), dtype=torch.uint8, generator=gen)
        inputs.append(
            images if layout == "uint8" else torch.from_numpy(normalise(images.numpy(), m.mean, m.std, m.channel_order))
        )
    with torch.no_grad():
        refs = [module(x).numpy() for x in inputs]
    outs = _ort_run(model_bytes, [x.numpy() for x in inputs])
    max_diff, min_cos, scale = 0.0, 1.0, 0.0
    for ref, out in zip(refs, outs):
        if out.shape != ref.shape:
            raise ModelError(f"ONNX output shape {out.shape} differs from PyTorch {ref.shape}")
        max_diff = max(max_diff, float(np.abs(out - ref).max()))
        cos = (out * ref).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12)
        min_cos = min(min_cos, float(cos.min()))
        scale = max(scale, float(np.abs(ref).max()))
    return {"batches": list(PARITY_BATCHES), "max_abs_diff": max_diff, "min_cosine": min_cos, "scale": scale}


def _torch_embedder(model) -> TorchEmbedder:
    """A CPU TorchEmbedder of `model`; objects are copied first, so the caller's model keeps its device and mode."""
    from ..models.loader import load_model

    if isinstance(model, TorchEmbedder):
        model = model.module
    if isinstance(model, Embedder):
        raise ConfigError(
            f"{model.name}: export needs torch weights (a .pt or an EmbedderModule), not a {model.runtime} model."
        )
    if isinstance(model, nn.Module):
        model = copy.deepcopy(model)
    return load_model(model, "cpu", runtime="torch")


def export_onnx(
    checkpoint,
    out_path,
    *,
    opset: int = 17,
    input: str = "float",
    check: bool = True,
    atol: float = 1e-3,
    precision: str = "fp32",
    calibrate=None,
    calibration_images: int = 256,
    holdout_images: int = 256,
    min_cosine: float | None = None,
) -> dict:
    """Export a facezoo model (a .pt path, a pretrained model name, an EmbedderModule or a torch Embedder) to ONNX
    at `out_path`, written atomically, with its metadata and weights digest (the export keeps the model key).

    The check runs batch 1 and 4 random faces through PyTorch and onnxruntime; it fails (ModelError, nothing
    written) when max |torch - ort| > atol * max(1, max |torch|), i.e. atol is absolute for embeddings of unit
    scale and relative for larger ones (untrained nets can output values in the hundreds).
    precision "fp16" or "int8" converts the checked fp32 graph (facezoo.export.precision) and refuses it (ModelError,
    nothing written) when the min cosine to fp32 on the calibration or held-out crops is below min_cosine (default
    0.999 fp16, 0.98 int8). calibrate: where those crops come from (a .bin, a RecordIO / TFRecord set, a folder, or
    a uint8 (N, H, W, 3) array; facezoo.export.calibration), required for int8; fp16 without it uses random images.
    calibration_images / holdout_images: how many of each.
    Returns {path, exporter, opset, input, input_name, input_shape, precision, size_mb, parity (None without check),
    precision_parity (None for fp32)}.
    """
    from .calibration import face_sets, random_faces
    from .precision import check_bound, lower_precision

    if input not in INPUT_LAYOUTS:
        raise ConfigError(f"export input '{input}' is unknown; use 'float' (normalised NCHW) or 'uint8' (NHWC RGB).")
    if not isinstance(opset, int) or opset < 13:
        raise ConfigError(f"opset {opset!r} is too old; use 13 or newer (default 17).")
    if check and not atol > 0:
        raise ConfigError(f"atol {atol!r} must be positive (default 1e-3).")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision '{precision}' is unknown; use {', '.join(PRECISIONS)} (--fp16, --int8).")
    if precision == "int8" and calibrate is None:
        raise ConfigError("int8 needs calibration crops: --calibrate DATA (a .bin, a RecordIO/TFRecord set, a folder)")
    if precision == "fp32" and calibrate is not None:
        raise ConfigError("--calibrate is for --int8 (ranges) or --fp16 (parity); an fp32 export does not use it.")
    bound = None if precision == "fp32" else check_bound(precision, min_cosine)
    require("onnx")
    if check or precision != "fp32":
        require("onnxruntime")
    embedder = _torch_embedder(checkpoint)
    meta = embedder.meta
    module = embedder.module if input == "uint8" else _FloatGraph(embedder.module).eval()
    h, w = embedder.input_size
    sets = None
    if precision != "fp32":  # read (and check) the crops before the slow export
        sets = (
            random_faces((h, w), calibration_images, holdout_images)
            if calibrate is None
            else face_sets(calibrate, (h, w), calibration_images, holdout_images)
        )
    example = torch.zeros(2, h, w, 3, dtype=torch.uint8)  # batch 2: torch.export specialises sizes 0 and 1
    if input == "float":
        example = torch.zeros(2, 3, h, w)
    proto, exporter = _export_proto(module, example, opset, INPUT_NAMES[input])
    _add_metadata(proto, meta, input, embedder.weights_digest())
    model_bytes = proto.SerializeToString()
    parity = None
    if check:
        parity = _parity(module, meta, model_bytes, input)
        tol = atol * max(1.0, parity["scale"])
        parity["tolerance"] = tol
        if not parity["max_abs_diff"] <= tol:
            raise ModelError(
                f"{out_path}: ONNX output differs from PyTorch by {parity['max_abs_diff']:.3g} (> {tol:.3g}, "
                f"min cosine {parity['min_cosine']:.6f}); nothing written. Try another --opset, or report the "
                "backbone; --no-check skips this test."
            )
    low = None
    if precision != "fp32":
        m = meta
        feed = (lambda x: x) if input == "uint8" else (lambda x: normalise(x, m.mean, m.std, m.channel_order))
        proto, low = lower_precision(proto, precision, sets, feed, INPUT_NAMES[input], bound, out_path)
        _add_metadata(proto, meta, input, embedder.weights_digest(), precision)
        model_bytes = proto.SerializeToString()
    with atomic_write(out_path) as f:
        f.write(model_bytes)
    opsets = {o.domain: o.version for o in proto.opset_import}
    shape = ["batch", 3, h, w] if input == "float" else ["batch", h, w, 3]
    return {
        "path": str(out_path),
        "exporter": exporter,
        "opset": opsets.get("", opsets.get("ai.onnx")),
        "input": input,
        "input_name": INPUT_NAMES[input],
        "input_shape": shape,
        "precision": precision,
        "size_mb": len(model_bytes) / 2**20,
        "parity": parity,
        "precision_parity": low,
    }
