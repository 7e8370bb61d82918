"""`facezoo eval CHECKPOINT [...] [--bin FILE ...] [--pairs NAME:ROOT ...]`: 1:1 verification accuracy.

--bin takes InsightFace .bin pair sets; --pairs takes official pair lists with their images, e.g. lfw:/data/lfw,
cfp_fp:/data/cfp-dataset, rfw_african:/data/RFW (the four rfw_* sets also give RFW's mean and std over races).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from . import COMMANDS


@COMMANDS.register("eval")
def register(sub) -> None:
    p = sub.add_parser(
        "eval", help="verification accuracy on .bin pair sets (LFW, CFP-FP, AgeDB-30, ...)", description=__doc__
    )
    p.add_argument(
        "checkpoints",
        nargs="+",
        metavar="CHECKPOINT",
        help="facezoo model.pt / checkpoint.pt files, or .onnx files from facezoo export",
    )
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
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if available")
    p.add_argument("--nfolds", type=int, default=10, help="cross-validation folds (default 10, the protocol)")
    p.add_argument(
        "--metric",
        choices=("euclidean", "cosine"),
        default="euclidean",
        help="euclidean: InsightFace protocol (default); cosine: cosine-threshold variant",
    )
    p.add_argument("--out", metavar="DIR", default=None, help="write results.json, results.csv and roc.png here")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=None,
        help="feature cache folder (default: $FACEZOO_HOME/features); a rerun embeds nothing new",
    )
    cache.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.set_defaults(func=run)


def model_names(paths) -> list[str]:
    """A checkpoint's stem if no other checkpoint shares it, else parent-folder/stem (numbered if still equal).

    The files a training run writes (model.pt, checkpoint.pt) are named after their run folder.
    """
    paths = [Path(p) for p in paths]
    paths = [p.parent if p.stem in ("model", "checkpoint") and p.parent.name else p for p in paths]
    stems = Counter(p.stem for p in paths)
    names = [p.stem if stems[p.stem] == 1 else f"{p.parent.name}/{p.stem}" for p in paths]
    seen: Counter = Counter()
    out = []
    for n in names:
        seen[n] += 1
        out.append(n if names.count(n) == 1 else f"{n}#{seen[n]}")
    return out


def _pairs_key(spec: str, pairset) -> str:
    """Cache key of a pair set: its name and every image file's path, size and modification time, in order."""
    import hashlib
    import os

    h = hashlib.sha256()
    for p in (q for pair in zip(pairset.paths1, pairset.paths2) for q in pair):
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return f"pairs:{spec.partition(':')[0].strip().lower()}:{h.hexdigest()}"


def run(args) -> int:

    from .. import load_model
    from ..device import resolve_device
    from ..errors import ConfigError
    from ..eval.pairs import load_pair_images, read_pairs, rfw_race, rfw_summary
    from ..eval.report import format_table, plot_roc, write_csv, write_json
    from ..eval.verification import bin_sets, evaluate_sets, keyed
    from ..paths import features_dir

    if not args.bins and not args.pairs:
        raise ConfigError("nothing to evaluate: give --bin FILE ... and/or --pairs NAME:ROOT ...")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: must be at least 1")
    sets = bin_sets(args.bins)
    for spec in args.pairs:
        pairset = read_pairs(spec)  # parses the list and checks every image exists before any model runs
        sets[spec.partition(":")[0].strip().lower()] = keyed(
            lambda size, ps=pairset: load_pair_images(ps, size), _pairs_key(spec, pairset)
        )
    device = resolve_device(args.device)
    models = {}
    for name, path in zip(model_names(args.checkpoints), args.checkpoints):
        models[name] = load_model(path, device)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    cache_dir = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else features_dir()
    results = evaluate_sets(
        models, sets, args.batch_size, device, args.nfolds, args.metric, log=log, cache_dir=cache_dir
    )
    for per_set in results.values():
        races = {rfw_race(k.removeprefix("rfw_")): v for k, v in per_set.items() if k.startswith("rfw_")}
        if races:
            summary = rfw_summary(races)
            per_set["rfw"] = {"accuracy": summary["mean"], "accuracy_std": summary["std"], "races": summary["accuracy"]}
    print(format_table(results))
    if args.out:
        out = Path(args.out)
        write_json(out / "results.json", results)
        write_csv(out / "results.csv", results)
        curves = {f"{m} {b}": (r["fpr"], r["tpr"]) for m, per in results.items() for b, r in per.items() if "fpr" in r}
        plot_roc(out / "roc.png", curves)
        print(f"wrote {out / 'results.json'}, {out / 'results.csv'}, {out / 'roc.png'}")
    return 0
