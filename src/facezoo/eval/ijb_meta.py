"""IJB-B / IJB-C release files: the meta readers (one record a line) and the 1:N gallery / probe CSVs.

Meta files in <root>/meta or <root>/<target>/meta (space separated; see reference/protocols.md):
  <t>_face_tid_mid.txt        image_name template_id media_id
  <t>_template_pair_label.txt template_id_1 template_id_2 label(0/1)
  <t>_name_5pts_score.txt     image_name x1 y1 ... x5 y5 faceness_score
1:N CSVs (comma separated, a header line, one row per image or frame of a template; only TEMPLATE_ID and
SUBJECT_ID matter here, found by name):
  IJB-B: ijbb_1N_gallery_S1.csv, ijbb_1N_gallery_S2.csv, ijbb_1N_probe_mixed.csv
  IJB-C: ijbc_1N_gallery_G1.csv, ijbc_1N_gallery_G2.csv, ijbc_1N_probe_mixed.csv
looked up in meta/, then protocols/ and protocols/archive/ beside it (NIST's layout). `load_ijb_meta` reads what
the chosen protocols need, once, before any model runs. Every bad record is a DataError naming file:line.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, DataError
from .scoring import check_finite_embeddings

IJB_TARGETS = ("IJBB", "IJBC")
IJB_GALLERIES = {"IJBB": ("S1", "S2"), "IJBC": ("G1", "G2")}
PROTOCOLS = ("1:1", "1:N")


# ----------------------------------------------------------------------------------------------- 1:1 meta files


class TemplateMedia(NamedTuple):
    names: list[str]
    templates: np.ndarray  # (N,) int64
    medias: np.ndarray  # (N,) int64


class TemplatePairs(NamedTuple):
    t1: np.ndarray  # (P,) int64
    t2: np.ndarray  # (P,) int64
    labels: np.ndarray  # (P,) int64, 1 = same subject


class Landmarks(NamedTuple):
    names: list[str]
    points: np.ndarray  # (N, 5, 2) float32, pixel (x, y) in the loose crop
    scores: np.ndarray  # (N,) float32 faceness score


def _read_lines(path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: IJB meta file not found; point root at the IJB folder that holds meta/")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e}); is this the right meta file?") from None


def _records(path, ncols: int, what: str):
    """(line number, fields) of each non-blank line; DataError naming file:line if a line has != ncols fields."""
    for lineno, line in enumerate(_read_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != ncols:
            raise DataError(
                f"{path}:{lineno}: expected {ncols} fields ({what}), got {len(fields)}: {line.strip()[:80]!r}"
            )
        yield lineno, fields


def _int(path, lineno: int, text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{path}:{lineno}: {what} must be an integer, got {text!r}; fix or remove the line") from None


def _float(path, lineno: int, text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{path}:{lineno}: {what} must be a number, got {text!r}; fix or remove the line") from None


def read_template_media(path) -> TemplateMedia:
    """`*_face_tid_mid.txt`: one `image_name template_id media_id` per line, in feature order."""
    names, tids, mids = [], [], []
    for lineno, (name, tid, mid) in _records(path, 3, "image_name template_id media_id"):
        names.append(name)
        tids.append(_int(path, lineno, tid, "template id"))
        mids.append(_int(path, lineno, mid, "media id"))
    return TemplateMedia(names, np.asarray(tids, np.int64), np.asarray(mids, np.int64))


def _read_pairs_slow(path) -> TemplatePairs:
    rows = []
    for lineno, (a, b, lab) in _records(path, 3, "template_id_1 template_id_2 label"):
        label = _int(path, lineno, lab, "label")
        if label not in (0, 1):
            raise DataError(f"{path}:{lineno}: label must be 0 or 1, got {label}; fix or remove the line")
        rows.append((_int(path, lineno, a, "template id 1"), _int(path, lineno, b, "template id 2"), label))
    arr = np.asarray(rows, np.int64).reshape(-1, 3)
    return TemplatePairs(arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy())


def read_template_pairs(path) -> TemplatePairs:
    """`*_template_pair_label.txt`: one `t1 t2 label` per line (IJB-C: 15.7M lines).

    Parsed by numpy's C reader; on any failure the file is re-read line by line to name the bad line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: IJB pair file not found; point root at the IJB folder that holds meta/")
    try:
        arr = np.loadtxt(path, dtype=np.int64, ndmin=2, comments=None)
        if arr.size and (arr.shape[1] != 3 or not np.isin(arr[:, 2], (0, 1)).all()):
            raise ValueError("bad columns or labels")
    except ValueError:
        return _read_pairs_slow(path)  # raises DataError at the first bad line
    arr = arr.reshape(-1, 3)
    return TemplatePairs(arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy())


