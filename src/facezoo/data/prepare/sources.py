"""The input of a preparation run: identities and their photos, from an identity tree or a list file.

Tree: RAW_DIR/<identity>/... ; every file anywhere below an identity folder belongs to it (nested albums are
fine). A file is read as a photo when its suffix is an image suffix or its first bytes are an image magic number;
other files are `not_an_image`, files directly in RAW_DIR are `outside_identity`, hidden files and everything in
hidden folders (name starting with '.') are `hidden`. None of them is dropped silently: each becomes a report row.
List file: `path label` lines (data.folders.list_samples); identity names are the labels, zero-padded so that
their sorted order is the numeric one.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import DataError
from ..folders import IMAGE_SUFFIXES, list_samples
from ..image import image_ext


@dataclass
class Identity:
    """One person: a name and the photos (absolute paths, sorted) filed under it."""

    name: str
    files: list[Path] = field(default_factory=list)

    def fingerprint(self) -> str:
        """Digest of the photo list (path, size, mtime): a changed folder is prepared again on resume."""
        h = hashlib.sha256(self.name.encode())
        for p in self.files:
            try:
                st = p.stat()
                h.update(f"\0{p}\0{st.st_size}\0{st.st_mtime_ns}".encode())
            except OSError:
                h.update(f"\0{p}\0missing".encode())
        return h.hexdigest()[:16]


@dataclass
class Junk:
    """A file that is not a photo of an identity, with the reason (a report row)."""

    path: Path
    identity: str
    status: str
    detail: str = ""


def shown_path(path: Path, root: Path) -> str:
    """A file as the report names it: relative to the input root when inside it."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _is_photo(path: Path) -> bool:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            return image_ext(f.read(16)) != "bin"
    except OSError:
        return True  # unreadable: let the photo step report it


def walk_tree(root: Path) -> tuple[list[Identity], list[Junk]]:
    """Identities (sorted by name) and junk files of an identity tree."""
    identities: list[Identity] = []
    junk: list[Junk] = []
    for entry in sorted(root.iterdir()):
        if entry.is_file():
            status = "hidden" if entry.name.startswith(".") else "outside_identity"
            junk.append(Junk(entry, "", status, "files belong in RAW_DIR/<identity>/"))
        elif entry.is_dir():
            ident = Identity(entry.name)
            hidden_root = entry.name.startswith(".")
            for folder, dirs, files in os.walk(entry):
                dirs.sort()
                rel = Path(folder).relative_to(root)
                hidden = hidden_root or any(part.startswith(".") for part in rel.parts)
                for name in sorted(files):
                    p = Path(folder) / name
                    if hidden or name.startswith("."):
                        junk.append(Junk(p, entry.name, "hidden", "hidden file or folder, not read"))
                    elif _is_photo(p):
                        ident.files.append(p)
                    else:
                        junk.append(Junk(p, entry.name, "not_an_image", f"suffix {p.suffix or 'none'!r}"))
            if ident.files and not hidden_root:
                identities.append(ident)
    return identities, junk


def read_list(list_path: Path) -> tuple[list[Identity], list[Junk]]:
    """Identities from a `path label` list file (paths relative to its folder); names are zero-padded labels."""
    samples = list_samples(list_path)
    width = len(str(max(label for _, label in samples)))
    by_label: dict[int, list[Path]] = {}
    for path, label in samples:
        by_label.setdefault(label, []).append(path)
    identities = [Identity(f"{label:0{width}d}", sorted(files)) for label, files in sorted(by_label.items())]
    return identities, []


def collect(raw) -> tuple[list[Identity], list[Junk]]:
    """Identities and junk of RAW (a folder tree or a list file)."""
    raw = Path(raw)
    if raw.is_dir():
        identities, junk = walk_tree(raw)
    elif raw.is_file():
        identities, junk = read_list(raw)
    else:
        raise DataError(f"{raw}: not found. Give a folder with one sub-folder per person, or a 'path label' list.")
    if not identities:
        raise DataError(
            f"{raw}: no identity with photos found. Expected RAW_DIR/<person>/<photo> (any image format, nested)."
        )
    return identities, junk
