"""ONNX Runtime ("onnxruntime"): sessions, execution providers, facezoo graph metadata and the ONNX embedder.

Every onnxruntime session facezoo opens (embedders, detectors, benchmarks) comes from `open_session`.
Providers (`session_providers`): device "auto" is CUDA when this onnxruntime has the CUDAExecutionProvider, else
CPU; "cuda[:i]" without it, or a session that starts on another provider than the one asked for (onnxruntime falls
back to CPU when CUDA cannot load), is a ConfigError: never a silent CPU run.

Metadata (ModelProto.metadata_props) written by facezoo export:
  facezoo.meta        JSON of ModelMeta.to_dict()
  facezoo.input       "float": normalised float32 (B, 3, H, W); "uint8": (B, H, W, 3) RGB, preprocessing inside
  facezoo.weights     sha256 hex of the state dict the graph was exported from (the model key's weights part)
  facezoo.version     the writer's facezoo version
  facezoo.precision   "fp32", "fp16" or "int8" (QDQ): what the graph computes in (fp32 when absent)
  facezoo.thresholds  JSON {far key: cosine}, written by facezoo calibrate into any ONNX file
Third-party graphs (insightface's w600k_r50.onnx) carry none: a float32 (B, 3, H, W) input with fixed H and W, and
the preprocessing given explicitly (mean 127.5, std 127.5, channel_order "RGB" for w600k_r50): nothing is guessed.
Their key's weights part is the sha256 of the graph (initialisers included), so metadata edits keep it.

Session defaults (`session_options`, used by every session `open_session` makes, embedders and detectors alike):
see SESSION_DEFAULTS.

Runtimes registered here: "onnxruntime" (CPU, or CUDA by device) and "tensorrt" (the TensorrtExecutionProvider,
CUDA and CPU behind it for the nodes TensorRT does not take; asked for where this onnxruntime has no TensorRT
provider it is a ConfigError naming the providers it has). The ONNX graph handling (metadata, third-party graphs,
preprocessing, key) lives in OnnxGraphEmbedder, shared with the OpenVINO runtime.

onnx and onnxruntime are optional: pip install "facezoo[onnx]".
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from pathlib import Path

import numpy as np

from ...errors import ConfigError, ModelError
from ..embedder import Embedder, ModelMeta, channel_values
from . import RUNTIMES
from .ort_prelu import cpu_graph

META_KEY = "facezoo.meta"
INPUT_KEY = "facezoo.input"
WEIGHTS_KEY = "facezoo.weights"
VERSION_KEY = "facezoo.version"
THRESHOLDS_KEY = "facezoo.thresholds"
PRECISION_KEY = "facezoo.precision"
PRECISIONS = ("fp32", "fp16", "int8")
INPUT_LAYOUTS = {
    "float": "float32 (B, 3, H, W), normalised (pixel - mean) / std in channel_order",
    "uint8": "uint8 (B, H, W, 3) RGB pixels; channel order and normalisation inside the graph",
}


def require(name: str):
    """Import an optional ONNX dependency or raise ConfigError with the install command."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ConfigError(f"ONNX support needs the '{name}' package: pip install \"facezoo[onnx]\"") from None


def _cuda_index(device: str) -> int | None:
    """i for "cuda" / "cuda:i", None for anything else."""
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    return None if m is None else int(m.group(1) or 0)


def session_providers(device) -> tuple[list, str]:
    """(onnxruntime providers, device name) for "auto" | "cpu" | "cuda[:i]"; ConfigError for cuda without CUDA."""
    ort = require("onnxruntime")
    device = str(device)
    available = ort.get_available_providers()
    if device == "auto":
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if device == "cpu":
        return ["CPUExecutionProvider"], "cpu"
    index = _cuda_index(device)
    if index is None:
        raise ConfigError(f"unknown device '{device}'; use auto, cpu or cuda[:index].")
    if "CUDAExecutionProvider" not in available:
        raise ConfigError(
            f"device '{device}' requested but this onnxruntime has no CUDAExecutionProvider "
            f"(available: {', '.join(available)}); install onnxruntime-gpu, or use cpu or auto."
        )
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], f"cuda:{index}"


