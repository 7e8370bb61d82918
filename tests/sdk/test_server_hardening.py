"""Hostile clients against both backends on loopback: slow heads and bodies (the whole-request deadline), idle
connections, duplicate Content-Length, keep-alive latency, deep JSON, lone surrogates, non-finite numbers, weak keys,
formats outside the allow-list, the pixel budget, bounded detection, multipart uploads, and the ASGI extras."""

import base64
import io
import json
import socket
import statistics
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

from facezoo.errors import ConfigError
from facezoo.sdk.detect import Detections, Detector
from facezoo.sdk.gallery import Gallery
from facezoo.sdk.server import Limits, make_server
from facezoo.sdk.service.api import ROUTES

from .test_server import KEY, RED, Client, ColourAnalyzer, b64, backend, huge_png_header, png, raw_request, serving

__all__ = ["backend", "serving"]  # fixtures used below

AUTH = b"Authorization: Bearer " + KEY.encode() + b"\r\n"


def read_reply(sock: socket.socket, timeout: float) -> tuple[int | None, dict | None, float]:
    """(status, JSON body, seconds) of the next reply on `sock`; (None, None, t) when it closes without one."""
    sock.settimeout(timeout)
    start, data = time.perf_counter(), b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = next(
                    (
                        int(v)
                        for k, _, v in (ln.partition(b":") for ln in head.split(b"\r\n"))
                        if k.lower() == b"content-length"
                    ),
                    0,
                )
                if len(body) >= length:
                    break
    except TimeoutError:
        pass
    elapsed = time.perf_counter() - start
    if not data:
        return None, None, elapsed
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body), elapsed


def test_duplicate_content_length_is_refused(serving, backend):
    port, _ = serving()
    body = b'{"image": "x"}'
    head = b"POST /v1/identify HTTP/1.1\r\nHost: x\r\n" + AUTH
    status, reply, _ = raw_request(port, head + b"Content-Length: 14\r\nContent-Length: 15\r\n\r\n" + body + b" ")
    assert status == 400 and "error" in reply
    if backend == "stdlib":  # h11 (uvicorn) merges identical duplicates, as RFC 9112 allows; the stdlib refuses them
        status, reply, _ = raw_request(port, head + b"Content-Length: 14\r\nContent-Length: 14\r\n\r\n" + body)
        assert status == 400 and "more than one Content-Length" in reply["error"]["message"]


def test_slow_head_gets_408_at_the_deadline(serving):
    port, _ = serving(limits=Limits(timeout_s=1.0, keepalive_s=5.0))
    with socket.create_connection(("127.0.0.1", port)) as s:
        start = time.perf_counter()
        s.sendall(b"POST /v1/verify HTTP/1.1\r\n")
        status = None
        for i in range(20):  # one header line every 0.3 s: each read is quick, the request never completes
            time.sleep(0.3)
            try:
                s.sendall(f"X-Slow-{i}: y\r\n".encode())
            except OSError:
                break
        status, body, _ = read_reply(s, 2)
        elapsed = time.perf_counter() - start
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert elapsed < 8  # answered at ~1 s (the loop sends until the server closes), never held


def test_idle_connection_is_closed(serving):
    port, _ = serving(limits=Limits(timeout_s=5.0, keepalive_s=0.5))
    with socket.create_connection(("127.0.0.1", port)) as s:
        status, _, elapsed = read_reply(s, 5)
    assert status is None and elapsed < 3  # closed without a reply, not held open


def test_half_sent_body(serving, backend):
    port, _ = serving(limits=Limits(timeout_s=1.0))
    head = b"POST /v1/identify HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Length: 100\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(head + b'{"image": ')  # and then nothing
        status, body, elapsed = read_reply(s, 5)
    assert status == 408 and body["error"]["code"] == "request_timeout" and elapsed < 3
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(head + b'{"image": ')
        s.shutdown(socket.SHUT_WR)  # the client gives up half-way
        status, body, elapsed = read_reply(s, 5)
    assert elapsed < 1.5  # no wait for a deadline
    if backend == "stdlib":  # uvicorn closes a half-closed connection at once, leaving nobody to answer
        assert status == 400 and "body ended after 10 of 100 bytes" in body["error"]["message"]


