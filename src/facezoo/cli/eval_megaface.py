"""`facezoo eval-megaface MODEL... --root MEGAFACE_DIR`: MegaFace challenge 1 identification (rank-1 with up to
1,000,000 distractors, CMC) and verification (TAR at FAR 1e-6), raw and cleaned with InsightFace's noise lists.

--root holds the MegaFace devkit lists (templatelists/) or InsightFace's test pack (facescrub_lst, megaface_lst)
with aligned images; see facezoo.eval.megaface_data for the layouts. --features DIR evaluates devkit feature
files instead of (or beside) checkpoints. --masked DIR runs MegaFace-mask (masked probe images). Features are
cached under $FACEZOO_HOME/features (--cache-dir to move, --no-cache to disable); torchrun splits extraction over
ranks. TAR at a FAR below 1/#impostor pairs (probes x distractors) is n/a.
"""

from __future__ import annotations

from . import COMMANDS
from .eval import add_run_args, eval_models, run_kwargs, show


@COMMANDS.register("eval-megaface")
def register(sub) -> None:
    p = sub.add_parser(
        "eval-megaface",
        help="MegaFace challenge 1 identification / verification (raw and cleaned)",
        description=__doc__,
    )
    add_run_args(p, "facezoo .pt checkpoints, .onnx exports, or training run folders (every *.pt inside)")
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
    p.add_argument("--metric", choices=("cosine", "l2"), default="cosine", help="default cosine")
    p.add_argument("--far", type=float, default=1e-6, help="verification FAR (default 1e-6)")
    p.add_argument("--no-flip", action="store_true", help="embed the image only (default: image + flip)")
    p.add_argument(
        "--search",
        choices=("torch", "faiss"),
        default="torch",
        help="exact search: blockwise torch on --device (default) or a faiss flat index (CPU)",
    )
    p.add_argument(
        "--write-features",
        metavar="DIR",
        default=None,
        help="also write the extracted features as devkit feature files (one sub-folder per model)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import ConfigError
    from ..eval.runner import run_megaface

    if args.clean and args.no_clean:
        raise ConfigError("--clean and --no-clean contradict each other; give one")
    report = run_megaface(
        eval_models(args),
        args.root,
        features=args.features,
        sizes=args.sizes,
        clean=False if args.no_clean else (True if args.clean else None),
        noise_dir=args.noise_dir,
        probe_root=args.probe_root,
        distractor_root=args.distractor_root,
        masked=args.masked,
        metric=args.metric,
        far=args.far,
        flip=not args.no_flip,
        search=args.search,
        feature_ending=args.feature_ending,
        write_features=args.write_features,
        **run_kwargs(args),
    )
    return 0 if report is None else show(report, args.out)
