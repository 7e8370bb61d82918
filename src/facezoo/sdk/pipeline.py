"""FaceAnalyzer: photo -> faces (box, score, 5 points) -> aligned crops -> embeddings -> answers.

    fa = FaceAnalyzer("mtcnn", "model.pt")           # or "scrfd:/models/det_10g.onnx", a Detector; .onnx models
    faces = fa.analyze("photo.jpg")                  # list[Face], highest detection score first
    fa.verify("a.jpg", "b.jpg", far=1e-4)            # {"same", "similarity", "threshold", ...}
    fa.identify("c.jpg", Gallery.open("g.db"))       # per face: {"face", "matches"}

Crops are aligned with a similarity transform (Umeyama) of the 5 points onto the ArcFace template at the
recognizer's input size (112x112 without a recognizer, or crop_size); a model whose metadata template is dlib's
chip template (dlib_resnet) gets dlib face chips instead (sdk.align.align_for_model). Embeddings are single view
(no flip); verify's cosine is compared with a threshold calibrated on the same score (facezoo calibrate).
"""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path

import numpy as np

from ..errors import ConfigError, NoFaceError
from ..far import far_key
from .align import _hw, align_for_model
from .detect.base import Detector, check_image
from .face import Face


def load_image(image, where: str | None = None) -> np.ndarray:
    """uint8 (H, W, 3) RGB from a path, encoded bytes, a PIL image or an array; DataError naming the input."""
    from ..data.image import decode_image, read_image_file

    if isinstance(image, (str, Path)):
        return read_image_file(image)
    if isinstance(image, (bytes, bytearray)):
        return decode_image(bytes(image), where=where or "image")
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image.Image, without importing PIL here
        return np.array(image.convert("RGB"))
    return check_image(image, where or "image")


def _where(image, default: str) -> str:
    return str(image) if isinstance(image, (str, Path)) else default


def build_detector(detector, device: str = "auto") -> Detector:
    """A Detector from a name ("mtcnn"), a spec "name:path" (path = the detector's first argument, e.g. the ONNX
    file of scrfd/retinaface or MTCNN's weights folder) or a Detector instance. The device goes to detectors that
    take `device` (torch) or `providers` (onnxruntime)."""
    if isinstance(detector, Detector):
        return detector
    if not isinstance(detector, str) or not detector.strip():
        raise ConfigError(
            f"detector must be a name like 'mtcnn', a spec like 'scrfd:/path/det_10g.onnx' or a "
            f"Detector, got {detector!r}."
        )
    from .detect.base import registered

    detectors = registered()
    name, _, arg = detector.partition(":")
    name = name.strip().lower()
    try:
        params = list(inspect.signature(detectors.get(name)).parameters)
    except (TypeError, ValueError):
        params = []
    kwargs: dict = {}
    if arg:
        if not params:
            raise ConfigError(f"detector '{name}' takes no file argument; use '{name}' alone.")
        kwargs[params[0]] = arg
    if "device" in params and "device" not in kwargs:
        from ..device import resolve_device

        kwargs["device"] = str(resolve_device(device))
    elif "providers" in params and "providers" not in kwargs:
        from ..models.runtimes.ort import session_providers

        kwargs["providers"] = session_providers(device)[0]
    return detectors.create(name, **kwargs)


