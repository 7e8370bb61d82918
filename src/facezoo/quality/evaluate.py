"""`facezoo eval-quality`: quality methods compared on pair sets and IJB by their error-versus-reject curves.

    report = facezoo.quality.evaluate.run_quality("r50.pt", ["baseline", "magface_norm", "sdd_fiqa:q.pt"],
                                                  sets=["lfw.bin"], fmrs=(1e-3,))
    print(report.text); report.write("eval_q/")      # results.json, results.csv, erc.png

One recognition model scores the pairs (features as `facezoo eval` computes them: e(x) + e(flip(x)), cosine, through
the same feature cache); each quality method scores every image (cached too); a pair's quality is the min of its
two images' (IJB: a template's quality is the mean of its images', a pair's the min of its two templates'); then
facezoo.quality.erc per set and FMR. "magface_norm" without a model means the recognition model's own norm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..far import far_key
from .erc import erc, pair_quality, reject_grid
from .scores import group_means, ijb_qualities, set_qualities

SHOWN_REJECTS = (0.0, 0.1, 0.2)


def _pair_scores(embed, images, key, batch_size, cache_dir, progress, desc) -> np.ndarray:
    """Cosine of (e + e_flip) of images 2i and 2i + 1, the verification protocol's features (cached)."""
    from ..eval.features import extract_features
    from ..eval.scoring import l2_normalize

    e, e_flip = extract_features(
        embed, key, len(images), lambda a, b: images[a:b], flip=True, batch_size=batch_size,
        cache_dir=cache_dir if key is not None else None, progress=progress, desc=desc,
    )  # fmt: skip
    f = l2_normalize(e.astype(np.float64) + e_flip)
    return np.einsum("ij,ij->i", f[0::2], f[1::2])


def _label(spec) -> str:
    return spec if isinstance(spec, str) else getattr(spec, "name", type(spec).__name__)


def run_quality(
    model,
    quality,
    sets=(),
    *,
    ijb=None,
    targets=("IJBC",),
    fmrs=(1e-3,),
    reject_max: float = 0.5,
    reject_step: float = 0.01,
    batch_size: int = 256,
    device="auto",
    cache: bool = True,
    cache_dir=None,
    progress: bool = True,
    log=None,
):
    """ERC of each quality method (specs "NAME[:MODEL]" or QualityMethod objects) with recognition `model`
    (anything facezoo.load_model takes) on each pair set (.bin, NAME:ROOT, sets .yaml; facezoo.eval.sets) and IJB
    target (ijb = the release root). Returns a facezoo.eval.report.Report: results {method: {set: {far_key(fmr):
    erc result}}}, one table, erc.png (one panel per set and FMR)."""
    from ..eval.ijb import evaluate_ijb, template_rows
    from ..eval.ijb_images import embed_ijb_images, loose_crop_dir
    from ..eval.ijb_meta import check_target, load_ijb_meta
    from ..eval.report import Report
    from ..eval.sets import as_sets
    from ..far import check_far
    from ..models.loader import load_model
    from ..paths import features_dir
    from . import parse_quality

    specs = [quality] if isinstance(quality, str) else list(quality)
    if not specs:
        raise ConfigError("no quality method to evaluate: give e.g. --quality baseline magface_norm sdd_fiqa:q.pt")
    labels = [_label(s) for s in specs]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"a quality method is given twice: {labels}")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} (--batch-size): must be at least 1")
    fmrs = tuple(check_far(f, "--fmr") for f in fmrs)
    rejects = reject_grid(reject_max, reject_step)
    sets = as_sets(sets) if sets else {}
    metas = {}
    if ijb is not None:
        for t in dict.fromkeys(check_target(t) for t in ([targets] if isinstance(targets, str) else targets)):
            metas[t] = load_ijb_meta(ijb, t, ("1:1",))
            loose_crop_dir(ijb, t)
    if not sets and not metas:
        raise ConfigError("nothing to evaluate: give --bin FILE, --pairs NAME:ROOT, --sets FILE or --ijb ROOT")
    cache_dir = (Path(cache_dir) if cache_dir is not None else features_dir()) if cache else None
    embed = load_model(model, device)
    source = model if isinstance(model, (str, Path)) else embed  # a file: its training config names its head
    methods = [parse_quality(s, model=source, device=device, batch_size=batch_size) for s in specs]
    size = tuple(embed.input_size)
    results: dict[str, dict] = {label: {} for label in labels}

    def add(set_name, scores, issame, qualities_of):
        for label, method in zip(labels, methods):
            pq = qualities_of(method)
            results[label][set_name] = {far_key(f): erc(scores, issame, pq, f, rejects) for f in fmrs}
            if log is not None:
                auc = results[label][set_name][far_key(fmrs[0])].get("auc")
                log(f"[{label}] {set_name}: ERC AUC at FMR {far_key(fmrs[0])} = {auc}")

    for set_name, load in sets.items():
        images, issame = load(size)
        key = getattr(load, "cache_key", None)
        key = None if key is None else f"{key}:{size[0]}x{size[1]}"
        scores = _pair_scores(embed, images, key, batch_size, cache_dir, progress, f"{set_name}")

        def qualities_of(method, images=images, key=key, set_name=set_name):
            q = set_qualities(method, key, len(images), lambda a, b: images[a:b], cache_dir=cache_dir,
                              batch_size=batch_size, progress=progress, desc=f"{set_name} quality")  # fmt: skip
            return pair_quality(q, np.arange(0, len(q), 2), np.arange(1, len(q), 2))

        add(set_name, scores, np.asarray(issame, bool), qualities_of)
    for target, meta in metas.items():
        emb, emb_flip = embed_ijb_images(
            embed, ijb, target, batch_size, cache_dir=cache_dir, progress=progress, log=log
        )
        r = evaluate_ijb(meta, emb, emb_flip, fars=(), progress=progress)["1:1"]
        pairs = meta.pairs

        def qualities_of(method, target=target, meta=meta, pairs=pairs):
            q = ijb_qualities(method, ijb, target, cache_dir=cache_dir, batch_size=batch_size, progress=progress)
            tq, tids = group_means(q, meta.media.templates)
            return pair_quality(
                tq, template_rows(tids, pairs.t1, "pairs_t1"), template_rows(tids, pairs.t2, "pairs_t2")
            )

        add(f"{target} 1:1", r["scores"], pairs.labels == 1, qualities_of)
    text = format_erc_table(results, fmrs, rejects)
    described = "\n".join(f"  {label}: {m.describe()}" for label, m in zip(labels, methods))
    text = f"recognition model: {embed.describe()}\nquality methods:\n{described}\n\n{text}"
    curves = {
        f"{s} FMR={far_key(f)}": {
            label: (per[s][far_key(f)]["rejects"], per[s][far_key(f)]["fnmr"])
            for label, per in results.items()
            if "fnmr" in per[s][far_key(f)]
        }
        for s in next(iter(results.values()))
        for f in fmrs
    }
    return Report(results, text, plots={"erc.png": (plot_erc, curves)})


