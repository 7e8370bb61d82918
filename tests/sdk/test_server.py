"""`facezoo serve`: auth, limits, bad input, the enroll/identify/remove round trip and concurrency, on loopback,
each against both backends (the stdlib server and the ASGI app on uvicorn; the latter skipped without the serve
extra). Hostile-client cases (slow heads, half-sent bodies, duplicate lengths, deep JSON, NaN) are in
test_server_hardening.py.

The server runs in a thread on an ephemeral 127.0.0.1 port with a fake analyzer whose "embedding" of an image is
its mean colour, so identities are told apart by colour and a black image has no face.
"""

import base64
import http.client
import io
import json
import socket
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from facezoo.cli import main
from facezoo.errors import ConfigError, NoFaceError
from facezoo.sdk.gallery import Gallery
from facezoo.sdk.server import BACKENDS, Limits, check_auth_setup, load_api_key, make_server

KEY = "s3cret-key-for-tests"
RED, GREEN, BLUE, BLACK = (250, 10, 10), (10, 250, 10), (10, 10, 250), (0, 0, 0)


class ColourAnalyzer:
    """FaceAnalyzer's methods; one face per image whose embedding is the mean RGB; black images have none."""

    def __init__(self, delay=0.0):
        self.delay = delay
        self.calls = 0

    def _embed(self, image):
        self.calls += 1
        time.sleep(self.delay)
        e = image.reshape(-1, 3).mean(0).astype(np.float32)
        if e.max() < 1:
            raise NoFaceError("image: no face found")
        return e

    def analyze(self, image, max_faces=None):
        return [self._embed(image)]

    def verify(self, image1, image2, *, far=1e-4, threshold=None):
        a, b = self._embed(image1), self._embed(image2)
        sim = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
        t = 0.9 if threshold is None else threshold
        face = {"bbox": np.zeros(4, np.float32), "det_score": np.float32(1.0), "embedding": a}
        return {
            "same": sim >= t,
            "similarity": np.float32(sim),
            "threshold": t,
            "far": far,
            "face1": face,
            "face2": dict(face),
        }

    def identify(self, image, gallery, top_k=5, threshold=None, far=None):
        e = self._embed(image)
        return [{"face": {"bbox": [0, 0, 1, 1], "det_score": 1.0}, "matches": gallery.search(e, top_k=top_k)[0]}]

    def enroll(self, gallery, identity, images, replace=False):
        return gallery.add(identity, np.stack([self._embed(im) for im in images]), replace=replace)


class BuggyAnalyzer(ColourAnalyzer):
    def verify(self, *a, **k):
        raise RuntimeError("internal detail that must not leak")


def png(colour, size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def huge_png_header(width=100_000, height=100_000) -> bytes:
    """A PNG signature and IHDR claiming width x height RGB, then IEND: tiny file, enormous canvas."""

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


class Client:
    def __init__(self, port, key=KEY):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.key = key

    def request(self, method, path, body=None, headers=None, raw=None):
        h = {"Content-Type": "application/json"}
        if self.key is not None:
            h["Authorization"] = f"Bearer {self.key}"
        h.update(headers or {})
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        self.conn.request(method, path, body=data, headers=h)
        r = self.conn.getresponse()
        return r.status, json.loads(r.read())


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "asgi":
        pytest.importorskip("uvicorn", reason="the asgi backend needs the serve extra (pip install 'facezoo[serve]')")
        pytest.importorskip("starlette", reason="the asgi backend needs the serve extra")
    return request.param


@pytest.fixture
def serving(tmp_path, backend):
    """Start a server of `backend` for an analyzer; yields a function (analyzer, **kw) -> (port, gallery)."""
    started = []

    def start(analyzer=None, limits=None, api_key=KEY, insecure=False):
        gallery = Gallery.open(tmp_path / f"g{len(started)}.db")
        server = make_server(
            analyzer or ColourAnalyzer(),
            gallery,
            backend=backend,
            host="127.0.0.1",
            port=0,
            api_key=api_key,
            insecure_no_auth=insecure,
            limits=limits or Limits(timeout_s=10),
        )
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread, gallery))
        return server.server_address[1], gallery

    yield start
    for server, thread, gallery in started:
        server.close(grace_s=5)
        thread.join(5)
        gallery.close()