class FaceAnalyzer:
    """Detection + alignment + embedding in one object; see the module docstring."""

    def __init__(
        self,
        detector="mtcnn",
        recognizer=None,
        *,
        device: str = "auto",
        runtime: str | None = None,
        max_faces: int | None = None,
        min_det_score: float = 0.5,
        batch_size: int = 32,
        thresholds: dict | None = None,
        crop_size=None,
        mean=None,
        std=None,
        channel_order=None,
        quality=None,
    ):
        """detector: name, "name:path" spec or Detector. recognizer: anything facezoo.load_model takes (a .pt, an
        .onnx, a pretrained model name, an Embedder), or None (detect and align only); runtime, mean, std and
        channel_order (the network's) go to load_model. thresholds: {far (float or far_key string): cosine}
        overriding the model's metadata. crop_size: (H, W) of aligned crops; default the recognizer's input size,
        else 112x112. Images are RGB (load_image decodes files to RGB). quality: a face image quality method
        (facezoo.quality: "baseline", "sdd_fiqa:q.pt", "magface_norm" = the recognizer's own norm, or an object)
        that sets each face's `quality`; enroll(min_quality=) then refuses faces below a threshold."""
        from ..models.loader import load_model

        if max_faces is not None and (not isinstance(max_faces, int) or max_faces < 1):
            raise ConfigError(f"max_faces must be a positive int or None, got {max_faces!r}.")
        self.detector = build_detector(detector, device)
        self.recognizer = None
        if recognizer is not None:
            self.recognizer = load_model(
                recognizer, device, runtime, mean=mean, std=std, channel_order=channel_order, batch_size=batch_size
            )
        if crop_size is not None:
            self.crop_size = _hw(crop_size)
        else:
            self.crop_size = tuple(self.recognizer.input_size) if self.recognizer is not None else (112, 112)
        meta = getattr(self.recognizer, "meta", None)
        self.template = meta.template if meta is not None else None  # the alignment the model asks for
        self.max_faces = max_faces
        self.min_det_score = float(min_det_score)
        self.thresholds = {far_key(float(k)): float(v) for k, v in (thresholds or {}).items()}
        self.quality = None
        if quality is not None:
            from ..quality import parse_quality

            self.quality = parse_quality(quality, model=self.recognizer, device=device, batch_size=batch_size)

    # ------------------------------------------------------------------ faces

    def _need_recognizer(self, what: str):
        if self.recognizer is None:
            raise ConfigError(
                f"{what} needs a recognition model: FaceAnalyzer(detector, recognizer='model.pt' or 'model.onnx')."
            )
        return self.recognizer

    def _faces(self, img: np.ndarray, max_faces: int | None) -> list[Face]:
        """Detected faces above min_det_score, best first, with aligned crops (no embeddings yet)."""
        limit = max_faces if max_faces is not None else self.max_faces
        dets = self.detector.detect(img, None)
        order = np.argsort(-np.asarray(dets.scores, np.float64), kind="stable")
        faces = []
        for i in order:
            if float(dets.scores[i]) < self.min_det_score:
                continue
            kps = None if dets.kps is None else np.asarray(dets.kps[i], np.float32)
            crop = align_for_model(img, kps, self.crop_size, self.template)[0] if kps is not None else None
            faces.append(Face(np.asarray(dets.boxes[i], np.float32), float(dets.scores[i]), kps, crop))
            if limit is not None and len(faces) >= limit:
                break
        return faces

    def analyze_many(self, images, max_faces: int | None = None) -> list[list[Face]]:
        """analyze() for several images, embedding all their crops in shared batches."""
        per_image = []
        for n, image in enumerate(images):
            img = load_image(image, _where(image, f"image {n}"))
            per_image.append(self._faces(img, max_faces))
        if self.recognizer is not None:
            faces = [f for fs in per_image for f in fs if f.crop is not None]
            if faces:
                emb = self.embed_crops(np.stack([f.crop for f in faces]))
                for f, e in zip(faces, emb):
                    f.embedding = e
        self._add_quality([f for fs in per_image for f in fs if f.crop is not None])
        return per_image

    def _add_quality(self, faces: list[Face]) -> None:
        """face.quality for faces with a crop (embeddings reused by methods computed from them: magface_norm)."""
        if self.quality is None or not faces:
            return
        emb = np.stack([f.embedding for f in faces]) if all(f.embedding is not None for f in faces) else None
        scores = self.quality.score_faces(np.stack([f.crop for f in faces]), self.recognizer, emb)
        for f, q in zip(faces, scores):
            f.quality = float(q)

    def analyze(self, image, max_faces: int | None = None) -> list[Face]:
        """Faces in one image (uint8 RGB array, PIL image, encoded bytes or path), highest score first, each with
        bbox, det_score, kps, aligned crop and (with a recognizer) embedding / normed_embedding."""
        return self.analyze_many([image], max_faces)[0]

    def embed_crops(self, crops, channel_order: str = "RGB") -> np.ndarray:
        """float32 (N, D) raw embeddings of uint8 (N, H, W, 3) aligned crops (resized if not input size);
        channel_order of the crops: "RGB" (default) or "BGR" (cv2)."""
        return self._need_recognizer("embedding")(crops, channel_order=channel_order)

    def _best_face(self, image, name: str) -> Face:
        faces = self.analyze(image, max_faces=1)
        if not faces:
            raise NoFaceError(
                f"{_where(image, name)}: no face found (min_det_score {self.min_det_score:g}). "
                "Use a photo with a visible face, or lower min_det_score (--min-score)."
            )
        return faces[0]

    # ------------------------------------------------------------------ verification

    def threshold_for(self, far: float | None) -> float:
        """The cosine threshold for a target FAR: FaceAnalyzer(thresholds=...) first, then the model's metadata.
        far None: the model's default operating point (metadata key thresholds.DEFAULT_KEY, e.g. dlib_resnet's
        distance rule) when it has one, else FAR 1e-4."""
        from .thresholds import DEFAULT_KEY

        model = self.recognizer.thresholds if self.recognizer is not None else {}
        if far is None:
            if DEFAULT_KEY in model:
                return float(model[DEFAULT_KEY])
            far = 1e-4
        key = far_key(float(far))
        if key in self.thresholds:
            return self.thresholds[key]
        if key in model:
            return float(model[key])
        known = sorted({*self.thresholds, *model} - {DEFAULT_KEY}, key=float)
        have = f"calibrated FARs: {', '.join(known)}" if known else "the model has no calibrated thresholds"
        raise ConfigError(
            f"no threshold for FAR {key} ({have}). Run `facezoo calibrate MODEL --bin X.bin --far "
            f"{key} --out MODEL_calibrated.pt` (or pass threshold=, or thresholds={{far: cos}})."
        )

    def verify(self, image1, image2, *, far: float | None = None, threshold: float | None = None) -> dict:
        """Same person? Cosine of the best face of each image vs a threshold (given, or chosen by far; far None:
        the model's default operating point if it has one, else 1e-4, see threshold_for).

        Returns {"same", "similarity", "threshold", "far" (None when a threshold or the model's default operating
        point was used), "face1", "face2" (Face objects)}; NoFaceError naming the image without a face.
        """
        from .thresholds import DEFAULT_KEY

        rec = self._need_recognizer("verify")
        if far is None and (threshold is not None or DEFAULT_KEY not in rec.thresholds):
            far = None if threshold is not None else 1e-4
        thr = float(threshold) if threshold is not None else self.threshold_for(far)
        f1, f2 = self._best_face(image1, "image1"), self._best_face(image2, "image2")
        sim = float(np.dot(f1.normed_embedding, f2.normed_embedding))
        return {
            "same": bool(sim >= thr),
            "similarity": sim,
            "threshold": thr,
            "far": None if threshold is not None or far is None else float(far),  # None: given or the default
            "face1": f1,
            "face2": f2,
        }

    # ------------------------------------------------------------------ galleries

    @contextlib.contextmanager
    def _gallery(self, gallery, create: bool):
        """A gallery object as given (its model key checked), or one opened from a path or postgresql:// URL and
        closed after."""
        from .gallery import open_gallery

        rec = self._need_recognizer("a gallery")
        if not isinstance(gallery, (str, Path)):  # a Gallery or PgGallery
            stored = gallery.model_key
            if stored is not None and stored != rec.key:
                raise ConfigError(
                    f"{gallery.path}: the gallery was built with model '{stored}' but this analyzer "
                    f"uses '{rec.key}' ({rec.name}); use the same model, or a new gallery file."
                )
            yield gallery
            return
        g = open_gallery(gallery, create=create, model_key=rec.key)
        try:
            yield g
        finally:
            g.close()

    def identify(self, image, gallery, top_k: int = 5, threshold: float | None = None) -> list[dict]:
        """Who is this? For each face (best first): {"face": Face, "matches": [{"identity", "score", "source"}]},
        top_k identities by cosine, only those with score >= threshold when one is given. gallery: a Gallery
        or a path."""
        faces = [f for f in self.analyze(image) if f.embedding is not None]
        if not faces:
            return []
        with self._gallery(gallery, create=False) as g:
            results = g.search(np.stack([f.embedding for f in faces]), top_k=top_k)
        out = []
        for face, matches in zip(faces, results):
            hits = [m._asdict() for m in matches if threshold is None or m.score >= threshold]
            out.append({"face": face, "matches": hits})
        return out

    def _embed_best(self, images, with_quality: bool = False):
        """(N, D) embeddings of the best face of each image, a NaN row where there is no face; with_quality:
        (embeddings, (N,) qualities, NaN where there is no face)."""
        rec = self._need_recognizer("enrolment")
        per_image = self.analyze_many(images, max_faces=1)
        d = next((fs[0].embedding.shape[0] for fs in per_image if fs), rec.meta.embedding_size if rec.meta else 1)
        out = np.full((len(per_image), d), np.nan, np.float32)
        for i, fs in enumerate(per_image):
            if fs and fs[0].embedding is not None:
                out[i] = fs[0].embedding
        if not with_quality:
            return out
        q = np.array([fs[0].quality if fs and fs[0].quality is not None else np.nan for fs in per_image])
        return out, q

    def _check_min_quality(self, min_quality) -> float | None:
        if min_quality is None:
            return None
        if self.quality is None:
            raise ConfigError(
                "min_quality needs a quality method: FaceAnalyzer(..., quality='baseline' or 'sdd_fiqa:q.pt')."
            )
        return float(min_quality)

    def enroll(self, gallery, identity: str, images, replace: bool = False, min_quality: float | None = None) -> int:
        """Add the best face of each image to `identity` (one transaction); NoFaceError naming an image without a
        face, DataError naming one whose quality is below min_quality (nothing is written then). Returns the
        number of embeddings added."""
        from ..errors import DataError

        images = list(images)
        if not images:
            raise ConfigError(f"no images given to enroll '{identity}'.")
        min_quality = self._check_min_quality(min_quality)
        emb, quality = self._embed_best(images, with_quality=True)
        for image, row, q in zip(images, emb, quality):
            if not np.isfinite(row).all():
                raise NoFaceError(
                    f"{_where(image, 'image')}: no face found; '{identity}' not changed. Use photos "
                    "with a visible face, or lower min_det_score (--min-score)."
                )
            if min_quality is not None and not q >= min_quality:
                raise DataError(
                    f"{_where(image, 'image')}: face quality {q:.4g} is below min_quality {min_quality:g} "
                    f"({self.quality.describe()}); '{identity}' not changed. Use a sharper, larger, unoccluded "
                    "photo, or lower min_quality."
                )
        sources = [str(im) if isinstance(im, (str, Path)) else None for im in images]
        with self._gallery(gallery, create=True) as g:
            return g.add(identity, emb, sources=sources, replace=replace)

    def enroll_folder(self, gallery, root, replace: bool = False, min_quality: float | None = None):
        """Enroll root/<identity>/<image>, best face per image; returns gallery.EnrollResult (images without a face,
        unreadable, or with a quality below min_quality are listed in its errors with the reason)."""
        from .gallery import enroll_folder

        min_quality = self._check_min_quality(min_quality)
        embed = self._embed_best if min_quality is None else lambda paths: self._embed_best(paths, with_quality=True)
        with self._gallery(gallery, create=True) as g:
            return enroll_folder(g, root, embed, replace=replace, min_quality=min_quality)

    def __repr__(self) -> str:
        rec = self.recognizer.describe() if self.recognizer is not None else "no recognizer"
        return f"FaceAnalyzer(detector={type(self.detector).__name__}, {rec}, crops {self.crop_size})"
