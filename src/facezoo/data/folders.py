"""Image-file datasets: an identity-per-folder tree, or a `relative/path label` list file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import EncodedImageDataset

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


class FileListDataset(EncodedImageDataset):
    """Samples given as (path, label): `(uint8 HxWx3 RGB image, int label)`, or None for a skipped corrupt file."""

    def __init__(self, samples: list[tuple[Path, int]], skip_corrupt: bool = False):
        self.samples = samples
        self.labels = np.fromiter((label for _, label in samples), dtype=np.int64, count=len(samples))
        self.num_classes = int(self.labels.max()) + 1 if len(samples) else 0
        self.skip_corrupt = skip_corrupt

    def __len__(self) -> int:
        return len(self.samples)

    def sample_id(self, i: int) -> str:
        """The file path of sample i."""
        return str(self.samples[i][0])

    def read_encoded(self, i: int) -> bytes:
        """The stored (encoded) bytes of sample i."""
        path = self.samples[i][0]
        try:
            return path.read_bytes()
        except OSError as e:
            raise DataError(
                f"{path}: cannot read image: {e.strerror}. Check the file or remove it from the dataset."
            ) from None

    def where(self, i: int) -> str:
        return str(self.samples[i][0])


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def folder_samples(root) -> list[tuple[Path, int]]:
    """(path, label) for `root/<identity>/<image>`; labels index the sorted identity folder names."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found. Check the path.")
    identities = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not identities:
        raise DataError(f"{root}: no identity sub-folders. Expected one folder per identity holding its images.")
    samples = []
    for label, folder in enumerate(identities):
        images = sorted(p for p in folder.iterdir() if is_image_file(p))
        if not images:
            raise DataError(
                f"{folder}: identity folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))}). "
                "Add images or remove the folder."
            )
        samples.extend((p, label) for p in images)
    return samples


def list_samples(list_path, root=None) -> list[tuple[Path, int]]:
    """(path, label) from `path label` lines; relative paths are under `root` (default: the list file's folder)."""
    list_path = Path(list_path)
    base = Path(root) if root is not None else list_path.parent
    try:
        lines = list_path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DataError(f"{list_path}: cannot read list file: {e.strerror}. Check the path.") from None
    except UnicodeDecodeError:
        raise DataError(f"{list_path}: not a text list file (expected 'relative/path label' lines).") from None
    samples = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.rsplit(None, 1)
        if len(fields) != 2 or not fields[1].isdigit():
            raise DataError(
                f"{list_path}:{n}: expected 'relative/path label' (label a non-negative integer), "
                f"got {line[:80]!r}. Fix the line."
            )
        samples.append((base / fields[0].strip(), int(fields[1])))
    if not samples:
        raise DataError(f"{list_path}: no samples. Expected 'relative/path label' lines.")
    return samples


class ImageFolderDataset(FileListDataset):
    """`root/<identity>/<image>`; labels 0..C-1 by sorted folder name."""

    def __init__(self, root, skip_corrupt: bool = False):
        self.root = Path(root)
        super().__init__(folder_samples(self.root), skip_corrupt)
        self.classes = sorted({p.parent.name for p, _ in self.samples})  # index = label


class ListFileDataset(FileListDataset):
    """Lines `relative/path label` (or absolute paths); relative to `root`, default the list file's folder."""

    def __init__(self, list_path, root=None, skip_corrupt: bool = False):
        self.list_path = Path(list_path)
        super().__init__(list_samples(self.list_path, root), skip_corrupt)
