"""`facezoo eval-ijb CHECKPOINT --root IJB_DIR --target IJBC`: IJB-B / IJB-C 1:1 TAR at FAR 1e-6 ... 1e-1.

The release folder holds meta/ (<t>_face_tid_mid.txt, <t>_template_pair_label.txt, <t>_name_5pts_score.txt) and
loose_crop/. Options as InsightFace's eval_ijbc.py: flip, norm, detector score (all on by default).
"""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("eval-ijb", help="IJB-B / IJB-C 1:1 verification (TAR at FAR)", description=__doc__)
    p.add_argument("checkpoint", help="facezoo model.pt / checkpoint.pt")
    p.add_argument("--root", required=True, help="the IJB release folder (with meta/ and loose_crop/)")
    p.add_argument("--target", default="IJBC", help="IJBB or IJBC (default IJBC)")
    p.add_argument("--no-flip", action="store_true", help="embed the image only (default: image + flip)")
    p.add_argument("--no-norm", action="store_true", help="L2-normalise each image feature before pooling")
    p.add_argument("--no-detector-score", action="store_true", help="do not weight features by faceness score")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--out", metavar="DIR", default=None, help="write results.json and roc.png here")
    p.set_defaults(func=run)


def run(args) -> int:
    import facezoo

    from ..device import resolve_device
    from ..eval.ijb import evaluate_ijb_features, meta_dir
    from ..eval.ijb_images import embed_ijb_images, loose_crop_dir
    from ..eval.report import plot_roc, write_json

    meta_dir(args.root, args.target.upper()), loose_crop_dir(args.root, args.target)  # fail before loading a model
    device = resolve_device(args.device)
    model = facezoo.load_model(args.checkpoint).to(device).eval()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    emb, emb_flip = embed_ijb_images(model, args.root, args.target, args.batch_size, device, log=log)
    r = evaluate_ijb_features(args.root, args.target, emb, emb_flip, use_flip=not args.no_flip,
                              use_norm=not args.no_norm, use_detector_score=not args.no_detector_score)
    fars = list(r["tar_at_far"])
    print(f"{r['target']} 1:1, {r['num_pairs']:,} pairs, options {r['options']}")
    print("| model | " + " | ".join(f"TAR@FAR={k}" for k in fars) + " |")
    print("|---" * (len(fars) + 1) + "|")
    print(f"| {Path(args.checkpoint).stem} | " + " | ".join(f"{100 * r['tar_at_far'][k]['tar']:.2f}" for k in fars) + " |")
    if args.out:
        out = Path(args.out)
        write_json(out / "results.json", {k: v for k, v in r.items() if k not in ("scores", "fpr", "tpr", "thresholds")})
        plot_roc(out / "roc.png", {f"{Path(args.checkpoint).stem} {r['target']}": (r["fpr"], r["tpr"])})
        print(f"wrote {out / 'results.json'}, {out / 'roc.png'}")
    return 0
