"""`facezoo export CHECKPOINT --onnx OUT.onnx`: ONNX graph with preprocessing metadata, checked against PyTorch."""

from __future__ import annotations

from . import COMMANDS


@COMMANDS.register("export")
def register(sub) -> None:
    p = sub.add_parser(
        "export", help="export a checkpoint to ONNX (preprocessing metadata embedded)", description=__doc__
    )
    p.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="facezoo model.pt / checkpoint.pt, or a pretrained model name"
    )
    p.add_argument("--onnx", required=True, metavar="OUT", help="output .onnx file (written atomically)")
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
    p.add_argument("--no-check", dest="check", action="store_false", help="skip the onnxruntime parity check")
    p.add_argument(
        "--deploy",
        action="store_true",
        help="fuse train-time branches before exporting (backbones with a reparameterize() method, e.g. RepVGG: "
        "3x3+1x1+identity -> one 3x3 conv); the metadata records the fused layout",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..export.onnx import export_onnx

    source = args.checkpoint
    if args.deploy:
        from ..models.checkpoint import load_module
        from ..models.deploy import reparameterize
        from ..models.zoo import resolve

        source = load_module(resolve(args.checkpoint))
        if not reparameterize(source):
            print(f"--deploy: backbone '{source.meta.backbone}' has no train-time branches to fuse; exported as is")
    r = export_onnx(source, args.onnx, opset=args.opset, input=args.input, check=args.check, atol=args.atol)
    shape = "x".join(str(d) for d in r["input_shape"])
    print(
        f"wrote {r['path']} (exporter {r['exporter']}, opset {r['opset']}, input '{r['input_name']}' "
        f"{r['input']} {shape})"
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
    return 0
