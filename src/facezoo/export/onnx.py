"""ONNX export with the preprocessing metadata embedded, a PyTorch/onnxruntime parity check, and an ONNX embedder.

Two graph inputs (both with a dynamic batch axis):
  "float": float32 (B, 3, H, W), already normalised x = (pixel - mean) / std in the metadata's channel order,
           the layout of insightface's w600k_r50.onnx;
  "uint8": uint8 (B, H, W, 3) RGB pixels; channel order and normalisation run inside the graph.
The graph's metadata_props hold "facezoo.meta" (JSON of ModelMeta.to_dict()), "facezoo.input" ("float" or
"uint8") and "facezoo.version", so a loader preprocesses correctly without the checkpoint.

Exporter: torch.onnx.export(dynamo=True) (torch.export + onnxscript). In torch >= 2.9 it is the default and the
TorchScript exporter is deprecated ("will be removed"); dynamo=True exports ir* and mobilefacenet with a dynamic
batch axis and matches PyTorch to float32 rounding. It builds opset 18 and converts down to a lower requested
opset. If it fails for some model, the legacy TorchScript exporter is tried and a warning names the reason.

onnx, onnxscript and onnxruntime are optional: pip install "facezoo[onnx]".
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, ModelError
from ..io import atomic_write
from ..models.embedder import Embedder, ModelMeta

META_KEY = "facezoo.meta"
INPUT_KEY = "facezoo.input"
VERSION_KEY = "facezoo.version"
INPUT_LAYOUTS = {
    "float": "float32 (B, 3, H, W), normalised (pixel - mean) / std in channel_order",
    "uint8": "uint8 (B, H, W, 3) RGB pixels; channel order and normalisation inside the graph",
}
INPUT_NAMES = {"float": "input", "uint8": "images"}
OUTPUT_NAME = "embedding"
PARITY_BATCHES = (1, 4)


def _require(name: str):
    """Import an optional dependency or raise ConfigError with the install command."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ConfigError(f"ONNX support needs the '{name}' package: pip install \"facezoo[onnx]\"") from None


class _FloatGraph(nn.Module):
    """The backbone alone: normalised float32 (B, 3, H, W) -> (B, D) float32."""

    def __init__(self, embedder: Embedder):
        super().__init__()
        self.backbone = embedder.backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).float()


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
    onnx = _require("onnx")
    try:
        _require("onnxscript")
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