def read_landmarks(path) -> Landmarks:
    """`*_name_5pts_score.txt`: `image_name x1 y1 ... x5 y5 faceness_score` per line, in feature order."""
    names, pts, scores = [], [], []
    for lineno, fields in _records(path, 12, "image_name, 10 landmark coordinates, faceness score"):
        names.append(fields[0])
        pts.append([_float(path, lineno, v, f"landmark coordinate {i + 1}") for i, v in enumerate(fields[1:11])])
        scores.append(_float(path, lineno, fields[11], "faceness score"))
    return Landmarks(names, np.asarray(pts, np.float32).reshape(-1, 5, 2), np.asarray(scores, np.float32))


# ------------------------------------------------------------------------------------------------ 1:N CSVs


class TemplateSubjects(NamedTuple):
    templates: np.ndarray  # (T,) int64 template ids, in order of first appearance
    subjects: np.ndarray  # (T,) int64 subject id of each template


class IJB1N(NamedTuple):
    galleries: dict  # gallery name ("G1", "S2", ...) -> TemplateSubjects
    probes: TemplateSubjects
    files: dict  # gallery names and "probe" -> Path read


def _header_columns(path, lineno: int, fields: list[str]) -> tuple[int, int] | None:
    """Columns of TEMPLATE_ID and SUBJECT_ID if `fields` is a header line, None if it is a data row."""
    names = [f.strip().strip('"').upper() for f in fields]
    if "TEMPLATE_ID" in names and "SUBJECT_ID" in names:
        return names.index("TEMPLATE_ID"), names.index("SUBJECT_ID")
    try:
        int(fields[0]), int(fields[1])
    except (ValueError, IndexError):
        raise DataError(
            f"{path}:{lineno}: expected the header TEMPLATE_ID,SUBJECT_ID,... (or a data row), "
            f"got {','.join(fields)[:80]!r}"
        ) from None
    return None