def raw_request(port, head: bytes, timeout=5.0) -> tuple[int, dict, float]:
    """Send raw request bytes (headers only), read the whole reply; (status, JSON body, seconds to answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        start = time.perf_counter()
        s.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        elapsed = time.perf_counter() - start
    head_part, _, body = data.partition(b"\r\n\r\n")
    return int(head_part.split()[1]), json.loads(body), elapsed


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_auth_both_headers_wrong_key_and_open_healthz(serving):
    port, _ = serving()
    assert Client(port, key=None).request("GET", "/healthz") == (200, {"status": "ok"})
    status, body = Client(port, key=None).request("GET", "/v1/identities")
    assert status == 401 and body["error"]["code"] == "unauthorized" and "X-API-Key" in body["error"]["message"]
    assert Client(port, key="wrong").request("GET", "/v1/identities")[0] == 401
    assert Client(port, key=KEY + "x").request("GET", "/v1/identities")[0] == 401
    assert Client(port).request("GET", "/v1/identities") == (200, {"identities": [], "count": 0})
    c = Client(port, key=None)
    assert c.request("GET", "/v1/identities", headers={"X-API-Key": KEY})[0] == 200
    assert c.request("GET", "/v1/identities", headers={"X-API-Key": "nope"})[0] == 401
    assert c.request("GET", "/v1/identities", headers={"Authorization": f"Basic {KEY}"})[0] == 401
    # a POST refused for auth never reaches the analyzer, and its unread body does not break the connection
    analyzer = ColourAnalyzer()
    port2, _ = serving(analyzer)
    c = Client(port2, key="wrong")
    for _ in range(2):
        status, body = c.request("POST", "/v1/verify", {"image1": b64(png(RED)), "image2": b64(png(RED))})
        assert status == 401
    assert analyzer.calls == 0


def test_routes_methods_and_json_errors(serving):
    port, _ = serving()
    c = Client(port)
    status, body = c.request("GET", "/v2/nothing")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = c.request("GET", "/v1/verify")
    assert status == 405 and "POST" in body["error"]["message"]
    assert c.request("PUT", "/v1/identities")[0] == 405
    assert c.request("POST", "/v1/verify", raw=b"{}", headers={"Content-Type": "application/xml"})[0] == 415
    status, body = c.request("DELETE", "/v1/identities/nobody")
    assert status == 404 and body["error"]["code"] == "unknown_identity" and "nobody" in body["error"]["message"]
    status, body = c.request("POST", "/v1/verify", raw=b"{not json")
    assert status == 400 and body["error"]["code"] == "bad_json"
    assert c.request("POST", "/v1/verify", raw=b"[1, 2]")[1]["error"]["code"] == "bad_json"
    status, body = c.request("POST", "/v1/verify", {"image1": b64(png(RED))})
    assert status == 400 and "image2" in body["error"]["message"]
    status, body = c.request("POST", "/v1/identify", {"image": b64(png(RED)), "top_k": "3"})
    assert status == 400 and "top_k" in body["error"]["message"]
    assert c.request("POST", "/v1/identify", {"image": b64(png(RED)), "top_k": 0})[0] == 400
    assert c.request("POST", "/v1/verify", {"image1": b64(png(RED)), "image2": b64(png(RED)), "far": 2})[0] == 400
    # the same keep-alive connection still answers after all those errors
    assert c.request("GET", "/healthz")[0] == 200


def test_bad_base64_bad_image_and_no_face(serving):
    port, _ = serving()
    c = Client(port)
    status, body = c.request("POST", "/v1/identify", {"image": "not base64 !!"})
    assert status == 400 and body["error"]["code"] == "bad_base64" and "image" in body["error"]["message"]
    status, body = c.request("POST", "/v1/identify", {"image": b64(png(RED)[:-30] + b"x" * 7)})
    assert status == 400 and body["error"]["code"] in ("bad_image", "bad_base64")
    status, body = c.request("POST", "/v1/identify", {"image": b64(b"GIF89a but not really a gif")})
    assert status == 400 and body["error"]["code"] == "bad_image"
    status, body = c.request("POST", "/v1/verify", {"image1": b64(png(RED)), "image2": b64(png(BLACK))})
    assert status == 422 and body["error"]["code"] == "no_face"
    status, body = c.request("POST", "/v1/enroll", {"identity": "x", "images": [b64(png(RED)), "%%%"]})
    assert status == 400 and "images[1]" in body["error"]["message"]
    # a data: URL prefix is accepted
    ok = c.request("POST", "/v1/verify", {"image1": "data:image/png;base64," + b64(png(RED)), "image2": b64(png(RED))})
    assert ok[0] == 200 and ok[1]["same"] is True


def test_oversize_body_refused_from_content_length_before_reading(serving):
    port, _ = serving(limits=Limits(max_request_bytes=1000, timeout_s=10))
    # headers only: the server must answer without waiting for the 10 MB it was promised
    status, body, elapsed = raw_request(
        port,
        b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + KEY.encode()
        + b"\r\nContent-Length: 10000000\r\n\r\n",
    )
    assert status == 413 and body["error"]["code"] == "request_too_large" and "1,000" in body["error"]["message"]
    assert elapsed < 3
    status, body, _ = raw_request(
        port,
        b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\nX-API-Key: "
        + KEY.encode()
        + b"\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n",
    )
    assert status == 413  # the first status line is the refusal, not "100 Continue"
    status, body, _ = raw_request(
        port, b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() + b"\r\n\r\n"
    )
    assert status == 411 and body["error"]["code"] == "length_required"
    # just under the limit is read and parsed (400 for the bad JSON, not 413)
    assert Client(port).request("POST", "/v1/verify", raw=b"x" * 1000)[0] == 400


def test_image_pixel_limit_from_header_and_images_per_request(serving):
    port, _ = serving(limits=Limits(max_image_pixels=64 * 64, max_images=2, timeout_s=10))
    c = Client(port)
    bomb = huge_png_header()
    assert len(bomb) < 100
    status, body = c.request("POST", "/v1/identify", {"image": b64(bomb)})
    assert status == 413 and body["error"]["code"] == "image_too_large"
    assert "10,000,000,000" in body["error"]["message"] and "4,096" in body["error"]["message"]
    status, body = c.request("POST", "/v1/identify", {"image": b64(huge_png_header(1000, 1000))})
    assert status == 413 and "1000 x 1000" in body["error"]["message"]  # under Pillow's own limit: ours
    status, body = c.request("POST", "/v1/identify", {"image": b64(png(RED, (65, 64)))})
    assert status == 413 and "4,160" in body["error"]["message"]
    assert c.request("POST", "/v1/identify", {"image": b64(png(RED, (64, 64)))})[0] == 200
    status, body = c.request("POST", "/v1/enroll", {"identity": "a", "images": [b64(png(RED))] * 3})
    assert status == 413 and body["error"]["code"] == "too_many_images"


def test_enroll_identify_verify_remove_round_trip(serving):
    port, gallery = serving()
    c = Client(port)
    assert c.request("POST", "/v1/enroll", {"identity": "red", "images": [b64(png(RED)), b64(png((240, 20, 0)))]}) == (
        200,
        {"identity": "red", "enrolled": 2},
    )
    assert c.request("POST", "/v1/enroll", {"identity": "blue", "images": [b64(png(BLUE))]})[0] == 200
    assert c.request("GET", "/v1/identities") == (200, {"identities": ["blue", "red"], "count": 2})
    status, body = c.request("POST", "/v1/identify", {"image": b64(png((230, 30, 30))), "top_k": 2})
    assert status == 200 and len(body["faces"]) == 1
    matches = body["faces"][0]["matches"]
    assert [m["identity"] for m in matches] == ["red", "blue"] and matches[0]["score"] > 0.99
    assert (
        c.request("POST", "/v1/identify", {"image": b64(png(BLUE)), "top_k": 1})[1]["faces"][0]["matches"][0][
            "identity"
        ]
        == "blue"
    )
    status, body = c.request("POST", "/v1/verify", {"image1": b64(png(RED)), "image2": b64(png(RED))})
    assert status == 200 and body["same"] is True and body["similarity"] == pytest.approx(1.0)
    assert "embedding" not in body["face1"] and body["face1"]["bbox"] == [0, 0, 0, 0]
    assert c.request("POST", "/v1/verify", {"image1": b64(png(RED)), "image2": b64(png(BLUE))})[1]["same"] is False
    # replace swaps red's two entries for one
    assert c.request("POST", "/v1/enroll", {"identity": "red", "images": [b64(png(RED))], "replace": True})[0] == 200
    assert gallery.count("red") == 1
    assert c.request("DELETE", "/v1/identities/red") == (200, {"identity": "red", "removed": 1})
    assert c.request("DELETE", "/v1/identities/red")[0] == 404
    assert c.request("POST", "/v1/remove", {"identity": "blue"}) == (200, {"identity": "blue", "removed": 1})
    assert gallery.identities() == []
    # a URL-quoted name with a space and a slash
    assert c.request("POST", "/v1/enroll", {"identity": "Ann/Lee x", "images": [b64(png(GREEN))]})[0] == 200
    assert c.request("DELETE", "/v1/identities/Ann%2FLee%20x")[1] == {"identity": "Ann/Lee x", "removed": 1}


def test_concurrent_clients_get_their_own_answers(serving):
    port, _ = serving()
    colours = {"red": RED, "green": GREEN, "blue": BLUE}
    setup = Client(port)
    for name, colour in colours.items():
        assert setup.request("POST", "/v1/enroll", {"identity": name, "images": [b64(png(colour))]})[0] == 200
    wrong, errors = [], []

    def client(i):
        try:
            c = Client(port)
            names = list(colours)
            for j in range(6):
                name = names[(i + j) % 3]
                status, body = c.request("POST", "/v1/identify", {"image": b64(png(colours[name])), "top_k": 1})
                got = body["faces"][0]["matches"][0]["identity"] if status == 200 else status
                if got != name:
                    wrong.append((name, got))
        except Exception as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and not wrong and not any(t.is_alive() for t in threads)


def test_bug_is_500_with_generic_message(serving, caplog):
    port, _ = serving(BuggyAnalyzer())
    status, body = Client(port).request("POST", "/v1/verify", {"image1": b64(png(RED)), "image2": b64(png(RED))})
    assert status == 500 and body["error"]["code"] == "internal" and "leak" not in body["error"]["message"]
    assert "internal detail" in caplog.text  # logged for the operator


def test_close_lets_requests_in_flight_finish(backend, tmp_path):
    gallery = Gallery.open(tmp_path / "slow.db")
    server = make_server(ColourAnalyzer(delay=0.5), gallery, backend=backend, port=0, api_key=KEY)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    result = {}

    def slow():
        result["r"] = Client(port).request("POST", "/v1/verify", {"image1": b64(png(RED)), "image2": b64(png(RED))})

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)  # the request is inside the analyzer now
    server.close(grace_s=5)
    t.join(5)
    thread.join(5)
    gallery.close()
    assert result["r"][0] == 200 and result["r"][1]["same"] is True
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_no_auth_only_on_loopback_and_only_when_asked(serving, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="FACEZOO_API_KEY"):
        check_auth_setup("127.0.0.1", None, False)
    with pytest.raises(ConfigError, match="loopback"):
        check_auth_setup("0.0.0.0", None, True)
    with pytest.raises(ConfigError, match="loopback"):
        check_auth_setup("192.168.1.5", None, True)
    for host in ("127.0.0.1", "::1", "localhost"):
        check_auth_setup(host, None, True)
    check_auth_setup("0.0.0.0", KEY, False)
    port, _ = serving(api_key=None, insecure=True)
    assert Client(port, key=None).request("GET", "/v1/identities")[0] == 200
    # the CLI refuses before loading any model
    monkeypatch.delenv("FACEZOO_API_KEY", raising=False)
    assert main(["serve", "--model", str(tmp_path / "absent.pt"), "--gallery", str(tmp_path / "g.db")]) == 2
    assert not (tmp_path / "g.db").exists()


def test_load_api_key(tmp_path):
    f = tmp_path / "key.txt"
    f.write_text("  abcdefgh12345678  \nsecond line ignored\n")
    assert load_api_key(f, env={}) == "abcdefgh12345678"
    assert load_api_key(None, env={"FACEZOO_API_KEY": " " + KEY + " "}) == KEY
    assert load_api_key(None, env={}) is None
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ConfigError, match="empty.txt"):
        load_api_key(tmp_path / "empty.txt")
    with pytest.raises(ConfigError, match="missing.txt"):
        load_api_key(tmp_path / "missing.txt")


def test_end_to_end_with_real_face_analyzer(serving, tmp_path, backend):
    if backend == "asgi":
        pytest.skip("the real model is exercised once, on the stdlib backend; the API code is shared")
    pipeline = pytest.importorskip("facezoo.sdk.pipeline", reason="facezoo.sdk.pipeline is not written yet")
    if not hasattr(pipeline, "FaceAnalyzer"):
        pytest.skip("facezoo.sdk.pipeline has no FaceAnalyzer yet")
    from facezoo.models.checkpoint import save_checkpoint
    from facezoo.models.embedder import ModelMeta
    from facezoo.sdk.detect import Detections, Detector

    meta = ModelMeta(backbone="ir18", backbone_kwargs={"width": 0.25}, embedding_size=16, input_size=(112, 112))
    import torch

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, meta, meta.build_backbone().state_dict())

    class WholeImageDetector(Detector):
        """One face filling the image (landmarks = the template scaled to the image); none in a dark image."""

        def detect(self, image, max_faces=None):
            if image.mean() < 5:
                return Detections.empty()
            h, w = image.shape[:2]
            kps = np.asarray(meta.template, np.float32) * np.float32([w / 112, h / 112])
            return Detections(np.float32([[0, 0, w, h]]), np.float32([0.99]), kps[None])

    analyzer = pipeline.FaceAnalyzer(detector=WholeImageDetector(), recognizer=str(ckpt), device="cpu")
    port, _ = serving(analyzer)
    c = Client(port)
    rng = np.random.default_rng(0)
    faces = {n: rng.integers(30, 256, (112, 112, 3), dtype=np.uint8) for n in ("ann", "bob")}

    def enc(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        return b64(buf.getvalue())

    for name, img in faces.items():
        assert c.request("POST", "/v1/enroll", {"identity": name, "images": [enc(img)]}) == (
            200,
            {"identity": name, "enrolled": 1},
        )
    # an uncalibrated model has no operating point: identify states its threshold (-1: every candidate)
    status, body = c.request("POST", "/v1/identify", {"image": enc(faces["bob"]), "top_k": 2, "threshold": -1})
    assert status == 200 and body["faces"][0]["matches"][0]["identity"] == "bob"
    status, body = c.request(
        "POST", "/v1/verify", {"image1": enc(faces["ann"]), "image2": enc(faces["ann"]), "threshold": 0.5}
    )
    assert status == 200 and body["same"] is True and body["similarity"] == pytest.approx(1.0, abs=1e-4)
    status, body = c.request(
        "POST",
        "/v1/verify",
        {"image1": enc(faces["ann"]), "threshold": 0.5, "image2": enc(np.zeros((112, 112, 3), np.uint8))},
    )
    assert status == 422 and body["error"]["code"] == "no_face" and "image2" in body["error"]["message"]
    # an uncalibrated model has no threshold for a FAR: a 400 that says how to fix it
    status, body = c.request("POST", "/v1/verify", {"image1": enc(faces["ann"]), "image2": enc(faces["bob"])})
    assert status == 400 and "calibrate" in body["error"]["message"]
    # calibrated thresholds: far picks one, and without far or threshold the lowest calibrated FAR decides
    analyzer.thresholds = {"1e-02": 0.5, "1e-03": 0.99}
    status, body = c.request("POST", "/v1/identify", {"image": enc(faces["bob"]), "top_k": 2, "far": 0.01})
    (face,) = body["faces"]
    assert status == 200 and face["operating_point"] == {"far": 0.01, "threshold": 0.5, "source": "calibrated"}
    assert face["identity"] == "bob" and all(m["score"] >= 0.5 for m in face["matches"])
    status, body = c.request("POST", "/v1/identify", {"image": enc(faces["bob"])})
    assert status == 200 and body["faces"][0]["operating_point"]["far"] == 0.001
    status, body = c.request("POST", "/v1/identify", {"image": enc(faces["bob"]), "far": 1e-5})
    assert status == 400 and "calibrate" in body["error"]["message"]
    assert c.request("POST", "/v1/identify", {"image": enc(faces["bob"]), "far": 2})[0] == 400


SERVE_SCRIPT = """
import sys
import facezoo.sdk.pipeline as pipeline