def _add_metadata(proto, meta: ModelMeta, layout: str) -> None:
    """Store the preprocessing metadata in the graph's metadata_props (replacing earlier facezoo entries)."""
    from .. import __version__

    props = {META_KEY: json.dumps(meta.to_dict()), INPUT_KEY: layout, VERSION_KEY: __version__}
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    for key, value in [*keep, *props.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"facezoo embedder; input: {INPUT_LAYOUTS[layout]}; metadata key {META_KEY}"


def open_session(model, providers=None, kind: str = "ONNX", hint: str = ""):
    """An onnxruntime InferenceSession for `model` (a path, or the serialised bytes of a ModelProto).

    providers: execution providers in order of preference (default: all available). A missing file or one
    onnxruntime cannot load is a ModelError naming it ("<path>: <kind> file not found<hint>").
    """
    ort = _require("onnxruntime")
    if isinstance(model, (bytes, bytearray)):
        source, where = bytes(model), "<ONNX bytes>"
    else:
        path = Path(model)
        if not path.is_file():
            raise ModelError(f"{path}: {kind} file not found{hint}.")
        source, where = str(path), str(path)
    try:
        return ort.InferenceSession(source, providers=list(providers) if providers else ort.get_available_providers())
    except Exception as e:
        raise ModelError(f"{where}: onnxruntime cannot load it ({type(e).__name__}: {str(e)[:200]}).") from None


def _ort_run(model_bytes: bytes, feeds: list[np.ndarray]) -> list[np.ndarray]:
    """Run each input array through an onnxruntime CPU session built from the serialised model."""
    ort = _require("onnxruntime")
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return [sess.run(None, {name: x})[0] for x in feeds]


def _parity(module: nn.Module, embedder: Embedder, model_bytes: bytes, layout: str, seed: int = 0) -> dict:
    """Max |torch - ort| and min row cosine over random uint8 faces at batch sizes PARITY_BATCHES."""
    gen = torch.Generator().manual_seed(seed)
    h, w = embedder.input_size
    m = embedder.meta
    inputs = []
    for b in PARITY_BATCHES:
        images = torch.randint(0, 256, (b, h, w, 3), dtype=torch.uint8, generator=gen)
        inputs.append(
            images
            if layout == "uint8"
            else torch.from_numpy(_normalise(images.numpy(), m.mean, m.std, m.channel_order))
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


def _load_embedder(checkpoint) -> Embedder:
    if isinstance(checkpoint, Embedder):
        return copy.deepcopy(checkpoint)  # the caller's model keeps its device and mode
    from ..models.checkpoint import load_model
    from ..models.zoo import resolve

    return load_model(resolve(checkpoint))  # a path or a named pretrained model (e.g. dlib_resnet)


def export_onnx(
    checkpoint, out_path, *, opset: int = 17, input: str = "float", check: bool = True, atol: float = 1e-3
) -> dict:
    """Export a facezoo checkpoint (path or Embedder) to ONNX at `out_path`, written atomically.

    The check runs batch 1 and 4 random faces through PyTorch and onnxruntime; it fails (ModelError, nothing
    written) when max |torch - ort| > atol * max(1, max |torch|), i.e. atol is absolute for embeddings of unit
    scale and relative for larger ones (untrained nets can output values in the hundreds).
    Returns {path, exporter, opset, input, input_name, input_shape, parity (None without check)}.
    """
    if input not in INPUT_LAYOUTS:
        raise ConfigError(f"export input '{input}' is unknown; use 'float' (normalised NCHW) or 'uint8' (NHWC RGB).")
    if not isinstance(opset, int) or opset < 13:
        raise ConfigError(f"opset {opset!r} is too old; use 13 or newer (default 17).")
    if check and not atol > 0:
        raise ConfigError(f"atol {atol!r} must be positive (default 1e-3).")
    _require("onnx")
    if check:
        _require("onnxruntime")
    embedder = _load_embedder(checkpoint).cpu().eval()
    meta = embedder.meta
    module = embedder if input == "uint8" else _FloatGraph(embedder).eval()
    h, w = embedder.input_size
    example = torch.zeros(2, h, w, 3, dtype=torch.uint8)  # batch 2: torch.export specialises sizes 0 and 1
    if input == "float":
        example = torch.zeros(2, 3, h, w)
    proto, exporter = _export_proto(module, example, opset, INPUT_NAMES[input])
    _add_metadata(proto, meta, input)
    model_bytes = proto.SerializeToString()
    parity = None
    if check:
        parity = _parity(module, embedder, model_bytes, input)
        tol = atol * max(1.0, parity["scale"])
        parity["tolerance"] = tol
        if not parity["max_abs_diff"] <= tol:
            raise ModelError(
                f"{out_path}: ONNX output differs from PyTorch by {parity['max_abs_diff']:.3g} (> {tol:.3g}, "
                f"min cosine {parity['min_cosine']:.6f}); nothing written. Try another --opset, or report the "
                "backbone; --no-check skips this test."
            )
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
        "parity": parity,
    }


def _parse_props(props: dict, path) -> dict:
    """{meta (dict or None), input ("float", "uint8" or None), facezoo (version or None)} from metadata_props."""
    meta = props.get(META_KEY)
    if meta is not None:
        try:
            meta = json.loads(meta)
            ModelMeta.from_dict(meta)
        except (ValueError, TypeError, KeyError) as e:
            msg = f"{path}: unreadable '{META_KEY}' metadata ({e}); re-export it with `facezoo export`."
            raise ModelError(msg) from None
    layout = props.get(INPUT_KEY)
    if meta is not None and layout not in INPUT_LAYOUTS:
        raise ModelError(
            f"{path}: '{INPUT_KEY}' metadata is {layout!r}, not one of {sorted(INPUT_LAYOUTS)}; "
            "re-export with facezoo export."
        )
    return {"meta": meta, "input": layout, "facezoo": props.get(VERSION_KEY)}


def _dims(value_info) -> list:
    return [
        d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in value_info.type.tensor_type.shape.dim
    ]


def read_onnx_meta(path) -> dict:
    """facezoo metadata and graph signature of an ONNX file, without loading its weights.

    Returns {meta, input, facezoo, opset, input_name, input_shape, input_dtype, output_name, output_shape};
    meta/input/facezoo are None for files not written by facezoo (e.g. insightface's).
    """
    onnx = _require("onnx")
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: ONNX file not found.")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ModelError(f"{path}: not a readable ONNX model ({type(e).__name__}: {str(e)[:200]}).") from None
    info = _parse_props({p.key: p.value for p in proto.metadata_props}, path)
    inits = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(proto.graph.output) < 1:
        raise ModelError(
            f"{path}: expected one image input and an embedding output, found inputs {[i.name for i in inputs]}."
        )
    (inp,), out = inputs, proto.graph.output[0]
    opsets = {o.domain: o.version for o in proto.opset_import}
    info.update(
        opset=opsets.get("", opsets.get("ai.onnx")),
        input_name=inp.name,
        input_shape=_dims(inp),
        input_dtype=onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type).name,
        output_name=out.name,
        output_shape=_dims(out),
    )
    return info