def tensorrt_providers(device, precision: str = "fp32") -> tuple[list, str]:
    """(providers, device name) for the TensorRT execution provider on "auto" | "cuda[:i]", CUDA then CPU behind it
    for the nodes TensorRT does not take. The engine computes in the graph's precision: fp16 graphs with
    trt_fp16_enable, int8 (QDQ) graphs with trt_int8_enable (explicit quantisation: the graph's scales, no
    calibration table). Engines are cached under $FACEZOO_HOME/tensorrt (building one takes minutes).
    ConfigError when this onnxruntime has no TensorrtExecutionProvider (naming the ones it has), or for cpu."""
    from ...paths import home

    ort = require("onnxruntime")
    available = ort.get_available_providers()
    if "TensorrtExecutionProvider" not in available:
        raise ConfigError(
            f"runtime 'tensorrt' needs onnxruntime's TensorrtExecutionProvider, but this onnxruntime has "
            f"{', '.join(available)}; install onnxruntime-gpu and TensorRT (pip install tensorrt), or use "
            "--runtime onnxruntime (CPU / CUDA) or openvino."
        )
    device = "cuda" if str(device) == "auto" else str(device)
    index = _cuda_index(device)
    if index is None:
        raise ConfigError(f"runtime 'tensorrt' runs on a CUDA GPU; device '{device}' is not one (use auto or cuda:N).")
    options = {
        "device_id": index,
        "trt_fp16_enable": precision == "fp16",
        "trt_int8_enable": precision == "int8",
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(home() / "tensorrt"),
    }
    cuda = ("CUDAExecutionProvider", {"device_id": index})
    return [("TensorrtExecutionProvider", options), cuda, "CPUExecutionProvider"], f"cuda:{index}"


def _provider_name(provider) -> str:
    return provider if isinstance(provider, str) else provider[0]


# The settings of every session facezoo opens (benchmarks/ort_settings.py times each against the alternatives):
#   graph_optimization_level ORT_ENABLE_ALL: constant folding, Conv+BN and Conv+activation fusion, NCHWc layout;
#   execution_mode ORT_SEQUENTIAL, inter_op_num_threads 1: face models are chains, a parallel executor only adds
#     scheduling; memory arena and memory pattern on (onnxruntime's defaults: allocations reused across calls);
#   intra_op_num_threads: `threads` when given, else onnxruntime's choice (the physical cores). Spinning of idle
#     intra-op threads stays on (onnxruntime's default): it trades idle CPU for wake-up latency between operators;
#   rewrite_prelu: a session whose first provider is the CPU one runs PRelu as Relu(x) - a * Relu(-x), exact and
#     about 8x faster than onnxruntime's CPU PRelu kernel (ort_prelu.py; MobileFaceNet at batch 1: 12.3 -> 6.7 ms).
SESSION_DEFAULTS = {
    "graph_optimization_level": "ORT_ENABLE_ALL",
    "disabled_optimizers": (),
    "execution_mode": "ORT_SEQUENTIAL",
    "inter_op_num_threads": 1,
    "enable_cpu_mem_arena": True,
    "enable_mem_pattern": True,
    "rewrite_prelu": True,
}
# Embedders use them unchanged. Turning the NchwcTransformer off removes the 65 layout copies ORT_ENABLE_ALL puts
# around MobileFaceNet's PReLUs (NCHWc has no PReLU kernel), but on the quiet dev machine it made every embedder
# slower (benchmarks/ort_settings.py, RESULTS.md: at batch 32 MobileFaceNet 342 vs 306 ms, IR-50 1,780 vs
# 1,124 ms): the unblocked convolutions cost more than the copies.


def session_options(threads: int | None = None, **settings):
    """(onnxruntime SessionOptions, disabled optimizer names) from SESSION_DEFAULTS updated with `settings`
    (the same keys, plus "config": {session config key: value}); threads: intra-op threads (None: onnxruntime's)."""
    ort = require("onnxruntime")
    unknown = [k for k in settings if k not in SESSION_DEFAULTS and k != "config"]
    if unknown:
        raise ConfigError(f"unknown onnxruntime session setting(s) {unknown}; known: {sorted(SESSION_DEFAULTS)}.")
    chosen = {**SESSION_DEFAULTS, **settings}
    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, chosen["graph_optimization_level"])
    opts.execution_mode = getattr(ort.ExecutionMode, chosen["execution_mode"])
    opts.inter_op_num_threads = int(chosen["inter_op_num_threads"])
    opts.enable_cpu_mem_arena = bool(chosen["enable_cpu_mem_arena"])
    opts.enable_mem_pattern = bool(chosen["enable_mem_pattern"])
    if threads is not None:
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ConfigError(f"threads must be a positive int, got {threads!r}.")
        opts.intra_op_num_threads = threads
    for key, value in chosen.get("config", {}).items():
        opts.add_session_config_entry(key, str(value))
    return opts, tuple(chosen["disabled_optimizers"])