def format_erc_table(results: dict, fmrs, rejects) -> str:
    """One markdown table: a row per quality method; per set and FMR, FNMR (%) at a few rejection rates and the
    ERC area; n/a cells with their reason below."""
    from ..eval.report import _markdown, benchmark_title

    shown = [r for r in SHOWN_REJECTS if r <= rejects[-1] + 1e-12]
    sets = list(next(iter(results.values())))
    header = ["quality"]
    for s in sets:
        for f in fmrs:
            tag = f"{benchmark_title(s.split(' ')[0])} @{far_key(f)}"
            header += [f"{tag} r={r:g}" for r in shown] + [f"{tag} AUC"]
    notes: dict[str, str] = {}
    rows = []
    for label, per in results.items():
        row = [label]
        for s in sets:
            for f in fmrs:
                e = per[s][far_key(f)]
                if "reason" in e:
                    notes.setdefault(f"{s} FMR={far_key(f)}", e["reason"].removeprefix("n/a: "))
                    row += ["n/a"] * (len(shown) + 1)
                    continue
                at = {round(r, 9): v for r, v in zip(e["rejects"], e["fnmr"])}
                row += ["-" if np.isnan(at.get(round(r, 9), np.nan)) else f"{100 * at[round(r, 9)]:.2f}" for r in shown]
                row.append("-" if e["auc"] is None else f"{e['auc']:.4f}")
        rows.append(row)
    lead = (
        f"ERC: FNMR (%) at the threshold of each FMR fixed on all pairs, after rejecting the fraction r of pairs with "
        f"the lowest min(q1, q2); AUC = area under FNMR(r) (as a fraction) over r in [0, {rejects[-1]:g}], step "
        f"{rejects[1] - rejects[0] if len(rejects) > 1 else 0:g} (lower is better)\n\n"
    )
    return lead + _markdown(header, rows) + "".join(f"\nn/a: {w}: {why}" for w, why in notes.items())


def plot_erc(path, panels: dict) -> None:
    """PNG: one panel per {title: {label: (rejects, fnmr)}}, FNMR (%) against the rejected fraction."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..eval.report import _save_png

    n = max(1, len(panels))
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = Figure(figsize=(5 * cols, 4 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for i, (title, curves) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        for label, (r, fnmr) in curves.items():
            ax.plot(np.asarray(r, float), 100 * np.asarray(fnmr, float), label=label)
        ax.set_title(title, fontsize="small")
        ax.set_xlabel("fraction of pairs rejected (lowest quality)")
        ax.set_ylabel("FNMR (%)")
        ax.grid(True, alpha=0.3)
        if curves:
            ax.legend(fontsize="small")
    _save_png(fig, path)
