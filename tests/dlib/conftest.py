"""Shared fixtures for dlib's models: the converted files (`facezoo models fetch dlib`; make test runs it), dlib
itself (dlib-bin, the test extra) as the reference, and real photos that registry packages ship: scikit-image's
astronaut and camera, and insightface's wheel (t1.jpg, a group of six; Tom_Hanks_54745.png, a 112x112 face).
Missing files or dlib skip locally and fail under CI=true, as the MTCNN tests do."""

from __future__ import annotations

import os

import pytest

from facezoo.paths import models_dir


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


@pytest.fixture(scope="session")
def photos():
    """scikit-image's astronaut and camera, insightface's t1 and Tom Hanks (facezoo.sdk.samples)."""
    pytest.importorskip("skimage.data")
    from facezoo.errors import DataError
    from facezoo.sdk.samples import insightface_photos, skimage_photos

    try:
        extra = insightface_photos()
    except DataError as e:
        _missing("insightface's photos", str(e))
    return {**skimage_photos(), "t1": extra["t1.jpg"], "hanks": extra["Tom_Hanks_54745.png"]}
