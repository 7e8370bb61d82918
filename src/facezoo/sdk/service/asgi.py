"""The production backend of `facezoo serve --backend asgi` (extra `facezoo[serve]`): a Starlette app on uvicorn,
one process or several (`--workers N`, uvicorn's supervisor: each worker loads the model and opens the gallery).

The app routes every request through service/api.py (the same Api.prepare / Api.respond as the stdlib backend),
so routes, auth, limits, validation and error shapes are one code. It adds GET /docs (Swagger UI) and
GET /openapi.json (generated from the route table that validation uses). Request deadline: uvicorn bounds neither
a slow request head nor an idle new connection, so DeadlineProtocol (uvicorn's h11 protocol plus a timer) answers
408 when a head is not complete within limits.timeout_s of its first byte, closes connections idle for
limits.keepalive_s, and hands the deadline to the app (scope state), which bounds the body read by it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time

from ...errors import ConfigError
from .api import Api, FaceService, HttpError, Limits, encode, log_request, url_of
from .keys import check_auth_setup
from .openapi import openapi

SPEC_ENV = "FACEZOO_SERVE_SPEC"  # JSON spec of the service, read by each worker process (app_from_env)
DEADLINE = "facezoo.deadline"  # scope["state"] key: time.monotonic() by which the request must have arrived


def _require():
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--backend asgi needs the serve extra: pip install 'facezoo[serve]' (Starlette, uvicorn, "
            "python-multipart), or use the default --backend stdlib."
        ) from None


_SWAGGER = """<!doctype html><html><head><title>facezoo API</title><meta charset="utf-8">
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div><script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script></body></html>"""


def create_app(service: FaceService, api_key: str | None):
    """The Starlette app over a FaceService: /docs, /openapi.json, and every API route via Api."""
    import anyio
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route

    api = Api(service, api_key)
    limits = service.limits
    document = encode(openapi())

    def reply(status: int, data: bytes, close: bool = False) -> Response:
        headers = {"Connection": "close"} if close else None
        return Response(data, status, headers=headers, media_type="application/json")

    async def read(request: Request, n: int) -> bytes:
        deadline = request.scope.get("state", {}).get(DEADLINE) or time.monotonic() + limits.timeout_s
        chunks, got = [], 0
        try:
            with anyio.fail_after(max(0.0, deadline - time.monotonic())):
                async for chunk in request.stream():
                    chunks.append(chunk)
                    got += len(chunk)
        except TimeoutError:
            raise HttpError(408, "request_timeout", _late(limits), close=True) from None
        except ClientDisconnect:
            raise HttpError(400, "bad_request", f"body ended after {got} of {n} bytes.", close=True) from None
        return b"".join(chunks)

    async def handle(request: Request) -> Response:
        start = time.perf_counter()
        scope = request.scope
        target = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        try:
            pending = api.prepare(request.method, target, headers)
            raw = await read(request, pending.length)
        except HttpError as e:  # uvicorn reads and drops an unread body itself
            response = reply(*api.error(e), close=e.close)
        else:
            status, data = await run_in_threadpool(api.respond, pending, raw)
            response = reply(status, data)
        client = (scope.get("client") or ("-",))[0]
        log_request(
            client,
            request.method,
            target,
            response.status_code,
            len(response.body),
            1000 * (time.perf_counter() - start),
        )
        return response

    async def docs(request: Request) -> Response:
        return HTMLResponse(_SWAGGER)

    async def schema(request: Request) -> Response:
        return Response(document, media_type="application/json")

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    routes = [
        Route("/docs", docs, methods=["GET"]),
        Route("/openapi.json", schema, methods=["GET"]),
        Route("/{path:path}", handle, methods=methods),
    ]
    return Starlette(routes=routes)


def _late(limits: Limits) -> str:
    return f"the request did not arrive within {limits.timeout_s:g} s of its first byte; send it faster."


def __getattr__(name: str):
    if name == "DeadlineProtocol":  # uvicorn imports it by name in each worker: "facezoo.sdk.service.asgi:..."
        return _protocol()
    raise AttributeError(name)


_PROTOCOL: list = []


def _protocol():
    """DeadlineProtocol, defined on first use (uvicorn is optional)."""
    if _PROTOCOL:
        return _PROTOCOL[0]
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class DeadlineProtocol(H11Protocol):
        """uvicorn's h11 protocol with the request deadline (see the module docstring); limits from
        config.facezoo_limits."""

        def __init__(self, config, *args, **kwargs):
            super().__init__(config, *args, **kwargs)
            self.limits: Limits = getattr(config, "facezoo_limits", None) or Limits()
            self._shared_state, self._timer, self._started = self.app_state, None, False

        def _arm(self, seconds: float) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_later(seconds, self._expired)

        def _waiting_for_head(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(OSError):  # no Nagle stall between the head and body writes
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._arm(self.limits.keepalive_s)  # a new connection that sends nothing is closed

        def data_received(self, data: bytes) -> None:
            if not self._started and self._waiting_for_head():
                self._started = True
                self._arm(self.limits.timeout_s)
                self.app_state = {**self._shared_state, DEADLINE: time.monotonic() + self.limits.timeout_s}
            super().data_received(data)

        def on_response_complete(self) -> None:
            self._started, self.app_state = False, self._shared_state
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            super().on_response_complete()  # arms uvicorn's keep-alive timer (limits.keepalive_s)

        def connection_lost(self, exc) -> None:
            if self._timer is not None:
                self._timer.cancel()
            super().connection_lost(exc)

        def _expired(self) -> None:
            self._timer = None
            if self.transport.is_closing() or not self._waiting_for_head():
                return  # the app is running: it bounds the body read with the same deadline
            if self._started:
                self._send_error(408, "request_timeout", _late(self.limits))
            else:
                self.transport.close()

        def send_400_response(self, msg: str) -> None:
            self._send_error(400, "bad_request", f"malformed HTTP request ({msg}).")

        def _send_error(self, status: int, code: str, message: str) -> None:
            """A JSON error in the API's shape, then close (the connection's framing is not trusted any more)."""
            data = encode(HttpError(status, code, message).payload())
            head = f"HTTP/1.1 {status} {'Bad Request' if status == 400 else 'Request Timeout'}\r\n"
            head += f"content-type: application/json\r\ncontent-length: {len(data)}\r\nconnection: close\r\n\r\n"
            with contextlib.suppress(h11.LocalProtocolError):
                self.conn.send(h11.ConnectionClosed())
            self.transport.write(head.encode("latin-1") + data)
            self.transport.close()

    DeadlineProtocol.__module__, DeadlineProtocol.__qualname__ = __name__, "DeadlineProtocol"
    _PROTOCOL.append(DeadlineProtocol)
    return DeadlineProtocol


def _config(app, host: str, limits: Limits, workers: int = 1, factory: bool = False, grace_s: float = 10.0):
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        factory=factory,
        workers=workers,
        http=_protocol() if workers == 1 else f"{__name__}:DeadlineProtocol",
        backlog=limits.backlog,
        timeout_keep_alive=max(1, round(limits.keepalive_s)),
        timeout_graceful_shutdown=max(1, round(grace_s)),
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
    )
    config.facezoo_limits = limits
    return config


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket (connections queue from now on, before uvicorn starts accepting)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --host/--port."
        ) from None
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


class AsgiServer:
    """uvicorn on a bound socket, with the stdlib server's interface: serve_forever(), close(grace_s), url."""

    def __init__(self, app, host: str, port: int, limits: Limits):
        import uvicorn

        self.socket = _bind(host, port, limits.backlog)
        self.server_address = self.socket.getsockname()
        self.server = uvicorn.Server(_config(app, host, limits))
        self._done = threading.Event()

    def serve_forever(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self._done.set()

    def close(self, grace_s: float = 10.0) -> None:
        self.server.config.timeout_graceful_shutdown = max(1, round(grace_s))
        self.server.should_exit = True
        self._done.wait(grace_s + 5)
        self.socket.close()

    @property
    def url(self) -> str:
        return url_of(self.server_address)


def make_server(
    analyzer,
    gallery,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    api_key: str | None = None,
    insecure_no_auth: bool = False,
    limits: Limits | None = None,
) -> AsgiServer:
    """A bound (not yet serving) uvicorn server in this process; port 0 picks a free port."""
    _require()
    check_auth_setup(host, api_key, insecure_no_auth)
    service = FaceService(analyzer, gallery, limits)
    return AsgiServer(create_app(service, api_key), host, port, service.limits)


def app_from_env():
    """The app of one worker process, from the JSON spec in $FACEZOO_SERVE_SPEC (see sdk.server.open_spec)."""
    from ..server import open_spec

    spec = json.loads(os.environ[SPEC_ENV])
    if spec.get("log_level"):  # a spawned worker starts with no logging set up
        logging.basicConfig(level=spec["log_level"], format="%(asctime)s %(name)s[%(process)d] %(message)s")
    analyzer, gallery = open_spec(spec)
    return create_app(FaceService(analyzer, gallery, Limits(**spec["limits"])), spec.get("api_key"))


def serve_workers(spec: dict, workers: int, *, host: str, port: int, ready=None, grace_s: float = 10.0) -> None:
    """Serve `spec` from `workers` processes (uvicorn's supervisor) on one socket until SIGINT/SIGTERM."""
    from uvicorn.supervisors import Multiprocess

    _require()
    limits = Limits(**spec["limits"])
    check_auth_setup(host, spec.get("api_key"), bool(spec.get("insecure_no_auth")))
    os.environ[SPEC_ENV] = json.dumps(spec)
    sock = _bind(host, port, limits.backlog)
    config = _config(f"{__name__}:app_from_env", host, limits, workers=workers, factory=True, grace_s=grace_s)
    if ready is not None:
        ready(url_of(sock.getsockname()))
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
