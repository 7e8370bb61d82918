"""MegaFace challenge 1 (and MegaFace-mask) from the files users have: lists, aligned images, noise lists and
devkit feature files; embedding through the shared feature cache; scoring raw and cleaned.

Layouts under --root (each piece is looked for in this order; the first found is used):

(a) MegaFace devkit: `templatelists/` or `devkit/templatelists/` holding `facescrub_features_list.json`
    ({"path": ["<identity>/<file>", ...], "id": ["<identity>", ...]}) and, per distractor size n,
    `megaface_features_list.json_<n>_1` ({"path": ["<a>/<b>/<file>", ...]}). The images named by these paths
    must be aligned crops (e.g. 112x112 ArcFace crops, as FaceX-Zoo's croppers write), in `facescrub_images/`,
    `facescrub/` or `FaceScrub/` and `megaface_images/`, `megaface/` or `MegaFace/` (or --probe-root /
    --distractor-root). Per-size lists that are nested are run as prefixes of one ordered distractor list in one
    pass; lists that are not nested are scored separately.
(b) InsightFace test pack (megaface_testpack_v1.0): `facescrub_lst` (one "<identity>/<file>" per line; identity
    = the folder) and `megaface_lst` (one "<a>/<b>/<file>" per line, the 1,000,000 distractors in order) beside
    `facescrub_images/` and `megaface_images/` (aligned 112x112). Without devkit size lists a size n means the
    first n lines of megaface_lst. If the pack's `devkit/templatelists/` is there, (a) wins for the lists.
(c) Devkit feature files (what InsightFace's gen_megaface.py writes, read with --features DIR): DIR/facescrub/
    <identity>/<file><ending> and DIR/megaface/<a>/<b>/<file><ending>, each one `read_feature` file, ending e.g.
    "_insightface.bin" (found from the files when there is just one). `write_feature_dir` writes this layout.
    MegaFace-mask feature dirs add DIR/masked_facescrub/ (FaceX-Zoo's masked probe features).

Noise lists (InsightFace's, for the cleaned protocol), in --root or --noise-dir: `facescrub_noises.txt` (one file
name per line, '#' comments) and `megaface_noises.txt` ('#' comments; "<a>/<b>/<file>", or its second
tab-separated field). A FaceScrub probe is matched by file name, a distractor by its last three path parts.

MegaFace-mask (FaceX-Zoo): the probes (queries) are masked FaceScrub images in a folder of the same structure
(--masked DIR); the genuine image g put into the gallery is the unmasked one, distractors are unmasked.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from . import megaface as mf
from .features import extract_features

PROBE_JSON = "facescrub_features_list.json"
DISTRACTOR_JSON = "megaface_features_list.json_{size}_1"
PROBE_LST = "facescrub_lst"
DISTRACTOR_LST = "megaface_lst"
PROBE_NOISES = "facescrub_noises.txt"
DISTRACTOR_NOISES = "megaface_noises.txt"
PROBE_DIRS = ("facescrub_images", "facescrub", "FaceScrub")
DISTRACTOR_DIRS = ("megaface_images", "megaface", "MegaFace")
_WORKERS = min(16, (os.cpu_count() or 1) * 2)


@dataclass
class MegaFaceLists:
    """Probe and distractor lists of one MegaFace layout.

    distractor_paths is the ordered union of the size lists; size_index[n] gives the rows of size n's list in it,
    or None when they are simply the first n rows. probe_noise / distractor_noise are None without noise lists.
    """

    layout: str
    probe_list: Path
    distractor_list: Path
    probe_paths: list[str]
    probe_ids: np.ndarray
    distractor_paths: list[str]
    size_index: dict[int, np.ndarray | None] = field(default_factory=dict)
    probe_noise: np.ndarray | None = None
    distractor_noise: np.ndarray | None = None

    @property
    def sizes(self) -> list[int]:
        return sorted(self.size_index)

    @property
    def has_noise(self) -> bool:
        return self.probe_noise is not None and self.distractor_noise is not None


# ----------------------------------------------------------------------------------------------------------
# lists
def templatelists_dir(root) -> Path | None:
    root = Path(root)
    for cand in (root / "templatelists", root / "devkit" / "templatelists", root):
        if (cand / PROBE_JSON).is_file():
            return cand
    return None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise DataError(f"{path}: cannot read the MegaFace list ({e.strerror}).") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); re-download the devkit list.") from None
    if not isinstance(data, dict) or not isinstance(data.get("path"), list):
        raise DataError(f"{path}: a MegaFace template list is a JSON object with a 'path' list; this one is not.")
    return data


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except OSError as e:
        raise DataError(f"{path}: cannot read the list ({e.strerror}).") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _tail(path: str, parts: int) -> str:
    return "/".join(re.split(r"[\\/]+", path.strip("/"))[-parts:])


def read_noises(root, noise_dir=None) -> tuple[set[str] | None, set[str] | None]:
    """(FaceScrub noise file names, MegaFace noise "<a>/<b>/<file>" keys); None for a list that is not there."""
    base = Path(noise_dir) if noise_dir is not None else Path(root)
    probe = distractor = None
    if (base / PROBE_NOISES).is_file():
        probe = {Path(ln.replace("\\", "/")).name for ln in _read_lines(base / PROBE_NOISES)}
    if (base / DISTRACTOR_NOISES).is_file():
        distractor = set()
        for ln in _read_lines(base / DISTRACTOR_NOISES):
            fields = ln.split("\t")
            distractor.add(_tail(fields[1] if len(fields) > 1 else fields[0], 3))
    return probe, distractor


def read_lists(root, sizes: Sequence[int] | None = None, noise_dir=None) -> MegaFaceLists:
    """The lists of layout (a) or (b) under root (module doc); sizes default to every size that has a list."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: MegaFace root folder not found; point --root at the devkit / test pack folder.")
    tl = templatelists_dir(root)
    if tl is not None:
        probe_list = tl / PROBE_JSON
        data = _read_json(probe_list)
        paths = [str(p) for p in data["path"]]
        if not isinstance(data.get("id"), list) or len(data["id"]) != len(paths):
            raise DataError(f"{probe_list}: needs an 'id' list as long as its 'path' list ({len(paths)}).")
        ids = np.asarray([str(i) for i in data["id"]])
        layout = "devkit"
    elif (root / PROBE_LST).is_file():
        probe_list = root / PROBE_LST
        paths = _read_lines(probe_list)
        bad = next((p for p in paths if len(re.split(r"[\\/]+", p.strip("/"))) < 2), None)
        if bad is not None:
            raise DataError(f"{probe_list}: line {bad!r} has no identity folder; lines are '<identity>/<file>'.")
        ids = np.asarray([re.split(r"[\\/]+", p.strip("/"))[-2] for p in paths])
        layout = "testpack"
    else:
        raise DataError(
            f"{root}: no probe list: expected templatelists/{PROBE_JSON} (MegaFace devkit) or "
            f"{PROBE_LST} (InsightFace test pack). Point --root at the folder holding them."
        )
    if not paths:
        raise DataError(f"{probe_list}: the probe list is empty.")
    dist_paths, size_index, dist_list = _distractors(root, tl, sizes)
    pn, dn = read_noises(root, noise_dir)
    lists = MegaFaceLists(layout, probe_list, dist_list, paths, ids, dist_paths, size_index)
    if pn is not None and dn is not None:
        lists.probe_noise = np.asarray([Path(p).name in pn for p in paths], dtype=bool)
        lists.distractor_noise = np.asarray([_tail(p, 3) in dn for p in dist_paths], dtype=bool)
    return lists


