"""Where facezoo keeps downloaded models and cached features: $FACEZOO_HOME, else $XDG_CACHE_HOME/facezoo,
else ~/.cache/facezoo. Nothing is created until a caller writes there."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    if os.environ.get("FACEZOO_HOME"):
        return Path(os.environ["FACEZOO_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "facezoo"


def models_dir() -> Path:
    """Model files fetched by `facezoo models fetch` (one sub-folder per model)."""
    return home() / "models"


def features_dir() -> Path:
    """Default cache of extracted evaluation features."""
    return home() / "features"
