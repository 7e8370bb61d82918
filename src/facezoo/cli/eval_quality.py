"""`facezoo eval-quality --model M --quality baseline magface_norm sdd_fiqa:Q.pt [--bin F ...] [--pairs N:R ...]
[--sets S.yaml] [--ijb ROOT --target IJBC] [--fmr 1e-3 ...]`: face image quality methods compared by their
error-versus-reject curves (ERC).

M scores the pairs (features e(x) + e(flip(x)), cosine, as `facezoo eval`); each quality method scores every image;
a pair's quality is the min of its two images' (IJB: a template's is the mean of its images'). For each FMR the
threshold is fixed on all impostor pairs, then the fraction r of pairs with the lowest quality is rejected and the
FNMR of the kept genuine pairs read; the table gives FNMR at r = 0, 0.1, 0.2 and the area under FNMR(r) over
[0, --reject-max]; erc.png draws the curves. "magface_norm" alone is M's own embedding norm. An FMR below
1/#impostor pairs is n/a.
"""

from __future__ import annotations

import argparse

from . import COMMANDS
from .eval import log, show


@COMMANDS.register("eval-quality")
def register(sub) -> None:
    p = sub.add_parser(
        "eval-quality",
        help="compare face image quality methods by error-versus-reject curves (ERC)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="M", help="the recognition model that scores the pairs")
    p.add_argument(
        "--quality",
        nargs="+",
        required=True,
        metavar="Q",
        help="quality methods: baseline, magface_norm (M's norm), magface_norm:M2.pt, sdd_fiqa:Q.pt",
    )
    p.add_argument("--bin", dest="bins", nargs="+", default=[], metavar="FILE", help="InsightFace .bin pair sets")
    p.add_argument("--pairs", nargs="+", default=[], metavar="NAME:ROOT", help="official pair lists (as facezoo eval)")
    p.add_argument("--sets", nargs="+", default=[], metavar="SETS.yaml", help="YAML files listing pair sets")
    p.add_argument("--ijb", metavar="ROOT", default=None, help="an IJB release folder: its 1:1 template pairs")
    p.add_argument("--target", nargs="+", default=["IJBC"], metavar="IJBB|IJBC", help="with --ijb (default IJBC)")
    p.add_argument("--fmr", type=float, nargs="+", default=[1e-3], metavar="FMR", help="FMR targets (default 1e-3)")
    p.add_argument("--reject-max", type=float, default=0.5, help="largest rejected fraction (default 0.5)")
    p.add_argument("--reject-step", type=float, default=0.01, help="step of the rejection grid (default 0.01)")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto")
    p.add_argument("--out", metavar="DIR", default=None, help="write results.json, results.csv and erc.png here")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache-dir", metavar="DIR", default=None, help="feature cache (default $FACEZOO_HOME/features)"
    )
    cache.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines on stderr")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..eval.sets import resolve_sets
    from ..quality.evaluate import run_quality

    sets = resolve_sets(args.bins, args.pairs, args.sets)  # every list read, every image checked, before a model
    report = run_quality(
        args.model,
        args.quality,
        sets,
        ijb=args.ijb,
        targets=args.target,
        fmrs=args.fmr,
        reject_max=args.reject_max,
        reject_step=args.reject_step,
        batch_size=args.batch_size,
        device=args.device,
        cache=not args.no_cache,
        cache_dir=args.cache_dir,
        progress=not args.quiet,
        log=None if args.quiet else log,
    )
    return show(report, args.out)