def _distractors(root: Path, tl: Path | None, sizes):
    json_sizes = (
        sorted(
            int(m.group(1))
            for p in tl.iterdir()
            if (m := re.fullmatch(r"megaface_features_list\.json_(\d+)_1", p.name))
        )
        if tl
        else []
    )
    if json_sizes:
        want = sorted({int(s) for s in sizes}) if sizes else json_sizes
        missing = [s for s in want if s not in json_sizes]
        if missing:
            raise DataError(
                f"{tl / DISTRACTOR_JSON.format(size=missing[0])}: no distractor list for size "
                f"{missing[0]}; lists here are for {json_sizes}. Choose --sizes among them."
            )
        per = {s: [str(p) for p in _read_json(tl / DISTRACTOR_JSON.format(size=s))["path"]] for s in want}
        for s, p in per.items():
            if len(p) != s:
                raise DataError(f"{tl / DISTRACTOR_JSON.format(size=s)}: {len(p)} paths, expected {s}.")
        union: dict[str, int] = {}
        for s in want:
            for p in per[s]:
                union.setdefault(p, len(union))
        index = {}
        for s in want:
            idx = np.fromiter((union[p] for p in per[s]), dtype=np.int64, count=s)
            index[s] = None if np.array_equal(idx, np.arange(s)) else idx
        return list(union), index, tl / DISTRACTOR_JSON.format(size=want[-1])
    lst = root / DISTRACTOR_LST
    if not lst.is_file():
        raise DataError(
            f"{root}: no distractor list: expected {DISTRACTOR_JSON.format(size='<n>')} in "
            f"templatelists/ (MegaFace devkit) or {DISTRACTOR_LST} (InsightFace test pack)."
        )
    paths = _read_lines(lst)
    if not paths:
        raise DataError(f"{lst}: the distractor list is empty.")
    want = sorted({int(s) for s in sizes}) if sizes else [s for s in mf.DEVKIT_SIZES if s < len(paths)] + [len(paths)]
    want = sorted(set(want))
    if want[0] < 1 or want[-1] > len(paths):
        raise ConfigError(
            f"--sizes {want}: {lst} lists {len(paths)} distractors; sizes must be within [1, {len(paths)}]."
        )
    return paths[: want[-1]], dict.fromkeys(want), lst


