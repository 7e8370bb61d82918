"""Real photos that registry packages ship, for demos and tests (nothing here runs at import).

skimage_photos()       scikit-image's astronaut (public domain, NASA) and camera, uint8 RGB (needs scikit-image)
insightface_photos()   the images in insightface's wheel: t1.jpg (a group of six people) and Tom_Hanks_54745.png
                       (a 112x112 face), via `pip download insightface==2.1 --no-deps` (needs the package registry)
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError

INSIGHTFACE = "insightface==2.1"  # pinned: the images are read from this wheel
INSIGHTFACE_IMAGES = ("t1.jpg", "Tom_Hanks_54745.png")


def skimage_photos() -> dict[str, np.ndarray]:
    """{"astronaut", "camera"}: uint8 (H, W, 3) RGB (the camera's grey replicated)."""
    from skimage import data

    return {"astronaut": data.astronaut(), "camera": np.stack([data.camera()] * 3, 2)}


def insightface_photos(wheel=None) -> dict[str, np.ndarray]:
    """{name: uint8 RGB} of INSIGHTFACE_IMAGES, from `wheel` (a path) or a fresh pip download (no dependencies)."""
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="facezoo-samples-") as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", INSIGHTFACE, "--no-deps", "--only-binary=:all:", "-q"]
            proc = subprocess.run([*cmd, "-d", tmp], capture_output=True, text=True)
            found = list(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or not found:
                raise DataError(f"could not download {INSIGHTFACE}: {(proc.stderr or '').strip()[-300:]}")
            wheel = found[0]
        with zipfile.ZipFile(wheel) as zf:
            return {
                name: np.array(Image.open(io.BytesIO(zf.read(f"insightface/data/images/{name}"))).convert("RGB"))
                for name in INSIGHTFACE_IMAGES
            }