def open_session(
    model, providers=None, *, kind: str = "ONNX", hint: str = "", options=None, threads=None, settings=None
):
    """An onnxruntime InferenceSession for `model` (a path, or the serialised bytes of a ModelProto).

    providers: in order of preference (default: all available); the session must start on the first one, else
    ConfigError (no silent CPU fallback). options: an onnxruntime SessionOptions used as it is; without it,
    `session_options(threads, **settings)` (SESSION_DEFAULTS updated with settings). A missing file or one
    onnxruntime cannot load is a ModelError naming it ("<path>: <kind> file not found<hint>").
    """
    ort = require("onnxruntime")
    if isinstance(model, (bytes, bytearray)):
        source, where = bytes(model), "<ONNX bytes>"
    else:
        path = Path(model)
        if not path.is_file():
            raise ModelError(f"{path}: {kind} file not found{hint}.")
        source, where = str(path), str(path)
    disabled = ()
    if options is None:
        options, disabled = session_options(threads, **(settings or {}))
    extra = {"disabled_optimizers": list(disabled)} if disabled else {}
    chosen = list(providers) if providers else ort.get_available_providers()
    # AzureExecutionProvider (in every pip onnxruntime's available list) only forwards calls to a remote endpoint
    device = next((_provider_name(p) for p in chosen if _provider_name(p) != "AzureExecutionProvider"), None)
    if device == "CPUExecutionProvider" and {**SESSION_DEFAULTS, **(settings or {})}["rewrite_prelu"]:
        source = cpu_graph(source)
    try:
        session = ort.InferenceSession(source, sess_options=options, providers=chosen, **extra)
    except Exception as e:
        raise ModelError(f"{where}: onnxruntime cannot load it ({type(e).__name__}: {str(e)[:200]}).") from None
    if providers:
        want, active = _provider_name(chosen[0]), session.get_providers()
        if not active or active[0] != want:
            raise ConfigError(
                f"{where}: onnxruntime could not start {want} (active providers: {', '.join(active)}); check the "
                "CUDA/cuDNN (and TensorRT) install for onnxruntime-gpu, or use device cpu."
            )
    return session


def parse_props(props: dict, path) -> dict:
    """{meta (dict or None), input (layout or None), weights (hex or None), thresholds (dict), precision, facezoo
    (version)} from a graph's metadata_props; ModelError naming the file for unreadable facezoo entries."""
    meta = props.get(META_KEY)
    if meta is not None:
        try:
            meta = json.loads(meta)
        except ValueError as e:
            raise ModelError(
                f"{path}: unreadable '{META_KEY}' metadata ({e}); re-export it with `facezoo export`."
            ) from None
        ModelMeta.from_dict(meta, where=str(path))
    layout = props.get(INPUT_KEY)
    if meta is not None and layout not in INPUT_LAYOUTS:
        raise ModelError(
            f"{path}: '{INPUT_KEY}' metadata is {layout!r}, not one of {sorted(INPUT_LAYOUTS)}; "
            "re-export with facezoo export."
        )
    weights = props.get(WEIGHTS_KEY)
    if weights is not None and not re.fullmatch(r"[0-9a-f]{64}", weights):
        raise ModelError(f"{path}: '{WEIGHTS_KEY}' metadata is not a sha256 hex digest; re-export with facezoo export.")
    thresholds = {}
    if THRESHOLDS_KEY in props:
        try:
            thresholds = {str(k): float(v) for k, v in json.loads(props[THRESHOLDS_KEY]).items()}
        except (ValueError, TypeError, AttributeError) as e:
            raise ModelError(
                f"{path}: unreadable '{THRESHOLDS_KEY}' metadata ({e}); run facezoo calibrate again."
            ) from None
    precision = props.get(PRECISION_KEY, "fp32")
    if precision not in PRECISIONS:
        raise ModelError(
            f"{path}: '{PRECISION_KEY}' metadata is {precision!r}, not one of {', '.join(PRECISIONS)}; re-export with "
            "facezoo export."
        )
    return {
        "meta": meta,
        "input": layout,
        "weights": weights,
        "thresholds": thresholds,
        "precision": precision,
        "facezoo": props.get(VERSION_KEY),
    }


