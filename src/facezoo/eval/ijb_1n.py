"""IJB-B / IJB-C 1:N mixed-media search (IJB-B "1:N Mixed", IJB-C "Test 4") from the release's CSV files.

Files (comma separated, a header line, one row per image or frame of a template; only the first two columns
matter here, found by name): TEMPLATE_ID, SUBJECT_ID, FILENAME, ...
  IJB-B: ijbb_1N_gallery_S1.csv, ijbb_1N_gallery_S2.csv, ijbb_1N_probe_mixed.csv
  IJB-C: ijbc_1N_gallery_G1.csv, ijbc_1N_gallery_G2.csv, ijbc_1N_probe_mixed.csv
looked up in meta/ (the layout the 1:1 files come in), then protocols/ and protocols/archive/ beside it (NIST's).

The gallery and probe templates are the templates of <t>_face_tid_mid.txt (IJB-C: 3,531 gallery + 19,593 probe
= the 23,124 1:1 templates), so their features are the 1:1 template features (media mean, sum, L2-normalise).

Open-set protocol: the two galleries hold disjoint subjects; every probe template is searched against each
gallery in turn, so a probe whose subject is in the other gallery is a non-mated search. Per gallery: CMC at
ranks 1/5/10 over the mated searches, TPIR at FPIR 0.01/0.1 (see `ijb.identification`); the table reports the
mean over the two galleries, as the IJB-B paper and VGGFace2 do, with each gallery's figures beside it.
(InsightFace's IJB_1N.py instead searches G1 + G2 together, where every probe is mated, and reads a "FAR" off
all probe-gallery impostor scores: not comparable to TPIR@FPIR.)
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DataError
from .ijb import _rows, identification, meta_dir
from .metrics import far_key

IJB_GALLERIES = {"IJBB": ("S1", "S2"), "IJBC": ("G1", "G2")}
IJB_FPIRS = (0.01, 0.1)
IJB_RANKS = (1, 5, 10)


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
    target = target.upper()
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


def cmc_curve(ranks: np.ndarray, max_rank: int) -> np.ndarray:
    """(max_rank,) identification rate at ranks 1..max_rank: CMC(r) = #{rank <= r} / #mated searches."""
    ranks = np.asarray(ranks, np.int64)
    if ranks.size == 0:
        return np.full(max_rank, math.nan)
    counts = np.bincount(np.minimum(ranks, max_rank + 1), minlength=max_rank + 2)[1 : max_rank + 1]
    return np.cumsum(counts) / ranks.size


def evaluate_1n(
    template_feats: np.ndarray,
    template_ids: np.ndarray,
    sets: IJB1N,
    fpirs=IJB_FPIRS,
    ranks=IJB_RANKS,
) -> dict:
    """Search the probe templates against each gallery; template_feats (T, D) rows for the sorted template_ids.

    Returns {"galleries": {name: identification result + cmc_curve, num_gallery_templates,
    num_gallery_subjects}, "cmc", "tpir_at_fpir" (means over the galleries), "cmc_curve" (mean),
    "num_probe_templates"}.
    """
    probe_rows = _rows(template_ids, sets.probes.templates, sets.files["probe"].name)
    probe_feats = template_feats[probe_rows]
    per = {}
    for name, gallery in sets.galleries.items():
        rows = _rows(template_ids, gallery.templates, sets.files[name].name)
        r = identification(template_feats[rows], gallery.subjects, probe_feats, sets.probes.subjects, ranks, fpirs)
        n_subjects = int(np.unique(gallery.subjects).size)
        r["cmc_curve"] = cmc_curve(r["ranks"], n_subjects)
        r["num_gallery_templates"] = int(gallery.templates.size)
        r["num_gallery_subjects"] = n_subjects
        per[name] = r
    results = list(per.values())
    cmc = {int(k): float(np.mean([r["cmc"][int(k)] for r in results])) for k in ranks}
    tpir = {}
    for fpir in fpirs:
        key = far_key(fpir)
        tpir[key] = {
            "tpir": float(np.mean([r["tpir_at_fpir"][key]["tpir"] for r in results])),
            "fpir": float(np.mean([r["tpir_at_fpir"][key]["fpir"] for r in results])),
        }
    n = min(r["cmc_curve"].size for r in results)
    return {
        "galleries": per,
        "cmc": cmc,
        "tpir_at_fpir": tpir,
        "cmc_curve": np.mean([r["cmc_curve"][:n] for r in results], axis=0),
        "num_probe_templates": int(sets.probes.templates.size),
    }
