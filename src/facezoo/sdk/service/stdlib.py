"""The zero-dependency backend of `facezoo serve`: http.server with one thread per connection (HTTP/1.1 keep-alive).

Hardened where http.server is not: the whole request (head and body) must arrive within limits.timeout_s of its
first byte, whatever the client's pace (a socket timeout alone is per read: one header line every 10 s would hold
the connection forever); an idle connection is closed after limits.keepalive_s; each response goes out in one
send with TCP_NODELAY (no Nagle / delayed-ACK stall on keep-alive connections); the listen backlog is
limits.backlog. Every request rule (routes, auth, framing, sizes, validation, errors) is service/api.py's.
"""

from __future__ import annotations

import io
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ...errors import ConfigError
from .api import Api, FaceService, HttpError, Limits, encode, log, log_request, url_of
from .keys import check_auth_setup


class RequestTimeout(Exception):
    """The request's deadline passed while reading it; `started` is False when no byte of it had arrived."""

    def __init__(self, started: bool):
        super().__init__("request deadline passed")
        self.started = started


class _Clock:
    """The deadline of the request being read: keepalive_s while the connection is idle, then timeout_s from the
    first byte of the request, and none once its body is read (processing is not bounded by it)."""

    def __init__(self, limits: Limits):
        self.limits, self.started, self.deadline = limits, False, float("inf")

    def idle(self) -> None:
        self.started, self.deadline = False, time.monotonic() + self.limits.keepalive_s

    def begin(self) -> None:
        self.started, self.deadline = True, time.monotonic() + self.limits.timeout_s

    def stop(self) -> None:
        self.deadline = float("inf")


class _DeadlineSocketIO(io.RawIOBase):
    """Socket reads whose timeout is what is left of the clock's deadline (RequestTimeout when it is spent)."""

    def __init__(self, sock: socket.socket, clock: _Clock):
        self.sock, self.clock = sock, clock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self.clock.deadline - time.monotonic()
        if remaining <= 0:
            raise RequestTimeout(self.clock.started)
        self.sock.settimeout(min(remaining, 3600.0))
        try:
            n = self.sock.recv_into(buffer)
        except TimeoutError:
            raise RequestTimeout(self.clock.started) from None
        if n and not self.clock.started:
            self.clock.begin()
        return n


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server_version = "facezoo"
    sys_version = ""
    disable_nagle_algorithm = True  # TCP_NODELAY: with one send per response, keep-alive is as fast as new connects

    # set by make_server on a subclass
    api: Api
    limits: Limits
    tracker: _InFlight

    def setup(self) -> None:
        super().setup()
        self.clock = _Clock(self.limits)
        self.rfile = io.BufferedReader(_DeadlineSocketIO(self.connection, self.clock), 65536)
        self.command = None

    def handle_one_request(self) -> None:
        self.clock.idle()
        try:
            super().handle_one_request()
        except RequestTimeout as e:  # while reading the request line or headers
            self.close_connection = True
            if e.started:
                self._error(HttpError(408, "request_timeout", self._late()))

    def _late(self) -> str:
        return f"the request did not arrive within {self.limits.timeout_s:g} s of its first byte; send it faster."

    def log_message(self, format, *args):
        log.debug("%s - %s", self.address_string(), format % args)

    def send_error(self, code, message=None, explain=None):
        """Errors http.server raises itself (bad request line, 414, 431, 505) in the JSON shape too."""
        status = HTTPStatus(code)
        self._error(HttpError(code, status.phrase.lower().replace(" ", "_"), message or status.description, True))

    def handle_expect_100(self) -> bool:
        """No "100 Continue" for a request refused from its head (401, 413, ...): the client never sends the body."""
        try:
            self.api.prepare(self.command, self.path, list(self.headers.items()))
        except HttpError:
            return True
        return super().handle_expect_100()

    def _send(self, status: int, data: bytes, close: bool) -> None:
        """Status line, headers and body in one write."""
        lines = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            "Content-Type: application/json",
            f"Content-Length: {len(data)}",
        ]
        if close:
            lines.append("Connection: close")
            self.close_connection = True
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.connection.settimeout(self.limits.timeout_s)
        self.wfile.write(head if self.command == "HEAD" else head + data)
        self._status, self._sent = status, len(data)

    def _error(self, e: HttpError) -> None:
        self._send(e.status, encode(e.payload()), e.close)

    def _read(self, n: int) -> bytes:
        """Exactly n body bytes within the deadline; HttpError 408 when it passes, 400 when the client stops short."""
        try:
            raw = self.rfile.read(n)
        except RequestTimeout:
            raise HttpError(408, "request_timeout", self._late(), close=True) from None
        except OSError as e:
            raise HttpError(400, "bad_request", f"body not received ({e}).", close=True) from None
        if len(raw) != n:
            raise HttpError(400, "bad_request", f"body ended after {len(raw)} of {n} bytes.", close=True)
        return raw

    def _dispatch(self) -> None:
        start = time.perf_counter()
        self._status, self._sent = 500, 0
        self.tracker.begin()
        try:
            try:
                pending = self.api.prepare(self.command, self.path, list(self.headers.items()))
                raw = self._read(pending.length)
            except HttpError as e:
                if e.drain:
                    try:
                        self._read(e.drain)
                    except HttpError:
                        e.close = True
                self._error(e)
                return
            self.clock.stop()
            status, data = self.api.respond(pending, raw)
            self._send(status, data, close=False)
        finally:
            self.tracker.end()
            log_request(
                self.client_address[0],
                self.command,
                self.path,
                self._status,
                self._sent,
                1000 * (time.perf_counter() - start),
            )

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_OPTIONS = _dispatch


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
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, RequestTimeout)):
            log.debug("connection from %s dropped: %s", client_address, sys.exc_info()[1])
        else:
            log.exception("unhandled error serving %s", client_address)

    def close(self, grace_s: float = 10.0) -> None:
        self.shutdown()
        self.RequestHandlerClass.tracker.wait_idle(grace_s)
        self.server_close()

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
) -> FaceServer:
    """A bound (not yet serving) server; port 0 picks a free port (see server.server_address)."""
    check_auth_setup(host, api_key, insecure_no_auth)
    service = FaceService(analyzer, gallery, limits)
    handler = type(
        "FaceHandler",
        (_Handler,),
        {"api": Api(service, api_key), "limits": service.limits, "tracker": _InFlight()},
    )
    server_cls = FaceServer
    if ":" in host:
        server_cls = type("FaceServer6", (FaceServer,), {"address_family": socket.AF_INET6})
    server = server_cls((host, port), handler, bind_and_activate=False)
    server.request_queue_size = service.limits.backlog
    try:
        server.server_bind()
        server.server_activate()
    except OSError as e:
        server.server_close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --host/--port."
        ) from None
    server.service = service
    return server