def test_keep_alive_is_as_fast_as_new_connections(serving):
    port, _ = serving()
    c = Client(port)
    c.request("GET", "/healthz")
    times = []
    for _ in range(15):
        start = time.perf_counter()
        assert c.request("GET", "/v1/identities")[0] == 200
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.03  # a Nagle / delayed-ACK stall costs 40 ms on every request


def test_deep_json_lone_surrogates_and_bad_names_are_400(serving):
    port, _ = serving()
    c = Client(port)
    status, body = c.request("POST", "/v1/identify", raw=b"[" * 100_000 + b"]" * 100_000)
    assert status == 400 and body["error"]["code"] == "bad_json"
    status, body = c.request("POST", "/v1/identify", raw=b'{"image": ' * 50_000)
    assert status == 400 and body["error"]["code"] == "bad_json"
    raw = b'{"identity": "\\ud800", "images": ["' + b64(png(RED)).encode() + b'"]}'
    status, body = c.request("POST", "/v1/enroll", raw=raw)
    assert status == 400 and "surrogate" in body["error"]["message"]
    status, body = c.request("POST", "/v1/enroll", {"identity": "a\u0000b", "images": [b64(png(RED))]})
    assert status == 400 and "control" in body["error"]["message"]
    assert c.request("DELETE", "/v1/identities/%ED%A0%80")[0] == 400  # UTF-8 of a surrogate
    assert c.request("DELETE", "/v1/identities/%FF")[0] == 400
    assert c.request("GET", "/healthz")[0] == 200  # the connection survived all of it


class NanAnalyzer(ColourAnalyzer):
    def verify(self, image1, image2, *, far=None, threshold=None):
        return {"same": False, "similarity": float("nan"), "threshold": 0.5}


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_numbers_are_422_and_never_emitted(serving, number):
    port, _ = serving()
    c = Client(port)
    image = b64(png(RED)).encode()
    raw = b'{"image1": "' + image + b'", "image2": "' + image + b'", "threshold": ' + number + b"}"
    status, body = c.request("POST", "/v1/verify", raw=raw)
    assert status == 422 and body["error"]["code"] == "non_finite"
    port2, _ = serving(NanAnalyzer())
    conn = Client(port2).conn
    conn.request(
        "POST",
        "/v1/verify",
        body=b'{"image1": "' + image + b'", "image2": "' + image + b'"}',
        headers={"X-API-Key": KEY},
    )
    reply = conn.getresponse()
    data = json.loads(reply.read(), parse_constant=lambda c: pytest.fail(f"bare {c} in a response"))
    assert reply.status == 500 and data["error"]["code"] == "internal"


def test_weak_api_keys_are_refused(tmp_path, backend):
    with Gallery.open(tmp_path / "g.db") as g:
        for weak in ("k", "short-key", "aaaaaaaaaaaaaaaaaaaa", "a key with spaces in it"):
            with pytest.raises(ConfigError, match=r"16 characters|printable ASCII"):
                make_server(ColourAnalyzer(), g, backend=backend, port=0, api_key=weak)
    from facezoo.cli import main

    (tmp_path / "key").write_text("abc\n")
    assert (
        main(
            ["serve", "--model", "m.pt", "--gallery", str(tmp_path / "g2.db"), "--api-key-file", str(tmp_path / "key")]
        )
        == 2
    )
    assert not (tmp_path / "g2.db").exists()  # refused before anything opened


