"""Evaluation reports: markdown tables laid out as published ones, JSON, CSV, ROC and CMC plots, and `Report`, what
an evaluation run (facezoo.eval.run / run_ijb / run_megaface) hands back.

`results` is {model: {benchmark: result}} with each result as returned by `evaluate_bin` / `verification_metrics`
(accuracy tables), or by the IJB evaluations (`format_tar_table`: results with tar_at_far;
`format_identification_table`: results with tpir_at_fpir and cmc). A rate that was not measured (an entry with a
`reason`, e.g. TAR at a FAR below 1/#impostors) shows as "n/a" with the reason under the table; JSON has null
values and the reason.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..far import far_key
from ..io import atomic_write

# How published tables spell the usual benchmark names; others are shown as given.
BENCHMARK_TITLES = {
    "lfw": "LFW",
    "cfp_fp": "CFP-FP",
    "cfp_ff": "CFP-FF",
    "agedb_30": "AgeDB-30",
    "calfw": "CALFW",
    "cplfw": "CPLFW",
    "vgg2_fp": "VGG2-FP",
    "african": "African",
    "asian": "Asian",
    "caucasian": "Caucasian",
    "indian": "Indian",
    "ijbb": "IJB-B",
    "ijbc": "IJB-C",
}


def benchmark_title(name: str) -> str:
    return BENCHMARK_TITLES.get(name.lower(), name)


def _benchmarks(results: dict) -> list[str]:
    """Benchmark names in order of first appearance over all models."""
    return list(dict.fromkeys(b for per_model in results.values() for b in per_model))


def _percent(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


class _Cells:
    """Formats cells, "n/a" for entries with a reason, and collects those reasons as notes under the table."""

    def __init__(self):
        self.notes: dict[str, str] = {}

    def __call__(self, entry, key: str, where: str) -> str:
        if entry is None:
            return "-"
        if entry.get("reason"):
            self.notes.setdefault(where, str(entry["reason"]).removeprefix("n/a: "))
            return "n/a"
        return _percent(entry.get(key))

    def text(self) -> str:
        return "".join(f"\nn/a: {where}: {why}" for where, why in self.notes.items())


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *map(line, rows)])


def _label(model: str, best: str | None) -> str:
    return f"{model} (best)" if model == best else model


def _table(results: dict, title: str, cell, best: str | None = None) -> str:
    benches = _benchmarks(results)
    rows = [[_label(model, best)] + [cell(per.get(b), b) for b in benches] for model, per in results.items()]
    return _markdown([title] + [benchmark_title(b) for b in benches], rows)


def format_table(results: dict[str, dict[str, dict]], tar_far: float | None = None, best: str | None = None) -> str:
    """Markdown table: one row per model, one column per benchmark, accuracy in % with 2 decimals ("-" if
    missing, "n/a" if not measured). With tar_far (e.g. 1e-4) a second table gives TAR (%) at that FAR from each
    result's tar_at_far. best: the model whose row is marked "(best)"."""
    acc = _Cells()
    text = _table(results, "model", lambda r, b: acc(r, "accuracy", benchmark_title(b)), best) + acc.text()
    if tar_far is not None:
        key = far_key(tar_far)
        tar = _Cells()

        def cell(r, b):
            return "-" if r is None else tar(r.get("tar_at_far", {}).get(key), "tar", f"{benchmark_title(b)} {key}")

        text += f"\n\nTAR (%) at FAR={key}\n\n" + _table(results, "model", cell, best) + tar.text()
    return text


def _bench_title(name: str) -> str:
    """ "IJBC 1:N" -> "IJB-C": the benchmark part of a "<benchmark> <protocol>" key, as published tables name it."""
    return benchmark_title(name.split(" ")[0])


def _with(results: dict, key: str) -> list[str]:
    """Benchmarks (first-appearance order) where some model's result has `key`."""
    return [b for b in _benchmarks(results) if any(key in (per.get(b) or {}) for per in results.values())]


def format_tar_table(results: dict[str, dict[str, dict]], fars) -> str:
    """Markdown table of TAR (%) at each FAR: one row per model, a column per (benchmark, FAR) for each benchmark
    whose result has tar_at_far (IJB 1:1 layout: IJB-C 1e-06 ... IJB-C 1e-01)."""
    benches = _with(results, "tar_at_far")
    cols = [(b, far_key(f)) for b in benches for f in fars]
    header = ["model"] + [f"{_bench_title(b)} {k}" for b, k in cols]
    cells = _Cells()

    def cell(r, b, k):
        return "-" if r is None else cells(r.get("tar_at_far", {}).get(k), "tar", f"{_bench_title(b)} {k}")

    rows = [[m] + [cell(per.get(b), b, k) for b, k in cols] for m, per in results.items()]
    return "TAR (%) at FAR\n\n" + _markdown(header, rows) + cells.text()