# ----------------------------------------------------------------------------------------------------------
# images
def find_dir(root, names: Sequence[str], given=None, what: str = "image") -> Path:
    if given is not None:
        if not Path(given).is_dir():
            raise DataError(f"{given}: {what} folder not found.")
        return Path(given)
    for n in names:
        if (Path(root) / n).is_dir():
            return Path(root) / n
    raise DataError(f"{root}: no {what} folder ({' / '.join(names)}); put it there or name it explicitly.")


def check_images(folder: Path, paths: Sequence[str], list_file) -> None:
    """DataError naming the first missing images (and the list naming them) before any model runs."""
    with concurrent.futures.ThreadPoolExecutor(_WORKERS) as pool:
        exists = list(pool.map(os.path.isfile, (str(folder / p) for p in paths), chunksize=4096))
    missing = [p for p, ok in zip(paths, exists) if not ok]
    if missing:
        shown = ", ".join(str(folder / p) for p in missing[:3])
        raise DataError(
            f"{len(missing)} image(s) listed in {list_file} are missing, e.g. {shown}. Check the image "
            "folder (--root / --probe-root / --distractor-root)."
        )


def image_loader(folder: Path, paths: Sequence[str], size) -> Callable[[int, int], np.ndarray]:
    """load(start, stop) -> uint8 (stop - start, H, W, 3): images decoded on threads, resized to size (H, W)."""
    from ..data.image import read_image_file, resize_image

    h, w = size

    def one(p: str) -> np.ndarray:
        return resize_image(read_image_file(folder / p), (h, w))

    def load(a: int, b: int) -> np.ndarray:
        out = np.empty((b - a, h, w, 3), dtype=np.uint8)
        with concurrent.futures.ThreadPoolExecutor(_WORKERS) as pool:
            for i, img in enumerate(pool.map(one, paths[a:b])):
                out[i] = img
        return out

    return load


