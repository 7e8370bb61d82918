"""Shared pieces of the ONNX face detectors (SCRFD, RetinaFace): onnxruntime session, letterbox, grids, batching,
score filtering + NMS.

Sizes are (H, W) as everywhere in facezoo (an int means a square). Coordinates are continuous pixel coordinates:
a letterbox that resizes an (h, w) image to (nh, nw) maps x -> x * nw / w, y -> y * nh / h, and back by dividing.
onnxruntime is optional: pip install "facezoo[onnx]".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError, ModelError
from .base import Detections, Detector, check_image
from .nms import nms

DEFAULT_INPUT_SIZE = (640, 640)


def create_session(model, providers=None):
    """models.runtimes.ort.open_session for a detector graph (path or bytes); ModelError naming a missing or bad
    file, ConfigError when the session cannot start on the first provider asked for."""
    from ...models.runtimes.ort import open_session

    return open_session(model, providers, kind="ONNX detector", hint="; pass the path of e.g. det_10g.onnx")


def model_name(model) -> str:
    """How error messages name a model given as a path or as bytes."""
    return "<ONNX bytes>" if isinstance(model, (bytes, bytearray)) else str(model)


@dataclass
class InputSpec:
    """The image input of a detector graph: name, batch (int when fixed, None when dynamic), size (H, W) when
    fixed, None when H or W is dynamic."""

    name: str
    batch: int | None
    size: tuple[int, int] | None


def input_spec(session, where: str) -> InputSpec:
    """InputSpec of a session with one float (B, 3, H, W) input; ModelError saying what was found otherwise."""
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].type != "tensor(float)":
        found = [(i.name, i.type, list(i.shape)) for i in inputs]
        raise ModelError(f"{where}: expected one float32 (B, 3, H, W) image input, found {found}.")
    shape = list(inputs[0].shape)
    if isinstance(shape[1], int) and shape[1] != 3:
        raise ModelError(f"{where}: input '{inputs[0].name}' has {shape[1]} channels, expected 3 (B, 3, H, W).")
    fixed = [d if isinstance(d, int) and d > 0 else None for d in shape]
    size = (fixed[2], fixed[3]) if fixed[2] and fixed[3] else None
    return InputSpec(inputs[0].name, fixed[0], size)


def hw(size) -> tuple[int, int]:
    """An int or (H, W) size as a tuple of two positive ints; ConfigError otherwise."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ConfigError(f"input_size must be an int or (H, W) of positive ints, got {size!r}; e.g. (640, 640).")
    return int(size[0]), int(size[1])


def resolve_input_size(spec: InputSpec, input_size, where: str, multiple: int = 1) -> tuple[int, int]:
    """The (H, W) the model runs at: the graph's fixed size, else `input_size` (default 640x640).

    A fixed-size graph with a different `input_size` is a ConfigError; a dynamic one needs both sides to be
    multiples of `multiple` (the largest stride), since its feature pyramid halves and merges the maps.
    """
    if spec.size is not None:
        if input_size is not None and hw(input_size) != spec.size:
            raise ConfigError(
                f"{where}: the model's input is fixed at (H, W) = {spec.size}, but input_size="
                f"{input_size!r} was given; drop input_size or re-export the model."
            )
        return spec.size
    size = hw(input_size) if input_size is not None else DEFAULT_INPUT_SIZE
    if size[0] % multiple or size[1] % multiple:
        raise ConfigError(
            f"{where}: input_size {size} must have both sides divisible by {multiple} (the largest "
            f"stride), e.g. ({-(-size[0] // multiple) * multiple}, {-(-size[1] // multiple) * multiple})."
        )
    return size


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, tuple[float, float]]:
    """Resize a uint8 (h, w, 3) image to fit (H, W) keeping its aspect ratio, pad right/bottom with 0.

    Returns (canvas uint8 (H, W, 3), (sx, sy)) with sx = nw / w and sy = nh / h, where (nh, nw) is the resized
    size: nw = round(w * r), nh = round(h * r), r = min(H / h, W / w), clipped to [1, (H, W)]. A point (x, y) of
    the canvas maps back to the image as (x / sx, y / sy).
    """
    from ...data.image import resize_image

    h, w = image.shape[:2]
    big_h, big_w = size
    r = min(big_h / h, big_w / w)
    nh = min(big_h, max(1, round(h * r)))
    nw = min(big_w, max(1, round(w * r)))
    canvas = np.zeros((big_h, big_w, 3), np.uint8)
    canvas[:nh, :nw] = resize_image(np.ascontiguousarray(image), (nh, nw))
    return canvas, (nw / w, nh / h)


def to_blob(canvases: Sequence[np.ndarray], mean, std, bgr: bool = False) -> np.ndarray:
    """uint8 (H, W, 3) RGB canvases -> float32 (B, 3, H, W), x = (pixel - mean) / std in RGB or BGR order
    (mean and std are scalars or per-channel in that order)."""
    x = np.stack(canvases).astype(np.float32)
    if bgr:
        x = x[..., ::-1]
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def anchor_centres(fh: int, fw: int, stride: int, num_anchors: int = 1) -> np.ndarray:
    """(fh * fw * A, 2) float32 x, y anchor centres of an (fh, fw) grid of stride s: (col * s, row * s), rows
    outer, columns inner, each location repeated A times in a row (the order of SCRFD's outputs)."""
    ys, xs = np.mgrid[:fh, :fw]
    centres = np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, num_anchors, axis=0)


