"""FaceAnalyzer: photo -> faces (box, score, 5 points) -> aligned crops -> embeddings -> answers.

    fa = FaceAnalyzer("mtcnn", "model.pt")           # or "scrfd:/models/det_10g.onnx", a Detector; .onnx models
    faces = fa.analyze("photo.jpg")                  # list[Face], highest detection score first
    fa.verify("a.jpg", "b.jpg")                      # {"same", "similarity", "threshold", "operating_point", ...}
    fa.identify("c.jpg", Gallery.open("g.db"))       # per face: {"face", "identity", "unknown", "matches", ...}
    fa.analyze(cv2.imread("p.jpg"), channel_order="BGR")   # arrays are RGB unless the call says BGR

Images: a path, encoded bytes or a PIL image are decoded by facezoo.data.image (EXIF orientation applied, 16-bit
scaled, the pixel budget and the format allow-list enforced) to RGB; a uint8 (H, W, 3) array is taken as RGB
unless the call passes channel_order="BGR" (cv2.imread's order), which then applies to arrays only. Face crops
are RGB whatever the input's order.

Decisions (verify, identify) use an operating point (sdk.thresholds.operating_point): a threshold given, a FAR's
calibrated threshold, or the model's default (its lowest calibrated FAR, else its stated default threshold); every
answer says which under "operating_point".

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

from ..errors import ConfigError, DataError, NoFaceError
from ..far import far_key
from .align import _hw, align_for_model
from .detect.base import Detector, check_image
from .face import Face

CHANNEL_ORDERS = ("RGB", "BGR")


def load_image(image, where: str | None = None, channel_order: str = "RGB") -> np.ndarray:
    """uint8 (H, W, 3) RGB from a path, encoded bytes, a PIL image (all three through facezoo.data.image: EXIF
    orientation, 16-bit scaling, pixel budget, accepted formats) or a uint8 array in `channel_order` ("RGB"
    default, "BGR" for cv2; arrays only). DataError naming the input."""
    from ..data.image import decode_image, from_pil, read_image_file

    if channel_order not in CHANNEL_ORDERS:
        raise ConfigError(f"channel_order must be 'RGB' or 'BGR' (the order of array inputs), got {channel_order!r}.")
    where = where or _where(image, "image")
    if isinstance(image, (str, Path)):
        return read_image_file(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image(bytes(image), where=where)
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image.Image, without importing PIL here
        try:
            return from_pil(image, where)
        except (OSError, ValueError, SyntaxError, EOFError) as e:  # a lazily opened file that cannot be decoded
            raise DataError(f"{where}: cannot decode image: {e}. Re-encode or remove it.") from None
    img = check_image(image, where)
    return np.ascontiguousarray(img[..., ::-1]) if channel_order == "BGR" else img


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
        overriding the model's metadata. crop_size: (H, W) of aligned crops; default the recognizer's input size
        (112x112 for ArcFace-style models, 150x150 for dlib_resnet), else 112x112. Images given to the methods are
        RGB arrays unless a call says channel_order="BGR" (see the module doc); channel_order here is the
        network's, for ONNX files without metadata. quality: a face image quality method (facezoo.quality:
        "baseline", "sdd_fiqa:q.pt", "magface_norm" = the recognizer's own norm, or an object) that sets each
        face's `quality`; enroll(min_quality=) then refuses faces below a threshold."""
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
        self._source = recognizer if isinstance(recognizer, (str, Path)) else None  # named in operating-point advice

    # ------------------------------------------------------------------ faces

    def _need_recognizer(self, what: str):
        if self.recognizer is None:
            raise ConfigError(
                f"{what} needs a recognition model: --model M on the command line, "
                "FaceAnalyzer(detector, recognizer='model.pt' or 'model.onnx') in Python."
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

    def analyze_many(self, images, max_faces: int | None = None, *, channel_order: str = "RGB") -> list[list[Face]]:
        """analyze() for several images, embedding all their crops in shared batches; arrays in channel_order
        ("RGB" default, "BGR" for cv2)."""
        per_image = []
        for n, image in enumerate(images):
            img = load_image(image, _where(image, f"image {n}"), channel_order)
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

    def analyze(self, image, max_faces: int | None = None, *, channel_order: str = "RGB") -> list[Face]:
        """Faces in one image (uint8 array, PIL image, encoded bytes or path), highest score first, each with
        bbox, det_score, kps, aligned RGB crop and (with a recognizer) embedding / normed_embedding.
        channel_order: of an array input, "RGB" (default) or "BGR" (cv2.imread)."""
        return self.analyze_many([image], max_faces, channel_order=channel_order)[0]

    def embed_crops(self, crops, channel_order: str = "RGB") -> np.ndarray:
        """float32 (N, D) raw embeddings of uint8 (N, H, W, 3) aligned crops (resized if not input size);
        channel_order of the crops: "RGB" (default) or "BGR" (cv2)."""
        return self._need_recognizer("embedding")(crops, channel_order=channel_order)

    def _best_face(self, image, name: str, channel_order: str) -> Face:
        faces = self.analyze(image, max_faces=1, channel_order=channel_order)
        if not faces:
            raise NoFaceError(
                f"{_where(image, name)}: no face found (min_det_score {self.min_det_score:g}). "
                "Use a photo with a visible face, or lower min_det_score (--min-score)."
            )
        return faces[0]

    # ------------------------------------------------------------------ verification

    def operating_point(self, far: float | None = None, threshold: float | None = None) -> dict:
        """The decision rule for verify / identify: {"threshold": cosine, "far" (FAR-based only), "source":
        "calibrated" | "model default" | "--threshold"}. far / threshold None: the model's default operating point
        (its lowest calibrated FAR, else its stated default threshold, e.g. dlib_resnet's); FaceAnalyzer(thresholds=)
        entries count as calibrated. A model with neither: ConfigError with the commands that give it one
        (sdk.thresholds.operating_point)."""
        from .thresholds import operating_point

        if far is not None and threshold is not None:
            raise ConfigError("give a FAR or a threshold, not both (--far F or --threshold T; far= or threshold=).")
        model = self._need_recognizer("a decision").thresholds
        return operating_point(model, far, threshold, overrides=self.thresholds, model=self._source)

    def threshold_for(self, far: float | None) -> float:
        """The cosine threshold of operating_point(far)."""
        return self.operating_point(far)["threshold"]

    def verify(
        self, image1, image2, *, far: float | None = None, threshold: float | None = None, channel_order: str = "RGB"
    ) -> dict:
        """Same person? Cosine of the best face of each image vs the operating point's threshold (a threshold
        given, the one calibrated for far, or the model's default: see operating_point). Array inputs are in
        channel_order ("RGB" default, "BGR" for cv2).

        Returns {"same", "similarity", "threshold", "far" (None unless the threshold is a calibrated FAR's),
        "operating_point", "face1", "face2" (Face objects)}; NoFaceError naming the image without a face.
        """
        op = self.operating_point(far, threshold)
        f1 = self._best_face(image1, "image1", channel_order)
        f2 = self._best_face(image2, "image2", channel_order)
        sim = float(np.dot(f1.normed_embedding, f2.normed_embedding))
        return {
            "same": bool(sim >= op["threshold"]),
            "similarity": sim,
            "threshold": op["threshold"],
            "far": op.get("far"),
            "operating_point": op,
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

    def identify(
        self,
        image,
        gallery,
        top_k: int = 5,
        threshold: float | None = None,
        *,
        far: float | None = None,
        channel_order: str = "RGB",
    ) -> list[dict]:
        """Who is this? For each face (best first): {"face": Face, "identity": the best gallery identity at or
        above the operating point's threshold, or None, "unknown": True when there is none, "matches": the top_k
        identities by cosine at or above it [{"identity", "score", "source"}], "operating_point"}.

        The operating point is threshold, far's calibrated threshold, or the model's default (operating_point);
        threshold=-1 keeps every candidate. gallery: a Gallery or a path. Array inputs are in channel_order
        ("RGB" default, "BGR" for cv2)."""
        op = self.operating_point(far, threshold)
        faces = [f for f in self.analyze(image, channel_order=channel_order) if f.embedding is not None]
        if not faces:
            return []
        with self._gallery(gallery, create=False) as g:
            results = g.search(np.stack([f.embedding for f in faces]), top_k=top_k)
        out = []
        for face, matches in zip(faces, results):
            hits = [m._asdict() for m in matches if m.score >= op["threshold"]]
            best = hits[0]["identity"] if hits else None
            out.append(
                {"face": face, "identity": best, "unknown": best is None, "matches": hits, "operating_point": op}
            )
        return out

    def _embed_best(self, images, with_quality: bool = False, channel_order: str = "RGB"):
        """(N, D) embeddings of the best face of each image, a NaN row where there is no face; with_quality:
        (embeddings, (N,) qualities, NaN where there is no face). Arrays in channel_order."""
        rec = self._need_recognizer("enrolment")
        per_image = self.analyze_many(images, max_faces=1, channel_order=channel_order)
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

    def enroll(
        self,
        gallery,
        identity: str,
        images,
        replace: bool = False,
        min_quality: float | None = None,
        *,
        channel_order: str = "RGB",
    ) -> int:
        """Add the best face of each image to `identity` (one transaction); NoFaceError naming an image without a
        face, DataError naming one whose quality is below min_quality (nothing is written then). Returns the
        number of embeddings added. Array inputs are in channel_order ("RGB" default, "BGR" for cv2)."""
        from ..errors import DataError

        images = list(images)
        if not images:
            raise ConfigError(f"no images given to enroll '{identity}'.")
        min_quality = self._check_min_quality(min_quality)
        emb, quality = self._embed_best(images, with_quality=True, channel_order=channel_order)
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
        """Enroll root/<identity>/<image>, best face per image, with a progress bar over the images; returns
        gallery.EnrollResult (images without a face, unreadable, or with a quality below min_quality are listed in
        its errors with the reason)."""
        from ..progress import bar
        from .gallery import IMAGE_EXTENSIONS, enroll_folder

        min_quality = self._check_min_quality(min_quality)
        root = Path(root)
        people = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")] if root.is_dir() else []
        total = sum(
            1
            for d in people
            for f in d.iterdir()
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_EXTENSIONS
        )
        with self._gallery(gallery, create=True) as g, bar(total, "enroll", "img") as pbar:

            def embed(paths):
                rows = self._embed_best(paths, with_quality=min_quality is not None)
                pbar.update(len(paths))
                return rows

            return enroll_folder(g, root, embed, replace=replace, min_quality=min_quality)

    def __repr__(self) -> str:
        rec = self.recognizer.describe() if self.recognizer is not None else "no recognizer"
        return f"FaceAnalyzer(detector={type(self.detector).__name__}, {rec}, crops {self.crop_size})"