class Fake:
    def __init__(self, detector, recognizer, device, **options):
        self.detector = detector

    def identify(self, image, gallery, top_k=5, threshold=None, far=None):
        return [{"face": {"detector": self.detector}, "matches": []}]

pipeline.FaceAnalyzer = Fake  # the CLI's wiring with a stand-in model
from facezoo.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_cli_serve_with_key_file_stops_cleanly_on_sigterm(tmp_path, backend):
    """`facezoo serve` in its own process (signal handlers need a main thread); SIGINT takes the same path."""
    import re
    import signal
    import subprocess
    import sys

    (tmp_path / "key").write_text("file-key-0123456789\n")
    cmd = [
        sys.executable,
        "-c",
        SERVE_SCRIPT,
        "serve",
        "--model",
        "m.pt",
        "--detector",
        "scrfd:x.onnx",
        "--gallery",
        str(tmp_path / "g.db"),
        "--port",
        "0",
        "--api-key-file",
        str(tmp_path / "key"),
        "--backend",
        backend,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(50):
            line = proc.stderr.readline()
            found = re.search(r"listening on http://127\.0\.0\.1:(\d+) \(API key required\)", line)
            if found or not line:
                break
        assert found, line
        c = Client(int(found.group(1)), key="file-key-0123456789")
        assert c.request("POST", "/v1/identify", {"image": b64(png(RED))}) == (
            200,
            {"faces": [{"face": {"detector": "scrfd:x.onnx"}, "matches": []}]},
        )
        assert Client(int(found.group(1)), key="other").request("GET", "/v1/identities")[0] == 401
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert '"POST /v1/identify" 200' in err  # one log line per request
    assert (tmp_path / "g.db").is_file()