def embed_megaface(
    embed,
    lists: MegaFaceLists,
    probe_dir,
    distractor_dir,
    *,
    masked_dir=None,
    flip: bool = True,
    batch_size: int = 256,
    device=None,
    cache_dir=None,
    log=None,
    progress: bool = False,
):
    """(probe, distractor, gallery or None) float32 features, each e + e_flip (or e), L2-normalised per image
    (InsightFace's gen_megaface). With masked_dir the probes come from it and the gallery from probe_dir.
    progress: a bar per image list (stderr, when it is a terminal)."""
    size = tuple(getattr(embed, "input_size", (112, 112)))

    def run(folder: Path, paths, name):
        key = f"megaface:{name}:{Path(folder).resolve()}:{len(paths)}:{_digest(paths)}:resize{size[0]}x{size[1]}"
        e, _ef = extract_features(
            embed,
            key,
            len(paths),
            image_loader(Path(folder), paths, size),
            flip=flip,
            batch_size=batch_size,
            device=device,
            cache_dir=cache_dir,
            combine=True,
            log=log,
            progress=progress,
            desc=name,
        )
        return _normalise(e)

    gallery = None
    if masked_dir is not None:
        probes = run(masked_dir, lists.probe_paths, "masked_facescrub")
        gallery = run(probe_dir, lists.probe_paths, "facescrub")
    else:
        probes = run(probe_dir, lists.probe_paths, "facescrub")
    dist = run(distractor_dir, lists.distractor_paths, "megaface")
    return probes, dist, gallery


def _digest(paths) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in paths:
        h.update(p.encode() + b"\n")
    return h.hexdigest()[:16]


