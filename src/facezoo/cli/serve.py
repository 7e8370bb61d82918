"""`facezoo serve --model M --gallery G.db [--backend stdlib|asgi] [--workers N] [--host 127.0.0.1] [--port 8080]
[--api-key-file F]`.

An HTTP JSON API: POST /v1/verify, /v1/identify, /v1/enroll, /v1/remove; DELETE /v1/identities/NAME;
GET /v1/identities; GET /healthz. Every route but /healthz needs the key ('Authorization: Bearer KEY' or
'X-API-Key: KEY', at least 16 characters) from --api-key-file or $FACEZOO_API_KEY. Images travel as base64
strings in a JSON body, or as file parts of a multipart/form-data body. --backend asgi (pip install
'facezoo[serve]') serves with uvicorn, --workers processes, and OpenAPI docs at /docs. --gallery is a file (SQLite)
or a postgresql:// URL (pgvector). Stop with Ctrl-C or SIGTERM: requests in flight finish first.
"""

from __future__ import annotations

import sys

from . import COMMANDS
from ._sdk_args import add_model_args, preprocessing


@COMMANDS.register("serve")
def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="HTTP JSON API: verify, identify, enroll, remove (API-key auth)", description=__doc__
    )
    add_model_args(p)
    p.add_argument(
        "--detector",
        default="mtcnn",
        metavar="SPEC",
        help="face detector: a name or name:path, e.g. scrfd:det_10g.onnx (default mtcnn)",
    )
    p.add_argument(
        "--gallery", required=True, metavar="G", help="gallery file (created if absent) or postgresql:// URL"
    )
    p.add_argument(
        "--backend",
        choices=("stdlib", "asgi"),
        default="stdlib",
        help="stdlib (default, no dependency) or asgi (uvicorn; pip install 'facezoo[serve]')",
    )
    p.add_argument("--workers", type=int, default=1, help="processes (asgi only; each loads the model; default 1)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: reachable from this machine only)"
    )
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0 picks a free one)")
    p.add_argument("--api-key-file", metavar="F", help="file whose first line is the API key (else $FACEZOO_API_KEY)")
    p.add_argument(
        "--insecure-no-auth", action="store_true", help="serve without a key (loopback hosts only; for local testing)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--max-request-mb", type=float, default=10.0, help="largest request body in MiB (default 10)")
    p.add_argument(
        "--max-image-pixels", type=int, default=16_000_000, help="largest image, width x height (default 16,000,000)"
    )
    p.add_argument("--max-images", type=int, default=32, help="most images in one enroll request (default 32)")
    p.add_argument(
        "--timeout", type=float, default=30.0, help="seconds a whole request may take to arrive (default 30; 408)"
    )
    p.add_argument("--keepalive", type=float, default=15.0, help="seconds an idle connection stays open (default 15)")
    p.add_argument("--backlog", type=int, default=128, help="listen queue length (default 128)")
    p.add_argument(
        "--detect-max-side",
        type=int,
        default=1920,
        help="images with a longer side are downscaled for detection (default 1920 px)",
    )
    p.add_argument(
        "--index-threshold",
        type=int,
        default=None,
        help="gallery entries from which search uses the faiss index (default 20,000)",
    )
    p.add_argument("--quiet", action="store_true", help="do not log one line per request")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging
    from dataclasses import asdict

    from ..errors import ConfigError
    from ..sdk.server import Limits, check_auth_setup, load_api_key, serve_spec

    if not args.max_request_mb > 0:
        raise ConfigError(f"--max-request-mb {args.max_request_mb}: must be positive")
    limits = Limits(
        max_request_bytes=int(args.max_request_mb * 2**20),
        max_image_pixels=args.max_image_pixels,
        max_images=args.max_images,
        timeout_s=args.timeout,
        keepalive_s=args.keepalive,
        backlog=args.backlog,
        detect_max_side=args.detect_max_side,
    )
    key = load_api_key(args.api_key_file)
    check_auth_setup(args.host, key, args.insecure_no_auth)  # before any model loads
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    spec = {
        "analyzer": {
            "detector": args.detector,
            "recognizer": args.model,
            "device": args.device,
            "batch_size": args.batch_size,
            **preprocessing(args),
        },
        "gallery": str(args.gallery),
        "index_threshold": args.index_threshold,
        "limits": asdict(limits),
        "api_key": key,
        "insecure_no_auth": args.insecure_no_auth,
        "log_level": "WARNING" if args.quiet else "INFO",
    }

    def ready(url):
        auth = "no auth (loopback)" if key is None else "API key required"
        workers = f", {args.workers} workers" if args.workers > 1 else ""
        print(f"facezoo serve: listening on {url} ({auth}{workers}); Ctrl-C to stop", file=sys.stderr, flush=True)

    serve_spec(spec, backend=args.backend, workers=args.workers, host=args.host, port=args.port, ready=ready)
    return 0
