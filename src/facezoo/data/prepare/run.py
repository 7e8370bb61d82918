"""`prepare(RAW, OUT_DIR)`: raw photos of people -> a clean, aligned training set, with a report of every file.

Steps: collect identities and junk (sources) -> per identity, in `workers` processes: decode, detect, choose,
align, drop duplicates, journal (identity) -> drop identities with too few photos, or that overlap test sets
(exclude) -> number the rest 0..K-1 by sorted name -> write the set, report.csv and summary.json into a staged
folder renamed to OUT_DIR at the end, so OUT_DIR appears complete or not at all. A rerun after an interruption
skips identities already in the journal; the work folder is removed after success.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...io import atomic_write, staged_dir
from ...progress import bar
from ..pack import write_set
from .dedup import load_embedder
from .exclude import centre, overlaps, test_embeddings
from .identity import init_worker, prepare_identity, run_in_worker
from .journal import (
    CropReader,
    clean_partial,
    crop_name,
    is_done,
    journal_path,
    read_embeddings,
    read_meta,
    work_dir_for,
)
from .options import PrepareOptions
from .report import format_summary, summarize, write_report, write_summary
from .sources import Identity, collect, shown_path


def _check_out(raw: Path, out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: already exists and is not an empty folder. Choose a new output folder or remove it.")
    if raw.is_dir() and (out.resolve() == raw.resolve() or raw.resolve() in out.resolve().parents):
        raise DataError(f"{out}: the output folder must not be inside the input folder {raw}.")


def _run_identities(todo: list[Identity], raw_root: Path, work: Path, key: str, opts: PrepareOptions, pbar) -> None:
    """Prepare every identity in `todo` (in this process or a pool), journaling each as it finishes."""
    counts: Counter = Counter()

    def done(meta: dict) -> None:
        counts.update(r["status"] for r in meta["records"])
        pbar.update(len(meta["records"]))
        pbar.set_postfix(kept=counts["kept"], rejected=sum(counts.values()) - counts["kept"], refresh=False)

    tasks = [(ident, raw_root, journal_path(work, ident.name), key) for ident in todo]
    if opts.workers == 0 or len(tasks) <= 1:
        for task in tasks:
            done(prepare_identity(*task, opts))
        return
    spawn = multiprocessing.get_context("spawn")  # no fork after torch threads exist
    with spawn.Pool(min(opts.workers, len(tasks)), initializer=init_worker, initargs=(opts,)) as pool:
        for meta in pool.imap_unordered(run_in_worker, tasks):
            done(meta)


@dataclass
class Verdict:
    """An identity after hygiene: photos it kept, and the reason it is dropped as a whole (None: it stays)."""

    kept: int
    status: str | None = None
    detail: str = ""


def _verdicts(names: list[str], journals: dict[str, Path], opts: PrepareOptions) -> dict[str, Verdict]:
    """Identities with fewer than min_images photos are dropped, then those overlapping the test sets."""
    verdicts = {}
    for name in names:
        n = sum(r["status"] == "kept" for r in read_meta(journals[name])["records"])
        v = verdicts[name] = Verdict(n)
        if 0 < n < opts.min_images:
            v.status, v.detail = "too_few_images", f"identity kept {n} < --min-images {opts.min_images}"
    candidates = [n for n, v in verdicts.items() if v.kept and v.status is None]
    if opts.exclude and candidates:
        test, test_names = test_embeddings(opts.exclude, load_embedder(opts.model))
        centres = np.stack([centre(read_embeddings(journals[n])) for n in candidates])
        hit, best, arg = overlaps(centres, test, opts.exclude_threshold)
        for name, h, s, j in zip(candidates, hit, best, arg):
            if h:
                verdicts[name].status = "test_overlap"
                verdicts[
                    name
                ].detail = f"identity centre has cosine {s:.3f} >= {opts.exclude_threshold:g} with {test_names[j]}"
    return verdicts


def _rows(junk, journals: dict[str, Path], verdicts: dict[str, Verdict], label_of: dict[str, int], raw_root: Path):
    """Every report row, streamed identity by identity (files outside any identity first), sorted by path within."""
    by_identity: dict[str, list[dict]] = {}
    for j in junk:
        row = {"path": shown_path(j.path, raw_root), "identity": j.identity, "status": j.status, "detail": j.detail}
        by_identity.setdefault(j.identity, []).append(row)
    for name in sorted(set(by_identity) | set(journals)):
        rows = by_identity.get(name, [])
        if name in journals:
            v = verdicts[name]
            for r in read_meta(journals[name])["records"]:
                if r["status"] == "kept" and v.status is not None:
                    r.update(status=v.status, detail=v.detail)
                r.update(identity=name, label=label_of[name] if r["status"] == "kept" else None)
                rows.append(r)
        yield from sorted(rows, key=lambda r: r["path"])


class Crops(Sequence):
    """The kept crops of one journal as (journal, crop name) items, without holding a list of them."""

    def __init__(self, journal: Path, n: int):
        self.journal, self.n = journal, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return self.journal, crop_name(i % self.n)


def prepare(raw, out_dir, options: PrepareOptions | None = None, **kwargs) -> dict:
    """Prepare RAW (identity tree or `path label` list) into OUT_DIR; returns the summary (also summary.json).

    Settings: a PrepareOptions, or its fields as keywords.
    """
    opts = options if options is not None else PrepareOptions(**kwargs)
    raw, out = Path(raw), Path(out_dir)
    _check_out(raw, out)
    identities, junk = collect(raw)
    raw_root = raw if raw.is_dir() else raw.parent
    work = work_dir_for(out, opts.work_dir)
    (work / "ids").mkdir(parents=True, exist_ok=True)
    clean_partial(work)
    key = opts.image_key()
    with atomic_write(work / "options.json", "w") as f:
        json.dump(opts.to_dict(), f, indent=2)
    journals = {ident.name: journal_path(work, ident.name) for ident in identities}
    todo = [i for i in identities if not is_done(journals[i.name], i.fingerprint(), key)]
    with bar(
        sum(len(i.files) for i in identities),
        "prepare",
        "img",
        initial=sum(len(i.files) for i in identities if i not in todo),
    ) as pbar:
        _run_identities(todo, raw_root, work, key, opts, pbar)

    verdicts = _verdicts([i.name for i in identities], journals, opts)
    kept_names = sorted(n for n, v in verdicts.items() if v.kept and v.status is None)
    label_of = {name: c for c, name in enumerate(kept_names)}
    rows = _rows(junk, journals, verdicts, label_of, raw_root)
    if not kept_names:
        write_report(work / "report.csv", rows)
        raise DataError(
            f"{raw}: no photo survived preparation; see {work / 'report.csv'} for each file's reason "
            "(loosen --min-score, --min-face, --ambiguity or --min-images)."
        )
    groups = [(label_of[n], Crops(journals[n], verdicts[n].kept)) for n in kept_names]
    reader = CropReader()
    with staged_dir(out) as tmp:
        try:
            output = write_set(opts.format, tmp, groups, reader, opts.image_size, kept_names, **opts.format_options)
        finally:
            reader.close()
        output["out_dir"] = str(out)
        tally = write_report(tmp / "report.csv", rows)
        summary = summarize(tally, len(identities), len(groups), len(identities) - len(todo), output, opts.to_dict())
        write_summary(tmp / "summary.json", summary)
    shutil.rmtree(work, ignore_errors=True)
    return summary


__all__ = ["PrepareOptions", "format_summary", "prepare"]
