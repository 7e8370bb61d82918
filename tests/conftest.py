"""Every test runs with FACEZOO_HOME in its own temporary folder, so feature caches and fetched models never land
in the user's ~/.cache. Models fetched by `make test` (facezoo models fetch mtcnn) stay visible through a link."""

from __future__ import annotations

import pytest

from facezoo.paths import models_dir

_REAL_MODELS = models_dir()  # resolved once, before any test changes the environment


@pytest.fixture(autouse=True)
def _facezoo_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("facezoo_home")
    if _REAL_MODELS.is_dir():
        (home / "models").symlink_to(_REAL_MODELS, target_is_directory=True)
    monkeypatch.setenv("FACEZOO_HOME", str(home))
    yield home
