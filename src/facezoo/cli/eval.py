"""`facezoo eval MODEL|RUN_DIR [...] [--bin FILE ...] [--pairs NAME:ROOT ...] [--sets SETS.yaml]`: 1:1 verification.

MODEL: a facezoo .pt checkpoint or .onnx export; RUN_DIR: a training run folder, whose every *.pt checkpoint is
evaluated (the best by mean accuracy over the sets is marked). --bin takes InsightFace .bin pair sets; --pairs takes
official pair lists with their images, e.g. lfw:/data/lfw, cfp_fp:/data/cfp-dataset, rfw_african:/data/RFW (the
four rfw_* sets also give RFW's mean and std over races); --sets takes a YAML file listing both, with names:

    sets:
      - bin: /data/faces_emore/lfw.bin
      - pairs: calfw:/data/calfw
        name: calfw_raw

TAR at each --far is n/a when the set has fewer than 1/FAR impostor pairs (LFW's 3,000 measure 1e-3, not 1e-4).
"""

from __future__ import annotations

import argparse
import sys

from . import COMMANDS


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def add_run_args(p, models_help: str) -> None:
    """The options every evaluation command shares: models, names, batch, device, cache, output, quiet."""
    p.add_argument("models", nargs="*", metavar="MODEL", help=models_help)
    p.add_argument(
        "--name",
        nargs="+",
        default=None,
        metavar="NAME",
        help="one table name per model (default: file names made unique, e.g. model.pt / model.onnx)",
    )
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    p.add_argument(
        "--runtime",
        default=None,
        metavar="NAME",
        help="run every model on this runtime: torch, onnxruntime, openvino or tensorrt (default: by file type; "
        "with it, the models are loaded up front)",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto: cuda if available")
    p.add_argument("--out", metavar="DIR", default=None, help="write results.json, results.csv and the plots here")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=None,
        help="feature cache folder (default: $FACEZOO_HOME/features); a rerun embeds nothing new",
    )
    cache.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines on stderr, just the tables")


def eval_models(args):
    """args.models as given, or with --runtime: {name: embedder} loaded on that runtime (run folders expanded into
    their checkpoints, names as the evaluation would give them), since the runner loads paths by file type."""
    if args.runtime is None:
        return args.models
    import facezoo

    from ..errors import ConfigError
    from ..eval.runner import expand_models, model_names

    paths = expand_models(args.models)
    names = args.name or model_names(paths)
    if len(names) != len(paths):
        raise ConfigError(f"{len(names)} names for {len(paths)} models (run folders count each *.pt): give one each")
    return {
        n: facezoo.load_model(m, args.device, runtime=args.runtime, batch_size=args.batch_size)
        for n, m in zip(names, paths)
    }


def run_kwargs(args) -> dict:
    """The shared options as keyword arguments of facezoo.eval.run / run_ijb / run_megaface (with eval_models)."""
    return {
        "names": None if getattr(args, "runtime", None) else args.name,
        "batch_size": args.batch_size,
        "device": args.device,
        "cache": not args.no_cache,
        "cache_dir": args.cache_dir,
        "progress": not args.quiet,
        "log": None if args.quiet else log,
    }


def show(report, out) -> int:
    """Print the report's tables; write its files into `out` when given."""
    print(report.text)
    if out:
        print("wrote " + ", ".join(map(str, report.write(out))))
    return 0


@COMMANDS.register("eval")
def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="verification accuracy on .bin pair sets (LFW, CFP-FP, AgeDB-30, ...)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the sets-file example as written
    )
    add_run_args(p, "facezoo .pt checkpoints, .onnx exports, or training run folders (every *.pt inside)")
    p.add_argument(
        "--bin",
        dest="bins",
        nargs="+",
        default=[],
        metavar="FILE",
        help="InsightFace .bin pair sets, e.g. lfw.bin cfp_fp.bin agedb_30.bin",
    )
    p.add_argument(
        "--pairs",
        nargs="+",
        default=[],
        metavar="NAME:ROOT",
        help="official pair lists, e.g. lfw:/data/lfw calfw:/data/calfw rfw_asian:/data/RFW "
        "(names: lfw calfw cplfw cfp_fp cfp_ff rfw_african rfw_asian rfw_caucasian rfw_indian)",
    )
    p.add_argument(
        "--sets", nargs="+", default=[], metavar="SETS.yaml", help="YAML files listing named .bin files and pair lists"
    )
    p.add_argument("--nfolds", type=int, default=10, help="cross-validation folds (default 10, the protocol)")
    p.add_argument(
        "--metric",
        choices=("euclidean", "cosine"),
        default="euclidean",
        help="euclidean: InsightFace protocol (default); cosine: cosine-threshold variant",
    )
    p.add_argument(
        "--far",
        type=float,
        nargs="+",
        default=[1e-3, 1e-4],
        metavar="FAR",
        help="TAR at these FARs over all pairs (default 1e-3 1e-4; n/a below 1/#impostor pairs)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import ConfigError
    from ..eval.runner import run as evaluate
    from ..eval.sets import resolve_sets

    if not args.models:
        raise ConfigError("no model to evaluate: give MODEL.pt, MODEL.onnx or a run folder")
    sets = resolve_sets(args.bins, args.pairs, args.sets)  # every list read, every image checked, before a model
    if not sets:
        raise ConfigError("nothing to evaluate: give --bin FILE ..., --pairs NAME:ROOT ... and/or --sets SETS.yaml")
    models = eval_models(args)
    report = evaluate(models, sets, nfolds=args.nfolds, metric=args.metric, fars=args.far, **run_kwargs(args))
    return show(report, args.out)