def test_only_listed_formats_and_the_servers_pixel_budget(serving):
    assert Limits().max_image_pixels == 16_000_000
    port, _ = serving(limits=Limits())
    c = Client(port)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n"
    status, body = c.request("POST", "/v1/identify", {"image": b64(eps)})
    assert status == 400 and body["error"]["code"] == "bad_image" and "JPEG, PNG" in body["error"]["message"]
    status, body = c.request("POST", "/v1/identify", {"image": b64(huge_png_header(4001, 4000))})
    assert status == 413 and "16,000,000" in body["error"]["message"]
    status, body = c.request("POST", "/v1/identify", {"image": b64(huge_png_header(4000, 4000))})
    assert status == 400 and body["error"]["code"] == "bad_image"  # within budget, then no pixel data to decode
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), RED).save(buf, format="TIFF")
    assert c.request("POST", "/v1/identify", {"image": b64(buf.getvalue())})[0] == 200


class SquareDetector(Detector):
    """Finds the bright square of an image (its bounding box; landmarks at its corners and centre)."""

    def __init__(self):
        self.seen = []

    def detect(self, image, max_faces=None):
        self.seen.append(image.shape[:2])
        ys, xs = np.nonzero(image[..., 0] > 128)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        kps = np.float32([[x0, y0], [x1, y0], [(x0 + x1) / 2, (y0 + y1) / 2], [x0, y1], [x1, y1]])
        return Detections(np.float32([[x0, y0, x1, y1]]), np.float32([1.0]), kps[None])


class DetectingAnalyzer(ColourAnalyzer):
    def __init__(self):
        super().__init__()
        self.detector = SquareDetector()

    def identify(self, image, gallery, top_k=5, threshold=None, far=None):
        d = self.detector.detect(image)
        return [{"face": {"bbox": d.boxes[0], "kps": d.kps[0]}, "matches": []}]


def test_large_images_are_detected_downscaled_and_mapped_back(serving):
    analyzer = DetectingAnalyzer()
    port, _ = serving(analyzer, limits=Limits(detect_max_side=100))
    image = np.zeros((200, 400, 3), np.uint8)
    image[40:120, 100:180] = 255
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    status, body = Client(port).request("POST", "/v1/identify", {"image": b64(buf.getvalue())})
    assert status == 200 and analyzer.detector.inner.seen == [(50, 100)]  # 400 px wide -> 100, scale 1/4
    np.testing.assert_allclose(body["faces"][0]["face"]["bbox"], [100, 40, 180, 120], atol=4)  # one pixel at 1/4
    np.testing.assert_allclose(body["faces"][0]["face"]["kps"][2], [140, 80], atol=4)
    small = b64(png(RED, (64, 32)))
    assert Client(port).request("POST", "/v1/identify", {"image": small})[0] == 200
    assert analyzer.detector.inner.seen[-1] == (32, 64)  # small images untouched


