"""fp16 and int8 ONNX graphs from facezoo's fp32 export, and the parity that decides whether they are written.

fp16: onnxconverter-common's convert_float_to_float16 with keep_io_types (the graph's input and output stay as
they are: float32 or uint8 in, float32 out; weights and activations inside are fp16, with Casts at the ends).
int8: onnxruntime.quantization's static post-training quantisation in QDQ format: ranges from the calibration
images (MinMax: the running min and max of every activation, two numbers per tensor, so memory does not grow with
the number of images), activations and weights int8 (S8S8, ORT's recommended default), weights per output channel
(per_channel); the model is first pre-processed by quant_pre_process (shape inference, Conv+BN folding).
Declared opset domains that no node uses afterwards are dropped (quant_pre_process declares ORT's internal ones).

Parity: the cosine between each image's embedding from the converted graph and from the fp32 graph (both in
onnxruntime, CPU), over the calibration set and a held-out set, min and mean of each. The export is refused
(ModelError, nothing written) when the min over either set is below the bound (DEFAULT_MIN_COSINE, or
--min-cosine), or when an embedding is not finite (a zero embedding counts as cosine 0).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ModelError
from ..models.runtimes.ort import open_session, require
from .calibration import FaceSets

DEFAULT_MIN_COSINE = {"fp16": 0.999, "int8": 0.98}
STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
BATCH = 16  # images per calibration / parity run


@contextlib.contextmanager
def _quiet():
    """Silence the converters' per-tensor warnings and log lines."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _batches(images: np.ndarray, feed) -> list[np.ndarray]:
    return [feed(images[s : s + BATCH]) for s in range(0, len(images), BATCH)]


def to_fp16(proto, calibration_feeds, input_name: str):
    """The fp16 ModelProto of an fp32 one (calibration_feeds unused: fp16 needs no ranges)."""
    float16 = require("onnxconverter_common.float16")
    # Cast stays as it is (the uint8 graph's uint8 -> float Cast would otherwise be retyped half-way, which
    # onnxruntime rejects); the converter puts a float -> fp16 Cast after it.
    blocked = [*float16.DEFAULT_OP_BLOCK_LIST, "Cast"]
    with _quiet():
        return float16.convert_float_to_float16(proto, keep_io_types=True, op_block_list=blocked)


class _Feeds:
    """onnxruntime's CalibrationDataReader protocol over a list of input arrays."""

    def __init__(self, input_name: str, feeds: list[np.ndarray]):
        self.input_name, self.feeds = input_name, iter(feeds)

    def get_next(self):
        x = next(self.feeds, None)
        return None if x is None else {self.input_name: x}

    def rewind(self):  # not needed by MinMax (one pass)
        pass


def _drop_unused_domains(proto) -> None:
    used = {n.domain for n in proto.graph.node} | {""}
    keep = [o for o in proto.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del proto.opset_import[:]
    proto.opset_import.extend(keep)


def to_int8(proto, calibration_feeds, input_name: str):
    """The int8 QDQ ModelProto of an fp32 one, its activation ranges from calibration_feeds (graph inputs)."""
    onnx = require("onnx")
    quantization = require("onnxruntime.quantization")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="facezoo-int8-") as tmp:
        src, pre, out = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(proto, str(src))
        failed = None
        with _quiet():
            try:
                quant_pre_process(str(src), str(pre))
            except Exception as e:  # pre-processing only helps; quantising the graph as exported still works
                failed, pre = f"{type(e).__name__}: {str(e)[:200]}", src
            quantization.quantize_static(
                str(pre),
                str(out),
                _Feeds(input_name, calibration_feeds),
                quant_format=quantization.QuantFormat.QDQ,
                per_channel=True,
                activation_type=quantization.QuantType.QInt8,
                weight_type=quantization.QuantType.QInt8,
                calibrate_method=quantization.CalibrationMethod.MinMax,
            )
        low = onnx.load(str(out))
    if failed:
        warnings.warn(f"quant_pre_process failed ({failed}); the graph was quantised as exported", stacklevel=2)
    _drop_unused_domains(low)
    return low


CONVERTERS = {"fp16": to_fp16, "int8": to_int8}


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cos(a_i, b_i) per row in float64; 0 where a row has zero norm, NaN where a value is not finite."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    dot = (a * b).sum(1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), 0.0)
    cos[~(np.isfinite(a).all(1) & np.isfinite(b).all(1))] = np.nan
    return cos


def _embed(session, feeds: list[np.ndarray]) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x})[0] for x in feeds])


def check_bound(precision: str, min_cosine) -> float:
    """The bound in force: min_cosine, or DEFAULT_MIN_COSINE[precision]; ConfigError outside [-1, 1]."""
    bound = DEFAULT_MIN_COSINE[precision] if min_cosine is None else min_cosine
    if not isinstance(bound, (int, float)) or isinstance(bound, bool) or not -1.0 <= bound <= 1.0:
        raise ConfigError(f"--min-cosine {min_cosine!r} must be a number in [-1, 1] (default {DEFAULT_MIN_COSINE}).")
    return float(bound)


def lower_precision(proto, precision: str, sets: FaceSets, feed, input_name: str, bound: float, where) -> tuple:
    """(converted ModelProto, parity report) for an fp32 ModelProto; ModelError past the bound (module doc).

    feed(uint8 (b, H, W, 3)) -> the graph's input for those crops. Report: {precision, source, min_cosine_bound,
    calibration: {images, min_cosine, mean_cosine}, holdout: {...}}.
    """
    if precision not in CONVERTERS:
        raise ConfigError(f"precision '{precision}' is unknown; use fp32, {' or '.join(CONVERTERS)}.")
    calibration, holdout = _batches(sets.calibration, feed), _batches(sets.holdout, feed)
    low = CONVERTERS[precision](proto, calibration, input_name)
    reference = open_session(proto.SerializeToString(), ["CPUExecutionProvider"])
    converted = open_session(low.SerializeToString(), ["CPUExecutionProvider"])
    report = {"precision": precision, "source": sets.source, "min_cosine_bound": bound}
    for label, feeds in (("calibration", calibration), ("holdout", holdout)):
        cos = row_cosines(_embed(reference, feeds), _embed(converted, feeds))
        report[label] = {"images": len(cos), "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}
    worst = min(report["calibration"]["min_cosine"], report["holdout"]["min_cosine"])
    if not worst >= bound:  # NaN fails too
        c, h = report["calibration"], report["holdout"]
        raise ModelError(
            f"{where}: the {precision} graph's embeddings differ from fp32 past the bound: min cosine "
            f"{c['min_cosine']:.5f} on the calibration set ({c['images']} images), {h['min_cosine']:.5f} on the "
            f"held-out set ({h['images']} images); the bound is {bound:g} (--min-cosine; default "
            f"{DEFAULT_MIN_COSINE[precision]:g}). Nothing written. Calibrate on more or more representative aligned "
            "crops (--calibrate, --calibration-images), export fp16, or keep fp32."
        )
    return low, report
