"""The embedder: a model's metadata (ModelMeta), the torch module "backbone + preprocessing" (EmbedderModule), and
the one interface every runtime implements (Embedder): uint8 face crops in, float32 raw embeddings out.

Preprocessing: x = (pixel - mean) / std per channel, channels in the model's `channel_order` (the order the network
sees); mean and std are one float or three floats in that order (dlib's ResNet: "RGB", mean (122.782, 117.001,
104.298), std 256). Input crops are RGB unless the call says channel_order="BGR" (cv2's order).

Model key (galleries): "sha256:" + the first 16 hex of sha256(weights digest, canonical JSON of the meta without
thresholds). The weights digest is the sha256 of the backbone state dict (each tensor's name, dtype, shape, bytes);
a facezoo ONNX export carries the digest of the state dict it was exported from, a third-party ONNX file uses the
digest of its graph. So an export keeps the key, a calibrated copy (thresholds only) keeps it, and other weights or
other preprocessing change it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from torch import nn

from ..augment.crop_eye import crop_eye, crop_eye_size
from ..data.transforms import normalize
from ..errors import ConfigError, ModelError
from ..geometry import ARCFACE_TEMPLATE_112  # the one template; importable from here too
from ..registry import did_you_mean

CHANNEL_ORDERS = ("RGB", "BGR")
MAX_SIDE = 4096  # input sides and embedding sizes past these are not face models: refused as corrupt metadata
MAX_EMBEDDING = 65536
DEFAULT_BATCH = 64


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _per_channel(value, name: str, positive: bool = False):
    """A float, or a tuple of 3 floats, after checking each is finite (and > 0 when positive)."""
    several = isinstance(value, (list, tuple, np.ndarray))
    values = list(value.reshape(-1) if isinstance(value, np.ndarray) else value) if several else [value]
    if len(values) != (3 if several else 1) or not all(_is_number(v) for v in values):
        raise ModelError(f"model metadata: {name} must be a number or 3 numbers (one per channel), got {value!r}")
    values = [float(v) for v in values]
    if not all(math.isfinite(v) and (v > 0 or not positive) for v in values):
        want = "positive and finite" if positive else "finite"
        raise ModelError(f"model metadata: {name} must be {want}, got {value!r}")
    return tuple(values) if several else values[0]


def channel_values(value) -> tuple[float, float, float]:
    """mean/std as 3 floats, one per channel (a single float repeated)."""
    return tuple(value) if isinstance(value, tuple) else (float(value),) * 3


@dataclass
class ModelMeta:
    """Everything needed to use a backbone's weights; stored in every checkpoint and export, validated on creation."""

    backbone: str
    backbone_kwargs: dict = field(default_factory=dict)
    embedding_size: int = 512
    input_size: tuple[int, int] = (112, 112)  # (H, W)
    channel_order: str = "RGB"  # the network's channel order; crops are converted to it
    mean: float | tuple[float, float, float] = 127.5  # x = (pixel - mean) / std, per channel in channel_order
    std: float | tuple[float, float, float] = 127.5
    template: list = field(default_factory=lambda: [list(p) for p in ARCFACE_TEMPLATE_112])
    # Cosine-similarity thresholds by false accept rate, {far_key(far): threshold}, from impostor pairs of a
    # calibration set (facezoo calibrate); empty until calibrated. Used by the SDK's verify(far=...).
    thresholds: dict = field(default_factory=dict)
    # FaceX-Zoo's upper-face mode: input_size stays the aligned crop; the network sees its rows above the nose
    # (augment/crop_eye.py), cut inside the model so evaluation applies the crop the model was trained with
    crop_eye: bool = False

    def __post_init__(self):
        """Check and normalise every field; ModelError naming the field (from_dict adds the file)."""
        if not isinstance(self.backbone, str) or not self.backbone:
            raise ModelError(f"model metadata: backbone must be a name, got {self.backbone!r}")
        if not isinstance(self.backbone_kwargs, dict) or not all(isinstance(k, str) for k in self.backbone_kwargs):
            raise ModelError(f"model metadata: backbone_kwargs must be a dict, got {self.backbone_kwargs!r}")
        e = self.embedding_size
        if not isinstance(e, (int, np.integer)) or isinstance(e, bool) or not 1 <= e <= MAX_EMBEDDING:
            raise ModelError(f"model metadata: embedding_size must be an int in 1..{MAX_EMBEDDING}, got {e!r}")
        self.embedding_size = int(e)
        size = self.input_size
        if (
            not isinstance(size, (list, tuple))
            or len(size) != 2
            or not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in size
            )
        ):
            raise ModelError(f"model metadata: input_size must be (H, W) ints in 1..{MAX_SIDE}, got {size!r}")
        self.input_size = (int(size[0]), int(size[1]))
        if self.channel_order not in CHANNEL_ORDERS:
            raise ModelError(f"model metadata: channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        self.mean = _per_channel(self.mean, "mean")
        self.std = _per_channel(self.std, "std", positive=True)
        points = self.template
        if not isinstance(points, (list, tuple)) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(_is_number(v) and math.isfinite(v) for v in p)
            for p in points
        ):
            raise ModelError("model metadata: template must be a list of finite (x, y) points")
        self.template = [[float(x), float(y)] for x, y in points]
        if not isinstance(self.thresholds, dict) or not all(
            _is_number(v) and math.isfinite(v) for v in self.thresholds.values()
        ):
            raise ModelError(f"model metadata: thresholds must map FARs to finite cosines, got {self.thresholds!r}")
        self.thresholds = {str(k): float(v) for k, v in self.thresholds.items()}
        if not isinstance(self.crop_eye, bool):
            raise ModelError(f"model metadata: crop_eye must be true or false, got {self.crop_eye!r}")

    def to_dict(self) -> dict:
        """The metadata as JSON-ready values; crop_eye only when set, so full-crop models keep the files and model
        keys (model_key) they had before the field existed, and older readers can still load them."""
        d = asdict(self)
        if not d["crop_eye"]:
            del d["crop_eye"]
        d["input_size"] = list(self.input_size)
        for k in ("mean", "std"):
            if isinstance(d[k], tuple):
                d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d, where: str = "model metadata") -> ModelMeta:
        """A validated ModelMeta from its dict; ModelError naming `where` (the file) and the bad field."""
        if not isinstance(d, dict):
            raise ModelError(f"{where}: the model metadata is {type(d).__name__}, not a dict; re-save or re-export it.")
        names = [f.name for f in fields(cls)]
        unknown = [k for k in d if k not in names]
        if unknown:
            raise ModelError(
                f"{where}: unknown model metadata key '{unknown[0]}'.{did_you_mean(unknown[0], names)} "
                "Written by a newer facezoo? Upgrade, or re-export the model."
            )
        if "backbone" not in d:
            raise ModelError(f"{where}: the model metadata has no 'backbone'; re-save or re-export the model.")
        try:
            return cls(**d)
        except ModelError as e:
            raise ModelError(f"{where}: {e}; re-save or re-export the model.") from None

    @classmethod
    def from_config(cls, model_cfg) -> ModelMeta:
        s = model_cfg.input_size
        return cls(
            backbone=model_cfg.backbone,
            backbone_kwargs=dict(model_cfg.kwargs),
            embedding_size=model_cfg.embedding_size,
            input_size=(s, s),
            channel_order=model_cfg.channel_order,
            mean=model_cfg.mean,
            std=model_cfg.std,
            crop_eye=model_cfg.crop_eye,
        )

    @property
    def network_size(self) -> tuple[int, int]:
        """(H, W) the backbone itself takes: input_size, or its upper-face rows for a crop_eye model."""
        return crop_eye_size(self.input_size) if self.crop_eye else tuple(self.input_size)

    def build_backbone(self) -> nn.Module:
        from .. import create_backbone

        return create_backbone(
            self.backbone, embedding_size=self.embedding_size, input_size=self.network_size, **self.backbone_kwargs
        )

    def key_json(self) -> str:
        """Canonical JSON of the meta without thresholds (mean/std as 3 floats each): the key's preprocessing part."""
        d = self.to_dict()
        del d["thresholds"]
        d["mean"], d["std"] = list(channel_values(self.mean)), list(channel_values(self.std))
        return json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)

    def check_given(self, where, mean=None, std=None, channel_order=None) -> None:
        """Preprocessing passed explicitly for a model that carries its own may only repeat it (ConfigError)."""
        clash = []
        try:
            given = {k: _per_channel(v, k, k == "std") for k, v in (("mean", mean), ("std", std)) if v is not None}
        except ModelError as e:
            raise ConfigError(f"{where}: {str(e).removeprefix('model metadata: ')}.") from None
        for k, v in given.items():
            if channel_values(v) != channel_values(getattr(self, k)):
                clash.append(f"{k}={v!r} but the model says {getattr(self, k)!r}")
        if channel_order is not None and channel_order != self.channel_order:
            clash.append(f"channel_order={channel_order!r} but the model says {self.channel_order!r}")
        if clash:
            raise ConfigError(
                f"{where}: {', '.join(clash)}; drop the option (--mean/--std/--channel-order): the model's "
                "metadata is used."
            )