def read_template_subjects(path) -> TemplateSubjects:
    """One IJB 1:N CSV (gallery or probe): the templates it lists and the subject of each.

    Rows are images, so a template spans several rows; every row of a template must name the same subject."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: IJB 1:N file not found; point root at the IJB folder whose meta/ holds it")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e}); is this the right CSV?") from None
    cols, started = (0, 1), False
    first: dict[int, tuple[int, int]] = {}  # template -> (subject, line)
    for lineno, fields in enumerate(csv.reader(lines), 1):
        if not "".join(fields).strip():
            continue
        if not started:
            started = True
            header = _header_columns(path, lineno, fields)
            if header is not None:
                cols = header
                continue
        if len(fields) <= max(cols):
            raise DataError(f"{path}:{lineno}: expected TEMPLATE_ID and SUBJECT_ID, got {','.join(fields)[:80]!r}")
        try:
            t, s = int(fields[cols[0]]), int(fields[cols[1]])
        except ValueError:
            raise DataError(
                f"{path}:{lineno}: TEMPLATE_ID and SUBJECT_ID must be integers, got {fields[cols[0]]!r}, "
                f"{fields[cols[1]]!r}; fix or remove the line"
            ) from None
        seen = first.setdefault(t, (s, lineno))
        if seen[0] != s:
            raise DataError(
                f"{path}:{lineno}: template {t} has subject {s} here but {seen[0]} on line {seen[1]}; "
                "a template belongs to one subject"
            )
    if not first:
        raise DataError(f"{path}: no templates listed; is the file truncated?")
    return TemplateSubjects(
        np.fromiter(first, np.int64, len(first)), np.fromiter((v[0] for v in first.values()), np.int64, len(first))
    )


def ijb_1n_paths(root, target: str) -> dict[str, Path]:
    """{gallery name: path, ..., "probe": path} of the 1:N CSVs; DataError naming the first one missing."""
    target = check_target(target)
    meta = meta_dir(root, target)
    prefix = target.lower()
    names = {g: f"{prefix}_1N_gallery_{g}.csv" for g in IJB_GALLERIES[target]}
    names["probe"] = f"{prefix}_1N_probe_mixed.csv"
    dirs = (meta, meta.parent / "protocols", meta.parent / "protocols" / "archive")
    out = {}
    for key, name in names.items():
        found = next((d / name for d in dirs if (d / name).is_file()), None)
        if found is None:
            raise DataError(
                f"{meta / name}: IJB 1:N file not found (looked in meta/, protocols/ and protocols/archive/); copy "
                f"the release's {name} into {meta}, or evaluate 1:1 only (--protocol 1:1)"
            )
        out[key] = found
    return out


def has_ijb_1n(root, target: str) -> bool:
    """Whether all three 1:N CSVs of the target are present."""
    try:
        ijb_1n_paths(root, target)
    except DataError:
        return False
    return True


def read_ijb_1n(root, target: str) -> IJB1N:
    """The two galleries and the mixed probe set of an IJB release."""
    paths = ijb_1n_paths(root, target)
    probe_path = paths.pop("probe")
    galleries = {g: read_template_subjects(p) for g, p in paths.items()}
    return IJB1N(galleries, read_template_subjects(probe_path), {**paths, "probe": probe_path})


# ------------------------------------------------------------------------------------------- one release


class IJBMeta(NamedTuple):
    """Everything an IJB evaluation reads from the release, read once and reused for every model."""

    target: str  # "IJBB" or "IJBC"
    meta: Path  # the meta/ folder
    media: TemplateMedia  # image -> template, media (feature order)
    scores: np.ndarray | None  # (N,) faceness scores, None if <t>_name_5pts_score.txt is absent
    pairs: TemplatePairs | None  # 1:1 pairs, None if 1:1 is not evaluated
    sets_1n: IJB1N | None  # galleries and probes, None if 1:N is not evaluated


def meta_dir(root, target: str) -> Path:
    """The meta/ folder of an IJB release: <root>/meta or <root>/<target>/meta."""
    root = Path(root)
    for cand in (root / "meta", root / target / "meta"):
        if cand.is_dir():
            return cand
    raise DataError(f"no meta/ folder under {root} or {root / target}; point root at the {target} release folder")


def check_target(target: str) -> str:
    """ "IJBB" or "IJBC" from any spelling ("ijb-c", "IJBC"); ConfigError otherwise."""
    t = str(target).upper().replace("-", "")
    if t not in IJB_TARGETS:
        raise ConfigError(f"unknown IJB target {target!r}; choose one of {', '.join(IJB_TARGETS)}")
    return t


def resolve_protocols(root, target: str, protocols=None) -> tuple[str, ...]:
    """The protocols to run: the ones asked for ("1:1", "1:N", "all"), or with None / "all" each one whose
    files exist (DataError naming the pair file if none do)."""
    target = check_target(target)
    if isinstance(protocols, str):
        protocols = (protocols,)
    asked = [p.upper() for p in (protocols or ("all",))]
    bad = [p for p in asked if p not in (*PROTOCOLS, "ALL")]
    if bad:
        raise ConfigError(f"unknown IJB protocol {bad[0]!r}; choose 1:1, 1:N or all")
    if "ALL" not in asked:
        return tuple(p for p in PROTOCOLS if p in asked)
    meta = meta_dir(root, target)
    pair_file = meta / f"{target.lower()}_template_pair_label.txt"
    found = tuple(p for p, ok in zip(PROTOCOLS, (pair_file.is_file(), has_ijb_1n(root, target))) if ok)
    if not found:
        raise DataError(
            f"{pair_file}: IJB pair file not found, and no 1:N files ({target.lower()}_1N_*.csv) either; point root "
            f"at the {target} release folder"
        )
    return found


def check_embeddings(emb, n: int, target: str) -> np.ndarray:
    """emb as an array if it is (n, D), one row per image of the meta files; DataError otherwise."""
    emb = np.asarray(emb)
    prefix = target.lower()
    if emb.ndim != 2 or emb.shape[0] != n:
        raise DataError(
            f"{np.shape(emb)} embeddings for {n} images in {prefix}_face_tid_mid.txt; embed every image of "
            f"{prefix}_name_5pts_score.txt in file order"
        )
    check_finite_embeddings([emb], target)
    return emb


def load_ijb_meta(root, target: str, protocols=None, n_images: int | None = None) -> IJBMeta:
    """Read the meta files of the protocols to run (see `resolve_protocols`): <t>_face_tid_mid.txt,
    <t>_name_5pts_score.txt (faceness scores; its image order is checked), <t>_template_pair_label.txt (1:1),
    the 1:N CSVs (1:N). n_images, if given, is checked against the image list before anything else is read."""
    target = check_target(target)
    protocols = resolve_protocols(root, target, protocols)
    meta = meta_dir(root, target)
    prefix = target.lower()
    media = read_template_media(meta / f"{prefix}_face_tid_mid.txt")
    if n_images is not None and n_images != len(media.names):
        check_embeddings(np.empty((n_images, 0)), len(media.names), target)
    scores = None
    lm_path = meta / f"{prefix}_name_5pts_score.txt"
    if lm_path.is_file():
        lm = read_landmarks(lm_path)
        if lm.names != media.names:
            pairs_ = zip(lm.names, media.names)
            bad = next((i for i, (a, b) in enumerate(pairs_) if a != b), min(len(lm.names), len(media.names)))
            raise DataError(
                f"{lm_path}:{bad + 1}: image order differs from {prefix}_face_tid_mid.txt (line {bad + 1}); "
                f"the two meta files must list the same images in the same order"
            )
        scores = lm.scores
    pairs = read_template_pairs(meta / f"{prefix}_template_pair_label.txt") if "1:1" in protocols else None
    sets_1n = read_ijb_1n(root, target) if "1:N" in protocols else None
    return IJBMeta(target, meta, media, scores, pairs, sets_1n)
