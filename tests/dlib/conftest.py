"""Shared fixtures for dlib's models: the converted files (`facezoo models fetch dlib`; make test runs it), dlib
itself (dlib-bin, the test extra) as the reference, and real photos that registry packages ship: scikit-image's
astronaut and camera, and insightface's wheel (t1.jpg, a group of six; Tom_Hanks_54745.png, a 112x112 face).
Missing files or dlib skip locally and fail under CI=true, as the MTCNN tests do."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from facezoo.paths import models_dir

INSIGHTFACE = "insightface==2.1"  # pinned: the photos below are read from this wheel


def _missing(what: str, fix: str):
    if os.environ.get("CI"):
        pytest.fail(f"{what}: {fix}")
    pytest.skip(f"{what}: {fix}")


@pytest.fixture(scope="session")
def dlib_dir():
    from facezoo.models.fetch import FETCHABLE

    folder = models_dir() / "dlib"
    if not all((folder / f).is_file() for f in FETCHABLE["dlib"].installed):
        _missing(f"dlib models missing in {folder}", "run `facezoo models fetch dlib` (make test does it)")
    return folder


@pytest.fixture(scope="session")
def dlib():
    try:
        import dlib as module
    except ImportError:
        _missing("dlib is not installed", "pip install dlib-bin (in the test extra: pip install -e '.[test]')")
    return module


def rgb(image) -> np.ndarray:
    from PIL import Image

    return np.array(Image.open(io.BytesIO(image)).convert("RGB"))


@pytest.fixture(scope="session")
def insightface_images(tmp_path_factory):
    """{name: uint8 RGB} of the images in insightface's wheel (downloaded with pip, no dependencies)."""
    dest = tmp_path_factory.mktemp("insightface_wheel")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        INSIGHTFACE,
        "--no-deps",
        "--only-binary=:all:",
        "-q",
        "-d",
        str(dest),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        _missing(f"could not download {INSIGHTFACE}", (proc.stderr or "").strip()[-300:])
    with zipfile.ZipFile(wheels[0]) as zf:
        return {name: rgb(zf.read(f"insightface/data/images/{name}")) for name in ("t1.jpg", "Tom_Hanks_54745.png")}


@pytest.fixture(scope="session")
def photos(insightface_images):
    skimage_data = pytest.importorskip("skimage.data")
    return {
        "astronaut": skimage_data.astronaut(),
        "camera": np.stack([skimage_data.camera()] * 3, 2),
        "t1": insightface_images["t1.jpg"],
        "hanks": insightface_images["Tom_Hanks_54745.png"],
    }
