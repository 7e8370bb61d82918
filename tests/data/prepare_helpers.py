"""Photos for the `data prepare` tests: synthetic identities placed on larger canvases by known similarity
transforms (so the true landmarks are known exactly), and a detector that reports those known faces.

Importable by module path, so spawned worker processes can unpickle KnownFaces and PixelEmbedder.
"""

from __future__ import annotations

import hashlib
import io
import math

import numpy as np
from PIL import Image

from facezoo.data.image import decode_image
from facezoo.data.synthetic import identity_rng, image_rng, render_face, sample_identity
from facezoo.sdk.align import arcface_template, warp_affine
from facezoo.sdk.detect.base import Detections, Detector

TEMPLATE = arcface_template(112)


def face(identity: int, index: int, seed: int = 3, nuisance: float = 1.0) -> np.ndarray:
    """An aligned 112x112 render of synthetic identity `identity`, image `index`: its landmarks are TEMPLATE."""
    return render_face(sample_identity(identity_rng(seed, identity)), image_rng(seed, identity, index), 112, nuisance)


def similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    """3x3 matrix x' = s R(angle) x + t (face pixels -> canvas pixels)."""
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    return np.array([[c, -s, tx], [s, c, ty], [0.0, 0.0, 1.0]])


class Canvas:
    """A background photo on which faces are pasted; `faces` records (box, landmarks) of each in canvas pixels."""

    def __init__(self, size=(360, 480), seed: int = 0):
        rng = np.random.default_rng(seed)
        h, w = size
        yy, xx = np.mgrid[0:h, 0:w]
        base = rng.uniform(40, 200, 3)
        tilt = rng.uniform(-0.15, 0.15, 2)
        grad = (xx * tilt[0] + yy * tilt[1])[..., None]
        self.image = np.clip(base + grad + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
        self.faces: list[tuple[np.ndarray, np.ndarray]] = []

    def paste(self, crop: np.ndarray, T: np.ndarray) -> Canvas:
        """Composite `crop` (its landmarks at TEMPLATE) through face -> canvas transform T."""
        h, w = self.image.shape[:2]
        warped = warp_affine(crop, T, (h, w))
        mask = warp_affine(np.full(crop.shape[:2], 255, np.uint8), T, (h, w)).astype(np.float64)[..., None] / 255
        self.image = np.rint(warped * mask + self.image * (1 - mask)).astype(np.uint8)
        corners = np.array([[0, 0, 1], [112, 0, 1], [0, 112, 1], [112, 112, 1]], float) @ T[:2].T
        box = np.concatenate([corners.min(0), corners.max(0)])
        kps = np.c_[TEMPLATE, np.ones(5)] @ T[:2].T
        self.faces.append((box, kps))
        return self

    def png(self) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(self.image).save(buf, "PNG")
        return buf.getvalue()

    def jpeg(self, quality: int = 92) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(self.image).save(buf, "JPEG", quality=quality)
        return buf.getvalue()


def key_of(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes() + str(image.shape).encode()).hexdigest()


class KnownFaces(Detector):
    """A detector that knows where the test put every face: {key_of(decoded photo): [(box, kps), ...]}.

    It stands in for a face detector where the test needs exact landmarks (the pipeline's own logic is what is
    under test); unknown photos have no face. Scores are 0.99.
    """

    def __init__(self):
        self.known: dict[str, list[tuple[list, list]]] = {}

    def add(self, data: bytes, faces) -> bytes:
        """Register the faces of encoded photo `data` (as the pipeline will decode it); returns `data`."""
        self.known[key_of(decode_image(data))] = [(np.asarray(b).tolist(), np.asarray(k).tolist()) for b, k in faces]
        return data

    def detect(self, image, max_faces=None) -> Detections:
        faces = self.known.get(key_of(image), [])
        if not faces:
            return Detections.empty()
        boxes = np.array([b for b, _ in faces], np.float32)
        kps = np.array([k for _, k in faces], np.float32)
        return Detections(boxes, np.full(len(faces), 0.99, np.float32), kps)


class PixelEmbedder:
    """A stand-in recognition model: the mean-centred 16x16 grey crop as the embedding (numpy in, numpy out)."""

    input_size = (16, 16)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        grey = batch.astype(np.float64).mean(-1).reshape(len(batch), -1)
        return (grey - grey.mean(1, keepdims=True)).astype(np.float32)