def _normalise(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm in place (float32, blockwise to bound temporaries)."""
    for a in range(0, len(x), 1 << 16):
        blk = x[a : a + (1 << 16)]
        blk /= np.maximum(np.linalg.norm(blk, axis=1, keepdims=True), 1e-12)
    return x


# ----------------------------------------------------------------------------------------------------------
# devkit feature folders
def _feature_file(base: Path, path: str, parts: int, ending: str) -> Path:
    return base / (_tail(path, parts) + ending)


def detect_ending(folder: Path, first: str) -> str:
    """The file ending of a feature folder, from the files beside the first probe's feature."""
    probe = Path(_tail(first, 2))
    d = folder / probe.parent
    found = (
        sorted({f.name[len(probe.name) :] for f in d.glob(glob_escape(probe.name) + "*") if f.name != probe.name})
        if d.is_dir()
        else []
    )
    if len(found) != 1:
        raise ConfigError(
            f"{d}: cannot tell the feature file ending from {found or 'no files'} for {probe.name}; "
            "pass --feature-ending, e.g. _insightface.bin."
        )
    return found[0]


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def read_feature_dir(folder, lists: MegaFaceLists, ending: str | None = None, masked: bool = False):
    """(probe, distractor, gallery or None) features from a devkit feature folder (layout (c))."""
    folder = Path(folder)
    sub = {k: folder / k for k in ("facescrub", "megaface", "masked_facescrub")}
    for k in ("facescrub", "megaface") + (("masked_facescrub",) if masked else ()):
        if not sub[k].is_dir():
            raise DataError(
                f"{sub[k]}: missing; a feature folder holds facescrub/ and megaface/ "
                f"(and masked_facescrub/ for MegaFace-mask)."
            )
    ending = ending or detect_ending(sub["facescrub"], lists.probe_paths[0])

    def read(base: Path, paths, parts):
        files = [_feature_file(base, p, parts, ending) for p in paths]
        with concurrent.futures.ThreadPoolExecutor(_WORKERS) as pool:
            feats = list(pool.map(mf.read_feature, files, chunksize=1024))
        dims = {f.size for f in feats}
        if len(dims) > 1:
            odd = next(f for f, v in zip(files, feats) if v.size != feats[0].size)
            raise DataError(
                f"{odd}: {next(v.size for v in feats if v.size != feats[0].size)}-d but {files[0]} is "
                f"{feats[0].size}-d. Use features from one model."
            )
        return np.stack(feats)

    probes = read(sub["masked_facescrub"] if masked else sub["facescrub"], lists.probe_paths, 2)
    gallery = read(sub["facescrub"], lists.probe_paths, 2) if masked else None
    dist = read(sub["megaface"], lists.distractor_paths, 3)
    return probes, dist, gallery


def write_feature_dir(
    folder, lists: MegaFaceLists, probes, distractors, gallery=None, ending: str = "_facezoo.bin"
) -> None:
    """Write features as a devkit feature folder (layout (c)); with gallery, probes go to masked_facescrub/."""
    folder = Path(folder)
    jobs = []
    if gallery is not None:
        jobs += [
            (_feature_file(folder / "masked_facescrub", p, 2, ending), v) for p, v in zip(lists.probe_paths, probes)
        ]
        jobs += [(_feature_file(folder / "facescrub", p, 2, ending), v) for p, v in zip(lists.probe_paths, gallery)]
    else:
        jobs += [(_feature_file(folder / "facescrub", p, 2, ending), v) for p, v in zip(lists.probe_paths, probes)]
    jobs += [(_feature_file(folder / "megaface", p, 3, ending), v) for p, v in zip(lists.distractor_paths, distractors)]
    with concurrent.futures.ThreadPoolExecutor(_WORKERS) as pool:
        list(pool.map(lambda j: mf.write_feature(*j), jobs, chunksize=256))


# ----------------------------------------------------------------------------------------------------------
# scoring
RANKS = (1, 2, 3, 5, 10, 20, 50, 100)


def evaluate_lists(
    lists: MegaFaceLists,
    probes,
    distractors,
    gallery=None,
    *,
    clean: bool | None = None,
    metric: str = "cosine",
    far: float = 1e-6,
    ranks: Sequence[int] = RANKS,
    device=None,
    search: str = "torch",
    log=None,
    progress: bool = False,
) -> dict:
    """{"raw": {...}, "clean": {...} (when noise lists are there)} with each part {"identification": {size: ..},
    "verification": {size: ..}}. clean=True requires the noise lists, False skips them, None uses them if present.
    """
    if clean and not lists.has_noise:
        raise DataError(
            f"cleaned results need {PROBE_NOISES} and {DISTRACTOR_NOISES} (InsightFace's noise lists) in "
            "--root or --noise-dir."
        )
    variants = {"raw": (probes, distractors, gallery)}
    if (clean is None and lists.has_noise) or clean:
        p, d = mf.add_noise_dimension(probes, lists.probe_ids, lists.probe_noise, distractors, lists.distractor_noise)
        g = None
        if gallery is not None:
            g, _ = mf.add_noise_dimension(
                gallery, lists.probe_ids, lists.probe_noise, distractors[:0], np.zeros(0, bool)
            )
        variants["clean"] = (p, d, g)
    out = {}
    for name, (p, d, g) in variants.items():
        if log is not None:
            log(f"scoring {name}: {len(p):,} probes x {len(d):,} distractors ({search})")
        out[name] = _evaluate_sizes(
            lists, p, d, g, metric=metric, far=far, ranks=ranks, device=device, search=search, progress=progress
        )
    return out


def _evaluate_sizes(lists, p, d, g, **kw) -> dict:
    prefix = [s for s, idx in lists.size_index.items() if idx is None]
    res: dict = {"identification": {}, "verification": {}}
    parts = []
    if prefix:
        parts.append(mf.evaluate(p, lists.probe_ids, d, sizes=prefix, gallery_feats=g, **kw))
    for s, idx in lists.size_index.items():
        if idx is not None:
            r = mf.evaluate(p, lists.probe_ids, d[idx], sizes=[s], gallery_feats=g, **kw)
            parts.append(r)
    for r in parts:
        for k in res:
            res[k].update(r.get(k, {}))
    return {k: dict(sorted(v.items())) for k, v in res.items()}


def size_label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}K" if n % 1000 == 0 else str(n)


def summary(result: dict, far: float = 1e-6, prefix: str = "MegaFace") -> dict[str, dict]:
    """{benchmark: {"accuracy": value, ...}} for report.format_table: rank-1 at the largest size and TAR@FAR,
    raw and cleaned ("(R)", refined, as published tables label them)."""
    out = {}
    for variant, tag in (("raw", ""), ("clean", " (R)")):
        if variant not in result:
            continue
        ident, ver = result[variant]["identification"], result[variant]["verification"]
        n = max(ident)
        out[f"{prefix} Id {size_label(n)}{tag}"] = {"accuracy": ident[n]["rank1"], "size": n, **ident[n]}
        m = max(ver)
        out[f"{prefix} Ver {far:g}{tag}"] = {"accuracy": ver[m]["tar"], "size": m, **ver[m]}
    return out
