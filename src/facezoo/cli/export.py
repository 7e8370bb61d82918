"""`facezoo export CHECKPOINT --onnx OUT.onnx [--fp16 | --int8 --calibrate DATA]`: ONNX graph with preprocessing
metadata, checked against PyTorch; fp16 / int8 checked against fp32 (min cosine on calibration and held-out crops).

`facezoo export --check FILE.onnx`: InsightFace MFR challenge submission rules, one line each; exit 2 if any fails.
"""

from __future__ import annotations

from . import COMMANDS


@COMMANDS.register("export")
def register(sub) -> None:
    p = sub.add_parser(
        "export", help="export a checkpoint to ONNX (fp32/fp16/int8), or check an ONNX submission", description=__doc__
    )
    p.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        nargs="?",
        help="facezoo model.pt / checkpoint.pt, or a pretrained model name",
    )
    p.add_argument("--onnx", metavar="OUT", help="output .onnx file (written atomically)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument(
        "--input",
        choices=("float", "uint8"),
        default="float",
        help="float: normalised float32 (B,3,H,W), like insightface (default); "
        "uint8: (B,H,W,3) RGB pixels, normalisation inside the graph",
    )
    p.add_argument(
        "--atol",
        type=float,
        default=1e-3,
        help="parity tolerance on max |torch - onnxruntime|, times max(1, max |torch|) (default 1e-3)",
    )
    p.add_argument("--no-check", dest="check", action="store_false", help="skip the fp32 onnxruntime parity check")
    p.add_argument(
        "--deploy",
        action="store_true",
        help="fuse train-time branches before exporting (backbones with a reparameterize() method, e.g. RepVGG: "
        "3x3+1x1+identity -> one 3x3 conv); the metadata records the fused layout",
    )
    low = p.add_mutually_exclusive_group()
    low.add_argument("--fp16", action="store_true", help="fp16 weights and activations (float32 input and output)")
    low.add_argument("--int8", action="store_true", help="int8 static post-training quantisation (QDQ); --calibrate")
    p.add_argument(
        "--calibrate",
        metavar="DATA",
        default=None,
        help="aligned crops for int8 ranges and the fp16/int8 parity: a verification .bin, a RecordIO/TFRecord set, "
        "an identity folder or a folder of crops (fp16 without it: random images)",
    )
    p.add_argument(
        "--calibration-images", type=int, default=256, metavar="N", help="crops for calibration (default 256)"
    )
    p.add_argument(
        "--holdout-images", type=int, default=256, metavar="N", help="other crops for the held-out parity (default 256)"
    )
    p.add_argument(
        "--min-cosine",
        type=float,
        default=None,
        metavar="C",
        help="refuse the export when the min cosine to fp32 on either set is below C (default 0.999 fp16, 0.98 int8)",
    )
    c = p.add_argument_group("submission check (--check)")
    c.add_argument("--check", dest="check_file", metavar="FILE.onnx", help="check FILE.onnx; export nothing")
    c.add_argument(
        "--input-size", type=int, nargs=2, default=[112, 112], metavar=("H", "W"), help="stated input size (112 112)"
    )
    c.add_argument(
        "--max-embedding",
        type=int,
        default=512,
        metavar="D",
        help="largest embedding size (512: MFR track A / MS1M; 1024: track B / Glint360K)",
    )
    c.add_argument("--embedding-size", type=int, default=None, metavar="D", help="the stated embedding size, if any")
    c.add_argument("--mean", type=float, default=None, help="input mean, for a file without facezoo metadata")
    c.add_argument("--std", type=float, default=None, help="input std, for a file without facezoo metadata")
    p.set_defaults(func=run)


def _check(args) -> int:
    import sys

    from ..export.check import check_submission, format_checks

    checks = check_submission(
        args.check_file, tuple(args.input_size), args.max_embedding, args.embedding_size, args.mean, args.std
    )
    print(format_checks(checks))
    failed = [c.name for c in checks if c.ok is False]
    if failed:
        print(f"{args.check_file}: fails {len(failed)} check(s): {', '.join(failed)}", file=sys.stderr)
        return 2
    print(f"{args.check_file}: passes every check")
    return 0


def run(args) -> int:
    from ..errors import ConfigError
    from ..export.onnx import export_onnx

    if args.check_file is not None:
        if args.checkpoint or args.onnx:
            raise ConfigError("--check FILE.onnx checks a file; give no CHECKPOINT or --onnx with it")
        return _check(args)
    if not args.checkpoint or not args.onnx:
        raise ConfigError("give CHECKPOINT and --onnx OUT.onnx (or --check FILE.onnx to check a submission)")
    source = args.checkpoint
    if args.deploy:
        from ..models.checkpoint import load_module
        from ..models.deploy import reparameterize
        from ..models.zoo import resolve

        source = load_module(resolve(args.checkpoint))
        if not reparameterize(source):
            print(f"--deploy: backbone '{source.meta.backbone}' has no train-time branches to fuse; exported as is")
    precision = "fp16" if args.fp16 else "int8" if args.int8 else "fp32"
    r = export_onnx(
        source,
        args.onnx,
        opset=args.opset,
        input=args.input,
        check=args.check,
        atol=args.atol,
        precision=precision,
        calibrate=args.calibrate,
        calibration_images=args.calibration_images,
        holdout_images=args.holdout_images,
        min_cosine=args.min_cosine,
    )
    shape = "x".join(str(d) for d in r["input_shape"])
    print(
        f"wrote {r['path']} ({r['precision']}, {r['size_mb']:.2f} MB; exporter {r['exporter']}, opset {r['opset']}, "
        f"input '{r['input_name']}' {r['input']} {shape})"
    )
    p = r["parity"]
    if p is None:
        print("parity check skipped (--no-check)")
    else:
        batches = ",".join(str(b) for b in p["batches"])
        print(
            f"parity vs PyTorch (batch {batches}): max |diff| {p['max_abs_diff']:.3g} "
            f"(tolerance {p['tolerance']:.3g}), min cosine {p['min_cosine']:.7f}"
        )
    q = r["precision_parity"]
    if q is not None:
        print(f"{q['precision']} vs fp32 on {q['source']} (bound: min cosine >= {q['min_cosine_bound']:g}):")
        for label in ("calibration", "holdout"):
            s = q[label]
            print(
                f"  {label:11s} {s['images']:5d} images: min cosine {s['min_cosine']:.5f}, mean {s['mean_cosine']:.5f}"
            )
    return 0
