"""`facezoo quality list | score | labels | train`: face image quality (higher = better for recognition).

  facezoo quality list
  facezoo quality score IMAGES... --model Q [--aligned]          JSON per image (faces detected unless --aligned)
  facezoo quality labels DATA --model M --out labels.npy          SDD-FIQA pseudo-labels of a training set
  facezoo quality train DATA --labels labels.npy --output DIR     the quality regressor (mode quality_regression)

Q: baseline, magface_norm:M.pt or sdd_fiqa:Q.pt. labels and train resume where they stopped (train: --resume), and
run under torchrun (torchrun --nproc_per_node 8 -m facezoo quality labels ...).
"""

from __future__ import annotations

import argparse
import json

from . import COMMANDS
from ._sdk_args import add_detector_args, add_device_arg, check_files, face_dict, log, print_json


@COMMANDS.register("quality")
def register(sub) -> None:
    p = sub.add_parser(
        "quality",
        help="face image quality: score images, SDD-FIQA labels, train a quality regressor",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sp = p.add_subparsers(dest="quality_command", metavar="ACTION", required=True)

    ls = sp.add_parser("list", help="the quality methods")
    ls.set_defaults(func=run_list)

    sc = sp.add_parser("score", help="quality of images as JSON, one object per image")
    sc.add_argument("images", nargs="+", metavar="IMAGE", help="image files (photos, or aligned crops with --aligned)")
    sc.add_argument("--model", required=True, metavar="Q", help="baseline, magface_norm:M.pt or sdd_fiqa:Q.pt")
    sc.add_argument("--aligned", action="store_true", help="inputs are aligned crops: skip detection")
    sc.add_argument("--batch-size", type=int, default=32, help="crops per forward pass (default 32)")
    add_detector_args(sc)
    add_device_arg(sc)
    sc.set_defaults(func=run_score)

    lb = sp.add_parser("labels", help="SDD-FIQA quality pseudo-labels of a training set (resumable)")
    lb.add_argument("data", metavar="DATA", help="training set: RecordIO folder, image folder or list file")
    lb.add_argument("--model", required=True, metavar="M", help="the recognition model whose similarities label")
    lb.add_argument("--out", required=True, metavar="labels.npy", help="output: one label per image (NaN: none)")
    lb.add_argument("--m", type=int, default=12, help="negative sets per image (default 12, the authors' code)")
    lb.add_argument(
        "--max-positives", type=int, default=24, help="cap on the positive set (default 24, the authors'); 0: all"
    )
    lb.add_argument("--seed", type=int, default=0, help="seed of the sampled sets (default 0)")
    lb.add_argument("--no-flip", action="store_true", help="features of the image only (default: image + flip)")
    lb.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    lb.add_argument("--chunk-images", type=int, default=65536, help="images per resumable label chunk")
    lb.add_argument("--cache-dir", default=None, metavar="DIR", help="feature cache (default OUT.parts/features)")
    lb.add_argument("--keep-parts", action="store_true", help="keep OUT.parts/ (features, chunks) after success")
    lb.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    add_device_arg(lb)
    lb.set_defaults(func=run_labels)

    tr = sp.add_parser("train", help="train the quality regressor on the labels (the shared training loop)")
    tr.add_argument("data", metavar="DATA", help="the training set the labels were made from")
    tr.add_argument("--labels", required=True, metavar="labels.npy", help="pseudo-labels from `facezoo quality labels`")
    tr.add_argument("--output", required=True, metavar="DIR", help="run folder: model.pt, checkpoint.pt, logs")
    tr.add_argument("--recipe", default=None, metavar="R.yaml", help="a recipe for the rest (backbone, optimiser)")
    tr.add_argument("--init", default=None, metavar="M.pt", help="start from a recognition model's backbone weights")
    tr.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. model.backbone=ir18")
    tr.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="CHECKPOINT",
        help="continue a stopped run (default OUTPUT/checkpoint.pt)",
    )
    tr.add_argument("--max-steps", type=int, default=None, help="stop (with a checkpoint) after this many steps")
    tr.set_defaults(func=run_train)


def run_list(args) -> int:
    from ..quality import list_quality
    from ..quality.methods import registered

    table = registered()
    for name in list_quality():
        doc = (table.get(name).__doc__ or "").strip().splitlines()[0]
        needs = " (needs a model: NAME:MODEL)" if table.info(name).get("needs_model") else ""
        print(f"{name}{needs}: {doc}")
    return 0


def run_score(args) -> int:
    from ..data.image import read_image_file
    from ..quality import parse_quality
    from ..sdk.pipeline import FaceAnalyzer

    paths = check_files(args.images)
    method = parse_quality(args.model, device=args.device, batch_size=args.batch_size)
    log(method.describe())
    if args.aligned:
        for path in paths:
            print_json({"image": str(path), "quality": float(method.score(read_image_file(path)[None])[0])})
        return 0
    fa = FaceAnalyzer(
        args.detector,
        device=args.device,
        max_faces=args.max_faces,
        min_det_score=args.min_score,
        crop_size=method.input_size,
        quality=method,
    )
    for path, faces in zip(paths, fa.analyze_many([str(p) for p in paths])):
        print_json({"image": str(path), "faces": [face_dict(f) for f in faces]})
    return 0


def run_labels(args) -> int:
    from ..quality.labels import make_labels

    make_labels(
        args.data,
        args.model,
        args.out,
        m=args.m,
        max_positives=args.max_positives or None,
        seed=args.seed,
        flip=not args.no_flip,
        batch_size=args.batch_size,
        device=args.device,
        cache_dir=args.cache_dir,
        chunk_images=args.chunk_images,
        keep_work=args.keep_parts,
        progress=not args.quiet,
        log=None if args.quiet else log,
    )
    return 0


def run_train(args) -> int:
    from .train import run

    forced = [
        "mode=quality_regression",
        "model.embedding_size=1",
        f"data.train={json.dumps(str(args.data))}",
        f"quality_regression.labels={json.dumps(str(args.labels))}",
        f"output={json.dumps(str(args.output))}",
    ]
    if args.init:
        forced.append(f"quality_regression.init={json.dumps(str(args.init))}")
    return run(argparse.Namespace(recipe=args.recipe, overrides=[*args.overrides, *forced], resume=args.resume,
                                  max_steps=args.max_steps))  # fmt: skip
