"""`facezoo data mask`: add masks to a whole set, written atomically, deterministic from the seed.

Inputs (SOURCES, found from what is on disk, or named with kind=):
  bin       a verification .bin: one image of each pair masked (the second; pairs="both" masks both), the
            masked-verification protocol (a masked probe against an unmasked reference); OUT is the new .bin
  recordio  an InsightFace RecordIO folder (train.rec): every image masked with probability p, labels and
            identities kept (p=0.5 gives FaceX-Zoo's mixed normal + masked training set)
  megaface  a MegaFace devkit / test pack root (eval/megaface_data.py layouts): the FaceScrub probes it lists are
            masked into OUT/<identity>/<file>, the folder `facezoo eval-megaface --masked OUT` reads
  folder    any folder of images (nested, e.g. one sub-folder per identity): the tree mirrored into OUT; other
            files are copied unchanged
Landmarks: aligned crops (the default) use the alignment template's points scaled to the image
(geometry.arcface_template); `landmarks=FILE` gives points per image ('key x1 y1 ... xP yP' lines, P of a known
layout: 5, 68, 98, 106; key = the path relative to the source for folders and MegaFace, the 0-based image index for
RecordIO and .bin); `detect=NAME` finds them with a facezoo detector (largest face; no face: the image is kept
unmasked and counted).

Image i (in the set's order) is masked with np.random.default_rng([seed, TAG, i]), so the output does not depend on
`workers`. Outputs appear whole or not at all (io.staged_dir / atomic_write), with mask.json (the options and
counts) beside folder outputs. `preview` writes a contact sheet PNG of originals beside their masked results.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data.image import decode_image, encode_image, image_ext, resize_image
from ..errors import ConfigError, DataError
from ..io import atomic_write, staged_dir
from ..registry import Registry
from .landmarks import face_landmarks, template_landmarks
from .masker import Masker

SOURCES: Registry = Registry("mask input")
TAG = 0x3A51  # the seed stream of `facezoo data mask`
PREVIEW_SIDE = 112


@dataclass
class MaskSetOptions:
    """What `mask_set` does; the CLI flags of `facezoo data mask` one to one."""

    method: str = "3d"
    texture: str | None = None  # textures.py spec; None = InsightFace's mix
    occluders: str | None = None  # e.g. "glasses:0.2,hand:0.1"
    p: float = 1.0  # probability that an image gets a mask
    seed: int = 0
    kind: str | None = None  # bin | recordio | megaface | folder; None = found from the source
    pairs: str = "one"  # bin: "one" (the second image of each pair) or "both"
    landmarks: str | None = None  # a landmarks file
    detect: str | None = None  # a detector name / spec
    device: str = "cpu"  # for the detector
    probe_root: str | None = None  # megaface: the FaceScrub image folder (default found under the root)
    quality: int = 95  # JPEG quality of re-encoded images
    workers: int = 0  # processes (0: this one)
    preview: str | None = None  # contact sheet PNG path
    preview_count: int = 16


# --------------------------------------------------------------------------------------------- per image

_STATE: dict = {}


def _init(options: MaskSetOptions, landmarks: dict | None) -> None:
    """Per process: the masker, the landmarks table and (lazily) the detector."""
    _STATE.clear()
    _STATE.update(options=options, masker=Masker(options.method, options.texture, options.p, options.occluders),
                  landmarks=landmarks)  # fmt: skip


def _init_worker(options: MaskSetOptions, landmarks: dict | None) -> None:
    """A worker process: one torch thread (the pool is the parallelism), then _init."""
    import torch

    torch.set_num_threads(1)
    _init(options, landmarks)


def _points(key, image: np.ndarray):
    """The landmarks of one image: from the table, the detector, or the template (aligned crops); None: no face."""
    o: MaskSetOptions = _STATE["options"]
    table = _STATE["landmarks"]
    if table is not None:
        return table.get(str(key))
    if o.detect:
        if "detector" not in _STATE:
            from ..sdk.pipeline import build_detector

            _STATE["detector"] = build_detector(o.detect, o.device)
        from ..data.prepare.faces import detect, largest

        dets = detect(_STATE["detector"], image, 1024)
        if len(dets) == 0:
            return None
        return dets.kps[largest(dets.boxes, image.shape[:2])]
    return template_landmarks(image.shape[:2])


def _job(job: tuple) -> tuple:
    """(index, key, where, encoded bytes, mask?, want preview) -> (index, bytes out, status, texture, preview).

    key: the image's name in a landmarks file; where: the file and record, for error messages."""
    index, key, where, data, mask, preview = job
    if not mask:
        return index, data, "kept", None, None
    o: MaskSetOptions = _STATE["options"]
    image = decode_image(data, where=where)
    points = _points(key, image)
    if points is None:
        return index, data, "no_face", None, None
    lm = face_landmarks(points, where=f"{where}: landmarks")
    result = _STATE["masker"](image, lm, np.random.default_rng([o.seed, TAG, index]))
    fmt = "png" if image_ext(data) == "png" else "jpeg"
    out = encode_image(result.image, fmt, quality=o.quality)
    status = "masked" if result.texture or result.occluders else "unchanged"
    tiles = (_tile(image), _tile(result.image)) if preview else None
    return index, out, status, result.texture, tiles


