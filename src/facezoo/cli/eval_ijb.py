"""`facezoo eval-ijb CHECKPOINT [...] --root IJB_DIR [--target IJBB IJBC] [--protocol 1:1|1:N|all]`.

IJB-B / IJB-C 1:1 verification (TAR at FAR 1e-6 ... 1e-1) and 1:N mixed search (TPIR at FPIR 0.01, 0.1 and
rank-1/5/10, the mean over the two galleries; --per-gallery adds one table per gallery). The release folder (or
its IJBB/ and IJBC/ sub-folders) holds meta/ (<t>_face_tid_mid.txt, <t>_name_5pts_score.txt,
<t>_template_pair_label.txt, <t>_1N_gallery_{G1,G2|S1,S2}.csv, <t>_1N_probe_mixed.csv) and loose_crop/.
Options as InsightFace's eval_ijbc.py: flip, norm, detector score (all on by default). One row per checkpoint.
Image features are cached per model (--cache-dir, --no-cache), so a second run or another protocol is quick.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import COMMANDS


@COMMANDS.register("eval-ijb")
def register(sub) -> None:
    p = sub.add_parser(
        "eval-ijb", help="IJB-B / IJB-C 1:1 verification (TAR@FAR) and 1:N search (TPIR@FPIR, CMC)", description=__doc__
    )
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="facezoo model.pt / checkpoint.pt files")
    p.add_argument("--root", required=True, help="the IJB release folder (with meta/ and loose_crop/, or IJBC/...)")
    p.add_argument("--target", nargs="+", default=["IJBC"], metavar="IJBB|IJBC", help="default IJBC")
    p.add_argument(
        "--protocol",
        choices=("1:1", "1:N", "all"),
        default="all",
        help="default all: each protocol whose files are in meta/",
    )
    p.add_argument("--per-gallery", action="store_true", help="1:N: also print a table for each gallery")
    p.add_argument("--no-flip", action="store_true", help="embed the image only (default: image + flip)")
    p.add_argument("--no-norm", action="store_true", help="L2-normalise each image feature before pooling")
    p.add_argument("--no-detector-score", action="store_true", help="do not weight features by faceness score")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=None,
        help="cache image features per model here (default: facezoo's features folder, $FACEZOO_HOME)",
    )
    p.add_argument("--no-cache", action="store_true", help="embed every image again, cache nothing")
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="write results.json, results.csv, roc.png (1:1) and cmc.png (1:N) here",
    )
    p.set_defaults(func=run)


_CURVES = ("scores", "fpr", "tpr", "thresholds")


def _lean(result: dict) -> dict:
    """A result without per-pair / per-probe arrays (kept: the CMC curves), for JSON and CSV."""
    out = {k: v for k, v in result.items() if k not in _CURVES}
    if "galleries" in out:
        out["galleries"] = {g: {k: v for k, v in r.items() if k != "ranks"} for g, r in out["galleries"].items()}
    return out


def run(args) -> int:

    from .. import load_model
    from ..device import resolve_device
    from ..errors import ConfigError
    from ..eval.ijb import IJB_FARS, evaluate_ijb, load_ijb_meta
    from ..eval.ijb_1n import IJB_FPIRS, IJB_RANKS
    from ..eval.ijb_images import embed_ijb_images, loose_crop_dir
    from ..eval.report import format_identification_table, format_tar_table, plot_cmc, plot_roc, write_csv, write_json
    from ..paths import features_dir
    from .eval import model_names

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: must be at least 1")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    metas = {}
    for target in dict.fromkeys(t.upper().replace("-", "") for t in args.target):
        metas[target] = load_ijb_meta(args.root, target, args.protocol)  # every meta file read before a model loads
        loose_crop_dir(args.root, target)
    device = resolve_device(args.device)
    models = {n: load_model(p, device) for n, p in zip(model_names(args.checkpoints), args.checkpoints)}
    options = {
        "use_flip": not args.no_flip,
        "use_norm": not args.no_norm,
        "use_detector_score": not args.no_detector_score,
    }
    cache_dir = None if args.no_cache else (args.cache_dir or features_dir())
    results: dict[str, dict] = {}
    roc, cmc = {}, {}
    for name, model in models.items():
        per = results.setdefault(name, {})
        for target, meta in metas.items():
            emb, emb_flip = embed_ijb_images(
                model, args.root, target, args.batch_size, device, log=log, cache_dir=cache_dir
            )
            r = evaluate_ijb(meta, emb, emb_flip, **options)
            del emb, emb_flip
            if "1:1" in r:
                per[f"{target} 1:1"] = _lean(r["1:1"])
                roc[f"{name} {target}"] = (r["1:1"]["fpr"], r["1:1"]["tpr"])
            if "1:N" in r:
                per[f"{target} 1:N"] = {"target": target, "options": r["options"], **_lean(r["1:N"])}
                curve = r["1:N"]["cmc_curve"]
                cmc[f"{name} {target}"] = (range(1, curve.size + 1), curve)
    first = next(iter(results.values()))
    print(f"options {next(iter(first.values()))['options']}")
    for bench, r in first.items():
        if "num_pairs" in r:
            print(f"{bench}: {r['num_templates']:,} templates, {r['num_pairs']:,} pairs ({r['num_genuine']:,} genuine)")
        else:
            sizes = ", ".join(f"{g} {v['num_gallery_templates']:,}" for g, v in r["galleries"].items())
            print(f"{bench}: {r['num_probe_templates']:,} probe templates; gallery templates {sizes}")
    tables = []
    if roc:
        tables.append(format_tar_table(results, IJB_FARS))
    if cmc:
        tables.append(format_identification_table(results, IJB_FPIRS, IJB_RANKS))
        if args.per_gallery:
            galleries = dict.fromkeys(
                g for per in results.values() for r in per.values() for g in r.get("galleries", {})
            )
            tables += [format_identification_table(results, IJB_FPIRS, IJB_RANKS, gallery=g) for g in galleries]
    print("\n\n".join(tables))
    if args.out:
        out = Path(args.out)
        write_json(out / "results.json", results)
        write_csv(out / "results.csv", results)
        written = [out / "results.json", out / "results.csv"]
        if roc:
            plot_roc(out / "roc.png", roc)
            written.append(out / "roc.png")
        if cmc:
            plot_cmc(out / "cmc.png", cmc)
            written.append(out / "cmc.png")
        print("wrote " + ", ".join(map(str, written)))
    return 0