def per_image(outputs: Sequence[np.ndarray], batch: int, where: str) -> list[list[np.ndarray]]:
    """Split raw outputs into per-image lists: (B, N, k) arrays are indexed by image; (B * N, k) arrays (graphs
    that flatten the batch, like insightface's SCRFD) are cut into B equal parts."""
    split = []
    for out in outputs:
        out = np.asarray(out)
        if out.ndim == 3 and out.shape[0] == batch:
            split.append(list(out))
        elif out.ndim == 2 and out.shape[0] % batch == 0:
            split.append(list(out.reshape(batch, -1, out.shape[1])))
        else:
            raise ModelError(
                f"{where}: an output has shape {out.shape} for a batch of {batch}; expected (B, N, k) or (B * N, k)."
            )
    return [[s[i] for s in split] for i in range(batch)]


def chunks(items: Sequence, size: int | None) -> list[Sequence]:
    """items in consecutive chunks of `size` (one chunk when size is None)."""
    if size is None:
        return [items] if len(items) else []
    return [items[i : i + size] for i in range(0, len(items), size)]


def prepare(images, size: tuple[int, int]) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
    """Check and letterbox every image: (canvases, scales)."""
    canvases, scales = [], []
    for i, image in enumerate(images):
        canvas, scale = letterbox(check_image(image, f"image {i}"), size)
        canvases.append(canvas)
        scales.append(scale)
    return canvases, scales


def run_batches(session, spec: InputSpec, canvases: list[np.ndarray], blob_fn, where: str) -> list[list[np.ndarray]]:
    """Raw outputs per image, running one session call per chunk of the graph's batch size (all images at once
    when the batch dim is dynamic). A short last chunk of a fixed-batch graph is padded with blank canvases."""
    results = []
    for chunk in chunks(canvases, spec.batch):
        n = len(chunk)
        feed = list(chunk) + [np.zeros_like(chunk[0])] * ((spec.batch or n) - n)
        outs = session.run(None, {spec.name: blob_fn(feed)})
        results.extend(per_image(outs, len(feed), where)[:n])
    return results


def check_max_faces(max_faces) -> None:
    if max_faces is not None and (
        not isinstance(max_faces, (int, np.integer)) or isinstance(max_faces, bool) or max_faces < 0
    ):
        raise ConfigError(f"max_faces must be None or an int >= 0, got {max_faces!r}.")


def finish(
    boxes: np.ndarray,
    scores: np.ndarray,
    kps: np.ndarray | None,
    scale: tuple[float, float],
    score_threshold: float,
    nms_threshold: float,
    max_faces: int | None,
) -> Detections:
    """Keep scores >= score_threshold, map canvas coordinates back to the image (divide x by sx, y by sy), greedy
    NMS at IoU nms_threshold with pixel-inclusive areas (w = x2 - x1 + 1, as insightface's SCRFD and
    Pytorch_Retinaface compute them), best first, at most max_faces."""
    keep = scores >= score_threshold
    boxes, scores = boxes[keep].astype(np.float32), scores[keep].astype(np.float32)
    kps = kps[keep].astype(np.float32) if kps is not None else None
    if not len(scores):
        return Detections.empty(with_kps=kps is not None)
    sx, sy = scale
    boxes = boxes / np.asarray([sx, sy, sx, sy], np.float32)
    if kps is not None:
        kps = kps / np.asarray([sx, sy], np.float32)
    idx = nms(boxes, scores, nms_threshold, plus_one=True)
    if max_faces is not None:
        idx = idx[: int(max_faces)]
    return Detections(boxes[idx], scores[idx], None if kps is None else kps[idx])


def check_thresholds(score_threshold: float, nms_threshold: float) -> None:
    for name, v in (("score_threshold", score_threshold), ("nms_threshold", nms_threshold)):
        if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ConfigError(f"{name} must be a number in [0, 1], got {v!r} (defaults: 0.5 and 0.4).")


def describe_outputs(session) -> str:
    """'name (shape), ...' of a session's outputs, for error messages."""
    return ", ".join(f"{o.name} {list(o.shape)}" for o in session.get_outputs())


class OnnxDetector(Detector):
    """Base of the ONNX detectors: opens the session; subclasses give `_blob(canvases)` (the network input) and
    `_decode(outputs, scale, max_faces)` (one image's raw outputs -> Detections)."""

    def _open(self, model, providers, score_threshold: float, nms_threshold: float) -> None:
        check_thresholds(score_threshold, nms_threshold)
        self.where = model_name(model)
        self.session = create_session(model, providers)
        self.spec = input_spec(self.session, self.where)
        self.score_threshold, self.nms_threshold = float(score_threshold), float(nms_threshold)

    def detect(self, image: np.ndarray, max_faces: int | None = None) -> Detections:
        """Faces in one uint8 (H, W, 3) RGB image, best first, at most `max_faces`, in the image's pixels."""
        return self.detect_batch([image], max_faces)[0]

    def detect_batch(self, images, max_faces: int | None = None) -> list[Detections]:
        """detect() for each image; one session call for all of them when the graph's batch dim is dynamic,
        chunks of its fixed batch size otherwise."""
        check_max_faces(max_faces)
        images = list(images)
        if not images:
            return []
        canvases, scales = prepare(images, self.input_size)
        raw = run_batches(self.session, self.spec, canvases, self._blob, self.where)
        return [self._decode(outs, scale, max_faces) for outs, scale in zip(raw, scales)]