def _tile(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    s = PREVIEW_SIDE / max(h, w)
    small = resize_image(image, (max(1, round(h * s)), max(1, round(w * s))))
    tile = np.full((PREVIEW_SIDE, PREVIEW_SIDE, 3), 255, np.uint8)
    tile[: small.shape[0], : small.shape[1]] = small
    return tile


def _run(jobs, total: int, options: MaskSetOptions, landmarks, counts: Counter, textures: Counter, previews: dict):
    """Yield (index, bytes) in job order, masking in `workers` processes; counts statuses, textures and previews."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="img", desc="mask", disable=not sys.stderr.isatty())
    pool = None
    try:
        if options.workers <= 1:
            _init(options, landmarks)
            results = map(_job, jobs)
        else:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            pool = ctx.Pool(options.workers, initializer=_init_worker, initargs=(options, landmarks))
            results = pool.imap(_job, jobs, chunksize=16)
        for index, data, status, texture, tiles in results:
            counts[status] += 1
            if texture:
                textures[texture] += 1
            if tiles is not None:
                previews[index] = tiles
            bar.update(1)
            yield index, data
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        bar.close()


def _preview_set(n: int, count: int) -> set[int]:
    return set(np.linspace(0, n - 1, min(n, count)).round().astype(int).tolist()) if n and count > 0 else set()


# --------------------------------------------------------------------------------------------- sources


def _is_megaface(p: Path) -> bool:
    from ..eval.megaface_data import PROBE_LST, templatelists_dir

    return p.is_dir() and (templatelists_dir(p) is not None or (p / PROBE_LST).is_file())


def detect_kind(src: Path) -> str:
    """The SOURCES name for what is at `src`."""
    if src.is_file() and src.suffix.lower() == ".bin":
        return "bin"
    if (src.is_dir() and (src / "train.rec").is_file()) or (src.is_file() and src.suffix.lower() == ".rec"):
        return "recordio"
    if _is_megaface(src):
        return "megaface"
    if src.is_dir():
        return "folder"
    raise DataError(
        f"{src}: not a set `facezoo data mask` reads: give a verification .bin, a RecordIO folder (train.rec), a "
        "MegaFace root (templatelists/ or facescrub_lst) or a folder of images."
    )


@SOURCES.register("bin")
def _mask_bin(src: Path, out: Path, o: MaskSetOptions, landmarks, stats) -> None:
    from ..data.verification_bin import read_bin, write_bin

    if out.suffix.lower() != ".bin" or out.is_dir():
        raise ConfigError(f"{out}: the output of a .bin source is a new .bin file, e.g. {src.stem}_masked.bin")
    images, issame = read_bin(src)
    view = _preview_set(len(images) // 2, o.preview_count)
    jobs = (
        (
            i,
            i,
            f"{src}: image {i}",
            data,
            o.pairs == "both" or i % 2 == 1,
            i // 2 in view and (o.pairs == "both" or i % 2 == 1),
        )
        for i, data in enumerate(images)
    )
    masked = [data for _, data in _run(jobs, len(images), o, landmarks, *stats)]
    write_bin(out, masked, issame)


@SOURCES.register("recordio")
def _mask_recordio(src: Path, out: Path, o: MaskSetOptions, landmarks, stats) -> None:
    from ..data.pack import IDENTITIES_FILE, _groups_of, write_insightface
    from ..data.recordio import RecordDataset
    from ..data.tfrecord import read_names

    ds = RecordDataset(src)
    if len(ds) == 0:
        raise DataError(f"{src}: no images to mask.")
    groups = _groups_of(ds)
    order = [i for _, items in groups for i in items]  # the order write_insightface stores them in
    view = {order[j] for j in _preview_set(len(order), o.preview_count)}
    jobs = ((i, i, ds.where(i), ds.read_encoded(i), True, i in view) for i in order)
    stream = _run(jobs, len(order), o, landmarks, *stats)
    folder = src if src.is_dir() else src.parent
    names = read_names(folder / IDENTITIES_FILE, ds.num_classes)
    size = tuple(ds.image_size) if ds.image_size else decode_image(ds.read_encoded(0), ds.where(0)).shape[:2]
    try:
        with staged_dir(out) as tmp:
            write_insightface(tmp, groups, lambda i: _next(stream, i), size, names)
            _write_meta(tmp, src, o, stats)
    finally:
        stream.close()


def _next(stream, expected: int) -> bytes:
    index, data = next(stream)
    if index != expected:  # the stream follows the writer's order by construction
        raise RuntimeError(f"mask stream out of order: {index} != {expected}")
    return data


@SOURCES.register("megaface")
def _mask_megaface(src: Path, out: Path, o: MaskSetOptions, landmarks, stats) -> None:
    from ..eval import megaface_data as md

    lists = md.read_lists(src)
    probe_dir = md.find_dir(src, md.PROBE_DIRS, o.probe_root, "FaceScrub image")
    md.check_images(probe_dir, lists.probe_paths, lists.probe_list)
    _mask_files(probe_dir, lists.probe_paths, out, o, landmarks, stats, copy_rest=False)


@SOURCES.register("folder")
def _mask_folder(src: Path, out: Path, o: MaskSetOptions, landmarks, stats) -> None:
    from ..data.folders import IMAGE_SUFFIXES

    if out.resolve().is_relative_to(src.resolve()):
        raise ConfigError(f"{out}: the output folder lies inside the source {src}; choose a folder outside it")
    files = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
    images = [f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise DataError(f"{src}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under this folder.")
    _mask_files(src, images, out, o, landmarks, stats, copy_rest=[f for f in files if f not in set(images)])


def _mask_files(root: Path, rel: list[str], out: Path, o, landmarks, stats, copy_rest) -> None:
    view = _preview_set(len(rel), o.preview_count)

    def read(i: int, r: str) -> bytes:
        try:
            return (root / r).read_bytes()
        except OSError as e:
            raise DataError(f"{root / r}: cannot read: {e.strerror}.") from None

    jobs = ((i, r, str(root / r), read(i, r), True, i in view) for i, r in enumerate(rel))
    stream = _run(jobs, len(rel), o, landmarks, *stats)
    try:
        with staged_dir(out) as tmp:
            for (_, data), r in zip(stream, rel):
                target = tmp / r
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            for r in copy_rest or ():
                (tmp / r).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / r, tmp / r)
            _write_meta(tmp, root, o, stats)
    finally:
        stream.close()


def _write_meta(folder: Path, src: Path, o: MaskSetOptions, stats) -> None:
    counts, textures, _ = stats
    meta = {"source": str(src), "options": asdict(o), "counts": dict(counts), "textures": dict(textures)}
    (folder / "mask.json").write_text(json.dumps(meta, indent=2, default=str))


# --------------------------------------------------------------------------------------------- landmarks file


def read_landmarks(path) -> dict[str, np.ndarray]:
    """{key: (P, 2) points} from 'key x1 y1 ... xP yP' lines ('#' comments); P of a known layout."""
    from ..sdk.landmarks import LANDMARK_LAYOUTS

    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the landmarks file ({e}).") from None
    table = {}
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, *values = line.split()
        try:
            flat = np.asarray([float(v) for v in values], np.float64)
        except ValueError:
            raise DataError(f"{path}:{n}: expected 'key x1 y1 ... xP yP' numbers, got {line[:80]!r}") from None
        pts = flat.reshape(-1, 2) if len(flat) % 2 == 0 else flat[:0].reshape(0, 2)
        if len(values) % 2 or str(len(pts)) not in LANDMARK_LAYOUTS or not np.isfinite(pts).all():
            raise DataError(
                f"{path}:{n}: {len(values)} values; give P (x, y) pairs with P one of "
                f"{', '.join(sorted(LANDMARK_LAYOUTS.names(), key=int))}, all finite."
            )
        table[key] = pts
    return table


# --------------------------------------------------------------------------------------------- entry point


def mask_set(src, out, options: MaskSetOptions | None = None) -> dict:
    """Mask the set at `src` into `out` (module doc); returns a summary with counts and the paths written."""
    o = options or MaskSetOptions()
    src, out = Path(src), Path(out)
    if not src.exists():
        raise DataError(f"{src}: not found. Give a .bin, a RecordIO folder, a MegaFace root or an image folder.")
    if o.landmarks and o.detect:
        raise ConfigError("give landmarks=FILE or detect=NAME, not both")
    if o.pairs not in ("one", "both"):
        raise ConfigError(f"pairs must be 'one' or 'both', got {o.pairs!r}")
    if o.workers < 0 or o.preview_count < 0:
        raise ConfigError("workers and preview_count must be >= 0")
    if not 1 <= o.quality <= 100:
        raise ConfigError(f"quality {o.quality}: a JPEG quality in 1..100")
    Masker(o.method, o.texture, o.p, o.occluders)  # check the options before any work
    kind = o.kind or detect_kind(src)
    landmarks = read_landmarks(o.landmarks) if o.landmarks else None
    counts, textures, previews = Counter(), Counter(), {}
    t0 = time.perf_counter()
    SOURCES.get(kind)(src, out, o, landmarks, (counts, textures, previews))
    result = {"kind": kind, "source": str(src), "out": str(out), **dict(counts), "textures": dict(textures)}
    if o.preview and previews:
        sheet = contact_sheet([previews[i] for i in sorted(previews)])
        with atomic_write(o.preview, "wb") as f:
            f.write(encode_image(sheet, "png"))
        result["preview"] = str(o.preview)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return result


def contact_sheet(pairs: list[tuple[np.ndarray, np.ndarray]], cols: int = 4, gap: int = 4) -> np.ndarray:
    """uint8 grid of (original, masked) tile pairs, `cols` pairs per row, white gaps (a wider one between pairs)."""
    if not pairs:
        raise DataError("contact_sheet: no images to show.")
    th, tw = pairs[0][0].shape[:2]
    cols = max(1, min(cols, len(pairs)))
    rows = -(-len(pairs) // cols)
    pw = 2 * tw + gap
    sheet = np.full((rows * (th + gap) + gap, cols * (pw + 3 * gap) + gap, 3), 255, np.uint8)
    for k, (a, b) in enumerate(pairs):
        r, c = divmod(k, cols)
        y, x = gap + r * (th + gap), 2 * gap + c * (pw + 3 * gap)
        sheet[y : y + th, x : x + tw] = a
        sheet[y : y + th, x + tw + gap : x + pw] = b
    return sheet
