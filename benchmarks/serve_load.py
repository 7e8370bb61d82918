"""Load test for `facezoo serve`: each backend in-process on 127.0.0.1 (ephemeral port), N concurrent clients.

    python benchmarks/serve_load.py --clients 8 --requests 200 --backbone mobilefacenet --rounds 2

The servers are the real ones (facezoo.sdk.server.make_server, --backends stdlib and/or asgi: uvicorn, one worker)
over the real FaceAnalyzer and a Gallery in a temp folder, run one after the other and --rounds times alternately
(stdlib, asgi, stdlib, asgi, ...), so a change in the machine's load touches both alike; each round has its own
gallery. The recognizer is --model, or a checkpoint of --backbone with random weights (latency does not depend on
the weight values). The detector is --detector SPEC, or by default a stand-in that takes the whole 112x112 image
as one face (landmarks on the ArcFace template), so the figures are the API + alignment + embedding + search
cost without detection. Faces are random-noise JPEGs, one per identity; --gallery-size identities are enrolled
before timing. Clients keep their connection alive, share a budget of --requests requests and stop at
--time-cap seconds; each answer is checked (identify finds the right identity, verify of a face with itself
says same). Prints requests/s and p50/p95/p99 latency per endpoint. Loopback only: nothing listens elsewhere.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import itertools
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"  # the load test never binds or connects anywhere else
KEY = "load-test-key-0123456789"


def parse_mix(text: str) -> list[str]:
    """'identify=5,verify=2' -> a repeating sequence of endpoint names with those weights."""
    seq = []
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in ("identify", "verify", "enroll", "identities"):
            raise SystemExit(f"--mix: unknown endpoint '{name}' (identify, verify, enroll, identities)")
        seq += [name.strip()] * int(weight or 1)
    return seq


def jpeg_b64(array: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=90)
    return base64.b64encode(buf.getvalue()).decode()


def build_analyzer(args, tmp: Path):
    import torch

    from facezoo.models.checkpoint import save_checkpoint
    from facezoo.models.embedder import ModelMeta
    from facezoo.sdk.detect import Detections, Detector
    from facezoo.sdk.pipeline import FaceAnalyzer

    model = args.model
    if model is None:
        torch.manual_seed(0)
        meta = ModelMeta(backbone=args.backbone, embedding_size=512, input_size=(112, 112))
        model = tmp / f"{args.backbone}.pt"
        save_checkpoint(model, meta, meta.build_backbone().state_dict())
        template = np.asarray(meta.template, np.float32)
    else:
        template = np.asarray(ModelMeta(backbone="ir50").template, np.float32)

    class WholeImage(Detector):
        """One face filling the image, its 5 points on the template scaled to the image size."""

        def detect(self, image, max_faces=None):
            h, w = image.shape[:2]
            kps = template * np.float32([w / 112, h / 112])
            return Detections(np.float32([[0, 0, w, h]]), np.float32([0.99]), kps[None])

    detector = WholeImage() if args.detector is None else args.detector
    return FaceAnalyzer(detector=detector, recognizer=str(model), device="cpu")


def percentiles(ms: list[float]) -> tuple[float, float, float]:
    if not ms:
        return (float("nan"),) * 3
    p = np.percentile(np.asarray(ms), [50, 95, 99])
    return float(p[0]), float(p[1]), float(p[2])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=200, help="total requests over all clients")
    ap.add_argument("--time-cap", type=float, default=120.0, help="seconds; clients stop starting requests after")
    ap.add_argument("--backbone", default="mobilefacenet", help="random-weight recognizer when --model is not given")
    ap.add_argument("--model", default=None, help="a facezoo checkpoint or .onnx recognizer")
    ap.add_argument("--detector", default=None, help="detector SPEC (default: whole image is the face)")
    ap.add_argument("--gallery-size", type=int, default=50, help="identities enrolled before timing")
    ap.add_argument("--mix", default="identify=5,verify=2,enroll=1,identities=1", help="endpoint weights")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for inference")
    ap.add_argument("--backends", nargs="+", default=["stdlib", "asgi"], choices=["stdlib", "asgi"])
    ap.add_argument("--rounds", type=int, default=1, help="times each backend is run, alternating")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    mix = parse_mix(args.mix)
    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(args.gallery_size)]
    encoded = [jpeg_b64(f) for f in faces]
    print(
        f"{args.clients} clients, {args.requests} requests per run (cap {args.time_cap:.0f} s); recognizer "
        f"{args.model or args.backbone + ' (random weights)'}, detector {args.detector or 'none (whole 112x112 image)'}"
        f", torch threads {args.threads}, gallery {args.gallery_size}+ identities, mix {args.mix}"
    )
    print("| backend | round | endpoint | requests | non-200 | wrong answers | req/s | p50 ms | p95 ms | p99 ms |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    bad = False
    with tempfile.TemporaryDirectory(prefix="facezoo-load-") as tmp:
        analyzer = build_analyzer(args, Path(tmp))
        for round_ in range(1, args.rounds + 1):
            for backend in args.backends:
                gallery_path = Path(tmp) / f"gallery-{backend}-{round_}.db"
                bad |= run_one(args, backend, round_, analyzer, gallery_path, encoded, mix)
    return 1 if bad else 0


def run_one(args, backend: str, round_: int, analyzer, gallery_path: Path, encoded: list[str], mix) -> bool:
    """One load run against `backend`; prints its rows, returns True when a request failed or answered wrong."""
    from facezoo.sdk.gallery import Gallery
    from facezoo.sdk.server import Limits, make_server

    gallery = Gallery.open(gallery_path, model_key=analyzer.recognizer.key)
    server = make_server(
        analyzer, gallery, backend=backend, host=HOST, port=0, api_key=KEY, limits=Limits(timeout_s=60)
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    headers = {"Content-Type": "application/json", "X-API-Key": KEY}

    def call(conn, method, path, body=None):
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        r = conn.getresponse()
        return r.status, json.loads(r.read())

    setup = http.client.HTTPConnection(HOST, port, timeout=60)
    t0 = time.perf_counter()
    for i, img in enumerate(encoded):
        status, body = call(setup, "POST", "/v1/enroll", {"identity": f"id{i:04d}", "images": [img]})
        assert status == 200, body
    setup.close()
    print(f"enrolled {args.gallery_size} identities in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    counter = itertools.count()
    lock = threading.Lock()
    results: list[tuple[str, int, float, bool]] = []  # endpoint, status, ms, answer correct
    failures: list[str] = []

    def client(cid: int):
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        try:
            while time.perf_counter() < deadline:
                with lock:
                    n = next(counter)
                if n >= args.requests:
                    return
                endpoint = mix[n % len(mix)]
                k = n % len(encoded)
                if endpoint == "identify":
                    req = ("POST", "/v1/identify", {"image": encoded[k], "top_k": 5, "threshold": 0.5})
                elif endpoint == "verify":
                    req = ("POST", "/v1/verify", {"image1": encoded[k], "image2": encoded[k], "threshold": 0.5})
                elif endpoint == "enroll":
                    req = ("POST", "/v1/enroll", {"identity": f"load{n:05d}", "images": [encoded[k]]})
                else:
                    req = ("GET", "/v1/identities", None)
                start = time.perf_counter()
                status, body = call(conn, *req)
                ms = 1000 * (time.perf_counter() - start)
                if endpoint == "identify":
                    ok = status == 200 and body["faces"][0]["matches"][0]["score"] > 0.999
                elif endpoint == "verify":
                    ok = status == 200 and body["same"] is True
                else:
                    ok = status == 200
                with lock:
                    results.append((endpoint, status, ms, ok))
        except Exception as e:
            failures.append(f"client {cid}: {type(e).__name__}: {e}")
        finally:
            conn.close()

    start = time.perf_counter()
    deadline = start + args.time_cap
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.time_cap + 120)
    wall = time.perf_counter() - start
    server.close(grace_s=10)
    thread.join(10)
    gallery.close()

    for endpoint in [*dict.fromkeys(mix), "all"]:
        rows = [r for r in results if endpoint in ("all", r[0])]
        p50, p95, p99 = percentiles([r[2] for r in rows])
        print(
            f"| {backend} | {round_} | {endpoint} | {len(rows)} | {sum(r[1] != 200 for r in rows)} | "
            f"{sum(not r[3] for r in rows)} | {len(rows) / wall:.1f} | {p50:.0f} | {p95:.0f} | {p99:.0f} |",
            flush=True,
        )
    for f in failures:
        print(f"{backend} round {round_}: {f}", file=sys.stderr)
    return bool(failures or any(not r[3] for r in results))


if __name__ == "__main__":
    sys.exit(main())
