"""`facezoo data`: pack / unpack / inspect / unpack-bin / synth (thin shells over facezoo.data)."""

from __future__ import annotations

import argparse
import json

from . import COMMANDS


def _size(text: str) -> tuple[int, int]:
    """'112' or '112x96' (height x width)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"expected a size like 112 or 112x96, got {text!r}")
    return (parts[0], parts[-1])


def _pack(args) -> int:
    from ..data.pack import pack

    r = pack(args.src, args.out_dir, image_size=args.image_size, quality=args.quality)
    print(
        f"packed {r['images']} images of {r['identities']} identities into {r['out_dir']} "
        f"(train.rec, train.idx, property {r['image_size'][0]}x{r['image_size'][1]})"
    )
    return 0


def _unpack(args) -> int:
    from ..data.pack import unpack

    n = unpack(args.rec_dir, args.out_dir)
    print(f"wrote {n} images to {args.out_dir}/<label>/<key>.<ext>")
    return 0


def _inspect(args) -> int:
    from ..data.inspect import format_report, inspect

    report = inspect(args.path, scan=not args.sample)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _unpack_bin(args) -> int:
    from ..data.verification_bin import unpack_bin

    n = unpack_bin(args.bin, args.out_dir)
    print(f"wrote {n} images and pairs.txt ({n // 2} pairs) to {args.out_dir}")
    return 0


def _synth(args) -> int:
    from ..data.synthetic import synthesize

    extra = {} if args.val_identities is None else {"val_identities": args.val_identities}
    r = synthesize(
        args.out_dir,
        identities=args.identities,
        images_per_identity=args.images_per_identity,
        seed=args.seed,
        image_size=args.image_size,
        **extra,
    )
    print(f"synthesised into {args.out_dir}: " + ", ".join(f"{k}={v}" for k, v in r.items()))
    return 0


@COMMANDS.register("data")
def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data", help="convert and inspect datasets", description="Convert between dataset formats and check datasets."
    )
    parser.set_defaults(func=lambda args: parser.print_help() or 0)
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = sub.add_parser("pack", help="image folder or list file -> train.rec/train.idx/property")
    p.add_argument("src", help="folder with one sub-folder per identity, or a 'relative/path label' list file")
    p.add_argument("out_dir")
    p.add_argument(
        "--image-size",
        type=_size,
        default=None,
        metavar="H[xW]",
        help="resize (bilinear) and re-encode images of another size; default: store bytes unchanged",
    )
    p.add_argument("--quality", type=int, default=None, help="JPEG quality when re-encoding (default 95)")
    p.set_defaults(func=_pack)

    p = sub.add_parser("unpack", help="train.rec -> OUT_DIR/<label>/<key>.<ext> (bytes unchanged)")
    p.add_argument("rec_dir", help="folder with train.rec/train.idx, or a .rec file")
    p.add_argument("out_dir", help="new or empty folder")
    p.set_defaults(func=_unpack)

    p = sub.add_parser("inspect", help="counts, identities, image sizes, corrupt records")
    p.add_argument("path", help="RecordIO folder/.rec, image folder, list file or verification .bin")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--sample", action="store_true", help="decode a sample of images instead of all")
    p.set_defaults(func=_inspect)

    p = sub.add_parser("unpack-bin", help="verification .bin -> OUT_DIR/<index>.<ext> and pairs.txt")
    p.add_argument("bin", metavar="FILE.bin")
    p.add_argument("out_dir", help="new or empty folder")
    p.set_defaults(func=_unpack_bin)

    p = sub.add_parser("synth", help="generate a synthetic face-like training set and verification .bin files")
    p.add_argument("out_dir")
    p.add_argument("--identities", type=int, required=True)
    p.add_argument("--images-per-identity", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--val-identities",
        type=int,
        default=None,
        help="identities held out for the verification sets (default: the generator's)",
    )
    p.add_argument("--image-size", type=int, default=112)
    p.set_defaults(func=_synth)
