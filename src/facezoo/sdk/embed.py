"""Recognizers: aligned uint8 RGB face crops in, float32 embeddings out, from a facezoo .pt or an ONNX file.

Both kinds take uint8 (B, H, W, 3) RGB numpy crops at `input_size` and return float32 (B, D) numpy embeddings
(raw, not normalised), batched internally. Preprocessing (channel order, (pixel - mean) / std) comes from the
model's metadata; ONNX files without facezoo metadata (insightface's w600k_r50.onnx) need mean, std and
channel_order given explicitly (127.5, 127.5, "RGB" for w600k_r50): nothing is guessed.

Device: "auto" is cuda when available (torch: torch.cuda; ONNX: onnxruntime's CUDAExecutionProvider), else cpu;
"cuda" without CUDA is a ConfigError, never a silent CPU run. `Recognizer.describe()` says what runs where.

Calibrated thresholds travel with the model: ModelMeta.thresholds for .pt files and facezoo ONNX exports, and the
ONNX metadata key "facezoo.thresholds" (JSON {far_key: cosine}) for any ONNX file (written by facezoo calibrate).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..data.image import resize_image
from ..errors import ConfigError, ModelError
from ..models.embedder import Embedder, ModelMeta

THRESHOLDS_KEY = "facezoo.thresholds"
DEFAULT_BATCH = 64


class Recognizer:
    """Base: `__call__(uint8 (B, H, W, 3) RGB) -> float32 (B, D)`; subclasses implement `_forward` on one batch."""

    backend = "?"

    def __init__(
        self,
        meta: ModelMeta | None,
        input_size,
        device: str,
        thresholds: dict | None = None,
        batch_size: int = DEFAULT_BATCH,
        name: str = "model",
    ):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}.")
        self.meta = meta
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.device = device
        self.batch_size = batch_size
        self.name = name
        self.thresholds = dict(thresholds if thresholds is not None else (meta.thresholds if meta else {}))
        self._key: str | None = None

    def describe(self) -> str:
        """One line: which model runs on which device with which backend."""
        h, w = self.input_size
        return f"recognizer {self.name}: {self.backend} on {self.device}, input {h}x{w}"

    @property
    def key(self) -> str:
        """The model's identity for galleries: 'sha256:<16 hex>' of its weights (not of its metadata), so a
        calibrated copy of a model keeps the key of the original."""
        if self._key is None:
            self._key = "sha256:" + self._weights_digest()[:16]
        return self._key

    def _weights_digest(self) -> str:
        raise NotImplementedError

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, images) -> np.ndarray:
        """float32 (B, D) raw embeddings of uint8 (B, H, W, 3) RGB crops; other crop sizes are resized (bilinear)
        to input_size, as evaluation resizes .bin images."""
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ModelError(
                f"{self.name}: expects uint8 (B, H, W, 3) RGB face crops, got {images.dtype} {images.shape}."
            )
        if images.shape[1:3] != self.input_size:
            images = np.stack([resize_image(np.ascontiguousarray(im), self.input_size) for im in images])
        if len(images) == 0:
            d = self.meta.embedding_size if self.meta is not None else 0
            return np.zeros((0, d), np.float32)
        outs = [
            self._forward(np.ascontiguousarray(images[s : s + self.batch_size]))
            for s in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(outs).astype(np.float32, copy=False)


class TorchRecognizer(Recognizer):
    """A facezoo Embedder on a torch device, in eval mode under inference_mode; uint8 crops travel to the device."""

    backend = "torch"

    def __init__(self, embedder: Embedder, device: torch.device, batch_size: int = DEFAULT_BATCH, name: str = "model"):
        super().__init__(embedder.meta, embedder.input_size, str(device), batch_size=batch_size, name=name)
        self.embedder = embedder.to(device).eval()
        self._torch_device = device

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self._torch_device, non_blocking=True)
            return self.embedder(x).float().cpu().numpy()

    def _weights_digest(self) -> str:
        h = hashlib.sha256()
        for name, t in self.embedder.backbone.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()


class OnnxRecognizer(Recognizer):
    """An OnnxEmbedder (onnxruntime) with its preprocessing; the execution provider follows `device`."""

    backend = "onnxruntime"

    def __init__(self, onnx_embedder, device: str, batch_size: int = DEFAULT_BATCH, name: str = "model"):
        props = dict(onnx_embedder.session.get_modelmeta().custom_metadata_map)
        thresholds = dict(onnx_embedder.meta.thresholds) if onnx_embedder.meta is not None else {}
        if THRESHOLDS_KEY in props:
            try:
                thresholds.update({str(k): float(v) for k, v in json.loads(props[THRESHOLDS_KEY]).items()})
            except (ValueError, TypeError, AttributeError) as e:
                raise ModelError(
                    f"{onnx_embedder.path}: unreadable '{THRESHOLDS_KEY}' metadata ({e}); run facezoo calibrate again."
                ) from None
        super().__init__(onnx_embedder.meta, onnx_embedder.input_size, device, thresholds, batch_size, name)
        self.onnx = onnx_embedder
        self.providers = list(onnx_embedder.session.get_providers())

    def describe(self) -> str:
        return f"{super().describe()} ({self.providers[0]})"

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        return self.onnx(batch)

    def _weights_digest(self) -> str:
        import onnx

        proto = onnx.load(str(self.onnx.path), load_external_data=False)
        return hashlib.sha256(proto.graph.SerializeToString(deterministic=True)).hexdigest()


def onnx_providers(device: str) -> tuple[list[str], str]:
    """(onnxruntime providers, device name) for "auto" | "cpu" | "cuda[:i]"; ConfigError for cuda without CUDA."""
    from ..export.onnx import _require

    ort = _require("onnxruntime")
    available = ort.get_available_providers()
    if device == "auto":
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if device == "cpu":
        return ["CPUExecutionProvider"], "cpu"
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise ConfigError(
                f"device '{device}' requested but this onnxruntime has no CUDAExecutionProvider "
                f"(available: {', '.join(available)}); install onnxruntime-gpu, or use cpu or auto."
            )
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], device
    raise ConfigError(f"unknown device '{device}'; use auto, cpu or cuda[:index].")


def _check_preprocessing(path, meta: ModelMeta, mean, std, channel_order) -> None:
    """A facezoo .pt carries its preprocessing: explicit values must agree with it."""
    given = {"mean": mean, "std": std, "channel_order": channel_order}
    stored = {"mean": meta.mean, "std": meta.std, "channel_order": meta.channel_order}
    clash = {k: (v, stored[k]) for k, v in given.items() if v is not None and v != stored[k]}
    if clash:
        detail = ", ".join(f"{k}={v!r} but the model says {s!r}" for k, (v, s) in clash.items())
        raise ConfigError(f"{path}: {detail}; drop the option (the model's metadata is used).")


def load_recognizer(
    model,
    device: str = "auto",
    *,
    mean: float | None = None,
    std: float | None = None,
    channel_order: str | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> Recognizer:
    """A Recognizer from a facezoo .pt (checkpoint or model), an .onnx file, an Embedder or an OnnxEmbedder.

    mean/std/channel_order: required for ONNX files without facezoo metadata (e.g. insightface w600k_r50.onnx:
    127.5, 127.5, "RGB"); for files with metadata they may only repeat it. device: "auto" | "cpu" | "cuda[:i]".
    """
    from ..export.onnx import OnnxEmbedder

    if isinstance(model, Recognizer):
        return model
    if isinstance(device, torch.device):
        device = str(device)
    if isinstance(model, Embedder):
        from ..device import resolve_device

        _check_preprocessing("embedder", model.meta, mean, std, channel_order)
        return TorchRecognizer(model, resolve_device(device), batch_size, name=model.meta.backbone)
    if isinstance(model, OnnxEmbedder):
        if device != "auto":
            want, _ = onnx_providers(device)
            if model.session.get_providers()[0] != (want[0] if isinstance(want[0], str) else want[0][0]):
                raise ConfigError(
                    f"{model.path}: the OnnxEmbedder runs on {model.session.get_providers()[0]} but "
                    f"device '{device}' was asked for; pass the file path instead."
                )
        used = "cuda" if model.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        return OnnxRecognizer(model, used, batch_size, name=model.path.name)
    if not isinstance(model, (str, Path)):
        raise ConfigError(
            f"model must be a path to a .pt/.onnx file, an Embedder or an OnnxEmbedder, got {type(model).__name__}."
        )
    from ..models.zoo import resolve

    path = resolve(model)  # a named pretrained model (e.g. "dlib_resnet") or a path
    if not path.is_file():
        raise ModelError(f"{path}: model file not found. Pass a facezoo model.pt / checkpoint.pt or an .onnx file.")
    if path.suffix.lower() == ".onnx":
        providers, used = onnx_providers(device)
        emb = OnnxEmbedder(path, providers, mean=mean, std=std, channel_order=channel_order)
        active = emb.session.get_providers()
        if used != "cpu" and active[0] != "CUDAExecutionProvider":
            raise ConfigError(
                f"{path}: onnxruntime could not start CUDA (active providers: {', '.join(active)}); "
                "check the CUDA/cuDNN install for onnxruntime-gpu, or use device cpu."
            )
        return OnnxRecognizer(emb, used, batch_size, name=path.name)
    from ..device import resolve_device
    from ..models.checkpoint import load_model

    embedder = load_model(path)
    _check_preprocessing(path, embedder.meta, mean, std, channel_order)
    return TorchRecognizer(embedder, resolve_device(device), batch_size, name=path.name)
