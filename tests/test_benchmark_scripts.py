"""The benchmark scripts still run against today's API (they are not imported by the package, so nothing else
would notice a break): each at its smallest setting, with the answers they check themselves all correct."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from facezoo.paths import models_dir

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_serve_load_gets_only_right_answers_from_both_backends():
    pytest.importorskip("uvicorn")
    out = run("serve_load.py", "--clients", "2", "--requests", "18", "--backbone", "mobilefacenet", "--threads", "1",
              "--gallery-size", "4", "--rounds", "1")  # fmt: skip
    totals = [line.split("|") for line in out.splitlines() if "| all |" in line]
    assert [row[1].strip() for row in totals] == ["stdlib", "asgi"]
    for row in totals:  # | backend | round | all | requests | non-200 | wrong answers | ...
        assert (int(row[4]), int(row[5]), int(row[6])) == (18, 0, 0)


@pytest.mark.slow
def test_dlib_latency_times_every_step():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    if not (models_dir() / "dlib").is_dir():
        reason = "run `facezoo models fetch dlib` (make test does it)"
        pytest.fail(reason) if os.environ.get("CI") else pytest.skip(reason)
    out = run("dlib_latency.py", "--device", "cpu", "--threads", "1", "--batches", "1", "--sizes", "160x120",
              "--iters", "1", "--warmup", "0")  # fmt: skip
    steps = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ") and "ms" not in line]
    assert any(s.startswith("dlib_resnet") for s in steps) and any(s.startswith("dlib_mmod detect") for s in steps)
    assert {"dlib_sp5, one face", "dlib_sp68, one face"} <= set(steps)


@pytest.mark.slow
def test_ort_settings_times_every_row_with_outputs_checked():
    pytest.importorskip("onnxruntime")
    # the script exits non-zero when a row's embeddings differ from PyTorch's
    out = run("ort_settings.py", "--backbones", "mobilefacenet", "--kwargs", '{"scale": 1}', "--input-size", "32",
              "--batch-sizes", "1", "--iters", "1", "--warmup", "0", "--threads", "1")  # fmt: skip
    rows = {line.split("|")[3].strip(): line.split("|") for line in out.splitlines() if "| mobilefacenet |" in line}
    assert {"eager", "ort: facezoo", "ort: PRelu kernel", "ort: NCHWc off"} <= set(rows)
    assert float(rows["ort: facezoo"][4]) > 0
