"""`facezoo serve --model M --gallery G.db [--detector SPEC] [--host 127.0.0.1] [--port 8080] [--api-key-file F]`.

An HTTP JSON API: POST /v1/verify, /v1/identify, /v1/enroll, /v1/remove; DELETE /v1/identities/NAME;
GET /v1/identities; GET /healthz. Every route but /healthz needs the key ('Authorization: Bearer KEY' or
'X-API-Key: KEY') from --api-key-file or $FACEZOO_API_KEY. Images travel as base64 strings in the JSON body.
Stop with Ctrl-C or SIGTERM: requests in flight finish first.
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
    p.add_argument("--gallery", required=True, metavar="G.db", help="identity gallery file (created if absent)")
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
        "--max-image-pixels", type=int, default=40_000_000, help="largest image, width x height (default 40,000,000)"
    )
    p.add_argument("--max-images", type=int, default=32, help="most images in one enroll request (default 32)")
    p.add_argument("--timeout", type=float, default=30.0, help="socket timeout per connection in seconds")
    p.add_argument("--quiet", action="store_true", help="do not log one line per request")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging

    from ..errors import ConfigError
    from ..sdk.gallery import Gallery
    from ..sdk.server import Limits, check_auth_setup, load_api_key, serve

    if not args.max_request_mb > 0:
        raise ConfigError(f"--max-request-mb {args.max_request_mb}: must be positive")
    limits = Limits(
        max_request_bytes=int(args.max_request_mb * 2**20),
        max_image_pixels=args.max_image_pixels,
        max_images=args.max_images,
        timeout_s=args.timeout,
    )
    key = load_api_key(args.api_key_file)
    check_auth_setup(args.host, key, args.insecure_no_auth)  # before any model loads
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )

    from ..sdk.pipeline import FaceAnalyzer

    analyzer = FaceAnalyzer(
        detector=args.detector,
        recognizer=args.model,
        device=args.device,
        batch_size=args.batch_size,
        **preprocessing(args),
    )
    # the model key is recorded in a new gallery and checked against an existing one
    gallery = Gallery.open(args.gallery, model_key=getattr(getattr(analyzer, "recognizer", None), "key", None))

    def ready(server):
        auth = "no auth (loopback)" if key is None else "API key required"
        print(f"facezoo serve: listening on {server.url} ({auth}); Ctrl-C to stop", file=sys.stderr, flush=True)

    try:
        serve(
            analyzer,
            gallery,
            host=args.host,
            port=args.port,
            api_key=key,
            insecure_no_auth=args.insecure_no_auth,
            limits=limits,
            ready=ready,
        )
    finally:
        gallery.close()
    return 0
