"""PrepareOptions: every setting of `facezoo data prepare`, checked when built."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ConfigError


@dataclass
class PrepareOptions:
    """Settings of one preparation run (the CLI flags of `facezoo data prepare`, same names with dashes).

    detector: a DETECTORS name or "name:path" spec (sdk.pipeline.build_detector), or a Detector instance.
    choose: which face is the identity's ("largest" box area, or most "center"ed box; never simply the first).
    min_score: detections below this score are ignored (neither chosen nor counted as another face).
    ambiguity: a photo is ambiguous when another face's box area is >= ambiguity x the chosen face's area.
    min_face: the chosen face's box must be at least this many pixels on its shorter side (original image).
    detect_max_side: images whose longer side exceeds this are detected downscaled (landmarks scaled back;
        alignment samples the full-resolution image), which bounds detection time per image.
    image_size: (H, W) of the aligned crops; template: None for the ArcFace template at that size, or a file of 5
        `x y` lines (left eye, right eye, nose, left and right mouth corner) in crop pixels.
    dedup: "phash" (perceptual hash, duplicates at Hamming distance <= dedup_threshold bits of 64), "embedding"
        (cosine >= dedup_threshold with `model`) or "none"; exact copies (same bytes) are removed by any but none.
    min_images: identities left with fewer images after all rejections are dropped.
    exclude: verification .bin files; identities whose mean embedding (with `model`) reaches cosine
        >= exclude_threshold with any of their images are dropped.
    format: output format (data.pack.WRITERS: recordio, tfrecord, folder); format_options its writer keywords.
    workers: processes that detect and align (0 = in this process).
    """

    detector: object = "mtcnn"
    device: str = "cpu"
    choose: str = "largest"
    min_score: float = 0.9
    ambiguity: float = 0.5
    min_face: float = 32.0
    detect_max_side: int = 1024
    image_size: tuple[int, int] = (112, 112)
    template: str | None = None
    quality: int = 95
    dedup: str = "phash"
    dedup_threshold: float | None = None
    model: object = None
    min_images: int = 1
    exclude: tuple[str, ...] = ()
    exclude_threshold: float = 0.5
    format: str = "recordio"
    format_options: dict = field(default_factory=dict)
    workers: int = 0
    work_dir: str | None = None

    def __post_init__(self):
        from ..pack import WRITERS
        from .dedup import DEDUP
        from .faces import CHOOSERS

        CHOOSERS.get(self.choose)
        WRITERS.get(self.format)
        method = DEDUP.get(self.dedup)
        self.image_size = _size(self.image_size)
        self.exclude = tuple(str(p) for p in self.exclude)
        if self.dedup_threshold is None:
            self.dedup_threshold = method.default_threshold
        checks = (
            ("min_score", 0 <= self.min_score <= 1, "a detection score in [0, 1], e.g. 0.9"),
            ("ambiguity", self.ambiguity >= 0 and not math.isnan(self.ambiguity), "an area ratio >= 0, e.g. 0.5"),
            ("min_face", self.min_face >= 0, "a face size in pixels >= 0, e.g. 32"),
            ("detect_max_side", self.detect_max_side >= 32, "a side in pixels >= 32, e.g. 1024"),
            ("quality", 1 <= self.quality <= 100, "a JPEG quality in 1..100, e.g. 95"),
            ("min_images", self.min_images >= 1, "a count >= 1"),
            ("workers", self.workers >= 0, "a process count >= 0 (0 = in this process)"),
            ("exclude_threshold", -1 <= self.exclude_threshold <= 1, "a cosine in [-1, 1], e.g. 0.5"),
        )
        for name, ok, want in checks:
            if not ok:
                raise ConfigError(f"{name}={getattr(self, name)!r} is invalid: give {want}.")
        if (self.exclude or self.dedup == "embedding") and self.model is None:
            raise ConfigError(
                "--exclude and --dedup embedding compare embeddings: give the recognition model with --model."
            )

    def template_points(self) -> np.ndarray:
        """The (5, 2) x, y points the landmarks are aligned onto, in crop pixels."""
        from ...sdk.align import arcface_template

        if self.template is None:
            return arcface_template(self.image_size)
        path = Path(self.template)
        try:
            points = np.loadtxt(path, dtype=np.float64, ndmin=2)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path}: cannot read the template ({e}); give 5 lines 'x y' in crop pixels.") from None
        if points.shape != (5, 2) or not np.isfinite(points).all():
            raise ConfigError(f"{path}: the template must be 5 lines 'x y' (finite), got shape {points.shape}.")
        return points

    def image_key(self) -> str:
        """A digest of every setting that changes what one identity's images become (journal validity)."""
        fields = ("choose", "min_score", "ambiguity", "min_face", "detect_max_side", "image_size", "quality")
        fields += ("dedup", "dedup_threshold")
        d = {name: getattr(self, name) for name in fields}
        d["detector"] = self.detector if isinstance(self.detector, str) else type(self.detector).__qualname__
        d["template"] = self.template_points().round(6).tolist()
        d["model"] = _model_key(self.model)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for name in ("detector", "model"):
            value = getattr(self, name)
            d[name] = value if value is None or isinstance(value, (str, Path)) else type(value).__qualname__
        return json.loads(json.dumps(d, default=str))


def _size(value) -> tuple[int, int]:
    if isinstance(value, int):
        value = (value, value)
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"image_size={value!r}: give (height, width), e.g. (112, 112).") from None
    if h < 8 or w < 8:
        raise ConfigError(f"image_size={value!r}: both sides must be >= 8 pixels.")
    return h, w


def _model_key(model) -> str | None:
    """A model file stands for its path, size and modification time; a model object for its class."""
    if model is None:
        return None
    if isinstance(model, (str, Path)):
        p = Path(model)
        stat = p.stat() if p.exists() else None
        return f"{p.resolve()}:{stat.st_size}:{stat.st_mtime_ns}" if stat else str(p)
    return type(model).__qualname__
