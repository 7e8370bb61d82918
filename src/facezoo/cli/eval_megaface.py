"""`facezoo eval-megaface CHECKPOINT... --root MEGAFACE_DIR`: MegaFace challenge 1 identification (rank-1 with up to
1,000,000 distractors, CMC) and verification (TAR at FAR 1e-6), raw and cleaned with InsightFace's noise lists.

--root holds the MegaFace devkit lists (templatelists/) or InsightFace's test pack (facescrub_lst, megaface_lst)
with aligned images; see facezoo.eval.megaface_data for the layouts. --features DIR evaluates devkit feature
files instead of (or beside) checkpoints. --masked DIR runs MegaFace-mask (masked probe images). Features are
cached under $FACEZOO_HOME/features (--cache-dir to move, --no-cache to disable); torchrun splits extraction over
ranks.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import COMMANDS


@COMMANDS.register("eval-megaface")
def register(sub) -> None:
    p = sub.add_parser(
        "eval-megaface",
        help="MegaFace challenge 1 identification / verification (raw and cleaned)",
        description=__doc__,
    )
    p.add_argument("checkpoints", nargs="*", metavar="CHECKPOINT", help="facezoo model.pt / checkpoint.pt files")
    p.add_argument("--root", required=True, help="MegaFace folder: devkit templatelists/ or the InsightFace test pack")
    p.add_argument(
        "--features",
        nargs="+",
        default=[],
        metavar="DIR",
        help="devkit feature folders (facescrub/ + megaface/ of <image><ending> files) to evaluate",
    )
    p.add_argument("--feature-ending", default=None, help="feature file ending, e.g. _insightface.bin (default: found)")
    p.add_argument(
        "--sizes",
        nargs="+",
        type=int,
        default=None,
        metavar="N",
        help="distractor counts (default: every size with a list, e.g. 10 100 ... 1000000)",
    )
    p.add_argument(
        "--clean",
        action="store_true",
        help="require the noise lists and report cleaned results (they are reported anyway when the lists are there)",
    )
    p.add_argument("--no-clean", action="store_true", help="report raw results only")
    p.add_argument(
        "--noise-dir", default=None, help="folder of facescrub_noises.txt / megaface_noises.txt (default: --root)"
    )
    p.add_argument("--probe-root", default=None, help="FaceScrub image folder (default: <root>/facescrub_images)")
    p.add_argument("--distractor-root", default=None, help="MegaFace image folder (default: <root>/megaface_images)")
    p.add_argument(
        "--masked",
        default=None,
        metavar="DIR",
        help="MegaFace-mask: folder of masked FaceScrub probes (same structure as the probe folder)",
    )
    p.add_argument("--metric", choices=("cosine", "l2"), default="cosine")
    p.add_argument("--far", type=float, default=1e-6, help="verification FAR (default 1e-6)")
    p.add_argument("--no-flip", action="store_true", help="embed the image only (default: image + flip)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--search",
        choices=("torch", "faiss"),
        default="torch",
        help="exact search: blockwise torch on --device (default) or a faiss flat index (CPU)",
    )
    p.add_argument("--out", metavar="DIR", default=None, help="write results.json, results.csv, cmc.png here")
    p.add_argument(
        "--write-features",
        metavar="DIR",
        default=None,
        help="also write the extracted features as devkit feature files (one sub-folder per model)",
    )
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--cache-dir", default=None, help="feature cache folder (default: $FACEZOO_HOME/features)")
    cache.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.set_defaults(func=run)


def run(args) -> int:

    from .. import load_model
    from ..device import resolve_device
    from ..errors import ConfigError
    from ..eval import megaface_data as md
    from ..eval.report import format_table, plot_cmc, write_csv, write_json
    from ..paths import features_dir
    from ..train.distributed import world_from_env
    from .eval import model_names

    if not args.checkpoints and not args.features:
        raise ConfigError("nothing to evaluate: give CHECKPOINT ... and/or --features DIR ...")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.clean and args.no_clean:
        raise ConfigError("--clean and --no-clean contradict each other; give one")
    world = world_from_env()
    if args.no_cache and world.distributed:
        raise ConfigError("torchrun ranks share features through the cache; drop --no-cache (or use --cache-dir)")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    lists = md.read_lists(args.root, args.sizes, args.noise_dir)
    clean = False if args.no_clean else (True if args.clean else None)
    if args.checkpoints:  # check every listed image before a model loads
        probe_dir = md.find_dir(args.root, md.PROBE_DIRS, args.probe_root, "FaceScrub image")
        dist_dir = md.find_dir(args.root, md.DISTRACTOR_DIRS, args.distractor_root, "MegaFace image")
        masked_dir = md.find_dir(args.root, (), args.masked, "masked FaceScrub image") if args.masked else None
        md.check_images(probe_dir, lists.probe_paths, lists.probe_list)
        if masked_dir is not None:
            md.check_images(masked_dir, lists.probe_paths, lists.probe_list)
        md.check_images(dist_dir, lists.distractor_paths, lists.distractor_list)
    device = resolve_device(args.device, world.local_rank if world.distributed else None)
    cache_dir = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else features_dir()
    prefix = "MegaFace-mask" if args.masked else "MegaFace"
    names = model_names([*args.checkpoints, *args.features])
    table, full = {}, {}
    for name, src in zip(names, [*args.checkpoints, *args.features]):
        if src in args.checkpoints:
            model = load_model(src, device)
            feats = md.embed_megaface(
                model,
                lists,
                probe_dir,
                dist_dir,
                masked_dir=masked_dir,
                flip=not args.no_flip,
                batch_size=args.batch_size,
                device=device,
                cache_dir=cache_dir,
                log=log,
            )
            del model
            if not world.is_main:
                continue
            if args.write_features:
                out_dir = Path(args.write_features) / name if len(names) > 1 else Path(args.write_features)
                md.write_feature_dir(out_dir, lists, *feats)
                log(f"[{name}] wrote devkit feature files under {out_dir}")
        else:
            if not world.is_main:
                continue
            feats = md.read_feature_dir(src, lists, args.feature_ending, masked=bool(args.masked))
        result = md.evaluate_lists(
            lists, *feats, clean=clean, metric=args.metric, far=args.far, device=device, search=args.search, log=log
        )
        table[name] = md.summary(result, args.far, prefix)
        full[name] = {"benchmarks": table[name], **result}
    if not world.is_main:
        return 0
    print(
        f"{prefix}: {len(lists.probe_paths):,} probes, distractor sizes {lists.sizes}, {args.metric}, "
        f"{lists.layout} lists ({lists.probe_list})"
    )
    print(format_table(table))
    if args.out:
        out = Path(args.out)
        write_json(out / "results.json", full)
        write_csv(out / "results.csv", table)
        rank1 = {}
        cmc = {}
        for name, res in full.items():
            for variant, tag in (("raw", ""), ("clean", " (R)")):
                if variant in res:
                    ident = res[variant]["identification"]
                    sizes = sorted(ident)
                    rank1[f"{name}{tag}"] = (sizes, [ident[s]["rank1"] for s in sizes])
                    top = ident[sizes[-1]]
                    ranks = sorted(int(k[4:]) for k in top if k.startswith("rank"))
                    cmc[f"{name}{tag}"] = (ranks, [top[f"rank{r}"] for r in ranks])
        plot_cmc(out / "cmc.png", cmc, xlabel="rank")
        plot_cmc(out / "rank1_vs_distractors.png", rank1, xlabel="distractors")
        print(
            f"wrote {out / 'results.json'}, {out / 'results.csv'}, {out / 'cmc.png'}, "
            f"{out / 'rank1_vs_distractors.png'}"
        )
    return 0
