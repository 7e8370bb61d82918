"""The Dockerfile's recipe checked without a Docker daemon (the dev and CI machines have the client only): the
extras it installs exist, the models its command needs are fetched at build time, and its ENTRYPOINT + CMD,
started as written (/data in a temp folder, port 0), serves, passes its own HEALTHCHECK and stops on SIGTERM."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import tomllib
import torch

from facezoo.models.checkpoint import save_checkpoint
from facezoo.models.embedder import ModelMeta
from facezoo.paths import models_dir

ROOT = Path(__file__).resolve().parents[2]
META = ModelMeta(backbone="ir18", backbone_kwargs={"width": 0.25}, embedding_size=32, input_size=(64, 64))
KEY = "docker-test-key-0123456789"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    rows = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in rows if line and not line.startswith("#")]


def one(name: str) -> str:
    (found,) = [args for op, args in instructions() if op == name]
    return found


def test_extras_it_installs_exist():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (spec,) = re.findall(r'pip install "\.\[([a-z,]+)\]"', " ".join(a for op, a in instructions() if op == "RUN"))
    assert set(spec.split(",")) <= set(extras), spec
    assert "uvicorn" in " ".join(extras["serve"])


def test_the_default_detector_is_fetched_at_build_time_where_the_runtime_looks():
    """The container has no network at run time: `serve`'s default detector must be in the image, in a
    FACEZOO_HOME set before the fetch (so the unprivileged user reads the same folder)."""
    ops = instructions()
    home = [i for i, (op, a) in enumerate(ops) if op == "ENV" and a.startswith("FACEZOO_HOME=")]
    fetch = [i for i, (op, a) in enumerate(ops) if op == "RUN" and "facezoo models fetch mtcnn" in a]
    assert home and fetch and home[0] < fetch[0]
    assert "--detector" not in one("ENTRYPOINT") + one("CMD")  # so the default (mtcnn) is what serves


def test_entrypoint_serves_and_passes_its_healthcheck(tmp_path):
    pytest.importorskip("uvicorn")
    if not (models_dir() / "mtcnn" / "onet.pt").is_file():  # what the entrypoint's default detector loads
        reason = "run `facezoo models fetch mtcnn` (make test does it)"
        pytest.fail(reason) if os.environ.get("CI") else pytest.skip(reason)

    entry, cmd = json.loads(one("ENTRYPOINT")), json.loads(one("CMD"))
    assert entry[:2] == ["facezoo", "serve"]
    args = [a.replace("/data", str(tmp_path)) for a in entry[2:] + cmd]
    args[args.index("--port") + 1] = "0"
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "model.pt", META, META.build_backbone().state_dict())
    env = {"FACEZOO_API_KEY": KEY, "PATH": "/usr/bin:/bin"}
    env.update({k: v for k, v in os.environ.items() if k in ("HOME", "FACEZOO_HOME", "XDG_CACHE_HOME", "PYTHONPATH")})
    code = "import sys; from facezoo.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "serve", *args], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        for _ in range(200):
            line = proc.stderr.readline()
            found = re.search(r"listening on http://[^:]+:(\d+) \(API key required\)", line)
            if found or not line:
                break
        assert found, line + proc.stderr.read()
        port = found.group(1)
        health = shlex.split(one("HEALTHCHECK").split(" CMD ", 1)[1])
        assert health[:2] == ["python", "-c"]
        done = subprocess.run([sys.executable, "-c", health[2].replace("8080", port)], timeout=30)
        assert done.returncode == 0
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/identities", headers={"Authorization": f"Bearer {KEY}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200 and json.load(answer) == {"count": 0, "identities": []}
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert (tmp_path / "gallery.db").is_file()