def state_digest(state: dict) -> str:
    """sha256 hex over a state dict: each tensor's name, dtype, shape and bytes, in order."""
    h = hashlib.sha256()
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def model_key(weights_digest: str, meta: ModelMeta) -> str:
    """'sha256:<16 hex>' of the weights digest and the preprocessing (meta without thresholds)."""
    h = hashlib.sha256(f"{weights_digest}\0{meta.key_json()}".encode())
    return "sha256:" + h.hexdigest()[:16]


class EmbedderModule(nn.Module):
    """forward(uint8 (B, H, W, 3) RGB at meta.input_size) -> (B, D) float32 raw embeddings: the backbone and its
    preprocessing in one module, for training's verification, tracing and the "uint8" ONNX export."""

    def __init__(self, backbone: nn.Module, meta: ModelMeta):
        super().__init__()
        self.backbone = backbone
        self.meta = meta

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.meta.input_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m = self.meta
        x = normalize(crop_eye(images) if m.crop_eye else images, m.mean, m.std, m.channel_order)
        return self.backbone(x).float()


class Embedder:
    """The one embedder interface, whatever runs the model (torch, onnxruntime, ...).

    `embedder(crops, channel_order="RGB")`: uint8 (B, H, W, 3) or (H, W, 3) face crops (numpy or torch, RGB by
    default; "BGR" for cv2 arrays) -> float32 (B, D) numpy raw embeddings (not L2-normalised), batch_size crops per
    forward. Crops of another size are resized (bilinear) to input_size, as evaluation resizes .bin images.
    Attributes: meta (ModelMeta), input_size (H, W), embedding_size, device, thresholds ({far key: cosine}), key
    (see the module doc), fingerprint (for feature caches), describe().

    A runtime subclasses it, implements `_forward` (one batch) and `_hash_weights`, and registers itself in
    facezoo.models.runtimes.RUNTIMES.
    """

    runtime = "?"

    def __init__(
        self,
        meta: ModelMeta,
        device: str,
        *,
        name: str = "model",
        batch_size: int | None = None,
        thresholds: dict | None = None,
    ):
        batch_size = DEFAULT_BATCH if batch_size is None else batch_size
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}.")
        self.meta = meta
        self.device = str(device)
        self.name = name
        self.batch_size = batch_size
        self.thresholds = dict(meta.thresholds if thresholds is None else thresholds)
        self._memo: dict = {}

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.meta.input_size)

    @property
    def embedding_size(self) -> int:
        return self.meta.embedding_size

    def _hash_weights(self) -> str:
        """sha256 hex of the weights the key is made of (the runtime's part)."""
        raise NotImplementedError

    def _hash_content(self) -> str:
        """sha256 hex of exactly what computes the numbers (for feature caches); the weights by default."""
        return self._hash_weights()

    def _version(self):
        """A token that changes when the weights change in place (torch modules); constant by default."""
        return None

    def _memoised(self, what: str, compute):
        version = self._version()
        hit = self._memo.get(what)
        if hit is None or hit[0] != version:
            hit = self._memo[what] = (version, compute())
        return hit[1]

    def weights_digest(self) -> str:
        """sha256 hex of the weights (a torch state dict, or what a facezoo ONNX export carries, or an ONNX graph)."""
        return self._memoised("weights", self._hash_weights)

    @property
    def key(self) -> str:
        """The model's identity for galleries: weights + preprocessing, not thresholds (see the module doc)."""
        return self._memoised("key", lambda: model_key(self.weights_digest(), self.meta))

    @property
    def fingerprint(self) -> str:
        """sha256 hex of runtime, computation and preprocessing: the feature-cache identity (facezoo.eval.features)."""
        text = f"{self.runtime}\0{self._memoised('content', self._hash_content)}\0{self.meta.key_json()}"
        return hashlib.sha256(text.encode()).hexdigest()

    def describe(self) -> str:
        """One line: which model runs on which runtime and device, with which input and preprocessing."""
        m = self.meta
        h, w = self.input_size
        return (
            f"model {self.name}: {self.runtime} on {self.device}, input {h}x{w} {m.channel_order} "
            f"(x - {_fmt(m.mean)}) / {_fmt(m.std)}, {self.embedding_size}-d"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    def _forward(self, batch) -> np.ndarray:
        """float32 (b, D) numpy for one uint8 (b, H, W, 3) RGB batch at input_size (numpy or torch)."""
        raise NotImplementedError

    def __call__(self, images, channel_order: str = "RGB") -> np.ndarray:
        """float32 (B, D) raw embeddings of uint8 (B, H, W, 3) crops; channel_order of the crops: "RGB" (default) or
        "BGR" (cv2.imread). A single (H, W, 3) crop is a batch of one."""
        if channel_order not in CHANNEL_ORDERS:
            raise ConfigError(f"channel_order must be 'RGB' or 'BGR' (the crops' order), got {channel_order!r}.")
        x = images.detach() if isinstance(images, torch.Tensor) else np.asarray(images)
        if x.ndim == 3:
            x = x[None]
        if x.dtype not in (np.uint8, torch.uint8) or x.ndim != 4 or x.shape[-1] != 3:
            raise ModelError(
                f"{self.name}: expects uint8 (B, H, W, 3) {channel_order} face crops, got {x.dtype} {tuple(x.shape)}."
            )
        if channel_order != "RGB":
            x = x.flip(-1) if isinstance(x, torch.Tensor) else x[..., ::-1]
        if tuple(x.shape[1:3]) != self.input_size:
            from ..data.image import resize_image

            x = x.cpu().numpy() if isinstance(x, torch.Tensor) else x
            x = np.stack([resize_image(np.ascontiguousarray(im), self.input_size) for im in x])
        if len(x) == 0:
            return np.zeros((0, self.embedding_size), np.float32)
        outs = []
        for s in range(0, len(x), self.batch_size):
            batch = x[s : s + self.batch_size]
            batch = batch.contiguous() if isinstance(batch, torch.Tensor) else np.ascontiguousarray(batch)
            out = np.asarray(self._forward(batch), dtype=np.float32)
            if out.shape != (len(batch), self.embedding_size):
                raise ModelError(
                    f"{self.name}: the model returned shape {out.shape} for {len(batch)} crops; expected "
                    f"({len(batch)}, {self.embedding_size}). Is it an embedding model?"
                )
            outs.append(out)
        return np.concatenate(outs)


def _fmt(value) -> str:
    return f"{value:g}" if not isinstance(value, tuple) else "(" + ", ".join(f"{v:g}" for v in value) + ")"
