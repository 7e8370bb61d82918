"""The HTTP API of `facezoo serve`, independent of the server that carries it: routes, limits, request validation,
the operations, and the error shapes. Both backends (stdlib.py, asgi.py) call Api.prepare on the request head and
Api.respond on the body, so every rule below holds the same on both.

Routes (bodies are JSON objects, or multipart/form-data with the images as file parts):
  POST   /v1/verify            {"image1", "image2", "far"?: float, "threshold"?: float}
                               -> {"same", "similarity", "threshold", "far", "face1", "face2"}
  POST   /v1/identify          {"image", "top_k"?: int, "threshold"?: float} -> {"faces": [{"face", "matches"}]}
  POST   /v1/enroll            {"identity", "images": [...], "replace"?: bool} -> {"identity", "enrolled"}
  DELETE /v1/identities/<name> (URL-quoted) or POST /v1/remove {"identity"} -> {"identity", "removed"}
  GET    /v1/identities        -> {"identities": [...], "count"}
  GET    /healthz              -> {"status": "ok"} (no auth)
In JSON, images are base64 strings of the file's bytes (a "data:image/...;base64," prefix is allowed).

Errors are {"error": {"code", "message"}}: 400 bad JSON / field / base64 / undecodable image / framing (duplicate or
bad Content-Length), 401 missing or wrong key, 404 unknown route or identity, 405 wrong method, 408 request not
received within the deadline, 411 no length (or chunked), 413 too large (body, image pixels, images per request),
415 unsupported body type, 422 no face or a non-finite number (NaN, Infinity, 1e999), 500 only for bugs (logged
with a traceback, a generic message to the client). Responses are strict JSON (never a bare NaN).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import math
import threading
from dataclasses import dataclass, fields
from urllib.parse import unquote, urlsplit

import numpy as np

from ...errors import ConfigError, DataError, FacezooError, NoFaceError

log = logging.getLogger("facezoo.serve")


@dataclass
class Limits:
    """What clients may take from the server, each checked before the work it protects.

    max_request_bytes: body size, from Content-Length before reading. max_image_pixels: width x height of each
    upload, from its header before decoding. max_images: images in one enroll. max_top_k: identify's top_k.
    timeout_s: the whole request (head and body) must arrive within this many seconds of its first byte (408).
    keepalive_s: an idle connection is closed after this long. backlog: the listen queue. detect_max_side: images
    with a longer side are downscaled for detection (landmarks mapped back), so detection time is bounded.
    """

    max_request_bytes: int = 10 * 2**20
    max_image_pixels: int = 16_000_000
    max_images: int = 32
    timeout_s: float = 30.0
    keepalive_s: float = 15.0
    max_top_k: int = 100
    backlog: int = 128
    detect_max_side: int = 1920

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"server limit {f.name} must be a positive int, got {value!r}.")
            if f.type == "float" and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"server limit {f.name} must be a positive number of seconds, got {value!r}.")


class HttpError(Exception):
    """An error answered to the client: status, a short machine code, a message saying the fix; close=True when
    the connection cannot be reused (its framing is broken or its body is not read)."""

    def __init__(self, status: int, code: str, message: str, close: bool = False):
        super().__init__(message)
        self.status, self.code, self.message, self.close = int(status), code, message, close
        self.drain = 0  # body bytes the server must read and drop to keep the connection (Api.prepare sets it)

    def payload(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


# ---------------------------------------------------------------------- routes


@dataclass(frozen=True)
class Param:
    """One body field: name, kind (image, images, identity, int, float, bool), required, and its documentation."""

    name: str
    kind: str
    doc: str
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # a trailing "{identity}" is a URL-quoted path parameter
    op: str  # FaceService method
    summary: str
    params: tuple[Param, ...] = ()
    auth: bool = True

    @property
    def body(self) -> bool:
        return bool(self.params)


_FAR = Param("far", "float", "false accept rate in (0, 1) whose calibrated threshold to use")
_THRESHOLD = Param("threshold", "float", "cosine threshold; default: the model's operating point")
ROUTES = (
    Route(
        "POST",
        "/v1/verify",
        "verify",
        "Are the best faces of two images the same person?",
        (
            Param("image1", "image", "first image", True),
            Param("image2", "image", "second image", True),
            _FAR,
            _THRESHOLD,
        ),
    ),
    Route(
        "POST",
        "/v1/identify",
        "identify",
        "Every face in an image against the gallery",
        (
            Param("image", "image", "the image", True),
            Param("top_k", "int", "matches per face (default 5)"),
            _FAR,
            _THRESHOLD,
        ),
    ),
    Route(
        "POST",
        "/v1/enroll",
        "enroll",
        "Add the best face of each image to an identity",
        (
            Param("identity", "identity", "the person's name", True),
            Param("images", "images", "one or more images", True),
            Param("replace", "bool", "drop the identity's previous entries first"),
        ),
    ),
    Route("POST", "/v1/remove", "remove", "Remove an identity", (Param("identity", "identity", "the name", True),)),
    Route("DELETE", "/v1/identities/{identity}", "remove", "Remove an identity (URL-quoted name)"),
    Route("GET", "/v1/identities", "identities", "The enrolled identities"),
    Route("GET", "/healthz", "healthz", "Liveness (no key needed)", auth=False),
)
_ROUTE_LIST = "/v1/verify, /v1/identify, /v1/enroll, /v1/remove, /v1/identities[/NAME], /healthz"


def resolve(method: str, target: str) -> tuple[Route, str | None]:
    """(route, path parameter) for a request target (raw, URL-quoted); 404 / 405 / 400 HttpError otherwise."""
    path = urlsplit(target).path
    candidates: list[tuple[Route, str | None]] = []
    for route in ROUTES:
        if route.path.endswith("}"):
            prefix = route.path[: route.path.index("{")]
            if path.startswith(prefix) and len(path) > len(prefix) and "/" not in path[len(prefix) :]:
                try:
                    candidates.append((route, unquote(path[len(prefix) :], errors="strict")))
                except UnicodeDecodeError:
                    raise HttpError(400, "bad_request", f"{path}: the name is not URL-quoted UTF-8.") from None
        elif path == route.path:
            candidates.append((route, None))
    if not candidates:
        raise HttpError(404, "not_found", f"no route {path[:200]}; routes: {_ROUTE_LIST}.")
    for route, param in candidates:
        if route.method == method:
            return route, param
    allowed = ", ".join(sorted({r.method for r, _ in candidates}))
    raise HttpError(405, "method_not_allowed", f"{method} {path[:200]} is not allowed; use {allowed}.")


# ---------------------------------------------------------------------- bodies: JSON and multipart


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str):
    raise _NonFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(text)
    return value


def parse_json(raw: bytes) -> dict:
    """The JSON object in `raw`. 400 for malformed, non-UTF-8 or too deeply nested JSON and for non-objects; 422
    for a non-finite number (NaN, Infinity, or one that overflows to infinity like 1e999)."""
    try:
        body = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except _NonFinite as e:
        raise HttpError(
            422, "non_finite", f"body holds the non-finite number {str(e)[:20]}; send finite numbers."
        ) from None
    except RecursionError:
        raise HttpError(
            400, "bad_json", "body is nested too deeply to be a request; send a flat JSON object."
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as e:
        raise HttpError(400, "bad_json", f"body is not valid JSON ({str(e)[:200]}).") from None
    if not isinstance(body, dict):
        raise HttpError(400, "bad_json", f"body must be a JSON object, got {type(body).__name__}.")
    return body


def _form_value(param: Param, text: str):
    """A multipart text field converted to the JSON type its parameter takes (images stay base64 text)."""
    kind = param.kind
    try:
        if kind == "int":
            return int(text.strip())
        if kind == "float":
            return _finite_float(text.strip())
    except _NonFinite:
        raise HttpError(422, "non_finite", f"field '{param.name}': {text[:20]!r} is not a finite number.") from None
    except ValueError:
        raise HttpError(400, "bad_request", f"field '{param.name}': {text[:20]!r} is not a {kind}.") from None
    if kind == "bool":
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "1", "0"):
            raise HttpError(400, "bad_request", f"field '{param.name}': {text[:20]!r} is not true or false.")
        return lowered in ("true", "1")
    return text


def parse_multipart(raw: bytes, content_type: str, route: Route) -> dict:
    """A multipart/form-data body as the JSON body it stands for: file parts are image bytes, text parts are
    converted to the parameter's type, repeated `images` parts form the list. Parsed by python-multipart."""
    try:
        from python_multipart.exceptions import MultipartParseError
        from python_multipart.multipart import MultipartParser, parse_options_header
    except ImportError:
        raise HttpError(
            415,
            "unsupported_media_type",
            "multipart uploads need python-multipart (pip install facezoo[serve]); "
            "send a JSON body with base64 images instead.",
        ) from None
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise HttpError(400, "bad_request", "multipart/form-data without a boundary parameter.")
    parts: list[dict] = []
    header: list[bytes] = [b"", b""]

    def on_part_begin():
        parts.append({"headers": {}, "data": []})

    def on_header_field(data, start, end):
        header[0] += data[start:end]

    def on_header_value(data, start, end):
        header[1] += data[start:end]

    def on_header_end():
        parts[-1]["headers"][header[0].decode("latin-1").lower()] = header[1]
        header[0], header[1] = b"", b""

    def on_part_data(data, start, end):
        parts[-1]["data"].append(data[start:end])

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(raw)
        parser.finalize()
    except (MultipartParseError, ValueError) as e:
        raise HttpError(400, "bad_request", f"malformed multipart body ({str(e)[:200]}).") from None
    params = {p.name: p for p in route.params}
    body: dict = {}
    for part in parts:
        _, disposition = parse_options_header(part["headers"].get("content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        data = b"".join(part["data"])
        param = params.get(name)
        if param is None:
            continue  # unknown fields are ignored, as in JSON
        if param.kind in ("image", "images") and b"filename" in disposition:
            value = data
        else:
            try:
                value = _form_value(param, data.decode("utf-8"))
            except UnicodeDecodeError:
                raise HttpError(400, "bad_request", f"field '{name}' is not UTF-8 text.") from None
        if param.kind == "images":
            body.setdefault(name, []).append(value)
        elif name in body:
            raise HttpError(400, "bad_request", f"field '{name}' is given twice.")
        else:
            body[name] = value
    return body


def encode(payload: dict) -> bytes:
    """Strict JSON (allow_nan=False: a NaN that got this far is a bug, answered 500, never emitted)."""
    return json.dumps(payload, allow_nan=False).encode()


# ---------------------------------------------------------------------- fields and images


def field(body: dict, name: str, kind, default=None, required: bool = False):
    """body[name] checked to be of `kind` (bool excluded from numbers, numbers finite); 400 naming the field."""
    if name not in body or body[name] is None:
        if required:
            raise HttpError(400, "bad_request", f"missing field '{name}'.")
        return default
    value = body[name]
    numeric = kind in (int, float)
    ok = isinstance(value, (int, float) if kind is float else kind) and not (numeric and isinstance(value, bool))
    if not ok:
        raise HttpError(400, "bad_request", f"field '{name}' must be {kind.__name__}, got {type(value).__name__}.")
    if kind is float:
        if not math.isfinite(value):
            raise HttpError(422, "non_finite", f"field '{name}' must be a finite number, got {value}.")
        return float(value)
    return value


def identity_field(value, where: str = "identity") -> str:
    """A valid identity name (Gallery's rules: non-empty UTF-8 text without control characters); 400 otherwise."""
    from ..gallery.store import check_identity

    try:
        return check_identity(value)
    except ConfigError as e:
        raise HttpError(400, "bad_request", f"{where}: {e}") from None


def decode_upload(value, where: str, max_pixels: int) -> np.ndarray:
    """An uploaded image (base64 text from JSON, bytes from multipart) -> uint8 (H, W, 3) RGB, decoded by
    facezoo.data.image.decode_image: only its accepted formats, the pixel budget checked from the header."""
    from ...data.image import ImageTooLarge, decode_image

    if isinstance(value, str) and value:
        if value.startswith("data:"):
            value = value.partition(",")[2]
        try:
            value = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise HttpError(
                400,
                "bad_base64",
                f"{where}: not valid base64; encode the image file's bytes with standard base64 (RFC 4648, padded).",
            ) from None
    if not isinstance(value, bytes) or not value:
        raise HttpError(400, "bad_request", f"{where}: expected a base64 string of image bytes (or a file part).")
    try:
        return decode_image(value, where, budget=max_pixels)
    except ImageTooLarge as e:
        raise HttpError(413, "image_too_large", f"{e} The server's limit is {max_pixels:,} pixels.") from None
    except DataError as e:
        raise HttpError(
            400, "bad_image", f"{str(e).partition(' Re-encode')[0]} Send a JPEG, PNG, BMP, GIF, WebP or TIFF file."
        ) from None


def jsonable(x):
    """Face objects, numpy values and NamedTuples as plain JSON types; face embeddings are left out."""
    if hasattr(x, "to_dict") and callable(x.to_dict):
        x = x.to_dict()
        x.pop("embedding", None)
        return jsonable(x)
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items() if k != "embedding"}
    if hasattr(x, "_asdict"):
        return jsonable(x._asdict())
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


# ---------------------------------------------------------------------- the operations (no HTTP here)


class FaceService:
    """The API's operations on decoded JSON bodies: analyzer calls serialised by a lock, gallery writes atomic.

    An analyzer with a `detector` gets it wrapped so that images longer than limits.detect_max_side are detected
    on a downscaled copy (service/downscale.py)."""

    def __init__(self, analyzer, gallery, limits: Limits | None = None):
        from .downscale import bound_detection

        self.analyzer, self.gallery = analyzer, gallery
        self.limits = limits or Limits()
        self._infer = threading.Lock()
        bound_detection(analyzer, self.limits.detect_max_side)

    def _image(self, body: dict, name: str) -> np.ndarray:
        value = body.get(name)
        if value is None:
            raise HttpError(400, "bad_request", f"missing field '{name}'.")
        return decode_upload(value, name, self.limits.max_image_pixels)

    def healthz(self, body: dict) -> dict:
        return {"status": "ok"}

    def _decision(self, body: dict) -> tuple:  # (far, threshold); both None: the model's default operating point
        far = field(body, "far", float)
        if far is not None and not 0 < far < 1:
            raise HttpError(400, "bad_request", f"field 'far' must be in (0, 1), got {far}.")
        return far, field(body, "threshold", float)

    def verify(self, body: dict) -> dict:
        far, threshold = self._decision(body)
        image1, image2 = self._image(body, "image1"), self._image(body, "image2")
        with self._infer:
            result = self.analyzer.verify(image1, image2, far=far, threshold=threshold)
        return jsonable(result)

    def identify(self, body: dict) -> dict:
        top_k = field(body, "top_k", int, 5)
        far, threshold = self._decision(body)
        if not 1 <= top_k <= self.limits.max_top_k:
            raise HttpError(400, "bad_request", f"field 'top_k' must be in 1..{self.limits.max_top_k}, got {top_k}.")
        image = self._image(body, "image")
        with self._infer:
            faces = self.analyzer.identify(image, self.gallery, top_k=top_k, threshold=threshold, far=far)
        return {"faces": jsonable(faces)}

    def enroll(self, body: dict) -> dict:
        identity = identity_field(field(body, "identity", str, required=True))
        images = field(body, "images", list, required=True)
        replace = field(body, "replace", bool, False)
        if not images:
            raise HttpError(400, "bad_request", "field 'images' is empty; send at least one image.")
        if len(images) > self.limits.max_images:
            raise HttpError(
                413,
                "too_many_images",
                f"{len(images)} images in one request; the server takes at "
                f"most {self.limits.max_images}. Split them over requests.",
            )
        arrays = [decode_upload(v, f"images[{i}]", self.limits.max_image_pixels) for i, v in enumerate(images)]
        with self._infer:
            n = self.analyzer.enroll(self.gallery, identity, arrays, replace=replace)
        return {"identity": identity, "enrolled": int(n)}

    def remove(self, body: dict, identity: str | None = None) -> dict:
        identity = identity_field(field(body, "identity", str, required=True) if identity is None else identity)
        if identity not in self.gallery.identities():
            raise HttpError(
                404, "unknown_identity", f"identity '{identity}' is not in the gallery; GET /v1/identities lists them."
            )
        try:
            n = self.gallery.remove(identity)
        except ConfigError as e:  # removed by another request in between
            raise HttpError(404, "unknown_identity", str(e)) from None
        return {"identity": identity, "removed": int(n)}

    def identities(self, body: dict) -> dict:
        names = self.gallery.identities()
        return {"identities": names, "count": len(names)}


# ---------------------------------------------------------------------- one request, whatever carries it


@dataclass
class Pending:
    """A request whose head passed every check: its route, path parameter, body length and content type."""

    route: Route
    param: str | None
    length: int
    content_type: str


def header(headers: list[tuple[str, str]], name: str) -> list[str]:
    """Every value of header `name` (lower-case) in a list of (name, value) pairs."""
    return [v for k, v in headers if k.lower() == name]


class Api:
    """Checks a request's head (route, key, framing, size) before its body is read, then answers it."""

    def __init__(self, service: FaceService, api_key: str | None):
        self.service, self.limits = service, service.limits
        self._key = None if api_key is None else api_key.encode("utf-8", "surrogateescape")

    def _authorised(self, headers) -> bool:
        given = header(headers, "x-api-key")
        if not given:
            scheme, _, token = (header(headers, "authorization") or [""])[0].partition(" ")
            given = [token.strip()] if scheme.lower() == "bearer" else []
        return len(given) == 1 and hmac.compare_digest(given[0].encode("utf-8", "surrogateescape"), self._key)

    def prepare(self, method: str, target: str, headers: list[tuple[str, str]]) -> Pending:
        """Route, auth and body framing from the head alone (HttpError otherwise): 404/405, 401, then 400 for
        duplicate or malformed Content-Length, 411 for none or chunked, 413 over max_request_bytes, 415 for a body
        that is neither JSON nor multipart."""
        lengths = header(headers, "content-length")
        if len(lengths) > 1:  # two lengths let a proxy and this server disagree on where the request ends
            raise HttpError(400, "bad_request", "more than one Content-Length header; send exactly one.", close=True)
        text = lengths[0].strip() if lengths else "0"
        if not text.isdigit() or not text.isascii():
            raise HttpError(400, "bad_request", f"Content-Length {text[:30]!r} is not a byte count.", close=True)
        chunked = any("chunked" in v.lower() for v in header(headers, "transfer-encoding"))
        try:
            return self._prepare(method, target, headers, lengths, int(text), chunked)
        except HttpError as e:  # the body is unread: drop it when small enough to keep the connection, else close
            e.close = e.close or chunked or int(text) > self.limits.max_request_bytes
            e.drain = 0 if e.close else int(text)
            raise

    def _prepare(self, method, target, headers, lengths, n: int, chunked: bool) -> Pending:
        route, param = resolve(method, target)
        if route.auth and self._key is not None and not self._authorised(headers):
            raise HttpError(
                401, "unauthorized", "missing or wrong API key; send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'."
            )
        if chunked:
            raise HttpError(411, "length_required", "chunked bodies are not accepted; send a Content-Length.", True)
        if route.body and not lengths:
            raise HttpError(411, "length_required", "a Content-Length header is required.", close=True)
        if n > self.limits.max_request_bytes:
            raise HttpError(
                413,
                "request_too_large",
                f"request body of {n:,} bytes is over the server's limit of {self.limits.max_request_bytes:,}; "
                "send fewer or smaller images.",
                close=True,
            )
        if not route.body:
            return Pending(route, param, n, "")  # a stray body is read and ignored
        content_type = (header(headers, "content-type") or ["application/json"])[0]
        kind = content_type.partition(";")[0].strip().lower()
        if kind not in ("application/json", "multipart/form-data", "", "text/plain"):
            raise HttpError(
                415,
                "unsupported_media_type",
                f"Content-Type {kind[:60]!r}: send application/json or multipart/form-data.",
            )
        return Pending(route, param, n, content_type)

    def respond(self, pending: Pending, raw: bytes) -> tuple[int, bytes]:
        """(status, JSON bytes) for a prepared request and its whole body; never raises."""
        route = pending.route
        try:
            try:
                if not route.body:
                    body = {}
                elif pending.content_type.lower().startswith("multipart/form-data"):
                    body = parse_multipart(raw, pending.content_type, route)
                else:
                    body = parse_json(raw)
                op = getattr(self.service, route.op)
                result = op(body, pending.param) if pending.param is not None else op(body)
                return 200, encode(result)
            except HttpError:
                raise
            except NoFaceError as e:
                raise HttpError(422, "no_face", str(e)) from None
            except (DataError, ConfigError) as e:
                raise HttpError(400, "bad_input", str(e)) from None
            except FacezooError as e:  # ModelError and the like: the server's setup, not the request
                log.error("%s %s: %s", route.method, route.path, e)
                raise HttpError(500, "internal", "the server could not process the request; see its log.") from None
            except Exception:
                log.exception("%s %s failed", route.method, route.path)
                raise HttpError(500, "internal", "internal server error; see the server log.") from None
        except HttpError as e:
            return e.status, encode(e.payload())

    @staticmethod
    def error(e: HttpError) -> tuple[int, bytes]:
        return e.status, encode(e.payload())


def log_request(client: str, method: str, path: str, status: int, nbytes: int, ms: float) -> None:
    """One line per request on the facezoo.serve logger (both backends)."""
    log.info('%s "%s %s" %d %dB %.1fms', client, method, urlsplit(path).path[:200], status, nbytes, ms)


def url_of(address) -> str:
    """http://host:port of a socket address (IPv6 hosts bracketed)."""
    host, port = address[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"
