"""Named verification test sets: InsightFace .bin files, official pair lists (NAME:ROOT) and a YAML file listing
them (FaceX-Zoo's data_conf.yaml idea) -> {name: load(image_size) -> (uint8 images, issame)}, what
`evaluate_sets` and `facezoo.eval.run` take. Every pair list is parsed and its images checked before a model loads.

A sets file (`facezoo eval MODEL --sets sets.yaml`); relative paths are relative to the file:

    sets:
      - bin: faces_emore/lfw.bin          # name: the file stem, lfw
      - bin: /data/faces_emore/cfp_fp.bin
        name: cfp_fp_bin
      - pairs: calfw:/data/calfw          # as --pairs takes it; name: the protocol name, calfw
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..config import from_dict
from ..errors import ConfigError
from .pairs import load_pair_images, read_pairs
from .verification import bin_sets, keyed

Load = Callable[[tuple[int, int]], tuple]


@dataclass
class SetSpec:
    """One entry of a sets file: exactly one of bin (a .bin file) or pairs ("NAME:ROOT"), and an optional name."""

    bin: str | None = None
    pairs: str | None = None
    name: str | None = None


@dataclass
class SetsFile:
    sets: list


def _pairs_key(name: str, pairset) -> str:
    """Cache key of a pair set: its name and every image file's path, size and modification time, in order."""
    h = hashlib.sha256()
    for p in (q for pair in zip(pairset.paths1, pairset.paths2) for q in pair):
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return f"pairs:{name}:{h.hexdigest()}"


def pair_set(spec: str) -> tuple[str, Load]:
    """(protocol name, loader) of "NAME:ROOT" (e.g. "lfw:/data/lfw"); the list is read and its images checked now."""
    pairset = read_pairs(spec)
    name = str(spec).partition(":")[0].strip().lower()
    return name, keyed(lambda size, ps=pairset: load_pair_images(ps, size), _pairs_key(name, pairset))


def read_sets_file(path) -> list[SetSpec]:
    """The entries of a sets file, typed and checked: unknown keys name the nearest valid one, every entry has
    exactly one of bin / pairs, relative paths are made relative to the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: sets file not found; give a YAML file with a 'sets:' list (see --help)") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    try:
        top = from_dict(SetsFile, data if data is not None else {})
    except (ConfigError, TypeError) as e:
        msg = "missing the 'sets:' list" if isinstance(e, TypeError) else str(e)
        raise ConfigError(f"{path}: {msg}") from None
    if not isinstance(top.sets, list) or not top.sets:
        raise ConfigError(f"{path}: 'sets' must be a non-empty list of entries such as '- bin: lfw.bin'")
    out = []
    for i, entry in enumerate(top.sets):
        try:
            spec = from_dict(SetSpec, entry, prefix=f"sets[{i}].")
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        if (spec.bin is None) == (spec.pairs is None):
            raise ConfigError(f"{path}: sets[{i}] needs exactly one of 'bin: FILE.bin' or 'pairs: NAME:ROOT'")
        if spec.bin is not None:
            spec.bin = str(path.parent / Path(spec.bin).expanduser())  # an absolute path stays as it is
        else:
            proto, sep, root = spec.pairs.partition(":")
            if sep and root:
                spec.pairs = f"{proto}:{path.parent / Path(root).expanduser()}"
        out.append(spec)
    return out


def resolve_sets(bins=(), pairs=(), files=()) -> dict[str, Load]:
    """{name: loader} of .bin files (named by stem), "NAME:ROOT" pair lists (named by protocol) and the entries
    of sets files, in that order; ConfigError for a name given twice. Pair lists are read and their images
    checked here; a .bin file is read when the first model needs it."""
    entries: list[tuple[str, str, str | None]] = [("bin", str(b), None) for b in bins]
    entries += [("pairs", str(p), None) for p in pairs]
    for f in files:
        entries += [("bin", s.bin, s.name) if s.bin else ("pairs", s.pairs, s.name) for s in read_sets_file(f)]
    out: dict[str, Load] = {}
    for kind, value, name in entries:
        if kind == "bin":  # read when first needed: load_bin_images names a missing or damaged file
            default, load = next(iter(bin_sets([value]).items()))
        else:
            default, load = pair_set(value)
        name = name or default
        if name in out:
            raise ConfigError(
                f"test set name {name!r} is given twice; name one of them (name: in a sets file, or rename the file)"
            )
        out[name] = load
    return out


def as_sets(sets) -> dict[str, Load]:
    """`sets` as {name: loader}: a dict passes through; a path or a list of them is sorted by form: *.bin files,
    *.yaml / *.yml sets files, anything else a "NAME:ROOT" pair list."""
    if isinstance(sets, dict):
        return sets
    items = [sets] if isinstance(sets, (str, os.PathLike)) else list(sets)
    suffix = [Path(str(s)).suffix.lower() for s in items]
    return resolve_sets(
        bins=[s for s, x in zip(items, suffix) if x == ".bin"],
        pairs=[s for s, x in zip(items, suffix) if x not in (".bin", ".yaml", ".yml")],
        files=[s for s, x in zip(items, suffix) if x in (".yaml", ".yml")],
    )
