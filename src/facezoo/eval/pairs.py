"""Pair-set protocols read from raw image folders and their official pair lists: LFW, CALFW, CPLFW, CFP, RFW.

Every reader returns a `PairSet` whose pairs are already in *fold-contiguous* order, so that
`verification_metrics` (contiguous KFold without shuffle) reproduces the official 10 folds:

- LFW `pairs.txt`: header `10 300`, then per fold 300 matched + 300 mismatched lines; file order is fold order
  (fold k = pairs 600k .. 600k+599).
- CALFW / CPLFW `pairs_CALFW.txt` / `pairs_CPLFW.txt`: two lines per pair, `image label`; the file lists the 3000
  matched pairs first (CALFW labels them with their fold 1..10, CPLFW with 1) and the 3000 mismatched pairs after
  (label 0). Fold k = matched pairs 300k .. 300k+299 followed by mismatched pairs 300k .. 300k+299 (FaceX-Zoo's
  reading), so the PairSet reorders the file into 10 x (300 same + 300 diff).
- CFP `Protocol/Split/<FP|FF>/01..10/{same,diff}.txt`: fold k = split k, its 350 same then its 350 diff pairs.
- RFW `txts/<race>/<race>_pairs.txt`: LFW's line format without a header, 6000 pairs; file order is fold order
  (fold k = pairs 600k .. 600k+599).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.image import read_image_file, resize_image
from ..errors import ConfigError, DataError
from ..registry import Registry, did_you_mean

PAIR_PROTOCOLS = Registry("pair protocol")
RFW_RACES = ("African", "Asian", "Caucasian", "Indian")
NFOLDS = 10
_MISSING_SHOWN = 5


@dataclass
class PairSet:
    """N image pairs: (paths1[i], paths2[i]) with issame[i]; folds[i] the official fold id (0-based) or None."""

    name: str
    paths1: list[Path]
    paths2: list[Path]
    issame: np.ndarray
    folds: np.ndarray | None = None

    def __post_init__(self):
        self.issame = np.asarray(self.issame, dtype=bool)
        if self.folds is not None:
            self.folds = np.asarray(self.folds, dtype=np.int64)
        n = len(self.issame)
        if len(self.paths1) != n or len(self.paths2) != n or (self.folds is not None and len(self.folds) != n):
            raise DataError(f"pair set {self.name}: paths1, paths2, issame and folds must all have {n} entries")

    def __len__(self) -> int:
        return len(self.issame)


# ---------------------------------------------------------------- shared helpers


def _read_lines(path) -> list[tuple[int, list[str]]]:
    """(1-based line number, whitespace-split fields) for every non-blank line of a text file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise DataError(f"{path}: cannot read pair list: {e.strerror}. Check the path.") from None
    return [(i, line.split()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def _int(field: str, path, lineno: int, what: str) -> int:
    try:
        return int(field)
    except ValueError:
        raise DataError(f"{path}:{lineno}: {what} '{field}' is not an integer; the official file is needed.") from None


def check_images_exist(pairset: PairSet, where) -> None:
    """One DataError listing the first few missing images (and how many are missing) if any is absent."""
    missing = [str(p) for p in dict.fromkeys([*pairset.paths1, *pairset.paths2]) if not Path(p).is_file()]
    if missing:
        shown = ", ".join(missing[:_MISSING_SHOWN])
        more = f" (and {len(missing) - _MISSING_SHOWN} more)" if len(missing) > _MISSING_SHOWN else ""
        raise DataError(
            f"{where}: {len(missing)} image(s) of pair set '{pairset.name}' are missing: {shown}{more}. "
            "Point the image root at the folder that holds them."
        )


def _pick_dir(root: Path, candidates: list[str], probe: Path | None) -> Path:
    """The first root/candidate holding `probe` (a relative image path), else root/candidates[0] if it is a folder."""
    dirs = [root / c for c in candidates]
    if probe is not None:
        for d in dirs:
            if (d / probe).is_file():
                return d
    for d in dirs:
        if d.is_dir():
            return d
    return root


def _find_file(root: Path, names: list[str], what: str) -> Path:
    """root itself if it is a file, else the first root/name that exists; DataError naming the tried paths."""
    if root.is_file():
        return root
    for n in names:
        if (root / n).is_file():
            return root / n
    tried = ", ".join(str(root / n) for n in names)
    raise DataError(f"{what} not found (tried {tried}). Pass the dataset folder that holds it.")


def _lfw_line(fields: list[str], path, lineno: int) -> tuple[str, str, bool]:
    """`name n1 n2` (same) or `name1 n1 name2 n2` (different) -> relative image paths name/name_%04d.jpg."""
    if len(fields) == 3:
        name, a, b = fields
        n1, n2 = _int(a, path, lineno, "image number"), _int(b, path, lineno, "image number")
        return f"{name}/{name}_{n1:04d}.jpg", f"{name}/{name}_{n2:04d}.jpg", True
    if len(fields) == 4:
        name1, a, name2, b = fields
        n1, n2 = _int(a, path, lineno, "image number"), _int(b, path, lineno, "image number")
        return f"{name1}/{name1}_{n1:04d}.jpg", f"{name2}/{name2}_{n2:04d}.jpg", False
    raise DataError(
        f"{path}:{lineno}: expected 'name n1 n2' or 'name1 n1 name2 n2', got {len(fields)} fields: "
        f"{' '.join(fields)!r}."
    )


def _contiguous_folds(n: int, nfolds: int = NFOLDS) -> np.ndarray:
    """Fold id of each of n pairs cut into nfolds equal contiguous blocks (n divisible by nfolds)."""
    return np.repeat(np.arange(nfolds), n // nfolds)


# ---------------------------------------------------------------- LFW


def read_lfw_pairs(pairs_txt, image_root, check: bool = True) -> PairSet:
    """LFW `pairs.txt`: header `nfolds n`, then per fold n matched + n mismatched lines; folds in file order.

    Image path: image_root/name/name_%04d.jpg. check: raise one DataError listing missing images.
    """
    pairs_txt, image_root = Path(pairs_txt), Path(image_root)
    lines = _read_lines(pairs_txt)
    if not lines or len(lines[0][1]) != 2:
        raise DataError(f"{pairs_txt}:1: the first line must be '<folds> <pairs per kind>' (LFW: '10 300').")
    lineno, (f, k) = lines[0]
    nfolds, per = _int(f, pairs_txt, lineno, "fold count"), _int(k, pairs_txt, lineno, "pairs per kind")
    body = lines[1:]
    if nfolds < 1 or per < 1 or len(body) != 2 * nfolds * per:
        raise DataError(
            f"{pairs_txt}:{lineno}: header says {nfolds} folds x 2 x {per} pairs = {2 * nfolds * per} lines, "
            f"the file has {len(body)} pair lines; the file is truncated or not LFW's pairs.txt."
        )
    paths1, paths2, same = [], [], []
    for i, (ln, fields) in enumerate(body):
        a, b, s = _lfw_line(fields, pairs_txt, ln)
        want_same = (i % (2 * per)) < per
        if s != want_same:
            kind = "matched 'name n1 n2'" if want_same else "mismatched 'name1 n1 name2 n2'"
            raise DataError(f"{pairs_txt}:{ln}: expected a {kind} line here (fold {i // (2 * per) + 1}).")
        paths1.append(image_root / a)
        paths2.append(image_root / b)
        same.append(s)
    ps = PairSet("lfw", paths1, paths2, np.array(same), np.repeat(np.arange(nfolds), 2 * per))
    if check:
        check_images_exist(ps, pairs_txt)
    return ps


# ---------------------------------------------------------------- CALFW / CPLFW


def _read_two_line_pairs(name: str, pairs_txt, image_root, check: bool) -> PairSet:
    """Pair list of two `image label` lines per pair (label 0: different); matched pairs first, then mismatched.

    Reordered into 10 contiguous folds: fold k = matched block k then mismatched block k (blocks of N/20 pairs).
    """
    pairs_txt, image_root = Path(pairs_txt), Path(image_root)
    lines = _read_lines(pairs_txt)
    if len(lines) % 2:
        raise DataError(f"{pairs_txt}:{lines[-1][0]}: odd number of lines; each pair is two 'image label' lines.")
    pos: list[tuple[Path, Path]] = []
    neg: list[tuple[Path, Path]] = []
    for (l1, f1), (l2, f2) in zip(lines[0::2], lines[1::2]):
        for ln, fields in ((l1, f1), (l2, f2)):
            if len(fields) != 2:
                raise DataError(f"{pairs_txt}:{ln}: expected 'image label', got {' '.join(fields)!r}.")
        t1, t2 = _int(f1[1], pairs_txt, l1, "label"), _int(f2[1], pairs_txt, l2, "label")
        if (t1 != 0) != (t2 != 0):
            raise DataError(f"{pairs_txt}:{l2}: label {t2} disagrees with line {l1}'s label {t1} for the same pair.")
        if t1 != 0 and neg:
            raise DataError(
                f"{pairs_txt}:{l1}: a matched pair after mismatched ones; the official file lists all matched "
                "pairs first, then all mismatched pairs."
            )
        (pos if t1 != 0 else neg).append((image_root / f1[0], image_root / f2[0]))
    if not pos or len(pos) != len(neg) or len(pos) % NFOLDS:
        raise DataError(
            f"{pairs_txt}: {len(pos)} matched and {len(neg)} mismatched pairs; the official list has equal counts "
            f"divisible by {NFOLDS} (3000 + 3000)."
        )
    block = len(pos) // NFOLDS
    ordered = []
    for k in range(NFOLDS):
        ordered += [(a, b, True) for a, b in pos[k * block : (k + 1) * block]]
        ordered += [(a, b, False) for a, b in neg[k * block : (k + 1) * block]]
    ps = PairSet(
        name,
        [a for a, _, _ in ordered],
        [b for _, b, _ in ordered],
        np.array([s for _, _, s in ordered]),
        _contiguous_folds(len(ordered)),
    )
    if check:
        check_images_exist(ps, pairs_txt)
    return ps


def read_calfw_pairs(pairs_txt, image_root, check: bool = True) -> PairSet:
    """CALFW `pairs_CALFW.txt`: `image label` lines, two per pair; label = fold 1..10 (same) or 0 (different).

    Images: image_root/<image> (the 'aligned images' folder). Fold order: see the module docstring.
    """
    return _read_two_line_pairs("calfw", pairs_txt, image_root, check)


def read_cplfw_pairs(pairs_txt, image_root, check: bool = True) -> PairSet:
    """CPLFW `pairs_CPLFW.txt`: `image label` lines, two per pair; label 1 (same) or 0 (different).

    Images: image_root/<image> (the 'aligned images' folder). Fold order: see the module docstring.
    """
    return _read_two_line_pairs("cplfw", pairs_txt, image_root, check)


# ---------------------------------------------------------------- CFP


def _cfp_image_list(path: Path) -> dict[int, Path]:
    """Pair_list_{F,P}.txt: `index relative/path` (relative to the Protocol folder) -> {index: normalised path}."""
    out: dict[int, Path] = {}
    for ln, fields in _read_lines(path):
        if len(fields) != 2:
            raise DataError(f"{path}:{ln}: expected 'index path', got {' '.join(fields)!r}.")
        out[_int(fields[0], path, ln, "index")] = Path(os.path.normpath(path.parent / fields[1]))
    return out


def _cfp_split_file(path: Path, first: dict[int, Path], second: dict[int, Path]) -> list[tuple[Path, Path]]:
    """same.txt / diff.txt: `i,j` (1-based indices into the first and second image lists)."""
    out = []
    for ln, fields in _read_lines(path):
        parts = "".join(fields).split(",")
        if len(parts) != 2:
            raise DataError(f"{path}:{ln}: expected 'i,j' (two image indices), got {' '.join(fields)!r}.")
        i, j = (_int(p, path, ln, "index") for p in parts)
        if i not in first or j not in second:
            bad = i if i not in first else j
            raise DataError(f"{path}:{ln}: index {bad} is not in the Protocol image lists (Pair_list_F/P.txt).")
        out.append((first[i], second[j]))
    return out


def read_cfp_pairs(root, protocol: str = "FP", check: bool = True) -> PairSet:
    """CFP-FP (frontal vs profile) or CFP-FF (frontal vs frontal) from root/Protocol.

    Protocol/Pair_list_F.txt and Pair_list_P.txt map indices to images; Protocol/Split/<FP|FF>/01..10/same.txt and
    diff.txt hold `i,j` pairs (FP: i frontal, j profile; FF: both frontal). Fold k = split k: same then diff.
    """
    proto = str(protocol).upper()
    if proto not in ("FP", "FF"):
        raise ConfigError(f"CFP protocol must be 'FP' or 'FF', got {protocol!r}.")
    root = Path(root)
    pdir = root / "Protocol" if (root / "Protocol").is_dir() else root
    frontal = _cfp_image_list(_find_file(pdir, ["Pair_list_F.txt"], "CFP Pair_list_F.txt"))
    second = frontal if proto == "FF" else _cfp_image_list(_find_file(pdir, ["Pair_list_P.txt"], "CFP Pair_list_P.txt"))
    split_root = pdir / "Split" / proto
    splits = sorted((d for d in split_root.glob("*") if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name))
    if not splits:
        raise DataError(f"{split_root}: no split folders 01..10; pass the CFP root that holds Protocol/Split/{proto}.")
    paths1, paths2, same, folds = [], [], [], []
    for k, d in enumerate(splits):
        for fname, s in (("same.txt", True), ("diff.txt", False)):
            for a, b in _cfp_split_file(d / fname, frontal, second):
                paths1.append(a)
                paths2.append(b)
                same.append(s)
                folds.append(k)
    ps = PairSet(f"cfp_{proto.lower()}", paths1, paths2, np.array(same, dtype=bool), np.array(folds))
    if check:
        check_images_exist(ps, split_root)
    return ps


# ---------------------------------------------------------------- RFW


def rfw_race(race: str) -> str:
    """Canonical race name (case-insensitive): African, Asian, Caucasian or Indian."""
    for r in RFW_RACES:
        if str(race).lower() == r.lower():
            return r
    raise ConfigError(f"unknown RFW race '{race}'.{did_you_mean(race, RFW_RACES)} Races: {', '.join(RFW_RACES)}.")


def read_rfw_pairs(root, race: str, check: bool = True) -> PairSet:
    """RFW one race: <txts>/<race>/<race>_pairs.txt (LFW line format, no header) with images
    <data>/<race>/<name>/<name>_%04d.jpg; root is the RFW folder (or its test/ folder). Folds: 10 x 600 in file order.
    """
    race = rfw_race(race)
    root = Path(root)
    txt = _find_file(
        root,
        [f"{base}/{race}/{race}_pairs.txt" for base in ("txts", "test/txts")] + [f"{race}_pairs.txt"],
        f"RFW {race}_pairs.txt",
    )
    lines = _read_lines(txt)
    rel = [_lfw_line(fields, txt, ln) for ln, fields in lines]
    probe = Path(rel[0][0]) if rel else None
    data = _pick_dir(root, [f"{b}/{race}" for b in ("data", "test/data", "images", "")], probe)
    ps = PairSet(
        f"rfw_{race.lower()}",
        [data / a for a, _, _ in rel],
        [data / b for _, b, _ in rel],
        np.array([s for _, _, s in rel], dtype=bool),
        _contiguous_folds(len(rel)) if rel and len(rel) % NFOLDS == 0 else None,
    )
    if check:
        check_images_exist(ps, txt)
    return ps


def rfw_summary(results: dict) -> dict:
    """RFW table row: {'accuracy': {race: acc}, 'mean': mean over races, 'std': population std over races}.

    results: {race: metrics dict with 'accuracy' (or a float accuracy)}; races in RFW order where known.
    """
    if not results:
        raise DataError("rfw_summary needs at least one race's results.")
    order = {r: i for i, r in enumerate(RFW_RACES)}
    acc = {}
    for race in sorted(results, key=lambda r: (order.get(str(r), len(order)), str(r))):
        m = results[race]
        if isinstance(m, dict):
            if "accuracy" not in m:
                raise DataError(f"rfw_summary: the results for '{race}' have no 'accuracy' key.")
            m = m["accuracy"]
        acc[race] = float(m)
    values = np.array(list(acc.values()), dtype=np.float64)
    return {"accuracy": acc, "mean": float(values.mean()), "std": float(values.std())}


# ---------------------------------------------------------------- registry and images


@PAIR_PROTOCOLS.register("lfw")
def lfw(root, check: bool = True) -> PairSet:
    """LFW from a folder holding pairs.txt and the image folders (directly or in lfw/, lfw-deepfunneled/, ...)."""
    root = Path(root)
    txt = _find_file(root, ["pairs.txt", "pairs_LFW.txt"], "LFW pairs.txt")
    first = next((f for _, f in _read_lines(txt)[1:2]), None)
    probe = Path(_lfw_line(first, txt, 2)[0]) if first and len(first) in (3, 4) else None
    base = txt.parent
    images = _pick_dir(base, ["", "lfw", "lfw-deepfunneled", "lfw_funneled", "lfw-112x112", "images"], probe)
    return read_lfw_pairs(txt, images, check=check)


def _two_line_root(name: str, root, check: bool) -> PairSet:
    root = Path(root)
    txt = _find_file(root, [f"pairs_{name.upper()}.txt"], f"{name.upper()} pairs_{name.upper()}.txt")
    lines = _read_lines(txt)
    probe = Path(lines[0][1][0]) if lines and lines[0][1] else None
    images = _pick_dir(txt.parent, ["aligned images", "images&landmarks/images", "images", ""], probe)
    return _read_two_line_pairs(name, txt, images, check)


@PAIR_PROTOCOLS.register("calfw")
def calfw(root, check: bool = True) -> PairSet:
    """CALFW from its folder: pairs_CALFW.txt and 'aligned images/'."""
    return _two_line_root("calfw", root, check)


@PAIR_PROTOCOLS.register("cplfw")
def cplfw(root, check: bool = True) -> PairSet:
    """CPLFW from its folder: pairs_CPLFW.txt and 'aligned images/'."""
    return _two_line_root("cplfw", root, check)


PAIR_PROTOCOLS.register("cfp_fp", protocol="FP")(read_cfp_pairs)
PAIR_PROTOCOLS.register("cfp_ff", protocol="FF")(read_cfp_pairs)
for _race in RFW_RACES:
    PAIR_PROTOCOLS.register(f"rfw_{_race.lower()}", race=_race)(read_rfw_pairs)
del _race


def read_pairs(spec: str, check: bool = True) -> PairSet:
    """A pair set from 'name:root', e.g. 'lfw:/data/lfw' or 'rfw_asian:/data/RFW' (names: PAIR_PROTOCOLS)."""
    name, sep, root = str(spec).partition(":")
    if not sep or not root:
        raise ConfigError(
            f"pair set '{spec}' must be 'name:root', e.g. 'lfw:/data/lfw'; names: {', '.join(PAIR_PROTOCOLS.names())}."
        )
    return PAIR_PROTOCOLS.create(name.strip().lower(), root=root, check=check)


def load_pair_images(
    pairset: PairSet, image_size=(112, 112), landmarks: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (2N, H, W, 3) RGB with images[2i], images[2i+1] = pair i, issame (N,)) for evaluate_pairs.

    Each distinct file is decoded once. Without landmarks an image is bilinear-resized to image_size (H, W) when
    different; with landmarks ({path: (5, 2) x, y}) it is aligned to the ArcFace template by
    facezoo.sdk.align.align_face, and every image needs an entry.
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    lmk = {str(k): v for k, v in landmarks.items()} if landmarks is not None else None
    order = [p for pair in zip(pairset.paths1, pairset.paths2) for p in pair]
    slot: dict[str, int] = {}
    out = np.empty((len(order), h, w, 3), dtype=np.uint8)
    for i, p in enumerate(order):
        key = str(p)
        if key in slot:
            out[i] = out[slot[key]]
            continue
        image = read_image_file(p)
        if lmk is not None:
            if key not in lmk:
                raise DataError(f"{p}: no landmarks for this image; give 5 points for every image of the pair set.")
            from ..sdk.align import align_face

            image = align_face(image, lmk[key], (h, w))[0]
        else:
            image = resize_image(image, (h, w))
        out[i] = image
        slot[key] = i
    return out, pairset.issame.copy()
