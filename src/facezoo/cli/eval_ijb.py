"""`facezoo eval-ijb MODEL|RUN_DIR [...] --root IJB_DIR [--target IJBB IJBC] [--protocol 1:1|1:N|all]`.

IJB-B / IJB-C 1:1 verification (TAR at FAR 1e-6 ... 1e-1) and 1:N mixed search (TPIR at FPIR 0.01, 0.1 and
rank-1/5/10, the mean over the two galleries; --per-gallery adds one table per gallery). The release folder (or
its IJBB/ and IJBC/ sub-folders) holds meta/ (<t>_face_tid_mid.txt, <t>_name_5pts_score.txt,
<t>_template_pair_label.txt, <t>_1N_gallery_{G1,G2|S1,S2}.csv, <t>_1N_probe_mixed.csv) and loose_crop/.
Options as InsightFace's eval_ijbc.py: flip, norm, detector score (all on by default). One row per model.
A FAR below 1/#impostor pairs (an FPIR below 1/#non-mated searches) is n/a. Image features are cached per model
(--cache-dir, --no-cache), so a second run or another protocol is quick.
"""

from __future__ import annotations

from . import COMMANDS
from .eval import add_run_args, eval_models, run_kwargs, show


@COMMANDS.register("eval-ijb")
def register(sub) -> None:
    p = sub.add_parser(
        "eval-ijb", help="IJB-B / IJB-C 1:1 verification (TAR@FAR) and 1:N search (TPIR@FPIR, CMC)", description=__doc__
    )
    add_run_args(p, "facezoo .pt checkpoints, .onnx exports, or training run folders (every *.pt inside)")
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
    p.add_argument(
        "--far", type=float, nargs="+", default=None, metavar="FAR", help="1:1 FARs (default 1e-6 1e-5 ... 1e-1)"
    )
    p.add_argument("--fpir", type=float, nargs="+", default=None, metavar="FPIR", help="1:N FPIRs (default 0.01 0.1)")
    p.add_argument(
        "--quality",
        default=None,
        metavar="Q",
        help="also pool with image features weighted by quality rank (a second row per model, beside the "
        "protocol's): baseline, magface_norm (the model's own norm), magface_norm:M.pt or sdd_fiqa:Q.pt",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import ConfigError
    from ..eval.ijb import IJB_FARS, IJB_FPIRS
    from ..eval.runner import run_ijb

    if not args.models:
        raise ConfigError("no model to evaluate: give MODEL.pt, MODEL.onnx or a run folder")
    report = run_ijb(
        eval_models(args),
        args.root,
        args.target,
        args.protocol,
        flip=not args.no_flip,
        norm=not args.no_norm,
        detector_score=not args.no_detector_score,
        fars=args.far or IJB_FARS,
        fpirs=args.fpir or IJB_FPIRS,
        per_gallery=args.per_gallery,
        quality=args.quality,
        **run_kwargs(args),
    )
    return show(report, args.out)
