"""`facezoo serve`: an HTTP JSON API over a FaceAnalyzer and a Gallery, on one of two backends.

  stdlib  (default, no dependency) http.server, one thread per connection: sdk/service/stdlib.py
  asgi    (extra facezoo[serve]) Starlette on uvicorn, one or several worker processes, /docs: sdk/service/asgi.py

Both carry the same API (sdk/service/api.py: routes, auth, limits, validation, error shapes). Auth: every route
but /healthz needs `Authorization: Bearer KEY` or `X-API-Key: KEY` (compared in constant time); a key has at least
16 characters (sdk/service/keys.py); a server without a key must be asked for explicitly and binds loopback only.
Analyzer calls are serialised by one lock per process, so torch is not oversubscribed by concurrent requests.
"""

from __future__ import annotations

import importlib
import signal
import threading

from ..errors import ConfigError
from .service.api import FaceService, HttpError, Limits, log
from .service.keys import API_KEY_ENV, MIN_KEY_CHARS, check_api_key, check_auth_setup, is_loopback, load_api_key

BACKENDS = ("stdlib", "asgi")  # modules of sdk/service, each with make_server(analyzer, gallery, **options)

__all__ = [
    "API_KEY_ENV",
    "BACKENDS",
    "MIN_KEY_CHARS",
    "FaceService",
    "HttpError",
    "Limits",
    "check_api_key",
    "check_auth_setup",
    "is_loopback",
    "load_api_key",
    "make_server",
    "open_spec",
    "serve",
    "serve_spec",
]


def _backend(name: str):
    if name not in BACKENDS:
        raise ConfigError(f"unknown server backend '{name}'; choose one of {', '.join(BACKENDS)}.")
    return importlib.import_module(f".service.{name}", __package__)


def make_server(analyzer, gallery, *, backend: str = "stdlib", **options):
    """A bound, not yet serving server (serve_forever(), close(grace_s), url, server_address); options: host, port
    (0 picks a free one), api_key, insecure_no_auth, limits."""
    return _backend(backend).make_server(analyzer, gallery, **options)


def serve(analyzer, gallery, *, backend: str = "stdlib", ready=None, grace_s: float = 10.0, **options) -> None:
    """Serve until SIGINT or SIGTERM, then stop accepting, let in-flight requests finish (up to grace_s), close.

    ready(url) is called once listening (e.g. to print the address).
    """
    server = make_server(analyzer, gallery, backend=backend, **options)
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, name="facezoo-serve", daemon=True)
    thread.start()
    try:
        if ready is not None:
            ready(server.url)
        while not stop.wait(0.5):
            if not thread.is_alive():
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("shutting down: waiting up to %.0f s for requests in flight", grace_s)
        server.close(grace_s)
        thread.join(grace_s)


def open_spec(spec: dict):
    """(analyzer, gallery) from a JSON-able spec: {"factory": "module:callable" (default FaceAnalyzer),
    "analyzer": kwargs, "gallery": path or postgresql:// URL}. The gallery is checked against the model's key."""
    from .gallery import open_gallery

    module, _, name = spec.get("factory", "facezoo.sdk.pipeline:FaceAnalyzer").partition(":")
    analyzer = getattr(importlib.import_module(module), name)(**spec.get("analyzer", {}))
    key = getattr(getattr(analyzer, "recognizer", None), "key", None)
    return analyzer, open_gallery(spec["gallery"], model_key=key, index_threshold=spec.get("index_threshold"))


def serve_spec(
    spec: dict,
    *,
    backend: str = "stdlib",
    workers: int = 1,
    host: str = "127.0.0.1",
    port: int = 8080,
    ready=None,
    grace_s: float = 10.0,
) -> None:
    """Serve a spec (open_spec, plus "limits": Limits fields, "api_key", "insecure_no_auth"): in this process, or
    from `workers` processes (asgi only), each opening its own analyzer and gallery."""
    limits = Limits(**spec.get("limits", {}))
    key, insecure = spec.get("api_key"), bool(spec.get("insecure_no_auth"))
    check_auth_setup(host, key, insecure)  # before any model loads
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers {workers}: must be a positive integer.")
    if workers > 1:
        if backend != "asgi":
            raise ConfigError("--workers N > 1 needs --backend asgi (the stdlib server is one process).")
        _backend("asgi").serve_workers(spec, workers, host=host, port=port, ready=ready, grace_s=grace_s)
        return
    _backend(backend)  # an unknown or uninstalled backend fails before the model loads
    if backend == "asgi":
        _backend("asgi")._require()
    analyzer, gallery = open_spec(spec)
    try:
        serve(
            analyzer,
            gallery,
            backend=backend,
            ready=ready,
            grace_s=grace_s,
            host=host,
            port=port,
            api_key=key,
            insecure_no_auth=insecure,
            limits=limits,
        )
    finally:
        gallery.close()
