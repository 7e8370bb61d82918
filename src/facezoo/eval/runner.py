"""Models x test sets -> results -> report: the loop behind `facezoo eval`, `eval-ijb` and `eval-megaface`, one call
for a Python user too:

    report = facezoo.eval.run(["r50.pt", "r50.onnx", "runs/x/"], ["lfw.bin", "cfp_fp.bin", "calfw:/data/calfw"])
    print(report.text); report.write("eval/")          # results.json, results.csv, roc.png
    facezoo.eval.run_ijb(["a.pt", "b.pt"], "/data/IJB_release", targets=("IJBB", "IJBC"))
    facezoo.eval.run_megaface(["a.pt"], "/data/megaface_testpack_v1.0", sizes=(10, 1000, 1_000_000))

A model is a path (a .pt checkpoint or a facezoo .onnx export, loaded by `facezoo.load_model` when its turn
comes and released after it, so a folder of checkpoints needs the memory of one), a training run folder (every
*.pt in it, sorted), a ready embedder (uint8 (B, H, W, 3) RGB -> (B, D) embeddings), a list of these, or
{name: model}. Names default to `model_names`. Each run returns a `report.Report`.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

import facezoo

from ..device import resolve_device
from ..errors import ConfigError, DataError
from ..far import check_far
from ..paths import features_dir
from ..quality import parse_quality
from ..quality.scores import ijb_qualities, rank_weights
from ..train.distributed import world_from_env
from . import megaface_data as md
from .ijb import IJB_FARS, IJB_FPIRS, IJB_RANKS, evaluate_ijb
from .ijb_images import embed_ijb_images, loose_crop_dir
from .ijb_meta import check_target, load_ijb_meta
from .metrics import TAR_FARS
from .pairs import rfw_race, rfw_summary
from .report import Report, format_identification_table, format_table, format_tar_table, plot_cmc, plot_roc
from .sets import as_sets
from .verification import evaluate_sets

RUN_FILES = ("model", "checkpoint", "best")  # what a training run writes: named after their run folder
MEAN = "mean"  # the pseudo-benchmark holding a model's mean accuracy over the sets (and whether it is the best)


# ---------------------------------------------------------------------------------------------------- models


@dataclass
class ModelSource:
    """A model to evaluate: its name and a path or an embedder object (loaded when its turn comes)."""

    name: str
    source: object

    def load(self, device):
        if isinstance(self.source, (str, os.PathLike)):
            return facezoo.load_model(self.source, device)  # looked up at call time: tests may replace it
        return self.source


def _is_path(x) -> bool:
    return isinstance(x, (str, os.PathLike))


def expand_models(models) -> list:
    """The models one by one: a folder becomes every *.pt file in it (sorted), anything else stays itself."""
    items = [models] if _is_path(models) or not isinstance(models, (list, tuple)) else list(models)
    out = []
    for m in items:
        if _is_path(m) and Path(m).is_dir():
            found = sorted(Path(m).glob("*.pt"))
            if not found:
                raise DataError(f"{m}: no *.pt checkpoint in this folder; give checkpoints or a training run folder")
            out += found
        else:
            out.append(m)
    return out


def _candidates(source) -> list[str]:
    """Names for one model, shortest first: stem (a run's model.pt / checkpoint.pt: its folder), file name,
    parent/file, ... up to the absolute path; for an object its `name` attribute or class name."""
    if not _is_path(source):
        return [str(getattr(source, "name", None) or type(source).__name__)]
    p = Path(source)
    first = p.parent.name if p.stem in RUN_FILES and p.parent.name else p.stem
    parts = Path(os.path.abspath(p)).parts
    return [first] + ["/".join(parts[-k:]).lstrip("/") for k in range(1, len(parts) + 1)]


def model_names(sources) -> list[str]:
    """Names made unique minimally: each model takes its shortest name (`_candidates`) that no other model shares,
    e.g. run_a, run_b for run_a/model.pt, run_b/model.pt; m.pt, m.onnx for a checkpoint and its export; x/m.pt,
    y/m.pt for two m.pt files. The same file given twice is numbered (#1, #2)."""
    cands = [_candidates(s) for s in sources]
    same = [os.path.abspath(s) if _is_path(s) else id(s) for s in sources]  # what "the same model" means
    level = [0] * len(cands)
    while True:
        names = [c[lv] for c, lv in zip(cands, level)]
        holders: dict[str, set] = {}
        for n, key in zip(names, same):
            holders.setdefault(n, set()).add(key)
        bump = [i for i, n in enumerate(names) if len(holders[n]) > 1 and level[i] < len(cands[i]) - 1]
        if not bump:
            break
        for i in bump:
            level[i] += 1
    count, seen, out = Counter(names), Counter(), []
    for n in names:
        seen[n] += 1
        out.append(f"{n}#{seen[n]}" if count[n] > 1 else n)
    return out


def resolve_models(models, names=None) -> list[ModelSource]:
    """[ModelSource] for `models` (see the module doc), folders expanded; names: one per model, unique."""
    if isinstance(models, dict):
        if names is not None:
            raise ConfigError("give the names once: as the keys of the models dict or as names=, not both")
        names, models = list(models), list(models.values())
        if any(_is_path(m) and Path(m).is_dir() for m in models):
            raise ConfigError("a named model must be one file or embedder; give run folders in a list instead")
    return named_models(expand_models(models), names)


def named_models(sources: list, names=None) -> list[ModelSource]:
    """[ModelSource] for sources taken as they are (no folder expansion); names default to `model_names`."""
    if not sources:
        raise ConfigError("no models to evaluate: give checkpoint files, .onnx exports, run folders or embedders")
    names = model_names(sources) if names is None else [str(n) for n in names]
    if len(names) != len(sources):
        raise ConfigError(f"{len(names)} names for {len(sources)} models (run folders count each *.pt): give one each")
    dup = next((n for n, c in Counter(names).items() if c > 1), None)
    if dup is not None:
        raise ConfigError(f"model name {dup!r} is given twice; each model needs its own name (--name)")
    return [ModelSource(n, s) for n, s in zip(names, sources)]


def _device(device, local_rank: int | None = None) -> torch.device:
    return device if isinstance(device, torch.device) else resolve_device(str(device or "auto"), local_rank)


def _cache_dir(cache: bool, cache_dir):
    return None if not cache else Path(cache_dir) if cache_dir is not None else features_dir()


def _check_batch(batch_size: int) -> None:
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} (--batch-size): must be at least 1")


# ------------------------------------------------------------------------------------------------ verification


def _summaries(results: dict, set_names: list[str]) -> str | None:
    """Add RFW's mean / std over races and each model's mean accuracy over the sets; mark and return the best."""
    for per in results.values():
        races = {rfw_race(k.removeprefix("rfw_")): v for k, v in per.items() if k.startswith("rfw_")}
        if races:
            s = rfw_summary(races)
            per["rfw"] = {"accuracy": s["mean"], "accuracy_std": s["std"], "races": s["accuracy"]}
    if len(set_names) < 2 and len(results) < 2:
        return None
    means = {m: float(np.mean([per[s]["accuracy"] for s in set_names])) for m, per in results.items()}
    best = max(means, key=means.get) if len(results) > 1 else None  # the first of equals
    for m, per in results.items():
        per[MEAN] = {"accuracy": means[m], "sets": list(set_names)} | ({"best": m == best} if best else {})
    return best


def run(
    models,
    sets,
    *,
    names=None,
    batch_size: int = 256,
    device="auto",
    nfolds: int = 10,
    metric: str = "euclidean",
    fars=TAR_FARS,
    cache: bool = True,
    cache_dir=None,
    progress: bool = True,
    log=None,
) -> Report:
    """1:1 verification of every model on every set (InsightFace's protocol, `verification_metrics`).

    sets: {name: load} (`eval.sets`) or paths / specs: *.bin files, *.yaml sets files, "NAME:ROOT" pair lists
    (read and checked before any model loads). fars: the TAR@FAR targets (n/a below 1/#impostors). Each set is
    decoded once per input size and kept for the run. With several sets each model gets a "mean" entry (mean
    accuracy over the sets); with several models the best mean is marked ("best": true, "(best)" in the table).
    Features go through the cache ($FACEZOO_HOME/features, or cache_dir) unless cache=False; progress: bars on
    stderr when it is a terminal; log(str): one line per model and set.
    """
    sets = as_sets(sets)
    if not sets:
        raise ConfigError("nothing to evaluate: give .bin files, NAME:ROOT pair lists or a sets file (--sets)")
    if MEAN in sets or "rfw" in sets:
        raise ConfigError(f"test set names {MEAN!r} and 'rfw' are taken by the summaries; name the set otherwise")
    _check_batch(batch_size)
    fars = tuple(check_far(f, "--far") for f in fars)
    todo = resolve_models(models, names)
    device = _device(device)
    cache_dir = _cache_dir(cache, cache_dir)
    results: dict[str, dict] = {}
    decoded: dict = {}  # each set decoded once per input size, shared by the models
    for m in todo:
        embed = m.load(device)
        results |= evaluate_sets(
            {m.name: embed}, sets, batch_size, device, nfolds, metric, log, cache_dir, fars, progress, decoded
        )
        del embed
    best = _summaries(results, list(sets))
    text = format_table(results, best=best) + "\n\n" + format_tar_table(results, fars)
    if best is not None:
        text += f"\n\nbest: {best} (mean accuracy {100 * results[best][MEAN]['accuracy']:.2f} over {len(sets)} sets)"
    roc = {f"{m} {b}": (r["fpr"], r["tpr"]) for m, per in results.items() for b, r in per.items() if "fpr" in r}
    return Report(results, text, best, plots={"roc.png": (plot_roc, roc)})


# --------------------------------------------------------------------------------------------------------- IJB

_CURVES = ("scores", "fpr", "tpr", "thresholds")


def _lean(result: dict) -> dict:
    """A result without per-pair / per-probe arrays (kept: the CMC curves), for JSON and CSV."""
    out = {k: v for k, v in result.items() if k not in _CURVES}
    if "galleries" in out:
        out["galleries"] = {g: {k: v for k, v in r.items() if k != "ranks"} for g, r in out["galleries"].items()}
    return out


def _ijb_text(results: dict, fars, fpirs, ranks, per_gallery: bool) -> str:
    first = next(iter(results.values()))
    lines = [f"options {next(iter(first.values()))['options']}"]
    for bench, r in first.items():
        if "num_pairs" in r:
            lines.append(
                f"{bench}: {r['num_templates']:,} templates, {r['num_pairs']:,} pairs ({r['num_genuine']:,} genuine)"
            )
        else:
            sizes = ", ".join(f"{g} {v['num_gallery_templates']:,}" for g, v in r["galleries"].items())
            lines.append(f"{bench}: {r['num_probe_templates']:,} probe templates; gallery templates {sizes}")
    tables = []
    if any("tar_at_far" in r for per in results.values() for r in per.values()):
        tables.append(format_tar_table(results, fars))
    if any("tpir_at_fpir" in r for per in results.values() for r in per.values()):
        tables.append(format_identification_table(results, fpirs, ranks))
        if per_gallery:
            rs = [r for per in results.values() for r in per.values()]
            galleries = dict.fromkeys(g for r in rs for g in r.get("galleries", {}))
            tables += [format_identification_table(results, fpirs, ranks, gallery=g) for g in galleries]
    return "\n".join(lines) + "\n" + "\n\n".join(tables)


def run_ijb(
    models,
    root,
    targets=("IJBC",),
    protocols="all",
    *,
    names=None,
    flip: bool = True,
    norm: bool = True,
    detector_score: bool = True,
    fars=IJB_FARS,
    fpirs=IJB_FPIRS,
    ranks=IJB_RANKS,
    per_gallery: bool = False,
    batch_size: int = 256,
    device="auto",
    cache: bool = True,
    cache_dir=None,
    progress: bool = True,
    log=None,
    quality=None,
) -> Report:
    """IJB-B / IJB-C of every model: 1:1 (TAR at each FAR, InsightFace's reading of the ROC) and 1:N (TPIR at each
    FPIR, CMC at ranks, mean over the two galleries; per_gallery adds a table per gallery).

    quality: a quality method ("NAME[:MODEL]", facezoo.quality; "magface_norm" alone: each model's own norm). Each
    model then gets a second row, "<model> [q: SPEC]", whose image features are multiplied by their quality rank
    weights (facezoo.quality.scores.rank_weights) before the media and template averages: an option reported
    beside the protocol's row, never instead of it.

    root: the release folder (meta/ and loose_crop/, or IJBB/ and IJBC/ holding them); protocols "1:1", "1:N" or
    "all" (each whose files exist). Every meta file is read before a model loads. flip / norm / detector_score:
    InsightFace's options. results: {model: {"IJBC 1:1": ..., "IJBC 1:N": ...}}.
    """
    _check_batch(batch_size)
    fars = tuple(check_far(f, "--far") for f in fars)
    fpirs = tuple(check_far(f, "--fpir") for f in fpirs)
    targets = [targets] if isinstance(targets, str) else list(targets)
    metas = {}
    for target in dict.fromkeys(check_target(t) for t in targets):
        metas[target] = load_ijb_meta(root, target, protocols)
        loose_crop_dir(root, target)
    todo = resolve_models(models, names)
    device = _device(device)
    cache_dir = _cache_dir(cache, cache_dir)
    results: dict[str, dict] = {}
    roc, cmc = {}, {}
    for m in todo:
        embed = m.load(device)
        method = None if quality is None else parse_quality(quality, model=embed, device=device)
        for target, meta in metas.items():
            emb, emb_flip = embed_ijb_images(
                embed, root, target, batch_size, device, log=log, cache_dir=cache_dir, progress=progress
            )
            rows = {m.name: None}
            if method is not None:
                q = ijb_qualities(method, root, target, cache_dir=cache_dir, batch_size=batch_size, progress=progress)
                rows[f"{m.name} [q: {quality if isinstance(quality, str) else method.name}]"] = rank_weights(q)
            for row, weights in rows.items():
                args = (flip, norm, detector_score, fars, fpirs, ranks)
                r = evaluate_ijb(meta, emb, emb_flip, *args, progress=progress, quality_weights=weights)
                per = results.setdefault(row, {})
                if "1:1" in r:
                    per[f"{target} 1:1"] = _lean(r["1:1"])
                    roc[f"{row} {target}"] = (r["1:1"]["fpr"], r["1:1"]["tpr"])
                if "1:N" in r:
                    per[f"{target} 1:N"] = {"target": target, "options": r["options"], **_lean(r["1:N"])}
                    curve = r["1:N"]["cmc_curve"]
                    cmc[f"{row} {target}"] = (range(1, curve.size + 1), curve)
            del emb, emb_flip
        del embed
    plots = {name: p for name, p in (("roc.png", (plot_roc, roc)), ("cmc.png", (plot_cmc, cmc))) if p[1]}
    text = _ijb_text(results, fars, fpirs, ranks, per_gallery)
    if quality is not None:
        text = (
            f"rows [q: ...]: an option beside the protocol: image features x quality rank weight (rank / N) before "
            f"the media and template averages ({quality if isinstance(quality, str) else 'quality method'})\n" + text
        )
    return Report(results, text, plots=plots)


# ---------------------------------------------------------------------------------------------------- MegaFace


def _megaface_curves(full: dict) -> tuple[dict, dict]:
    """(CMC at the largest size, rank-1 against the number of distractors) per model and variant."""
    cmc, rank1 = {}, {}
    for name, res in full.items():
        for variant, tag in (("raw", ""), ("clean", " (R)")):
            if variant in res:
                ident = res[variant]["identification"]
                sizes = sorted(ident)
                rank1[f"{name}{tag}"] = (sizes, [ident[s]["rank1"] for s in sizes])
                top = ident[sizes[-1]]
                ks = sorted(int(k[4:]) for k in top if k.startswith("rank"))
                cmc[f"{name}{tag}"] = (ks, [top[f"rank{r}"] for r in ks])
    return cmc, rank1


def run_megaface(
    models,
    root,
    *,
    features=(),
    names=None,
    sizes=None,
    clean: bool | None = None,
    noise_dir=None,
    probe_root=None,
    distractor_root=None,
    masked=None,
    metric: str = "cosine",
    far: float = 1e-6,
    flip: bool = True,
    search: str = "torch",
    feature_ending: str | None = None,
    write_features=None,
    batch_size: int = 256,
    device="auto",
    cache: bool = True,
    cache_dir=None,
    progress: bool = True,
    log=None,
) -> Report | None:
    """MegaFace challenge 1 (or MegaFace-mask with masked=DIR) of every model and devkit feature folder
    (features=[DIR, ...]): rank-1 / CMC per distractor count and TAR at FAR `far`, raw and (with the noise lists;
    clean=True requires them, False skips them) cleaned. Every listed image is checked before a model loads.

    results: {model: {"benchmarks": summary, "raw": ..., "clean": ...}}; the table and results.csv hold the summary.
    Under torchrun every rank embeds its share through the cache; ranks other than 0 return None.
    """
    _check_batch(batch_size)
    far = check_far(far, "--far")
    world = world_from_env()
    if not cache and world.distributed:
        raise ConfigError("torchrun ranks share features through the cache; drop --no-cache (or use --cache-dir)")
    model_list, features = expand_models(models) if models else [], list(features)
    if not model_list and not features:
        raise ConfigError("nothing to evaluate: give CHECKPOINT ... and/or --features DIR ...")
    lists = md.read_lists(root, sizes, noise_dir)
    if model_list:  # check every listed image before a model loads
        probe_dir = md.find_dir(root, md.PROBE_DIRS, probe_root, "FaceScrub image")
        dist_dir = md.find_dir(root, md.DISTRACTOR_DIRS, distractor_root, "MegaFace image")
        masked_dir = md.find_dir(root, (), masked, "masked FaceScrub image") if masked else None
        md.check_images(probe_dir, lists.probe_paths, lists.probe_list)
        if masked_dir is not None:
            md.check_images(masked_dir, lists.probe_paths, lists.probe_list)
        md.check_images(dist_dir, lists.distractor_paths, lists.distractor_list)
    todo = named_models([*model_list, *features], names)  # feature folders are sources as they are
    device = _device(device, world.local_rank if world.distributed else None)
    cache_dir = _cache_dir(cache, cache_dir)
    prefix = "MegaFace-mask" if masked else "MegaFace"
    table, full = {}, {}
    for i, m in enumerate(todo):
        if i < len(model_list):
            embed = m.load(device)
            feats = md.embed_megaface(
                embed,
                lists,
                probe_dir,
                dist_dir,
                masked_dir=masked_dir,
                flip=flip,
                batch_size=batch_size,
                device=device,
                cache_dir=cache_dir,
                log=log,
                progress=progress,
            )
            del embed
            if not world.is_main:
                continue
            if write_features:
                out_dir = Path(write_features) / m.name if len(todo) > 1 else Path(write_features)
                md.write_feature_dir(out_dir, lists, *feats)
                if log is not None:
                    log(f"[{m.name}] wrote devkit feature files under {out_dir}")
        else:
            if not world.is_main:
                continue
            feats = md.read_feature_dir(m.source, lists, feature_ending, masked=bool(masked))
        result = md.evaluate_lists(
            lists, *feats, clean=clean, metric=metric, far=far, device=device, search=search, log=log, progress=progress
        )
        table[m.name] = md.summary(result, far, prefix)
        full[m.name] = {"benchmarks": table[m.name], **result}
    if not world.is_main:
        return None
    text = (
        f"{prefix}: {len(lists.probe_paths):,} probes, distractor sizes {lists.sizes}, {metric}, "
        f"{lists.layout} lists ({lists.probe_list})\n" + format_table(table)
    )
    cmc, rank1 = _megaface_curves(full)
    plots = {"cmc.png": (plot_cmc, cmc), "rank1_vs_distractors.png": (partial(plot_cmc, xlabel="distractors"), rank1)}
    return Report(full, text, rows=table, plots=plots)
