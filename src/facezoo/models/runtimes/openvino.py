"""OpenVINO ("openvino"): facezoo ONNX exports (and third-party ONNX embedders) compiled by the openvino package.

OpenVINO reads the .onnx file itself; facezoo's metadata (preprocessing, layout, weights digest, precision,
thresholds) is read from the same file with the onnx package, so the export needs no conversion step and keeps its
model key. int8 exports (QDQ) run as int8 (OpenVINO's low-precision transformations read the QuantizeLinear /
DequantizeLinear pairs); fp32 and fp16 graphs run with INFERENCE_PRECISION_HINT f32, because OpenVINO's CPU plugin
would otherwise compute in bf16 on CPUs that have it and silently change the numbers.

Devices: "auto" and "cpu" -> OpenVINO's CPU plugin (the only one facezoo asks for); anything else is a ConfigError.
threads: INFERENCE_NUM_THREADS (None: OpenVINO's default, all cores), with PERFORMANCE_HINT LATENCY (one stream).
One compiled model serves every call; an infer request is not thread-safe, so calls are serialised by a lock.

Signal stack: OpenVINO's CPU plugin installs its own small (about 11 KB) alternate signal stack in the calling
thread when it compiles a model, and disables it when the compiled model is destroyed. Python runs its signal
handlers on the alternate stack (SA_ONSTACK), and a SIGCHLD delivered there (a DataLoader worker or any child
exiting) crashed the process with SIGSEGV. So compiling and releasing happen inside keep_signal_stack(), which puts
the thread's alternate stack back as it was (faulthandler's, or none).

pip install "facezoo[openvino]" (openvino and onnx).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import threading

import numpy as np

from ...errors import ConfigError, ModelError
from . import RUNTIMES
from .ort import OnnxGraphEmbedder, read_onnx_meta


def require_openvino():
    """The openvino module, or ConfigError with the install command."""
    try:
        return importlib.import_module("openvino")
    except ImportError:
        raise ConfigError(
            "runtime 'openvino' needs the 'openvino' package: pip install \"facezoo[openvino]\" "
            "(or use --runtime onnxruntime)."
        ) from None


class _StackT(ctypes.Structure):  # struct stack_t of sigaltstack(2)
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@functools.cache
def _sigaltstack():
    try:
        return ctypes.CDLL(None, use_errno=True).sigaltstack
    except (OSError, AttributeError, TypeError):  # no such call (Windows): nothing to keep
        return None


@contextlib.contextmanager
def keep_signal_stack():
    """Run the block, then restore the calling thread's alternate signal stack (see the module doc)."""
    call = _sigaltstack()
    saved = _StackT()
    if call is None or call(None, ctypes.byref(saved)) != 0:
        yield
        return
    try:
        yield
    finally:
        call(ctypes.byref(saved), None)


@RUNTIMES.register("openvino")
class OpenVinoEmbedder(OnnxGraphEmbedder):
    """An ONNX embedding graph compiled by OpenVINO for its CPU plugin (see the module doc)."""

    runtime = "openvino"

    def _start(self, device: str, threads) -> str:
        ov = require_openvino()
        if device not in ("auto", "cpu"):
            raise ConfigError(f"runtime 'openvino' runs on the CPU here; device '{device}' is not available (use cpu).")
        self._info = read_onnx_meta(self.path)  # metadata and signature, with the onnx package
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
        except Exception as e:
            raise ModelError(f"{self.path}: OpenVINO cannot read it ({type(e).__name__}: {str(e)[:200]}).") from None
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if self._info["precision"] != "int8":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        if threads is not None:
            if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
                raise ConfigError(f"threads must be a positive int, got {threads!r}.")
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            with keep_signal_stack():
                self.compiled = core.compile_model(model, "CPU", config)
                self._request = self.compiled.create_infer_request()
        except Exception as e:
            raise ModelError(f"{self.path}: OpenVINO cannot compile it ({type(e).__name__}: {str(e)[:200]}).") from None
        self._lock = threading.Lock()
        return "cpu"

    def __del__(self):
        with keep_signal_stack():  # the plugin changes the signal stack again when the compiled model goes
            self.__dict__.pop("_request", None)
            self.__dict__.pop("compiled", None)

    def _props(self) -> dict:
        return self._info["props"]

    def _signature(self) -> tuple[str, bool, list, list]:
        info = self._info
        return info["input_name"], info["input_dtype"] == "float32", info["input_shape"], info["output_shape"]

    def _run(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            self._request.infer([x])
            return np.array(self._request.get_output_tensor(0).data, dtype=np.float32)

    def _backend(self) -> str:
        return "CPU"