def _load_proto(path):
    onnx = require("onnx")
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: ONNX file not found.")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ModelError(f"{path}: not a readable ONNX model ({type(e).__name__}: {str(e)[:200]}).") from None


def _dims(value_info) -> list:
    return [
        d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in value_info.type.tensor_type.shape.dim
    ]


def read_onnx_meta(path) -> dict:
    """facezoo metadata and graph signature of an ONNX file, without loading its weights.

    Returns parse_props' entries plus {props (the raw metadata_props), opset, input_name, input_shape, input_dtype,
    output_name, output_shape}; meta/input/weights/facezoo are None for files not written by facezoo (e.g.
    insightface's).
    """
    onnx = require("onnx")
    proto = _load_proto(path)
    props = {p.key: p.value for p in proto.metadata_props}
    info = parse_props(props, path)
    info["props"] = props
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


def graph_digest(path) -> str:
    """sha256 hex of an ONNX graph (nodes and initialisers, external data files included), not of its metadata."""
    onnx = require("onnx")
    proto = _load_proto(path)
    h = hashlib.sha256(proto.graph.SerializeToString(deterministic=True))
    seen = set()
    for t in proto.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            location = {e.key: e.value for e in t.external_data}.get("location")
            if location and location not in seen:
                seen.add(location)
                with open(Path(path).parent / location, "rb") as f:
                    for block in iter(lambda: f.read(1 << 24), b""):
                        h.update(block)
    return h.hexdigest()


def normalise(images: np.ndarray, mean, std, channel_order: str) -> np.ndarray:
    """uint8 (B, H, W, 3) RGB -> float32 (B, 3, H, W), x = (pixel - mean) / std per channel in channel_order."""
    x = images.astype(np.float32)
    if channel_order == "BGR":
        x = x[..., ::-1]
    x = (x - np.float32(channel_values(mean))) / np.float32(channel_values(std))
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