def multipart(fields: list[tuple[str, bytes, str | None]]) -> tuple[bytes, str]:
    """A multipart/form-data body built by hand: (name, value, filename or None) parts."""
    boundary = "facezoo-test-boundary"
    out = b""
    for name, value, filename in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        kind = "\r\nContent-Type: image/png" if filename else ""
        out += f"--{boundary}\r\nContent-Disposition: {disposition}{kind}\r\n\r\n".encode() + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_multipart_uploads(serving):
    pytest.importorskip("python_multipart", reason="multipart uploads need python-multipart (facezoo[serve])")
    port, gallery = serving()
    c = Client(port)

    def send(path, parts):
        body, kind = multipart(parts)
        return c.request("POST", path, raw=body, headers={"Content-Type": kind})

    status, body = send(
        "/v1/enroll",
        [("identity", b"red", None), ("images", png(RED), "a.png"), ("images", png((240, 20, 0)), "b.png")],
    )
    assert (status, body) == (200, {"identity": "red", "enrolled": 2}) and gallery.count("red") == 2
    status, body = send("/v1/identify", [("image", png(RED), "q.png"), ("top_k", b"1", None)])
    assert status == 200 and body["faces"][0]["matches"][0]["identity"] == "red"
    status, body = send(
        "/v1/verify", [("image1", png(RED), "1.png"), ("image2", png(RED), "2.png"), ("threshold", b"0.5", None)]
    )
    assert status == 200 and body["same"] is True and body["threshold"] == 0.5
    status, body = send(
        "/v1/verify", [("image1", png(RED), "1.png"), ("image2", png(RED), "2.png"), ("threshold", b"nan", None)]
    )
    assert status == 422 and body["error"]["code"] == "non_finite"
    status, body = send("/v1/identify", [("image", b64(png(RED)).encode(), None)])  # base64 as a text field
    assert status == 200
    status, body = send("/v1/identify", [("top_k", b"two", None), ("image", png(RED), "q.png")])
    assert status == 400 and "top_k" in body["error"]["message"]
    status, body = c.request(
        "POST", "/v1/identify", raw=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert status in (400, 422)


def test_openapi_document_and_docs_on_asgi(serving, backend):
    if backend != "asgi":
        pytest.skip("/docs is the asgi backend's")
    port, _ = serving()
    c = Client(port, key=None)
    c.conn.request("GET", "/openapi.json")
    reply = c.conn.getresponse()
    doc = json.loads(reply.read())
    assert reply.status == 200 and doc["openapi"].startswith("3.")
    for route in ROUTES:
        assert route.method.lower() in doc["paths"][route.path]
    enroll = doc["paths"]["/v1/enroll"]["post"]["requestBody"]["content"]
    assert set(enroll) == {"application/json", "multipart/form-data"}
    assert enroll["multipart/form-data"]["schema"]["properties"]["images"]["items"]["format"] == "binary"
    c.conn.request("GET", "/docs")
    reply = c.conn.getresponse()
    assert reply.status == 200 and b"swagger-ui" in reply.read()


def test_backlog_is_configurable(tmp_path, backend):
    if backend == "asgi":
        pytest.importorskip("uvicorn")
    with Gallery.open(tmp_path / "g.db") as g:
        server = make_server(ColourAnalyzer(), g, backend=backend, port=0, api_key=KEY, limits=Limits(backlog=77))
        try:
            got = server.request_queue_size if backend == "stdlib" else server.server.config.backlog
            assert got == 77 and Limits().backlog == 128
        finally:
            if backend == "stdlib":
                server.server_close()
            else:
                server.socket.close()


FAKE = """
import os
import numpy as np

class Fake:
    def __init__(self, **options):
        pass

    def identify(self, image, gallery, top_k=5, threshold=None, far=None):
        return [{"face": {"pid": os.getpid()}, "matches": []}]
"""


def test_asgi_workers_serve_from_several_processes(tmp_path):
    pytest.importorskip("uvicorn")
    (tmp_path / "fakeanalyzer.py").write_text(FAKE)
    spec = {
        "factory": "fakeanalyzer:Fake",
        "analyzer": {},
        "gallery": str(tmp_path / "g.db"),
        "limits": {"timeout_s": 10.0},
        "api_key": KEY,
    }
    code = f"""
        import sys
        from facezoo.sdk.server import serve_spec
        serve_spec({spec!r}, backend="asgi", workers=2, port=0,
                   ready=lambda url: print(url, file=sys.stderr, flush=True))
    """
    env = {**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{__import__('os').environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = proc.stderr.readline().strip()
        port = int(url.rsplit(":", 1)[1])
        pids = set()
        deadline = time.time() + 60
        while len(pids) < 2 and time.time() < deadline:
            try:
                status, body = Client(port).request("POST", "/v1/identify", {"image": b64(png(RED))})
            except OSError:
                time.sleep(0.2)
                continue
            assert status == 200
            pids.add(body["faces"][0]["face"]["pid"])
        assert len(pids) == 2 and proc.pid not in pids  # answered by two worker processes
        proc.send_signal(__import__("signal").SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0


def test_b64_helper_is_standard():
    assert base64.b64decode(b64(b"abc")) == b"abc"