def format_identification_table(results: dict[str, dict[str, dict]], fpirs, ranks, gallery: str | None = None) -> str:
    """Markdown table of open-set identification: one row per model; per benchmark whose result has
    tpir_at_fpir, columns TPIR (%) at each FPIR then the rank-k identification rates (%). gallery=None reads the
    result's top level (IJB: the mean over the galleries), else result["galleries"][gallery]."""
    benches = _with(results, "tpir_at_fpir")
    cols = [(b, "tpir", far_key(f)) for b in benches for f in fpirs] + [
        (b, "cmc", int(k)) for b in benches for k in ranks
    ]
    cols.sort(key=lambda c: benches.index(c[0]))  # group by benchmark, stable: TPIRs then ranks
    header = ["model"] + [f"{_bench_title(b)} " + (f"TPIR@{k}" if w == "tpir" else f"rank-{k}") for b, w, k in cols]
    cells = _Cells()

    def cell(r, b, what, k):
        if r is not None and gallery is not None:
            r = r.get("galleries", {}).get(gallery)
        if r is None:
            return "-"
        if what == "tpir":
            return cells(r.get("tpir_at_fpir", {}).get(k), "tpir", f"{_bench_title(b)} TPIR@{k}")
        cmc = r.get("cmc", {})
        return _percent(cmc.get(k, cmc.get(str(k))))

    rows = [[m] + [cell(per.get(b), b, w, k) for b, w, k in cols] for m, per in results.items()]
    where = "mean over the galleries" if gallery is None else f"gallery {gallery}"
    title = f"TPIR (%) at FPIR and rank-k identification rate (%), {where}\n\n"
    return title + _markdown(header, rows) + cells.text()


def _plain(x):
    """numpy arrays / scalars -> lists / Python numbers, recursively, so json can write them."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None  # strict JSON has no NaN/Infinity
    return x


def write_json(path, results: dict) -> None:
    """results as JSON (arrays as lists), written atomically."""
    with atomic_write(path, "w") as f:
        json.dump(_plain(results), f, indent=1)
        f.write("\n")


def _flatten(result: dict, prefix: str = "") -> dict:
    """Scalar entries of a result with nested keys joined by '.'; arrays and lists are left out."""
    flat = {}
    for k, v in result.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        elif not isinstance(v, (list, tuple, np.ndarray)):
            flat[f"{prefix}{k}"] = _plain(v)
    return flat


def write_csv(path, results: dict) -> None:
    """One row per (model, benchmark) with every scalar field (nested ones as e.g. tar_at_far.1e-04.tar)."""
    rows = [
        {"model": model, "benchmark": bench, **_flatten({k: v for k, v in r.items() if k != "name"})}
        for model, per in results.items()
        for bench, r in per.items()
    ]
    fields = list(dict.fromkeys(k for row in rows for k in row)) or ["model", "benchmark"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(path, "w") as f:
        f.write(buf.getvalue())


def _figure():
    """A matplotlib Figure and axes on the Agg canvas, with no pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save_png(fig, path) -> None:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    with atomic_write(Path(path), "wb") as f:
        f.write(buf.getvalue())


def plot_cmc(path, curves: dict[str, tuple], xlabel: str = "rank") -> None:
    """PNG of the identification rate against rank (log axis) for each label: (ranks, rates), rates in [0, 1].
    With xlabel="distractors" the same plot shows rank-1 against the number of distractors (MegaFace)."""
    fig, ax = _figure()
    for label, (ranks, rates) in curves.items():
        ax.plot(np.asarray(ranks, float), 100 * np.asarray(rates, float), marker=".", label=label)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("identification rate (%)")
    ax.grid(True, which="both", alpha=0.3)
    if curves:
        ax.legend(loc="lower right", fontsize="small")
    _save_png(fig, path)


def plot_roc(path, curves: dict[str, tuple]) -> None:
    """PNG of TPR against FAR (log axis) for each label: (fpr, tpr)."""
    fig, ax = _figure()
    for label, (fpr, tpr) in curves.items():
        fpr, tpr = np.asarray(fpr, float), np.asarray(tpr, float)
        order = np.argsort(fpr, kind="stable")
        keep = fpr[order] > 0  # a log axis cannot show FAR = 0
        ax.plot(fpr[order][keep], tpr[order][keep], label=label)
    ax.set_xscale("log")
    ax.set_xlabel("FAR (false accept rate)")
    ax.set_ylabel("TAR (true accept rate)")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    if curves:
        ax.legend(loc="lower right", fontsize="small")
    _save_png(fig, path)


# ------------------------------------------------------------------------------------------------ a run's report


@dataclass
class Report:
    """What an evaluation run hands back: the results, the tables as printed, and what `write` puts in a folder.

    results: {model: {benchmark: result}} (results.json); text: the tables (and a line or two on the data);
    best: the model marked best (verification runs: highest mean accuracy over the sets), else None;
    rows: the {model: {benchmark: result}} of results.csv when it differs from results (MegaFace's summary);
    plots: {file name: (plot function, curves)}, e.g. {"roc.png": (plot_roc, {label: (fpr, tpr)})}.
    """

    results: dict
    text: str
    best: str | None = None
    rows: dict | None = None
    plots: dict[str, tuple[Callable, dict]] = field(default_factory=dict)

    def write(self, out) -> list[Path]:
        """results.json, results.csv and the plots into folder `out` (each written atomically); the paths."""
        out = Path(out)
        written = [out / "results.json", out / "results.csv"]
        write_json(written[0], self.results)
        write_csv(written[1], self.results if self.rows is None else self.rows)
        for name, (plot, curves) in self.plots.items():
            plot(out / name, curves)
            written.append(out / name)
        return written
