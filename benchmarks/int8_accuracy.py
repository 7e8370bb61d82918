"""The accuracy cost of int8 (and fp16): one model exported fp32, fp16 and int8, all evaluated on the same held-out
synthetic verification sets (`facezoo eval`'s protocol: 10-fold accuracy and TAR@FAR) in one table.

The model: --model M.pt, or trained here with the demo recipe (configs/synthetic_demo.yaml: quarter-width IR-18 at
64x64, ArcFace) on `facezoo data synth` identities written into OUT/data (once; reused by a rerun). The exports
calibrate (int8) and check parity (both) on --calibration-images crops of the training set, with --holdout-images
others held out; verification runs on synth_ver.bin and synth_hard.bin, identities never trained on. The int8 file
is also evaluated on OpenVINO when the openvino package is installed. Accuracy does not depend on the machine's load.

    python benchmarks/int8_accuracy.py --out bench_out/int8                      # the demo's size (~10 min, 2 cores)
    python benchmarks/int8_accuracy.py --out /tmp/i8 --identities 60 --images 8 --max-steps 5   # a dry run
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from heads_synth import RECIPE, SETS, make_data  # the same recipe, sets and data writer as the heads sweep


def train(data: Path, run: Path, args) -> Path:
    """The demo recipe on data/train; its model.pt (trained once: a rerun reuses it)."""
    from facezoo.config import load_config
    from facezoo.train.trainer import Trainer

    if (run / "model.pt").exists():
        return run / "model.pt"
    overrides = [f"output={run}", f"data.train={data / 'train'}", "data.val=[]", f"seed={args.seed}"]
    overrides += ["tensorboard=false", *([f"epochs={args.epochs}"] if args.epochs else [])]
    cfg = load_config(RECIPE, overrides)
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "train.log", "w") as log, contextlib.redirect_stdout(log):
        trainer = Trainer(cfg)
        trainer.fit(max_steps=args.max_steps)
        trainer.close()
    return run / "model.pt"


def main(argv=None) -> int:
    import facezoo
    from facezoo.eval.runner import run as evaluate
    from facezoo.export.onnx import export_onnx

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for the data, the run, the exports")
    p.add_argument("--model", type=Path, default=None, help="a facezoo .pt to use instead of training one")
    p.add_argument("--identities", type=int, default=400, help="training identities (the demo's 400)")
    p.add_argument("--images", type=int, default=24, help="images per identity (the demo's 24)")
    p.add_argument("--image-size", type=int, default=64, help="the recipe's model.input_size (64)")
    p.add_argument("--epochs", type=int, default=0, help="override the recipe's epochs (0: keep its 4)")
    p.add_argument("--max-steps", type=int, default=None, help="stop training after this many steps")
    p.add_argument("--calibration-images", type=int, default=256)
    p.add_argument("--holdout-images", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    data = make_data(args.out / "data", args.identities, args.images, args.image_size, args.seed)
    model = args.model or train(data, args.out / "run", args)
    exports, parity = {}, {}
    for precision in ("fp32", "fp16", "int8"):
        path = args.out / f"model_{precision}.onnx"
        low = {} if precision == "fp32" else {"calibrate": data / "train"}
        r = export_onnx(
            model,
            path,
            precision=precision,
            calibration_images=args.calibration_images,
            holdout_images=args.holdout_images,
            **low,
        )
        exports[precision], parity[precision] = path, r
    models = {"model.pt (torch)": model, **{f"{p} (onnxruntime)": f for p, f in exports.items()}}
    try:
        models["int8 (openvino)"] = facezoo.load_model(exports["int8"], "cpu", runtime="openvino")
    except facezoo.errors.ConfigError as e:
        print(f"openvino: skipped ({e})", file=sys.stderr)
    sets = [str(data / f"{s}.bin") for s in SETS]
    report = evaluate(models, sets, device="cpu", cache=False, progress=False)
    print(f"model {model}; sets {', '.join(sets)}\n")
    print("| export | size (MB) | min cosine to fp32, calibration / held-out (images) |")
    print("|---|---:|---|")
    for precision, r in parity.items():
        q = r["precision_parity"]
        cos = (
            "-"
            if q is None
            else (
                f"{q['calibration']['min_cosine']:.4f} / {q['holdout']['min_cosine']:.4f} "
                f"({q['calibration']['images']} / {q['holdout']['images']})"
            )
        )
        print(f"| {precision} | {r['size_mb']:.2f} | {cos} |")
    print()
    print(report.text)
    files = " ".join(str(f) for f in exports.values())
    print(f"\nthe same with the CLI: facezoo eval {model} {files} --bin {' '.join(sets)} --device cpu --no-cache")
    return 0


if __name__ == "__main__":
    sys.exit(main())
