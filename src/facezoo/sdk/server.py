"""`facezoo serve`: an HTTP JSON API over a FaceAnalyzer and a Gallery (standard library only).

Routes (request and response bodies are JSON; images are base64 strings of JPEG/PNG/... bytes, a
"data:image/...;base64," prefix is allowed):
  POST   /v1/verify            {"image1", "image2", "far"?: float, "threshold"?: float}
                               -> {"same", "similarity", "threshold", "far", "face1", "face2"}
  POST   /v1/identify          {"image", "top_k"?: int, "threshold"?: float} -> {"faces": [{"face", "matches"}]}
  POST   /v1/enroll            {"identity", "images": [...], "replace"?: bool} -> {"identity", "enrolled"}
  DELETE /v1/identities/<name> (URL-quoted) or POST /v1/remove {"identity"} -> {"identity", "removed"}
  GET    /v1/identities        -> {"identities": [...], "count"}
  GET    /healthz              -> {"status": "ok"} (no auth)
Face dicts are Face.to_dict() without the embedding (bbox, det_score, kps).

Auth: every route but /healthz needs `Authorization: Bearer KEY` or `X-API-Key: KEY`, compared with
hmac.compare_digest. A server without a key must be asked for explicitly (insecure_no_auth) and bind loopback.

Limits, checked before the work they protect: request bytes from Content-Length before the body is read (413;
no length -> 411); image pixels from the header before decoding (413, so a small file claiming a huge canvas never
allocates it); images per request (413); a socket timeout per connection.

Errors are {"error": {"code", "message"}}: 400 bad JSON / field / base64 / undecodable image, 401 missing or wrong
key, 404 unknown route or identity, 405 wrong method, 411 no length, 413 too large, 422 no face, 500 only for bugs
(logged with a traceback, generic message to the client).

Threads: one per connection (ThreadingHTTPServer, HTTP/1.1 keep-alive). JSON parsing and image decoding run in
those threads; analyzer calls are serialised by one lock so torch is not oversubscribed by concurrent requests.
Each request is logged as one line on the "facezoo.serve" logger.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import io
import ipaddress
import json
import logging
import os
import signal
import threading
import time
import typing
import warnings
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np

from ..errors import ConfigError, DataError, FacezooError, NoFaceError

log = logging.getLogger("facezoo.serve")

API_KEY_ENV = "FACEZOO_API_KEY"
MAX_IDENTITY_CHARS = 256


@dataclass
class Limits:
    """What one request may carry. max_request_bytes: body size; max_image_pixels: H * W of each image;
    max_images: images in one enroll request; timeout_s: socket timeout per connection; max_top_k: identify."""

    max_request_bytes: int = 10 * 2**20
    max_image_pixels: int = 40_000_000
    max_images: int = 32
    timeout_s: float = 30.0
    max_top_k: int = 100

    def __post_init__(self):
        for name in ("max_request_bytes", "max_image_pixels", "max_images", "max_top_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"server limit {name} must be a positive int, got {value!r}.")
        if not self.timeout_s > 0:
            raise ConfigError(f"server limit timeout_s must be positive, got {self.timeout_s!r}.")


class HttpError(Exception):
    """An error answered to the client: HTTP status, a short machine code and a message saying the fix."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = int(status), code, message


# ---------------------------------------------------------------------- keys and binding


def load_api_key(path=None, env: dict | None = None) -> str | None:
    """The API key from `path` (first line, stripped) or else $FACEZOO_API_KEY; None when neither gives one."""
    env = os.environ if env is None else env
    if path is not None:
        p = Path(path)
        try:
            key = p.read_text(encoding="utf-8").strip().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: cannot read the API key file ({e}). Check --api-key-file.") from None
        if not key or not key[0].strip():
            raise ConfigError(f"{p}: the API key file is empty. Put one key on its first line.")
        return key[0].strip()
    key = env.get(API_KEY_ENV, "").strip()
    return key or None