class OnnxGraphEmbedder(Embedder):
    """An ONNX embedding graph behind the Embedder interface, whatever executes it (see the module doc): facezoo
    metadata or the given preprocessing, the input layout, the precision, the key.

    A backend subclass implements _start(device, threads) -> device name (opens the graph), _props() -> the graph's
    metadata_props as a dict, _signature() -> (input name, float input?, input dims, output dims; None or a name
    for a dynamic axis) and _run(x) -> (b, D) for the graph's own input.
    """

    suffixes = (".onnx",)
    default_for: tuple = ()
    wraps = ()

    def __init__(
        self,
        path,
        device="auto",
        *,
        mean=None,
        std=None,
        channel_order: str | None = None,
        batch_size: int | None = None,
        name: str | None = None,
        threads: int | None = None,
    ):
        """mean, std, channel_order: required for graphs without facezoo metadata, else they may only repeat it.
        threads: CPU threads for the backend (None: its own default)."""
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: ONNX file not found.")
        used = self._start(str(device), threads)
        info = parse_props(self._props(), self.path)
        self.input_name, is_float, dims, out_dims = self._signature()
        if info["meta"] is not None:
            meta = ModelMeta.from_dict(info["meta"], where=str(self.path))
            meta.check_given(self.path, mean, std, channel_order)
            self.layout = info["input"]
        else:
            meta = self._third_party_meta(mean, std, channel_order, is_float, dims, out_dims)
            self.layout = "float"
        self.precision = info["precision"]
        self._weights = info["weights"]
        thresholds = {**meta.thresholds, **info["thresholds"]}
        super().__init__(meta, used, name=name or self.path.name, batch_size=batch_size, thresholds=thresholds)

    @classmethod
    def open(cls, path, device="auto", **options) -> OnnxGraphEmbedder:
        return cls(path, device, **options)

    def _start(self, device: str, threads) -> str:
        raise NotImplementedError

    def _props(self) -> dict:
        raise NotImplementedError

    def _signature(self) -> tuple[str, bool, list, list]:
        raise NotImplementedError

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _backend(self) -> str:
        """What executes the graph, for describe()."""
        return self.runtime

    def _third_party_meta(self, mean, std, channel_order, is_float: bool, dims: list, out_dims: list) -> ModelMeta:
        given = {"mean": mean, "std": std, "channel_order": channel_order}
        missing = [k for k, v in given.items() if v is None]
        if missing:
            raise ConfigError(
                f"{self.path}: has no facezoo preprocessing metadata, so pass {', '.join(missing)} explicitly "
                "(e.g. load_model(path, mean=127.5, std=127.5, channel_order='RGB'), or --mean 127.5 --std 127.5 "
                "--channel-order RGB, for insightface models), or re-export it with `facezoo export`."
            )
        if not is_float or len(dims) != 4 or dims[1] != 3 or not all(isinstance(d, int) for d in dims[2:]):
            raise ModelError(
                f"{self.path}: input '{self.input_name}' is {'float32' if is_float else 'not float32'} {dims}; "
                "without facezoo metadata a float32 (B, 3, H, W) input with fixed H and W is required."
            )
        if len(out_dims) == 2 and isinstance(out_dims[1], int):
            size = out_dims[1]
        else:  # dynamic embedding size: one probe of a blank crop
            probe = self._run(np.zeros((1, 3, dims[2], dims[3]), np.float32))
            if probe.ndim != 2:
                raise ModelError(f"{self.path}: the output has shape {probe.shape}; an embedding (B, D) is expected.")
            size = probe.shape[1]
        try:
            return ModelMeta(
                backbone="onnx",
                embedding_size=int(size),
                input_size=(dims[2], dims[3]),
                channel_order=channel_order,
                mean=mean,
                std=std,
            )
        except ModelError as e:
            problem = str(e).removeprefix("model metadata: ")
            raise ConfigError(f"{self.path}: {problem} (--mean/--std/--channel-order).") from None

    def describe(self) -> str:
        return f"{super().describe()} ({self._backend()}, {self.precision})"

    def _forward(self, batch) -> np.ndarray:
        if not isinstance(batch, np.ndarray):
            batch = batch.cpu().numpy()
        m = self.meta
        x = batch if self.layout == "uint8" else normalise(batch, m.mean, m.std, m.channel_order)
        return self._run(x)

    def _hash_weights(self) -> str:
        return self._weights or self._memoised("content", self._hash_content)

    def _hash_content(self) -> str:
        return graph_digest(self.path)


@RUNTIMES.register("onnxruntime")
class OnnxEmbedder(OnnxGraphEmbedder):
    """An ONNX embedding graph in an onnxruntime session (CPU, or CUDA by device) with SESSION_DEFAULTS."""

    runtime = "onnxruntime"
    default_for = (".onnx",)

    def _providers(self, device: str) -> tuple[list, str]:
        return session_providers(device)

    def _start(self, device: str, threads) -> str:
        providers, used = self._providers(device)
        self.session = open_session(self.path, providers, threads=threads)
        self.providers = list(self.session.get_providers())
        return used

    def _props(self) -> dict:
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def _signature(self) -> tuple[str, bool, list, list]:
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: expected one image input, found {[i.name for i in inputs]}.")
        inp = inputs[0]
        return inp.name, inp.type == "tensor(float)", list(inp.shape), list(self.session.get_outputs()[0].shape)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def _backend(self) -> str:
        return self.providers[0]


@RUNTIMES.register("tensorrt")
class TensorrtEmbedder(OnnxEmbedder):
    """An ONNX embedding graph on onnxruntime's TensorRT execution provider (see tensorrt_providers): a CUDA GPU,
    the engine in the graph's precision (fp32, fp16 or int8 QDQ)."""

    runtime = "tensorrt"
    default_for = ()

    def _providers(self, device: str) -> tuple[list, str]:
        return tensorrt_providers(device, read_onnx_meta(self.path)["precision"])