def _normalise(images: np.ndarray, mean: float, std: float, channel_order: str) -> np.ndarray:
    """uint8 (B, H, W, 3) RGB -> float32 (B, 3, H, W), x = (pixel - mean) / std, channels reversed for BGR."""
    x = images.astype(np.float32)
    if channel_order == "BGR":
        x = x[..., ::-1]
    x = (x - np.float32(mean)) / np.float32(std)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


class OnnxEmbedder:
    """An ONNX embedder used like Embedder: uint8 (B, H, W, 3) RGB (numpy or torch) -> (B, D) float32 numpy.

    Preprocessing comes from the file's facezoo metadata. For ONNX files without it (insightface's, taking
    float32 (B, 3, H, W)), pass mean, std and channel_order explicitly, e.g. 127.5, 127.5, "RGB" for
    w600k_r50.onnx; nothing is guessed. Explicit values that contradict the file's metadata are an error.
    """

    def __init__(
        self,
        path,
        providers=None,
        *,
        mean: float | None = None,
        std: float | None = None,
        channel_order: str | None = None,
    ):
        self.path = Path(path)
        self.session = open_session(self.path, providers)
        info = _parse_props(dict(self.session.get_modelmeta().custom_metadata_map), self.path)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.layout = info["input"] or "float"
        self.meta = ModelMeta.from_dict(info["meta"]) if info["meta"] is not None else None
        self.mean, self.std, self.channel_order = self._preprocessing(info, mean, std, channel_order)
        self._input_size = self._size(inp.shape)

    def _preprocessing(self, info: dict, mean, std, channel_order) -> tuple:
        given = {"mean": mean, "std": std, "channel_order": channel_order}
        if channel_order is not None and channel_order not in ("RGB", "BGR"):
            raise ConfigError(f"channel_order '{channel_order}' must be 'RGB' or 'BGR'.")
        if self.meta is None:
            missing = [k for k, v in given.items() if v is None]
            if missing:
                raise ConfigError(
                    f"{self.path}: has no facezoo preprocessing metadata, so pass {', '.join(missing)} explicitly "
                    "(e.g. OnnxEmbedder(path, mean=127.5, std=127.5, channel_order='RGB') for insightface "
                    "models), or re-export it with `facezoo export`."
                )
            return float(mean), float(std), channel_order
        stored = {"mean": self.meta.mean, "std": self.meta.std, "channel_order": self.meta.channel_order}
        clash = {k: (v, stored[k]) for k, v in given.items() if v is not None and v != stored[k]}
        if clash:
            detail = ", ".join(f"{k}={v!r} but the file says {s!r}" for k, (v, s) in clash.items())
            raise ConfigError(f"{self.path}: {detail}; drop the argument (the metadata is used) or re-export.")
        return float(self.meta.mean), float(self.meta.std), self.meta.channel_order

    def _size(self, shape) -> tuple[int, int]:
        if self.meta is not None:
            return tuple(self.meta.input_size)
        dims = list(shape)
        if len(dims) != 4 or dims[1] != 3 or not all(isinstance(d, int) for d in dims[2:]):
            raise ModelError(
                f"{self.path}: input '{self.input_name}' has shape {dims}; without facezoo metadata "
                "a float32 (B, 3, H, W) input with fixed H and W is required."
            )
        return int(dims[2]), int(dims[3])

    @property
    def input_size(self) -> tuple[int, int]:
        return self._input_size

    def __call__(self, images) -> np.ndarray:
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        images = np.asarray(images)
        h, w = self.input_size
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (h, w, 3):
            raise ModelError(
                f"{self.path}: expects uint8 (B, {h}, {w}, 3) RGB faces, got {images.dtype} "
                f"{images.shape}; align/resize faces to {h}x{w}."
            )
        x = images if self.layout == "uint8" else _normalise(images, self.mean, self.std, self.channel_order)
        return np.asarray(self.session.run(None, {self.input_name: x})[0], dtype=np.float32)