def is_loopback(host: str) -> bool:
    """True for 'localhost' and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_auth_setup(host: str, api_key: str | None, insecure_no_auth: bool) -> None:
    """Refuse to serve without a key, unless asked for explicitly and only on a loopback address."""
    if api_key is not None:
        if insecure_no_auth:
            raise ConfigError("both an API key and --insecure-no-auth were given; choose one.")
        return
    if not insecure_no_auth:
        raise ConfigError(
            f"no API key: pass --api-key-file FILE or set ${API_KEY_ENV} (or, for local testing "
            "only, --insecure-no-auth with a loopback --host)."
        )
    if not is_loopback(host):
        raise ConfigError(
            f"--insecure-no-auth serves without authentication and is only allowed on a loopback "
            f"address (127.0.0.1, ::1, localhost), not '{host}'. Give an API key to bind {host}."
        )


# ---------------------------------------------------------------------- request fields and images


def decode_image_b64(value, where: str, max_pixels: int) -> np.ndarray:
    """base64 image -> uint8 (H, W, 3) RGB. 400 for bad base64 / undecodable bytes; 413 when the header's
    width * height exceeds max_pixels (checked before the pixels are decoded)."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(value, str) or not value:
        raise HttpError(400, "bad_request", f"{where}: expected a base64 string of image bytes.")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        data = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise HttpError(
            400,
            "bad_base64",
            f"{where}: not valid base64; encode the image file's bytes with standard base64 (RFC 4648, with padding).",
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:  # reads the header only
                w, h = im.size
                if w * h > max_pixels:
                    raise HttpError(
                        413,
                        "image_too_large",
                        f"{where}: {w}x{h} = {w * h:,} pixels is over the "
                        f"server's limit of {max_pixels:,}; downscale it.",
                    )
                im.load()
                return np.array(im.convert("RGB"))
    except Image.DecompressionBombError as e:  # Pillow's own header check, for canvases over 2 x its limit
        raise HttpError(
            413, "image_too_large", f"{where}: {e} The server's limit is {max_pixels:,} pixels; downscale it."
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        raise HttpError(
            400,
            "bad_image",
            f"{where}: cannot decode the image ({len(data)} bytes: {e}); send a JPEG, PNG, BMP, GIF or WebP file.",
        ) from None


def _field(body: dict, name: str, kind, default=None, required: bool = False):
    """body[name] checked to be of `kind` (bool excluded from numbers); 400 naming the field otherwise."""
    if name not in body or body[name] is None:
        if required:
            raise HttpError(400, "bad_request", f"missing field '{name}'.")
        return default
    value = body[name]
    numeric = kind in (int, float)
    ok = isinstance(value, (int, float) if kind is float else kind) and not (numeric and isinstance(value, bool))
    if not ok:
        raise HttpError(400, "bad_request", f"field '{name}' must be {kind.__name__}, got {type(value).__name__}.")
    return float(value) if kind is float else value


def _identity(name, where: str = "identity") -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_IDENTITY_CHARS:
        raise HttpError(
            400, "bad_request", f"{where}: must be a non-empty string of at most {MAX_IDENTITY_CHARS} characters."
        )
    return name


def _jsonable(x):
    """Face objects, numpy values and NamedTuples as plain JSON types; face embeddings are left out."""
    if hasattr(x, "to_dict") and callable(x.to_dict):
        x = x.to_dict()
        x.pop("embedding", None)
        return _jsonable(x)
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items() if k != "embedding"}
    if hasattr(x, "_asdict"):
        return _jsonable(x._asdict())
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


# ---------------------------------------------------------------------- the service (no HTTP here)


class FaceService:
    """The API's operations on decoded JSON bodies: analyzer calls serialised by a lock, gallery writes atomic."""

    def __init__(self, analyzer, gallery, limits: Limits | None = None):
        self.analyzer, self.gallery = analyzer, gallery
        self.limits = limits or Limits()
        self._infer = threading.Lock()

    def _image(self, body: dict, name: str) -> np.ndarray:
        return decode_image_b64(_field(body, name, str, required=True), name, self.limits.max_image_pixels)

    def verify(self, body: dict) -> dict:
        far = _field(body, "far", float)  # None: the model's default operating point, else 1e-4 (verify)
        threshold = _field(body, "threshold", float)
        if far is not None and not 0 < far < 1:
            raise HttpError(400, "bad_request", f"field 'far' must be in (0, 1), got {far}.")
        image1, image2 = self._image(body, "image1"), self._image(body, "image2")
        with self._infer:
            result = self.analyzer.verify(image1, image2, far=far, threshold=threshold)
        return _jsonable(result)

    def identify(self, body: dict) -> dict:
        top_k = _field(body, "top_k", int, 5)
        threshold = _field(body, "threshold", float)
        if not 1 <= top_k <= self.limits.max_top_k:
            raise HttpError(400, "bad_request", f"field 'top_k' must be in 1..{self.limits.max_top_k}, got {top_k}.")
        image = self._image(body, "image")
        with self._infer:
            faces = self.analyzer.identify(image, self.gallery, top_k=top_k, threshold=threshold)
        return {"faces": _jsonable(faces)}

    def enroll(self, body: dict) -> dict:
        identity = _identity(_field(body, "identity", str, required=True))
        images = _field(body, "images", list, required=True)
        replace = _field(body, "replace", bool, False)
        if not images:
            raise HttpError(400, "bad_request", "field 'images' is empty; send at least one base64 image.")
        if len(images) > self.limits.max_images:
            raise HttpError(
                413,
                "too_many_images",
                f"{len(images)} images in one request; the server takes at "
                f"most {self.limits.max_images}. Split them over requests.",
            )
        arrays = [decode_image_b64(v, f"images[{i}]", self.limits.max_image_pixels) for i, v in enumerate(images)]
        with self._infer:
            n = self.analyzer.enroll(self.gallery, identity, arrays, replace=replace)
        return {"identity": identity, "enrolled": int(n)}

    def remove(self, identity: str) -> dict:
        identity = _identity(identity)
        if identity not in self.gallery.identities():
            raise HttpError(
                404, "unknown_identity", f"identity '{identity}' is not in the gallery; GET /v1/identities lists them."
            )
        try:
            n = self.gallery.remove(identity)
        except ConfigError as e:  # removed by another request in between
            raise HttpError(404, "unknown_identity", str(e)) from None
        return {"identity": identity, "removed": int(n)}

    def identities(self) -> dict:
        names = self.gallery.identities()
        return {"identities": names, "count": len(names)}


# ---------------------------------------------------------------------- HTTP


def _route_table(service: FaceService) -> dict:
    """path -> {method: (handler(body, param) -> dict, needs_body, needs_auth)}; '/v1/identities/' is a prefix."""
    return {
        "/healthz": {"GET": (lambda b, p: {"status": "ok"}, False, False)},
        "/v1/verify": {"POST": (lambda b, p: service.verify(b), True, True)},
        "/v1/identify": {"POST": (lambda b, p: service.identify(b), True, True)},
        "/v1/enroll": {"POST": (lambda b, p: service.enroll(b), True, True)},
        "/v1/remove": {"POST": (lambda b, p: service.remove(_field(b, "identity", str, required=True)), True, True)},
        "/v1/identities": {"GET": (lambda b, p: service.identities(), False, True)},
        "/v1/identities/": {"DELETE": (lambda b, p: service.remove(p), False, True)},
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server_version = "facezoo"
    sys_version = ""
    error_content_type = "application/json"

    # set by make_server on a subclass
    routes: typing.ClassVar[dict] = {}
    api_key: bytes | None = None
    limits: Limits = Limits()
    tracker = None

    def log_message(self, format, *args):
        log.debug("%s - %s", self.address_string(), format % args)

    def send_error(self, code, message=None, explain=None):
        """Errors the base class raises itself (bad request line, 414, 431, 501) in the JSON format too."""
        status = HTTPStatus(code)
        self._reply(
            code,
            {"error": {"code": status.phrase.lower().replace(" ", "_"), "message": message or status.description}},
            close=True,
        )

    def handle_expect_100(self) -> bool:
        """No "100 Continue" for a body over the limit: the client gets the 413 without sending it."""
        try:
            too_large = int(self.headers.get("Content-Length") or 0) > self.limits.max_request_bytes
        except ValueError:
            too_large = False
        return True if too_large else super().handle_expect_100()

    def _reply(self, status: int, payload: dict, close: bool = False) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self._status, self._sent = status, len(data)

    def _resolve(self, path: str):
        """(methods, path parameter) for a path; HttpError 404 when no route matches."""
        if path in self.routes:
            return self.routes[path], None
        prefix = "/v1/identities/"
        if path.startswith(prefix) and len(path) > len(prefix):
            return self.routes[prefix], unquote(path[len(prefix) :])
        raise HttpError(
            404,
            "not_found",
            f"no route {path}; routes: /v1/verify, /v1/identify, /v1/enroll, "
            "/v1/remove, /v1/identities[/NAME], /healthz.",
        )

    def _authorised(self) -> bool:
        given = self.headers.get("X-API-Key")
        if given is None:
            scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else None
        if given is None:
            return False
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.api_key)

    def _read_body(self) -> dict:
        """The JSON object body; 411/413 decided from Content-Length before any byte of the body is read."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise HttpError(411, "length_required", "chunked bodies are not accepted; send a Content-Length.")
        length = self.headers.get("Content-Length")
        if length is None:
            raise HttpError(411, "length_required", "a Content-Length header is required.")
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            raise HttpError(400, "bad_request", f"Content-Length {length!r} is not a byte count.") from None
        if n > self.limits.max_request_bytes:
            raise HttpError(
                413,
                "request_too_large",
                f"request body of {n:,} bytes is over the server's limit of "
                f"{self.limits.max_request_bytes:,}; send fewer or smaller "
                "images.",
            )
        raw = self.rfile.read(n)
        self._body_read = True
        if len(raw) != n:
            self.close_connection = True
            raise HttpError(400, "bad_request", f"body ended after {len(raw)} of {n} bytes.")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise HttpError(400, "bad_json", f"body is not valid JSON ({e}).") from None
        if not isinstance(body, dict):
            raise HttpError(400, "bad_json", f"body must be a JSON object, got {type(body).__name__}.")
        return body

    def _drain(self) -> bool:
        """Read and drop an unread body within the size limit, keeping the connection usable; False if not."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return False
        try:
            n = int(self.headers.get("Content-Length") or 0)
            if not 0 <= n <= self.limits.max_request_bytes:
                return False
            return len(self.rfile.read(n)) == n
        except (ValueError, OSError):
            return False

    def _dispatch(self) -> None:
        start = time.perf_counter()
        self._status, self._sent, self._body_read = 500, 0, False
        path = urlsplit(self.path).path
        self.tracker.begin()
        try:
            try:
                methods, param = self._resolve(path)
                if self.command not in methods:
                    allowed = ", ".join(sorted(methods))
                    raise HttpError(405, "method_not_allowed", f"{self.command} {path} is not allowed; use {allowed}.")
                handler, needs_body, needs_auth = methods[self.command]
                if needs_auth and self.api_key is not None and not self._authorised():
                    raise HttpError(
                        401,
                        "unauthorized",
                        "missing or wrong API key; send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'.",
                    )
                body = self._read_body() if needs_body else {}
                result = handler(body, param)
            except HttpError:
                raise
            except NoFaceError as e:
                raise HttpError(422, "no_face", str(e)) from None
            except (DataError, ConfigError) as e:
                raise HttpError(400, "bad_input", str(e)) from None
            except FacezooError as e:  # ModelError and the like: the server's setup, not the request
                log.error("%s %s: %s", self.command, path, e)
                raise HttpError(500, "internal", "the server could not process the request; see its log.") from None
            except Exception:
                log.exception("%s %s failed", self.command, path)
                raise HttpError(500, "internal", "internal server error; see the server log.") from None
            self._reply(200, result)
        except HttpError as e:
            # an unread body would be parsed as the next request: drop it if small enough, else close
            close = e.status in (411, 413) or (not self._body_read and not self._drain())
            self._reply(e.status, {"error": {"code": e.code, "message": e.message}}, close=close)
        finally:
            self.tracker.end()
            log.info(
                '%s "%s %s" %d %dB %.1fms',
                self.client_address[0],
                self.command,
                path,
                self._status,
                self._sent,
                1000 * (time.perf_counter() - start),
            )

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = _dispatch


class _InFlight:
    """Counts requests being handled, so shutdown can wait for them to finish."""

    def __init__(self):
        self._n, self._cond = 0, threading.Condition()

    def begin(self):
        with self._cond:
            self._n += 1

    def end(self):
        with self._cond:
            self._n -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._n == 0, timeout)


class FaceServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with the service attached; `close(grace_s)` stops accepting, drains, closes."""

    daemon_threads = True  # idle keep-alive connections must not hold shutdown; in-flight ones are drained
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        """A client that hung up or timed out is routine (debug log); anything else is logged with its traceback."""
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            log.debug("connection from %s dropped: %s", client_address, sys.exc_info()[1])
        else:
            log.exception("unhandled error serving %s", client_address)

    def close(self, grace_s: float = 10.0) -> None:
        self.shutdown()
        self.RequestHandlerClass.tracker.wait_idle(grace_s)
        self.server_close()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def make_server(
    analyzer,
    gallery,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    api_key: str | None = None,
    insecure_no_auth: bool = False,
    limits: Limits | None = None,
) -> FaceServer:
    """A bound (not yet serving) server; port 0 picks a free port (see server.server_address)."""
    import socket

    check_auth_setup(host, api_key, insecure_no_auth)
    limits = limits or Limits()
    service = FaceService(analyzer, gallery, limits)
    handler = type(
        "FaceHandler",
        (_Handler,),
        {
            "routes": _route_table(service),
            "limits": limits,
            "tracker": _InFlight(),
            "timeout": limits.timeout_s,
            "api_key": None if api_key is None else api_key.encode("utf-8", "surrogateescape"),
        },
    )
    server_cls = FaceServer
    if ":" in host:
        server_cls = type("FaceServer6", (FaceServer,), {"address_family": socket.AF_INET6})
    try:
        server = server_cls((host, port), handler)
    except OSError as e:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --host/--port."
        ) from None
    server.service = service
    return server


def serve(
    analyzer,
    gallery,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    api_key: str | None = None,
    insecure_no_auth: bool = False,
    limits: Limits | None = None,
    ready=None,
    grace_s: float = 10.0,
) -> None:
    """Serve until SIGINT or SIGTERM, then stop accepting, let in-flight requests finish (up to grace_s), close.

    ready(server) is called once listening (e.g. to print the address).
    """
    server = make_server(
        analyzer, gallery, host=host, port=port, api_key=api_key, insecure_no_auth=insecure_no_auth, limits=limits
    )
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, name="facezoo-serve", daemon=True)
    thread.start()
    try:
        if ready is not None:
            ready(server)
        while not stop.wait(0.5):
            if not thread.is_alive():
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("shutting down: waiting up to %.0f s for requests in flight", grace_s)
        server.close(grace_s)
        thread.join(grace_s)
