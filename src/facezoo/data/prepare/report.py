"""What `data prepare` tells: report.csv (one row per input file, none left out) and the summary (JSON + text)."""

from __future__ import annotations

import csv
import json
from collections import Counter

from ...io import atomic_write

# status -> what it means (the README's table of rejection reasons is this table).
REASONS = {
    "kept": "aligned and written; `label` is its class in the output",
    "not_an_image": "neither an image suffix nor an image magic number (text, archives, ...)",
    "hidden": "a hidden file or a file inside a hidden folder (name starts with '.'), not read",
    "outside_identity": "a file directly in RAW_DIR, not inside a person's folder",
    "unreadable": "the file could not be read (permissions, broken link, I/O error)",
    "decode_failed": "not a decodable image (truncated, corrupt, unsupported)",
    "no_face": "no detection scored at least --min-score",
    "ambiguous": "another face's box area is at least --ambiguity times the chosen face's: whose photo is it?",
    "face_too_small": "the chosen face's box is smaller than --min-face pixels on its shorter side",
    "duplicate": "a byte-identical copy, or a near-duplicate (perceptual hash / embedding) of a photo kept instead",
    "too_few_images": "its identity kept fewer than --min-images photos, so the whole identity was dropped",
    "test_overlap": "its identity matches a person of an --exclude test set (embedding similarity), so dropped",
}
COLUMNS = ("path", "identity", "label", "status", "detail")


class Tally:
    """Counts of the rows written: per status, and photos in which a face was detected."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.faces = 0

    def add(self, row: dict) -> None:
        self.counts[row["status"]] += 1
        self.faces += row.get("faces", 0) > 0


def write_report(path, rows) -> Tally:
    """Stream `rows` into report.csv (COLUMNS), atomically; returns their tally."""
    tally = Tally()
    with atomic_write(path, "w") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in rows:
            tally.add(r)
            w.writerow(["" if r.get(c) is None else r[c] for c in COLUMNS])
    return tally


def summarize(tally: Tally, identities_in: int, identities_kept: int, resumed: int, output: dict, options: dict):
    """The summary dict (summary.json)."""
    counts = tally.counts
    photos = sum(n for s, n in counts.items() if s not in ("not_an_image", "hidden", "outside_identity"))
    return {
        "files": sum(counts.values()),
        "images": photos,
        "faces_found": tally.faces,
        "kept": counts.get("kept", 0),
        "rejected": {s: counts[s] for s in REASONS if s != "kept" and counts.get(s)},
        "duplicates": counts.get("duplicate", 0),
        "identities_in": identities_in,
        "identities_kept": identities_kept,
        "identities_resumed": resumed,
        "output": output,
        "options": options,
    }


def write_summary(path, summary: dict) -> None:
    with atomic_write(path, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")


def format_summary(s: dict) -> str:
    """Lines for the terminal."""
    lines = [
        f"files:       {s['files']} ({s['images']} images)",
        f"faces found: {s['faces_found']}",
        f"kept:        {s['kept']} images of {s['identities_kept']} identities (of {s['identities_in']})",
    ]
    if s["identities_resumed"]:
        lines.append(f"resumed:     {s['identities_resumed']} identities from the journal")
    for status, n in s["rejected"].items():
        lines.append(f"  {status + ':':<18}{n}")
    out = s["output"]
    lines.append(f"output:      {out['out_dir']} ({out['format']}), report.csv, summary.json")
    return "\n".join(lines)
